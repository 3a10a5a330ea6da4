"""The write path every service shares: validate fully, save, log one event."""

import datetime
import decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models.deletion import ProtectedError, RestrictedError
from django.db.models.fields.files import FieldFile

from kb import events


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


def record_update(instance: models.Model, *, actor, data: dict[str, Any]) -> models.Model:
    """Apply `data` to the instance, validate, save the changed fields; log `updated`.

    An invalid change raises ValidationError and leaves both the row and the instance as
    they were, so a caller can show the error without a stale object.
    """
    unknown = set(data) - set(_concrete_field_names(instance))
    if unknown:
        raise ValidationError({name: "Unknown or read-only field." for name in sorted(unknown)})
    before = _field_values(instance, data)
    for name, value in data.items():
        setattr(instance, name, value)
    after = _field_values(instance, data)
    changed = {name: [before[name], after[name]] for name in data if before[name] != after[name]}
    if not changed:
        return instance
    try:
        with transaction.atomic():
            instance.full_clean()
            instance.save()
            events.record_updated(actor=actor, instance=instance, changed=changed)
    except ValidationError:
        instance.refresh_from_db()
        raise
    return instance


def record_delete(instance: models.Model, *, actor) -> None:
    """Delete the row and log `deleted`; rows that others depend on are refused clearly."""
    try:
        with transaction.atomic():
            events.record_deleted(actor=actor, instance=instance)
            instance.delete()
    except (ProtectedError, RestrictedError) as error:
        kinds = sorted({str(obj._meta.verbose_name_plural) for obj in error.protected_objects})
        raise ValidationError(
            f"{instance} cannot be deleted while {', '.join(kinds)} refer to it."
        ) from None
