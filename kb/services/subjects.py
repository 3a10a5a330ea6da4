"""Writes for models under study and findings about them."""

import hashlib
import json
import struct

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import transaction
from django.db.models import Q

from analysis.engine.model_specs import validate_model_spec
from analysis.engine.specs import SpecFieldError
from kb import events
from kb.models import Finding, SubjectModel
from kb.models.subjects import spec_field_errors
from kb.services.records import record_create, record_touch, record_update

# What a run measures about a model: frozen into every run, so fixed once a run used it.
MEASURED_MODEL_FIELDS = ("architecture_spec", "weights", "kind")

# A safetensors file starts with an 8-byte little-endian header length, then a JSON header.
SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024


def _check_safetensors(upload: File) -> str:
    """Return the SHA-256 of an uploaded safetensors file; refuse anything else (pickles),
    and files over WEIGHTS_MAX_UPLOAD_SIZE."""
    limit = settings.WEIGHTS_MAX_UPLOAD_SIZE
    if upload.size > limit:
        raise ValidationError({"weights": f"The weights file is larger than {limit} bytes."})
    upload.seek(0)
    prefix = upload.read(8)
    if len(prefix) != 8:
        raise ValidationError({"weights": "The weights file is empty or truncated."})
    (header_length,) = struct.unpack("<Q", prefix)
    if not 1 < header_length <= SAFETENSORS_MAX_HEADER:
        raise ValidationError({"weights": "Not a safetensors file (bad header length)."})
    try:
        header = json.loads(upload.read(header_length))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValidationError({"weights": "Not a safetensors file (bad header)."}) from None
    if not isinstance(header, dict):
        raise ValidationError({"weights": "Not a safetensors file (bad header)."})
    upload.seek(0)
    digest = hashlib.sha256()
    for chunk in (
        upload.chunks() if hasattr(upload, "chunks") else iter(lambda: upload.read(1 << 20), b"")
    ):
        digest.update(chunk)
    upload.seek(0)
    return digest.hexdigest()


def subject_model_create(
    *,
    actor,
    name: str,
    kind: str = SubjectModel.Kind.EXTERNAL,
    architecture_spec: dict | None = None,
    weights: File | None = None,
    **fields,
) -> SubjectModel:
    """Register a model under study; weights, when given, must be a safetensors file. A
    built-in model's spec may be a CNN/MLP or a transformer spec (weights then a
    HookedTransformer-style state dict); its problems come keyed by path."""
    model = SubjectModel(name=name, kind=kind, architecture_spec=architecture_spec or {}, **fields)
    _check_spec(model.kind, model.architecture_spec)
    if weights is not None:
        model.weights_sha256 = _check_safetensors(weights)
        model.weights = weights
    return record_create(model, actor=actor)


def _check_spec(kind: str, spec) -> None:
    """Refuse a built-in model's invalid spec with its problems keyed by path
    ("architecture_spec.blocks.1.n_heads"), so the API names each field; SubjectModel.clean
    checks the same on the field as a whole for forms that have no field per path."""
    if kind != SubjectModel.Kind.BUILTIN or not spec:
        return  # left to SubjectModel.clean, which asks a built-in model for a spec
    try:
        validate_model_spec(spec)
    except SpecFieldError as error:
        raise ValidationError(spec_field_errors(error)) from None


def subject_model_used_by_run(model: SubjectModel) -> int | None:
    """The first run that measured this model (profiled it, ablated one of its findings or
    tested a change to it), or None."""
    from analysis.models import AnalysisRun  # analysis builds on kb; imported late

    return (
        AnalysisRun.objects.filter(
            Q(subject_model=model) | Q(finding__subject_model=model) | Q(change__target_model=model)
        )
        .order_by("pk")
        .values_list("pk", flat=True)
        .first()
    )


def subject_model_update(*, actor, model: SubjectModel, data: dict) -> SubjectModel:
    """Edit a model's description; its spec, kind and weights only until a run used it."""
    with transaction.atomic():
        # The locked row, not the caller's copy: a run requested meanwhile is seen.
        model = SubjectModel.objects.select_for_update().get(pk=model.pk)
        measured = [
            name
            for name in MEASURED_MODEL_FIELDS
            if name in data and data[name] != getattr(model, name)
        ]
        if measured and (run := subject_model_used_by_run(model)) is not None:
            raise ValidationError(
                {
                    name: f"Run {run} measured this model as it is, so its "
                    f"{name.replace('_', ' ')} can no longer change. Register a new model "
                    "to try another one."
                    for name in measured
                }
            )
        _check_spec(
            data.get("kind", model.kind), data.get("architecture_spec", model.architecture_spec)
        )
        return record_update(model, actor=actor, data=data)


def finding_create(
    *,
    actor,
    subject_model: SubjectModel,
    title: str,
    layer_name: str,
    unit_indices: list[int] | None = None,
    evidence_runs=(),
    **fields,
) -> Finding:
    """Record where a concept lives in a model (layer and units), validated against its spec."""
    finding = Finding(
        subject_model=subject_model,
        title=title,
        layer_name=layer_name,
        # Anything but a list or tuple is left for Finding.clean to refuse with a field error.
        unit_indices=list(unit_indices)
        if isinstance(unit_indices, list | tuple)
        else ([] if unit_indices is None else unit_indices),
        **fields,
    )
    with transaction.atomic():
        record_create(finding, actor=actor)
        if evidence_runs:
            _link_evidence_runs(actor=actor, finding=finding, runs=list(evidence_runs))
    return finding


def finding_update(
    *, actor, finding: Finding, data: dict, expected_version: int | None = None
) -> Finding:
    """Edit a finding; its model stays (a finding about another model is a new finding), and
    layer and units are checked against the model's spec. Runs froze the units they measured.
    Given `expected_version`, a finding saved since is refused with RecordChanged."""
    if "subject_model" in data and data["subject_model"] != finding.subject_model:
        raise ValidationError(
            {"subject_model": "A finding stays with its model; record a new finding instead."}
        )
    return record_update(finding, actor=actor, data=data, expected_version=expected_version)


def finding_attach_evidence(*, actor, finding: Finding, runs: list) -> Finding:
    """Attach finished runs as evidence. The finding's version moves on, so an edit form
    opened before cannot save over the new evidence unseen; this is never refused for it."""
    with transaction.atomic():
        record_touch(finding)
        _link_evidence_runs(actor=actor, finding=finding, runs=runs)
    return finding


def _link_evidence_runs(*, actor, finding: Finding, runs: list) -> None:
    finding.evidence_runs.add(*runs)
    events.record_linked(
        actor=actor, instance=finding, relation="evidence_runs", ids=[run.pk for run in runs]
    )
