"""JSON bodies, refused above DATA_UPLOAD_MAX_MEMORY_SIZE.

DRF reads the request stream itself, so Django's own body-size check never runs for the
API; this parser applies the same limit to the declared length before anything is read.
"""

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.parsers import JSONParser


class RequestTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "request_too_large"


class LimitedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and declared.isdigit() and int(declared) > limit:
            raise RequestTooLarge(f"The request body is larger than {limit} bytes.")
        # Django's request stream never reads past Content-Length, so the check above bounds
        # what is read here.
        return super().parse(stream, media_type, parser_context)
