"""Behaviour shared by the API's views, and by its serializers."""

import re
from collections.abc import Mapping
from dataclasses import dataclass

from rest_framework import serializers, status
from rest_framework.exceptions import APIException
from rest_framework.views import APIView

from kb.services.records import RecordChanged, record_is_versioned


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


# --- versions: conditional writes to records people edit together -------------------------
#
# Insights, findings and changes carry a `version` (kb.services.records). Their detail and
# write answers carry it as the ETag `"<version>"`. A PATCH must say which version it was
# made on, in If-Match (stale: 412) or as `version` in the body (stale: 409); with neither it
# answers 428, since a change made without reading the record could undo someone else's
# unseen. A DELETE or an unlink may carry If-Match too (stale: 412). `If-Match: *` says, on
# purpose, "whatever version is there now".


class VersionError(APIException):
    """An answer about a record's version: {"detail": why, "version": the version now}."""

    def __init__(self, detail: str, *, version: int | None) -> None:
        super().__init__(detail)
        # Kept as is: APIException would turn the version into a string.
        self.detail = {"detail": self.detail, "version": version}


class PreconditionFailed(VersionError):
    status_code = status.HTTP_412_PRECONDITION_FAILED
    default_code = "precondition_failed"


class PreconditionRequired(VersionError):
    status_code = status.HTTP_428_PRECONDITION_REQUIRED
    default_code = "precondition_required"


class VersionConflict(VersionError):
    status_code = status.HTTP_409_CONFLICT
    default_code = "version_conflict"


def etag(version: int) -> str:
    """The ETag of a versioned record's representation: its version, quoted (a strong tag)."""
    return f'"{version}"'


@dataclass(frozen=True)
class Precondition:
    """The version a write was made on (None: any, `If-Match: *`) and whether the client
    named it in If-Match (a stale one answers 412) or in the body (409)."""

    version: int | None
    in_header: bool

    def service_kwargs(self) -> dict:
        return {} if self.version is None else {"expected_version": self.version}

    def refused(self, error: RecordChanged) -> APIException:
        """The answer to a write the service refused because the record changed meanwhile."""
        return stale_answer(error, in_header=self.in_header)


NO_PRECONDITION = Precondition(version=None, in_header=False)


def stale_answer(error: RecordChanged, *, in_header: bool) -> APIException:
    where = "If-Match set to its new ETag" if in_header else "its new `version`"
    answer = PreconditionFailed if in_header else VersionConflict
    return answer(
        f"{error.summary} Nothing was saved: read the {error.kind} again (GET) and send your "
        f"change with {where}.",
        version=error.current_version,
    )


def if_match_precondition(request, instance) -> Precondition | None:
    """The If-Match header of a write to a versioned record, checked against the record as it
    is: None without the header (or for a record without versions); 412 when no tag in it
    is the record's ETag."""
    header = request.headers.get("If-Match")
    if header is None or not record_is_versioned(instance):
        return None
    tags = [tag.strip() for tag in header.split(",")]
    if "*" in tags:
        return Precondition(version=None, in_header=True)
    if etag(instance.version) in tags:
        return Precondition(version=instance.version, in_header=True)
    read = next((int(tag[1:-1]) for tag in tags if re.fullmatch(r'"[0-9]{1,9}"', tag)), None)
    if read is None:  # a weak tag (W/"3"), or not a tag: If-Match compares strong tags only
        kind = instance._meta.verbose_name
        raise PreconditionFailed(
            f"If-Match holds no ETag of this {kind}. Read it (GET) and send the ETag of what "
            f"you read, exactly; it is {etag(instance.version)} now.",
            version=instance.version,
        )
    raise stale_answer(
        RecordChanged(instance, expected=read, current=instance.version), in_header=True
    )


def update_precondition(
    instance, *, body_version: int | None, header: Precondition | None
) -> Precondition:
    """What a PATCH of `instance` was made on: If-Match (`header`, already checked), else the
    body's `version` (409 when it is not the record's), else, for a versioned record, 428."""
    if not record_is_versioned(instance):
        return NO_PRECONDITION
    if body_version is not None and body_version != instance.version:
        raise stale_answer(
            RecordChanged(instance, expected=body_version, current=instance.version),
            in_header=False,
        )
    if header is not None:
        return header
    if body_version is not None:
        return Precondition(version=body_version, in_header=False)
    kind = instance._meta.verbose_name
    raise PreconditionRequired(
        f"Say which version of the {kind} you changed, so that a change someone else saved "
        f"meanwhile is not overwritten unseen: send If-Match with the ETag of your GET (now "
        f"{etag(instance.version)}) or `version` in the body.",
        version=instance.version,
    )
