"""JSON bodies, refused above DATA_UPLOAD_MAX_MEMORY_SIZE; multipart bodies (a model's
weights file), refused above WEIGHTS_MAX_UPLOAD_SIZE plus that.

DRF reads the request stream itself, so Django's own body-size check never runs for the
API; these parsers apply the limits to the declared length before anything is read.
"""

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.parsers import JSONParser, MultiPartParser


class RequestTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "request_too_large"


def _refuse_declared_length_over(limit: int, parser_context) -> None:
    request = (parser_context or {}).get("request")
    declared = request.META.get("CONTENT_LENGTH") if request is not None else None
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"The request body is larger than {limit} bytes.")


class LimitedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        _refuse_declared_length_over(settings.DATA_UPLOAD_MAX_MEMORY_SIZE, parser_context)
        # Django's request stream never reads past Content-Length, so the check above bounds
        # what is read here.
        return super().parse(stream, media_type, parser_context)


class LimitedMultiPartParser(MultiPartParser):
    """Form fields plus files; Django streams a file over FILE_UPLOAD_MAX_MEMORY_SIZE to a
    temporary file and bounds the other fields by DATA_UPLOAD_MAX_MEMORY_SIZE itself. Only a
    create may carry a weights file; any other action gets the JSON limit."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        view = (parser_context or {}).get("view")
        if getattr(view, "action", None) == "create":
            limit += settings.WEIGHTS_MAX_UPLOAD_SIZE
        _refuse_declared_length_over(limit, parser_context)
        return super().parse(stream, media_type, parser_context)
