"""Insights, the architecture changes they propose, and the measured outcomes of those changes."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.urls import reverse
from simple_history.models import HistoricalRecords

from analysis.engine.changes import ChangeError, validate_change_parameters
from analysis.engine.specs import SpecError
from kb.models.subjects import record_version_field

# The largest metric value an outcome accepts, as the API's MetricValueField does.
METRIC_VALUE_LIMIT = 1e9


class Stance(models.TextChoices):
    SUPPORTS = "supports", "Supports"
    CONTRADICTS = "contradicts", "Contradicts"


class Insight(models.Model):
    """A statement linking findings and interview quotes to something actionable."""

    class Level(models.IntegerChoices):
        WEIGHTS_AND_ACTIVATIONS = 1, "1: weights and activations of a model"
        DESIGN_CHOICES = 2, "2: why an architecture or hyperparameter choice works"

    class Relevance(models.TextChoices):
        SAFETY = "safety", "Safety"
        CAPABILITIES = "capabilities", "Capabilities"
        BOTH = "both", "Safety and capabilities"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ACTIONED = "actioned", "Actioned"
        REFUTED = "refuted", "Refuted"

    title = models.CharField(max_length=200, unique=True)
    statement = models.TextField(help_text="Markdown.")
    understanding_level = models.PositiveSmallIntegerField(
        choices=Level.choices, default=Level.WEIGHTS_AND_ACTIVATIONS
    )
    relevance = models.CharField(max_length=16, choices=Relevance.choices, default=Relevance.BOTH)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    findings = models.ManyToManyField(
        "kb.Finding", through="InsightFinding", related_name="insights", blank=True
    )
    highlights = models.ManyToManyField(
        "kb.Highlight", through="InsightHighlight", related_name="insights", blank=True
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    version = record_version_field()

    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status"], name="insight_status_idx")]
        constraints = [
            models.CheckConstraint(
                name="insight_level_is_1_or_2",
                condition=Q(understanding_level__in=[1, 2]),
                violation_error_message="Understanding level must be 1 or 2.",
            ),
        ]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("insight-detail", args=[self.pk])


class InsightFinding(models.Model):
    """A finding that supports or contradicts an insight."""

    insight = models.ForeignKey(Insight, on_delete=models.CASCADE, related_name="finding_links")
    finding = models.ForeignKey(
        "kb.Finding", on_delete=models.PROTECT, related_name="insight_links"
    )
    stance = models.CharField(max_length=16, choices=Stance.choices, default=Stance.SUPPORTS)

    history = HistoricalRecords()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["insight", "finding"], name="insight_finding_once"),
        ]

    def __str__(self) -> str:
        return f"{self.finding} {self.stance} {self.insight}"


class InsightHighlight(models.Model):
    """An interview highlight (a quote) that supports or contradicts an insight."""

    insight = models.ForeignKey(Insight, on_delete=models.CASCADE, related_name="highlight_links")
    highlight = models.ForeignKey(
        "kb.Highlight", on_delete=models.PROTECT, related_name="insight_links"
    )
    stance = models.CharField(max_length=16, choices=Stance.choices, default=Stance.SUPPORTS)

    history = HistoricalRecords()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["insight", "highlight"], name="insight_highlight_once"),
        ]

    def __str__(self) -> str:
        return f"{self.highlight} {self.stance} {self.insight}"


class ArchitectureChange(models.Model):
    """The actionable step an insight proposes, as a typed operation on a target model."""

    class Operation(models.TextChoices):
        WIDEN_LAYER = "widen_layer", "Widen a layer"
        INSERT_LAYER = "insert_layer", "Insert a layer"
        REMOVE_LAYER = "remove_layer", "Remove a layer"
        SET_HYPERPARAMETER = "set_hyperparameter", "Set a hyperparameter"
        # Transformers only (analysis.engine.transformer_changes).
        INSERT_BLOCK = "insert_block", "Insert a block"
        REMOVE_BLOCK = "remove_block", "Remove a block"
        ADD_HEADS = "add_heads", "Add attention heads"
        WIDEN_MLP = "widen_mlp", "Widen an MLP"
        MANUAL = "manual", "Manual / free-form"

    class Direction(models.TextChoices):
        INCREASE = "increase", "Increase"
        DECREASE = "decrease", "Decrease"

    class Status(models.TextChoices):
        PROPOSED = "proposed", "Proposed"
        RUNNING = "running", "Running"
        EVALUATED = "evaluated", "Evaluated"

    insight = models.ForeignKey(Insight, on_delete=models.PROTECT, related_name="changes")
    target_model = models.ForeignKey(
        "kb.SubjectModel", on_delete=models.PROTECT, related_name="changes"
    )
    operation = models.CharField(max_length=24, choices=Operation.choices)
    parameters = models.JSONField(default=dict, blank=True)
    rationale = models.TextField(blank=True, help_text="Markdown.")
    expected_metric = models.CharField(max_length=64, default="test_accuracy")
    expected_direction = models.CharField(
        max_length=8, choices=Direction.choices, default=Direction.INCREASE
    )
    minimum_effect = models.FloatField(
        default=0.01, help_text="The smallest effect on the metric that would matter."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PROPOSED)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    version = record_version_field()

    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status"], name="change_status_idx")]
        constraints = [
            models.CheckConstraint(
                name="change_minimum_effect_positive",
                condition=Q(minimum_effect__gt=0),
                violation_error_message="The smallest effect that matters must be positive.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_operation_display()} on {self.target_model}"

    def get_absolute_url(self) -> str:
        return reverse("change-detail", args=[self.pk])

    def clean(self) -> None:
        if self.target_model_id is None:
            return
        model = self.target_model
        if self.operation != self.Operation.MANUAL and model.kind != model.Kind.BUILTIN:
            raise ValidationError(
                {"operation": "Only a manual change can target an external model."}
            )
        spec = model.architecture_spec if model.kind == model.Kind.BUILTIN else None
        try:
            validate_change_parameters(self.operation, self.parameters, spec)
        except ChangeError as error:
            # Keyed by the parameter, dotted like the run settings' nested errors
            # ("parameters.units"), so forms and the API place each one without parsing.
            raise ValidationError(
                {
                    _parameter_error_key(field): message
                    for field, message in error.field_errors.items()
                }
            ) from None
        except SpecError as error:
            raise ValidationError({"parameters": str(error)}) from None


def _parameter_error_key(field: str) -> str:
    if field == "operation":
        return "operation"
    return "parameters" if field == "__all__" else f"parameters.{field}"


class Outcome(models.Model):
    """The measured result of a change: per-seed values per arm, the effect and a verdict."""

    class Verdict(models.TextChoices):
        IMPROVED = "improved", "Improved"
        NO_EFFECT = "no_effect", "No effect"
        WORSE = "worse", "Worse"
        INCONCLUSIVE = "inconclusive", "Inconclusive"

    class Source(models.TextChoices):
        ANALYSIS_RUN = "analysis_run", "Measured by an analysis run"
        MANUAL = "manual", "Entered by hand"
        # A study round's outcome: its run is the study (StudyRound.outcome links back).
        STUDY = "study", "Measured by a study round"

    change = models.ForeignKey(
        ArchitectureChange, on_delete=models.PROTECT, related_name="outcomes"
    )
    metric = models.CharField(max_length=64)
    baseline_values = models.JSONField(default=list)
    variant_values = models.JSONField(default=list)
    control_values = models.JSONField(default=list, blank=True)
    effect = models.FloatField(help_text="Variant minus baseline, mean over seeds.")
    ci_low = models.FloatField(null=True, blank=True)
    ci_high = models.FloatField(null=True, blank=True)
    p_value = models.FloatField(null=True, blank=True)
    effect_vs_control = models.FloatField(null=True, blank=True)
    control_ci_low = models.FloatField(null=True, blank=True)
    control_ci_high = models.FloatField(null=True, blank=True)
    verdict = models.CharField(max_length=16, choices=Verdict.choices)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.MANUAL)
    analysis_run = models.OneToOneField(
        "analysis.AnalysisRun",
        on_delete=models.PROTECT,
        related_name="outcome",
        null=True,
        blank=True,
    )
    notes = models.TextField(blank=True, help_text="Markdown.")
    recorded_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["-recorded_at", "-id"]
        indexes = [models.Index(fields=["verdict"], name="outcome_verdict_idx")]
        constraints = [
            models.CheckConstraint(
                name="outcome_run_matches_source",
                condition=Q(source="manual", analysis_run__isnull=True)
                | Q(source="analysis_run", analysis_run__isnull=False)
                | Q(source="study", analysis_run__isnull=True),
                violation_error_message=(
                    "A measured outcome needs its run; a manual or study one has none."
                ),
            ),
            models.CheckConstraint(
                name="outcome_ci_brackets_effect",
                condition=Q(ci_low__isnull=True, ci_high__isnull=True)
                | Q(ci_low__lte=models.F("effect"), ci_high__gte=models.F("effect")),
                violation_error_message="The confidence interval must contain the effect.",
            ),
            models.CheckConstraint(
                name="outcome_p_value_is_probability",
                condition=Q(p_value__isnull=True) | Q(p_value__gte=0, p_value__lte=1),
                violation_error_message="A p-value lies between 0 and 1.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.change}: {self.get_verdict_display()}"

    def get_absolute_url(self) -> str:
        return reverse("change-detail", args=[self.change_id]) + f"#outcome-{self.pk}"

    def clean(self) -> None:
        for field in ("baseline_values", "variant_values", "control_values"):
            values = getattr(self, field)
            if not isinstance(values, list) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in values
            ):
                raise ValidationError({field: "Values must be a list of numbers, one per seed."})
            # Bounded so that means and intervals stay finite (JSON has no NaN or infinity).
            if not all(abs(v) <= METRIC_VALUE_LIMIT for v in values):
                limit = f"{METRIC_VALUE_LIMIT:,.0f}"
                raise ValidationError({field: f"Each value must lie between -{limit} and {limit}."})
        if not self.baseline_values or not self.variant_values:
            raise ValidationError("An outcome needs at least one baseline and one variant value.")
