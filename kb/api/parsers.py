"""JSON bodies, refused above DATA_UPLOAD_MAX_MEMORY_SIZE; multipart bodies (a model's
weights file), refused above WEIGHTS_MAX_UPLOAD_SIZE plus that.

DRF reads the request stream itself, so Django's own body-size check never runs for the
API; these parsers apply the limits to the declared length before anything is read.

Every JSON text the API reads, a body or a multipart field holding JSON, goes through
`json_loads`: nothing nested deeper than MAX_JSON_DEPTH (a field's value: its own, smaller
limit), and no NaN or infinite numbers, which PostgreSQL cannot store and no statistic can
use. Python's parser would recurse on deep nesting until the interpreter gives up (a 500).
"""

import codecs
import json
import math

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser, MultiPartParser

MAX_JSON_DEPTH = 32


class RequestTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "request_too_large"


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows.")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is too large a number.")
    return value


def json_depth_exceeds(value, limit: int) -> bool:
    """Whether arrays and objects in a parsed JSON value nest deeper than `limit`; iterative,
    so a deep value cannot exhaust the stack here."""
    pending = [(value, 1)] if isinstance(value, dict | list) else []
    while pending:
        item, depth = pending.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def json_loads(text: str | bytes, max_depth: int = MAX_JSON_DEPTH):
    """Parse JSON text; ValueError (with a message fit for the caller) if it is not JSON, holds
    NaN or an infinite number, or nests deeper than `max_depth`."""
    too_deep = f"Nested deeper than {max_depth} levels."
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        # Python's parser gives up near the interpreter's recursion limit, far past ours.
        raise ValueError(too_deep) from None
    if json_depth_exceeds(value, max_depth):
        raise ValueError(too_deep)
    return value


def refuse_declared_length_over(limit: int, parser_context) -> None:
    """Refused (413) when the request's declared length is over `limit`, before its body is
    read; for the parsers here and any other that reads an upload."""
    request = (parser_context or {}).get("request")
    declared = request.META.get("CONTENT_LENGTH") if request is not None else None
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"The request body is larger than {limit} bytes.")


class LimitedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        refuse_declared_length_over(settings.DATA_UPLOAD_MAX_MEMORY_SIZE, parser_context)
        # Django's request stream never reads past Content-Length, so the check above bounds
        # what is read here.
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return json_loads(codecs.getreader(encoding)(stream).read())
        except ValueError as error:  # UnicodeDecodeError is a ValueError too
            raise ParseError(f"JSON parse error - {error}") from None


class LimitedMultiPartParser(MultiPartParser):
    """Form fields plus files; Django streams a file over FILE_UPLOAD_MAX_MEMORY_SIZE to a
    temporary file and bounds the other fields by DATA_UPLOAD_MAX_MEMORY_SIZE itself. Only a
    create may carry a weights file; any other action gets the JSON limit."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        view = (parser_context or {}).get("view")
        if getattr(view, "action", None) == "create":
            limit += settings.WEIGHTS_MAX_UPLOAD_SIZE
        refuse_declared_length_over(limit, parser_context)
        return super().parse(stream, media_type, parser_context)


class TranscriptUploadParser(MultiPartParser):
    """A transcript file: the body may hold TRANSCRIPT_MAX_UPLOAD_SIZE more than a JSON body;
    the file itself is held to that size when it is read (kb.transcripts)."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE + settings.TRANSCRIPT_MAX_UPLOAD_SIZE
        refuse_declared_length_over(limit, parser_context)
        return super().parse(stream, media_type, parser_context)
