"""Models under study and level-1 findings about their weights and activations."""

from pathlib import PurePath

from django.core.exceptions import ValidationError
from django.core.validators import FileExtensionValidator, MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.urls import reverse
from simple_history.models import HistoricalRecords

from analysis.engine.model_specs import model_unit_layers, spec_family, validate_model_spec
from analysis.engine.specs import SpecError, SpecFieldError


def weights_upload_path(instance: "SubjectModel", filename: str) -> str:
    return f"weights/{PurePath(filename).name}"


CONFIDENCE_IS_PROBABILITY = "Confidence must lie between 0 and 1."


def record_version_field() -> models.PositiveIntegerField:
    """How many times a record people edit together has been saved: every write through the
    services moves it on, and a save from a form or representation of an older version is
    refused (kb.services.records.record_update), so nobody silently overwrites another's
    edit. Never edited itself."""
    return models.PositiveIntegerField(
        default=1,
        editable=False,
        help_text="Moves on with every save; a save that names an older version is refused.",
    )


# As many units as the API accepts (kb/api/serializers.py); a layer wider than this is rare.
MAX_FINDING_UNITS = 4096


class SubjectModel(models.Model):
    """A trained model under study.

    External models (InceptionV1, ...) only carry findings entered by hand; built-in models
    carry an architecture spec the analysis engine can build, train, profile and change.
    Weights are accepted only as safetensors files, never as pickles.
    """

    class Kind(models.TextChoices):
        EXTERNAL = "external", "External (findings entered by hand)"
        BUILTIN = "builtin", "Built-in (the engine can build and train it)"

    name = models.CharField(max_length=120, unique=True)
    family = models.CharField(max_length=120, blank=True)
    task = models.CharField(max_length=200, blank=True)
    dataset = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.EXTERNAL)
    architecture_spec = models.JSONField(default=dict, blank=True)
    weights = models.FileField(
        upload_to=weights_upload_path,
        blank=True,
        validators=[FileExtensionValidator(["safetensors"])],
    )
    weights_sha256 = models.CharField(max_length=64, blank=True, editable=False)
    source = models.TextField(blank=True, help_text="Where the model comes from, or a citation.")
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                name="subject_model_weights_hash_is_hex",
                condition=Q(weights_sha256="") | Q(weights_sha256__regex=r"^[0-9a-f]{64}$"),
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("model-detail", args=[self.pk])

    def clean(self) -> None:
        if self.kind == self.Kind.BUILTIN:
            if not self.architecture_spec:
                raise ValidationError({"architecture_spec": "A built-in model needs a spec."})
            try:
                validate_model_spec(self.architecture_spec)
            except SpecFieldError as error:
                # On the field itself (admin and page forms have no field per spec path),
                # each message led by its path; the services key them by path for the API.
                raise ValidationError(
                    {"architecture_spec": spec_problems(error.field_errors)}
                ) from None

    @property
    def is_transformer(self) -> bool:
        """Whether the spec declares the transformer family (heads and neurons as units)."""
        return spec_family(self.architecture_spec) == "transformer"

    def known_layer_widths(self) -> dict[str, int]:
        """Units per layer where findings can sit when the spec is known and valid, else an
        empty dict: a CNN's layer widths, a transformer's "blocks.{i}.attn" (heads) and
        "blocks.{i}.mlp" (neurons)."""
        if not self.architecture_spec:
            return {}
        try:
            return model_unit_layers(self.architecture_spec)
        except SpecError:
            return {}


def spec_field_errors(error: SpecFieldError) -> dict[str, list[str]]:
    """A refused spec's problems keyed by model field: a CNN spec's (and a spec that is not
    an object) under "architecture_spec", a transformer's under its dotted path, e.g.
    "architecture_spec.blocks.1.n_heads"."""
    return {
        "architecture_spec" if key == "spec" else f"architecture_spec.{key}": messages
        for key, messages in error.field_errors.items()
    }


def spec_problems(field_errors: dict[str, list[str]]) -> list[str]:
    """A refused spec's problems as messages, each led by the spec path it names
    ("blocks.1.n_heads: must be ..."), a CNN spec's (keyed "spec") as they are."""
    return [
        message if key == "spec" else f"{key}: {message}"
        for key, messages in field_errors.items()
        for message in messages
    ]


class Finding(models.Model):
    """Level-1 understanding: where a concept lives in one model (layer and units) and why."""

    class Kind(models.TextChoices):
        FEATURE = "feature", "Feature"
        CIRCUIT = "circuit", "Circuit"
        UNIT_CLUSTER = "unit_cluster", "Unit cluster"
        DEAD_UNITS = "dead_units", "Dead units"
        OTHER = "other", "Other"

    class Status(models.TextChoices):
        HYPOTHESIS = "hypothesis", "Hypothesis"
        SUPPORTED = "supported", "Supported"
        REFUTED = "refuted", "Refuted"

    subject_model = models.ForeignKey(
        SubjectModel, on_delete=models.PROTECT, related_name="findings"
    )
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True, help_text="Markdown.")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.FEATURE)
    layer_name = models.CharField(max_length=120)
    unit_indices = models.JSONField(default=list, blank=True)
    concept = models.CharField(
        max_length=120, blank=True, help_text="The concept these units carry, e.g. curvature."
    )
    evidence_runs = models.ManyToManyField(
        "analysis.AnalysisRun", related_name="evidence_for", blank=True
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.HYPOTHESIS)
    confidence = models.FloatField(
        default=0.5,
        validators=[
            MinValueValidator(0.0, message=CONFIDENCE_IS_PROBABILITY),
            MaxValueValidator(1.0, message=CONFIDENCE_IS_PROBABILITY),
        ],
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    version = record_version_field()

    history = HistoricalRecords(m2m_fields=[evidence_runs])

    class Meta:
        ordering = ["subject_model", "layer_name", "title"]
        indexes = [
            models.Index(fields=["subject_model", "layer_name"], name="finding_location_idx"),
            models.Index(fields=["status"], name="finding_status_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["subject_model", "title"], name="finding_unique_title_per_model"
            ),
            models.CheckConstraint(
                name="finding_confidence_is_probability",
                condition=Q(confidence__gte=0) & Q(confidence__lte=1),
                violation_error_message=CONFIDENCE_IS_PROBABILITY,
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subject_model}: {self.title}"

    def get_absolute_url(self) -> str:
        return reverse("finding-detail", args=[self.pk])

    def clean(self) -> None:
        indices = self.unit_indices
        if not isinstance(indices, list) or not all(
            isinstance(index, int) and not isinstance(index, bool) for index in indices
        ):
            raise ValidationError({"unit_indices": "Unit indices must be a list of integers."})
        if len(indices) > MAX_FINDING_UNITS:
            raise ValidationError(
                {"unit_indices": f"A finding names at most {MAX_FINDING_UNITS} units."}
            )
        if any(index < 0 for index in indices):
            raise ValidationError({"unit_indices": "Unit indices must be non-negative."})
        if len(set(indices)) != len(indices):
            raise ValidationError({"unit_indices": "Unit indices must be unique."})
        if self.subject_model_id is None:
            return
        widths = self.subject_model.known_layer_widths()
        if not widths:
            return
        if self.layer_name not in widths:
            raise ValidationError(
                {"layer_name": f"The model has no layer {self.layer_name!r} with units."}
            )
        width = widths[self.layer_name]
        too_large = [index for index in indices if index >= width]
        if too_large:
            raise ValidationError(
                {
                    "unit_indices": f"Layer {self.layer_name} has {width} units; out of range: "
                    f"{', '.join(map(str, too_large))}."
                }
            )
