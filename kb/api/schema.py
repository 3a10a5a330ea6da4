"""OpenAPI generation: every operation documents the error responses it can give."""

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse

ERROR_BODY = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "additionalProperties": True,
}
VALIDATION_BODY = {
    "type": "object",
    "description": "Field name (or non_field_errors) to messages; `detail` for a bad body.",
    "additionalProperties": True,
}
ERRORS = {
    "400": OpenApiResponse(VALIDATION_BODY, description="Invalid input, with field messages."),
    "401": OpenApiResponse(ERROR_BODY, description="Not signed in."),
    "403": OpenApiResponse(ERROR_BODY, description="The role may not do this."),
    "404": OpenApiResponse(ERROR_BODY, description="No such record, or not visible to you."),
    "413": OpenApiResponse(ERROR_BODY, description="Request body too large."),
    "415": OpenApiResponse(ERROR_BODY, description="Unsupported media type."),
    "429": OpenApiResponse(ERROR_BODY, description="Too many requests."),
}


class KbAutoSchema(AutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        codes = ["400", "401", "403", "404", "429"]
        if self.method in ("POST", "PUT", "PATCH"):
            codes += ["413", "415"]
        for code in codes:
            if code not in responses:
                responses[code] = self._get_response_for_code(ERRORS[code], code)
        return responses
