"""The append-only event log: one small function per event type, called by services only.

Values of personal or long free-text fields never enter the log; it records that they
changed, so the log can be shown to every role that may see the record itself.

Events are never edited or deleted, with one exception: anonymising a researcher
(kb.services.people.researcher_anonymise) is consent withdrawal. It replaces their name and
e-mail wherever they appear in `target_label` and `changes` (fields logged in full, such as an
insight's statement, may hold them), and their affiliation and old pseudonym in the events
about their own records, with UPDATE statements that bypass Event.save(). The log still says
who did what to which record, and when.
"""

from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import models

from kb.models import Event

REDACTED = "(changed; value not logged)"
REDACTED_FIELDS: dict[str, set[str]] = {
    "kb.researcher": {"pseudonym", "full_name", "affiliation", "contact_email"},
    "kb.interview": {"transcript", "summary"},
    "kb.answer": {"text"},
    "kb.highlight": {"quote", "note"},
    # A quote's link to an insight prints the quote; viewers may not see every quote.
    "kb.insighthighlight": set(),
}


def _label(instance: models.Model) -> str:
    # Records that carry personal data are labelled by kind and id, never by their str(),
    # which may include a pseudonym or a quote.
    if instance._meta.label_lower in REDACTED_FIELDS:
        return f"{instance._meta.verbose_name} #{instance.pk}"
    return str(instance)[:200]


def _redact(instance: models.Model, changes: dict[str, Any]) -> dict[str, Any]:
    hidden = REDACTED_FIELDS.get(instance._meta.label_lower, set())
    return {field: (REDACTED if field in hidden else value) for field, value in changes.items()}


def _append(action: str, instance: models.Model, actor, changes: dict | None = None) -> Event:
    return Event.objects.create(
        actor=actor if actor is not None and actor.is_authenticated else None,
        action=action,
        target_type=ContentType.objects.get_for_model(instance, for_concrete_model=False),
        target_id=instance.pk,
        target_label=_label(instance),
        changes=_redact(instance, changes or {}),
    )


def record_created(*, actor, instance: models.Model, fields: dict[str, Any]) -> Event:
    return _append(Event.Action.CREATED, instance, actor, fields)


def record_updated(*, actor, instance: models.Model, changed: dict[str, list]) -> Event:
    """`changed` maps each field to [old, new]."""
    return _append(Event.Action.UPDATED, instance, actor, changed)


def record_deleted(*, actor, instance: models.Model) -> Event:
    return _append(Event.Action.DELETED, instance, actor)


def record_anonymised(
    *, actor, researcher: models.Model, cleared: list[str], interviews_erased: int
) -> Event:
    return _append(
        Event.Action.ANONYMISED,
        researcher,
        actor,
        {"cleared": cleared, "interviews_erased": interviews_erased},
    )


def record_linked(*, actor, instance: models.Model, relation: str, ids: list[int]) -> Event:
    return _append(Event.Action.LINKED, instance, actor, {relation: ids})


def record_status_changed(*, actor, instance: models.Model, old: str, new: str) -> Event:
    return _append(Event.Action.STATUS_CHANGED, instance, actor, {"status": [old, new]})


def record_run_requested(*, actor, run: models.Model) -> Event:
    return _append(Event.Action.RUN_REQUESTED, run, actor, {"kind": run.kind})


def record_run_finished(*, run: models.Model) -> Event:
    changes = {"status": run.status}
    if run.failure:
        changes["failure"] = run.failure
    return _append(Event.Action.RUN_FINISHED, run, None, changes)


def record_job_claimed_again(*, run: models.Model, key: str, attempt: int) -> Event:
    """A worker took over a job whose previous worker stopped renewing its lease."""
    return _append(Event.Action.JOB_RECLAIMED, run, None, {"job": key, "attempt": attempt})


def record_outcome_recorded(*, actor, outcome: models.Model) -> Event:
    return _append(
        Event.Action.OUTCOME_RECORDED,
        outcome,
        actor,
        {"verdict": outcome.verdict, "source": outcome.source},
    )
