"""Serializer fields the API adds to DRF's."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

MAX_JSON_DEPTH = 20


def _check_json(value, depth: int = 0) -> None:
    """PostgreSQL cannot store NUL in text or JSON, and deep nesting is never meaningful here."""
    if depth > MAX_JSON_DEPTH:
        raise serializers.ValidationError(f"Nested deeper than {MAX_JSON_DEPTH} levels.")
    if isinstance(value, str):
        if "\x00" in value:
            raise serializers.ValidationError("Null characters are not allowed.")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_json(key, depth + 1)
            _check_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, depth + 1)


class SafeJSONField(serializers.JSONField):
    """A JSON value PostgreSQL can store: no NUL characters, bounded nesting."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        _check_json(value)
        return value


@extend_schema_field(OpenApiTypes.URI)
class LinkField(serializers.Field):
    """The absolute API URL of a record, built from the id held under `pk_key` in a row.

    Rows are dicts from `.values()`; the view fills these in from one URL template per
    request (see kb/api/rows.py) instead of reversing a URL per row.
    """

    def __init__(self, url_name: str, pk_key: str = "id", **kwargs) -> None:
        self.url_name, self.pk_key = url_name, pk_key
        super().__init__(read_only=True, **kwargs)

    def to_representation(self, value):  # pragma: no cover - rows are built in rows.py
        return value
