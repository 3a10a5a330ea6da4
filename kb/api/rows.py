"""Reads serialised deliberately: rows straight from `.values()`, links from one URL
template per request, many-to-many ids from one query per relation.

Stock ModelSerializers build a model instance and walk every field object per row, which
costs several times the database work on a large list. Here a serializer class only
*describes* the representation (and so the OpenAPI schema); `RowBuilder` derives from it
which columns to fetch and how to finish each row, so the two cannot drift apart.
"""

import datetime
import json
from collections import defaultdict
from functools import cached_property

from django.db import connections, models
from django.urls import reverse
from rest_framework import serializers

from kb.api.fields import LinkField

PK_MARK = 987654321


def url_template(request, url_name: str) -> tuple[str, str]:
    """(prefix, suffix) such that prefix + str(pk) + suffix is the record's absolute URL."""
    url = request.build_absolute_uri(reverse(url_name, args=[PK_MARK]))
    prefix, suffix = url.split(str(PK_MARK))
    return prefix, suffix


class RowBuilder:
    """Turns `.values()` rows into the representation `serializer_class` describes."""

    def __init__(self, serializer_class: type[serializers.Serializer]) -> None:
        self.serializer_class = serializer_class

    @cached_property
    def _fields(self) -> dict[str, serializers.Field]:
        return {
            name: field
            for name, field in self.serializer_class().fields.items()
            if not field.write_only
        }

    @cached_property
    def value_names(self) -> list[str]:
        """Columns to fetch with `.values()`: the model's own fields and foreign-key ids;
        links, many-to-many ids and nested summaries are added afterwards."""
        model = self.serializer_class.Meta.model
        concrete = {field.name for field in model._meta.concrete_fields}
        return [
            field.source
            for field in self._fields.values()
            if field.source in concrete and not isinstance(field, LinkField)
        ]

    @cached_property
    def links(self) -> list[tuple[str, str, str]]:
        return [
            (name, field.url_name, field.pk_key)
            for name, field in self._fields.items()
            if isinstance(field, LinkField)
        ]

    @cached_property
    def many_to_many(self) -> list[str]:
        return [
            name
            for name, field in self._fields.items()
            if isinstance(field, serializers.ManyRelatedField)
        ]

    def templates(self, request) -> dict[str, tuple[str, str]]:
        return {name: url_template(request, url_name) for name, url_name, _ in self.links}

    def build(self, rows, request, templates: dict | None = None) -> list[dict]:
        rows = list(rows)
        templates = templates or self.templates(request)
        for name, _, pk_key in self.links:
            prefix, suffix = templates[name]
            for row in rows:
                pk = row[pk_key]
                row[name] = None if pk is None else f"{prefix}{pk}{suffix}"
        for name in self.many_to_many:
            self._attach_many_to_many(rows, name)
        return rows

    def _attach_many_to_many(self, rows: list[dict], name: str) -> None:
        if not rows:
            return
        relation = self.serializer_class.Meta.model._meta.get_field(name)
        through = relation.remote_field.through
        own, other = relation.m2m_field_name(), relation.m2m_reverse_field_name()
        ids = defaultdict(list)
        wanted = [row["id"] for row in rows]
        low, high = min(wanted), max(wanted)
        # A dense run of ids (an export chunk) is cheaper to ask for as a range than as a
        # list of thousands of parameters; a sparse page asks for exactly its ids.
        if high - low < 2 * len(wanted):
            links = through.objects.filter(**{f"{own}_id__gte": low, f"{own}_id__lte": high})
        else:
            links = through.objects.filter(**{f"{own}_id__in": wanted})
        for own_id, other_id in links.order_by(f"{other}_id").values_list(
            f"{own}_id", f"{other}_id"
        ):
            ids[own_id].append(other_id)
        for row in rows:
            row[name] = ids.get(row["id"], [])


def _utc_iso(value: datetime.datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, as DRF writes it; naive values are UTC (SQLite)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.isoformat() + "Z"
    return value.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")


def _decode_json(value):
    return json.loads(value) if isinstance(value, str | bytes) else value


def _as_bool(value):
    return value if value is None else bool(value)


def _finisher(field: models.Field):
    if isinstance(field, models.DateTimeField):
        return _utc_iso
    if isinstance(field, models.JSONField):
        return _decode_json
    if isinstance(field, models.BooleanField):
        return _as_bool
    if isinstance(field, models.DateField):
        return lambda value: value if value is None else str(value)
    return None


def values_chunks(queryset: models.QuerySet, names: list[str], chunk_size: int):
    """Yield lists of `.values(*names)` rows, read through one plain cursor.

    For whole-table exports: Django's per-value converters (and a model field lookup per
    cell) cost more than the query; here each column gets at most one cheap conversion
    (JSON text decoded, datetimes written as ISO 8601 strings, SQLite's 0/1 as booleans).
    """
    values = queryset.values(*names)
    model = queryset.model
    finishers = [
        (name, finisher)
        for name in names
        if (finisher := _finisher(model._meta.get_field(name))) is not None
    ]
    sql, params = values.query.get_compiler(using=values.db).as_sql()
    with connections[values.db].chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while chunk := cursor.fetchmany(chunk_size):
            rows = [dict(zip(names, row, strict=True)) for row in chunk]
            for name, finisher in finishers:
                for row in rows:
                    row[name] = finisher(row[name])
            yield rows
