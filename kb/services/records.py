"""The write path every service shares: validate fully, save, log one event.

Records that several people edit (insights, findings, architecture changes) carry a
`version`. Every write moves it on, and a save that names the version its form or
representation was read at is refused with RecordChanged once someone else has saved in
between, so nobody overwrites another's edit without seeing it. The check and the save are
one step: the row stays locked from the check until the transaction commits."""

import datetime
import decimal
from typing import Any

from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import models, transaction
from django.db.models.deletion import ProtectedError, RestrictedError
from django.db.models.fields.files import FieldFile
from django.utils import timezone

from kb import events


class RecordChanged(ValidationError):
    """A save from a stale form or representation: the record was saved by someone else (or a
    run) after the caller read `expected_version`; it is at `current_version` now (None: it
    was deleted). Nothing was written. `summary` says who changed it, when and what, as far
    as the event log knows."""

    def __init__(self, instance: models.Model, *, expected: int, current: int | None) -> None:
        self.expected_version, self.current_version = expected, current
        self.kind = str(instance._meta.verbose_name)
        self.summary = _change_summary(instance, expected=expected, current=current)
        advice = (
            f" Your input is kept below: compare it with the {self.kind} as it is now, then "
            "save again to replace their version."
            if current is not None
            else ""
        )
        super().__init__(f"{self.summary} Nothing was saved.{advice}", code="stale")


def _change_summary(instance: models.Model, *, expected: int, current: int | None) -> str:
    """Who saved the record since version `expected`, when, and which fields differ now, from
    its edit history (which, unlike the event log, the admin's saves write too)."""
    kind = instance._meta.verbose_name
    if current is None:
        return f"This {kind} was deleted after you opened it."
    if expected > current:
        return f"This {kind} has had no version {expected}; it is at version {current}."
    versions = f"version {expected} when you opened it, version {current} now"
    saves = list(
        instance.history.filter(version__gte=expected, version__lte=current)
        .select_related("history_user")
        .order_by("history_date", "history_id")
    )
    since = [save for save in saves if save.version > expected]
    if not since:
        return f"This {kind} was saved again after you opened it ({versions})."
    who = sorted({_saver(save) for save in since})
    when = timezone.localtime(since[-1].history_date).strftime("%Y-%m-%d %H:%M %Z")
    summary = f"This {kind} was changed after you opened it ({versions}): saved by "
    summary += f"{' and '.join(who)}, last at {when}"
    opened = next((save for save in saves if save.version == expected), None)
    if opened is not None:
        delta = since[-1].diff_against(opened, excluded_fields=["version", "updated_at"])
        if delta.changed_fields:
            changed = ", ".join(_field_label(instance, name) for name in delta.changed_fields)
            summary += f"; changed since: {changed}"
    return summary + "."


def _saver(save) -> str:
    user = save.history_user
    return user.get_username() if user is not None else "an analysis run or a script"


def _field_label(instance: models.Model, name: str) -> str:
    try:
        return str(instance._meta.get_field(name).verbose_name)
    except FieldDoesNotExist:
        return name.replace("_", " ")


def record_is_versioned(instance: models.Model) -> bool:
    """Whether the record carries a version that its saves are checked against."""
    return any(field.name == "version" for field in instance._meta.concrete_fields)


def record_version_check(instance: models.Model, *, expected_version: int | None) -> int:
    """Lock the record's row until the transaction ends and return its stored version;
    refuse with RecordChanged when that is not `expected_version` (None: any version will
    do). Call inside the transaction that saves: a second save waits at the lock until the
    first commits, then sees the version the first one wrote, so two saves of one version
    can never both pass."""
    stored = (
        type(instance)
        ._default_manager.select_for_update()
        .filter(pk=instance.pk)
        .values_list("version", flat=True)
        .first()
    )
    if stored is None or (expected_version is not None and stored != expected_version):
        raise RecordChanged(instance, expected=expected_version or 0, current=stored)
    return stored


def record_version_advance(instance: models.Model, *, expected_version: int | None = None) -> None:
    """Check the version as record_version_check does (None: for writes the system makes,
    such as a run setting a status, which must not fail on it) and set the instance's version
    to the next one, for the caller's save to write."""
    instance.version = record_version_check(instance, expected_version=expected_version) + 1


