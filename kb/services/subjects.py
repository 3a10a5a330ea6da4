"""Writes for models under study and findings about them."""

import hashlib
import json
import struct

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import transaction

from kb import events
from kb.models import Finding, SubjectModel
from kb.services.records import record_create

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
    """Register a model under study; weights, when given, must be a safetensors file."""
    model = SubjectModel(name=name, kind=kind, architecture_spec=architecture_spec or {}, **fields)
    if weights is not None:
        model.weights_sha256 = _check_safetensors(weights)
        model.weights = weights
    return record_create(model, actor=actor)


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
        unit_indices=list(unit_indices or []),
        **fields,
    )
    with transaction.atomic():
        record_create(finding, actor=actor)
        if evidence_runs:
            finding_attach_evidence(actor=actor, finding=finding, runs=list(evidence_runs))
    return finding


def finding_attach_evidence(*, actor, finding: Finding, runs: list) -> Finding:
    finding.evidence_runs.add(*runs)
    events.record_linked(
        actor=actor, instance=finding, relation="evidence_runs", ids=[run.pk for run in runs]
    )
    return finding
