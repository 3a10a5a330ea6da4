"""Serializer fields the API adds to DRF's."""

import json

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from kb.api.parsers import json_loads
from kb.models.subjects import MAX_FINDING_UNITS

MAX_VALUE_DEPTH = 20
# A finding names a few units of one layer; the bounds keep a request from naming millions,
# or an index no layer could have.
MAX_UNITS = MAX_FINDING_UNITS
MAX_UNIT_INDEX = 2**31 - 1


def _check_json(value, depth: int = 0) -> None:
    """PostgreSQL cannot store NUL in text or JSON, and deep nesting is never meaningful here."""
    if depth > MAX_VALUE_DEPTH:
        raise serializers.ValidationError(f"Nested deeper than {MAX_VALUE_DEPTH} levels.")
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
    """A JSON value PostgreSQL can store: no NUL characters, bounded nesting. In a multipart
    form the value comes as JSON text, read by the same rules as a JSON body."""

    def to_internal_value(self, data):
        if getattr(data, "is_json_string", False):  # DRF's mark on a form field's text
            data = self._parse(data)
        _check_json(data)
        return super().to_internal_value(data)

    def _parse(self, text: str):
        try:
            value = json_loads(text, max_depth=MAX_VALUE_DEPTH)
        except json.JSONDecodeError:
            self.fail("invalid")
        except ValueError as error:
            raise serializers.ValidationError(str(error)) from None
        # DRF checks null before parsing, on the text "null"; the parsed value is checked here.
        if value is None and not self.allow_null:
            self.fail("null")
        return value


class TextListField(serializers.ListField):
    """A list of strings, such as the choices a question offers or an answer selects; the
    model checks the rest (distinct, offered)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(child=serializers.CharField(), **kwargs)


class UnitIndicesField(serializers.ListField):
    """Unit indices within one layer: whole numbers from 0, at most MAX_UNITS of them."""

    def __init__(self, **kwargs) -> None:
        child = serializers.IntegerField(min_value=0, max_value=MAX_UNIT_INDEX)
        super().__init__(child=child, max_length=MAX_UNITS, **kwargs)


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
