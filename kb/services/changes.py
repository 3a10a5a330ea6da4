"""Writes for architecture changes: propose, edit while still proposed, copy, and the status
moves that runs and outcomes make."""

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import transaction

from kb import events
from kb.models import ArchitectureChange, Insight, SubjectModel
from kb.services.records import (
    record_create,
    record_update,
    record_version_advance,
)

# What a copy carries over: the change itself, never its status, runs or outcomes.
COPIED_FIELDS = ("insight", "target_model", "operation", "parameters", "rationale",
                 "expected_metric", "expected_direction", "minimum_effect")  # fmt: skip


def change_create(
    *,
    actor,
    insight: Insight,
    target_model: SubjectModel,
    operation: str,
    parameters: dict | None = None,
    **fields,
) -> ArchitectureChange:
    """Propose an architecture change; its parameters are validated against the model's spec."""
    change = ArchitectureChange(
        insight=insight,
        target_model=target_model,
        operation=operation,
        parameters=parameters or {},
        **fields,
    )
    return record_create(change, actor=actor)


def change_set_status(*, actor, change: ArchitectureChange, status: str) -> ArchitectureChange:
    """Move the change to `status` (a run started, finished or was cancelled; an outcome was
    recorded or deleted). Never refused for a version, but it moves the version on: a form
    opened on the proposed change can no longer save over it."""
    old = change.status
    if old == status:
        return change
    with transaction.atomic():
        record_version_advance(change)
        change.status = status
        change.full_clean()
        change.save(update_fields=["status", "updated_at", "version"])
        events.record_status_changed(actor=actor, instance=change, old=old, new=status)
    return change


def change_edit_refusal(change: ArchitectureChange) -> str | None:
    """Why the change can no longer be edited, or None while it can. A change is editable
    only while it is proposed and no run has been requested for it: every run froze the
    change as it was, and its outcome must keep meaning what it measured."""
    if change.status != ArchitectureChange.Status.PROPOSED:
        return (
            f"This change is {change.status}, so it can no longer be edited. "
            "Copy it as a new change to try something else."
        )
    if "runs" in getattr(change, "_prefetched_objects_cache", {}):  # pages prefetch them
        first_run = min((run.pk for run in change.runs.all()), default=None)
    else:
        first_run = change.runs.order_by("pk").values_list("pk", flat=True).first()
    if first_run is not None:
        return (
            f"Run {first_run} measured this change as it is, so it can no longer be edited. "
            "Copy it as a new change to try something else."
        )
    return None


def change_update(
    *, actor, change: ArchitectureChange, data: dict, expected_version: int | None = None
) -> ArchitectureChange:
    """Edit a change that is still proposed and has no run; refused otherwise. Given
    `expected_version`, a change saved since is refused with RecordChanged
    (kb.services.records); one that a run has measured since hears that instead, since saving
    again cannot help."""
    with transaction.atomic():
        # Locked so that an experiment cannot be requested between the check and the save.
        current = ArchitectureChange.objects.select_for_update().get(pk=change.pk)
        if refusal := change_edit_refusal(current):
            raise ValidationError({NON_FIELD_ERRORS: refusal})
        return record_update(current, actor=actor, data=data, expected_version=expected_version)


def change_copy(*, actor, change: ArchitectureChange) -> ArchitectureChange:
    """A new proposed change with the same insight, model, operation, parameters and
    expectations; the log records which change it was copied from."""
    with transaction.atomic():
        copy = change_create(actor=actor, **{name: getattr(change, name) for name in COPIED_FIELDS})
        events.record_linked(actor=actor, instance=copy, relation="copied_from", ids=[change.pk])
    return copy