def record_touch(instance: models.Model, *, expected_version: int | None = None) -> None:
    """Move a record's version on without changing its own fields: its links changed
    (evidence attached or removed), so forms and representations read before are stale."""
    with transaction.atomic():
        record_version_advance(instance, expected_version=expected_version)
        instance.save(update_fields=["version", *_auto_now_names(instance)])


def _auto_now_names(instance: models.Model) -> list[str]:
    return [
        field.name for field in instance._meta.concrete_fields if getattr(field, "auto_now", False)
    ]


def _loggable(value: Any) -> Any:
    """A JSON-safe form of a field value for the event log."""
    if isinstance(value, models.Model):
        return value.pk
    if isinstance(value, datetime.date | datetime.datetime | decimal.Decimal):
        return str(value)
    if isinstance(value, FieldFile):
        return value.name or ""
    return value


def _field_values(instance: models.Model, names) -> dict[str, Any]:
    return {name: _loggable(getattr(instance, name)) for name in names}


def _concrete_field_names(instance: models.Model) -> list[str]:
    return [
        field.name
        for field in instance._meta.concrete_fields
        if not field.primary_key
        and field.editable
        and not getattr(field, "auto_now", False)
        and not getattr(field, "auto_now_add", False)
    ]


def record_create(instance: models.Model, *, actor) -> models.Model:
    """Validate (fields, model rules, database constraints) and insert; log `created`."""
    with transaction.atomic():
        instance.full_clean()
        instance.save()
        events.record_created(
            actor=actor,
            instance=instance,
            fields=_field_values(instance, _concrete_field_names(instance)),
        )
    return instance


def record_update(
    instance: models.Model, *, actor, data: dict[str, Any], expected_version: int | None = None
) -> models.Model:
    """Apply `data` to the instance, validate, save the changed fields; log `updated`.

    An invalid change raises ValidationError and leaves the row as it was and the instance
    as the row is, so a caller can show the error without a stale object. A versioned record
    (record_is_versioned) moves its version on; given `expected_version`, the version the
    caller's form or representation showed, a record saved since is refused with
    RecordChanged, even when `data` changes nothing.
    """
    unknown = set(data) - set(_concrete_field_names(instance))
    if unknown:
        raise ValidationError({name: "Unknown or read-only field." for name in sorted(unknown)})
    before = _field_values(instance, data)
    for name, value in data.items():
        setattr(instance, name, value)
    after = _field_values(instance, data)
    changed = {name: [before[name], after[name]] for name in data if before[name] != after[name]}
    versioned = record_is_versioned(instance)
    if not changed and not (versioned and expected_version is not None):
        return instance
    try:
        with transaction.atomic():
            if versioned:
                stored = record_version_check(instance, expected_version=expected_version)
                if expected_version is None and stored != instance.version:
                    # Saved by someone else since this instance was read, and the caller did
                    # not ask to be refused: write `data` onto the row as it is now, so the
                    # other save's fields are kept.
                    instance.refresh_from_db()
                    before = _field_values(instance, data)
                    for name, value in data.items():
                        setattr(instance, name, value)
                    changed = {
                        name: [before[name], after[name]]
                        for name in data
                        if before[name] != after[name]
                    }
                if not changed:  # the precondition holds, and there is nothing to write
                    return instance
                instance.version = stored + 1
            instance.full_clean()
            instance.save()
            events.record_updated(actor=actor, instance=instance, changed=changed)
    except ValidationError as error:
        if not (isinstance(error, RecordChanged) and error.current_version is None):
            instance.refresh_from_db()
        raise
    return instance


def record_delete(instance: models.Model, *, actor, expected_version: int | None = None) -> None:
    """Delete the row and log `deleted`; rows that others depend on are refused clearly.
    Given `expected_version`, a versioned record saved since it was read is refused with
    RecordChanged."""
    try:
        with transaction.atomic():
            if expected_version is not None and record_is_versioned(instance):
                record_version_check(instance, expected_version=expected_version)
            events.record_deleted(actor=actor, instance=instance)
            instance.delete()
    except (ProtectedError, RestrictedError) as error:
        kinds = sorted({str(obj._meta.verbose_name_plural) for obj in error.protected_objects})
        raise ValidationError(
            f"{instance} cannot be deleted while {', '.join(kinds)} refer to it."
        ) from None
