"""Behaviour shared by the API's views, and by its serializers."""

from collections.abc import Mapping

from rest_framework import serializers
from rest_framework.views import APIView


class ThrottleFirstMixin:
    """Throttle before checking permissions, so that a caller hammering an endpoint it may
    not use (anonymous requests answered 401, say) is slowed down too. DRF's own order
    checks permissions first and never throttles refused requests."""

    def check_permissions(self, request) -> None:
        APIView.check_throttles(self, request)
        super().check_permissions(request)

    def check_throttles(self, request) -> None:
        """Done in check_permissions."""


UNKNOWN_FIELD = "Unknown or read-only field."


# Input naming a field the serializer does not take answers 400, naming each such field: a
# field silently ignored looks to the caller like a field that was saved. Every serializer in
# kb/api/serializers.py has it, so every write (JSON or multipart, nested items too) refuses
# them; a serializer may word the message, or word it for one field. (A comment, not a
# docstring: the schema would show a base's docstring as every request body's description.)
class RefuseUnknownFieldsMixin:
    unknown_field_message = UNKNOWN_FIELD
    refused_field_messages: dict[str, str] = {}

    def to_internal_value(self, data):
        unknown = self._unknown_fields(data)
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as error:
            if unknown and isinstance(error.detail, dict):
                raise serializers.ValidationError({**unknown, **error.detail}) from None
            raise
        if unknown:
            raise serializers.ValidationError(unknown)
        return value

    def _unknown_fields(self, data) -> dict[str, list[str]]:
        if not isinstance(data, Mapping):
            return {}  # DRF answers that a dictionary was expected
        writable = {name for name, field in self.fields.items() if not field.read_only}
        return {
            name: [self.refused_field_messages.get(name, self.unknown_field_message)]
            for name in data
            if name not in writable
        }
