"""OpenAPI generation: every operation documents the error responses it can give, and says
what it does (the generic viewsets' own docstrings describe the code, not the endpoint)."""

import inspect

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse

from kb.services.records import record_is_versioned

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
STALE_BODY = {
    "type": "object",
    "properties": {
        "detail": {"type": "string", "description": "Who changed the record, when, and what."},
        "version": {
            "type": "integer",
            "nullable": True,
            "description": "The record's version now; null when it was deleted.",
        },
    },
    "required": ["detail", "version"],
}
ERRORS = {
    "400": OpenApiResponse(VALIDATION_BODY, description="Invalid input, with field messages."),
    "401": OpenApiResponse(ERROR_BODY, description="Not signed in."),
    "403": OpenApiResponse(ERROR_BODY, description="The role may not do this."),
    "404": OpenApiResponse(ERROR_BODY, description="No such record, or not visible to you."),
    "413": OpenApiResponse(ERROR_BODY, description="Request body too large."),
    "415": OpenApiResponse(ERROR_BODY, description="Unsupported media type."),
    "429": OpenApiResponse(ERROR_BODY, description="Too many requests."),
    "409": OpenApiResponse(
        STALE_BODY,
        description="The `version` in the body is not the record's: someone saved it since "
        "you read it. Nothing was written; read it again and redo the change.",
    ),
    "412": OpenApiResponse(
        STALE_BODY,
        description="If-Match is not the record's ETag: someone saved it since you read it. "
        "Nothing was written; read it again and redo the change.",
    ),
    "428": OpenApiResponse(
        STALE_BODY,
        description="The PATCH named no version: send If-Match with the ETag of your GET, or "
        "`version` in the body.",
    ),
}
# Conditional writes to records that carry a version (kb.api.mixins), by action.
VERSIONED_ERRORS = {
    "partial_update": ["409", "412", "428"],
    "destroy": ["412"],
    "unlink": ["412"],
}
IF_MATCH = OpenApiParameter(
    "If-Match",
    str,
    OpenApiParameter.HEADER,
    description='The ETag of the representation the write was made on, e.g. "3": if the '
    "record was saved since, the write answers 412 and nothing is written. `*`: whatever "
    "version is there now.",
)
ETAG = OpenApiParameter(
    "ETag",
    str,
    OpenApiParameter.HEADER,
    response=[200, 201],
    description='The record\'s version, quoted ("3"): send it back in If-Match to change it.',
)


STANDARD_ACTIONS = {
    "list": "The {plural} your role may see, a page at a time; filter, search and order them "
    "with the query parameters.",
    "retrieve": "One {name}.",
    "create": "Create a new {name}. Bad input answers 400 with messages per field, and nothing "
    "is written.",
    "partial_update": "Change some fields of the {name}; the others stay as they are. Bad input "
    "answers 400, and nothing is written.",
    "versioned_partial_update": "Change some fields of the {name}; the others stay as they "
    "are. Say which version you changed, in If-Match (the ETag of your GET) or as `version` "
    "in the body: if someone saved the {name} since, the answer is 412 (If-Match) or 409 "
    "(`version`), and with neither it is 428; nothing is written then, nor on bad input (400).",
    "destroy": "Delete the {name}. One that other records depend on answers 400 with the reason.",
}


class KbAutoSchema(AutoSchema):
    def get_description(self) -> str:
        """An action's own docstring; for the standard actions, what they do to this kind of
        record, then what the viewset's own docstring adds."""
        action = getattr(self.view, "action", None)
        template = STANDARD_ACTIONS.get(action)
        if action == "partial_update" and self._versioned():
            template = STANDARD_ACTIONS["versioned_partial_update"]
        if template is None:
            return super().get_description()
        own_class = vars(self.view.__class__)
        override = own_class.get(action)  # e.g. a create written for this viewset alone
        if override is not None and override.__doc__:
            text = inspect.cleandoc(override.__doc__)
        else:
            model = self.view.queryset.model._meta  # the class attribute: no query
            text = template.format(name=model.verbose_name, plural=model.verbose_name_plural)
        own = own_class.get("__doc__")
        return f"{text}\n\n{inspect.cleandoc(own)}" if own else text

    def _versioned(self) -> bool:
        queryset = getattr(self.view, "queryset", None)
        return queryset is not None and record_is_versioned(queryset.model)

    def get_override_parameters(self) -> list:
        parameters = super().get_override_parameters()
        if not self._versioned():
            return parameters
        action = getattr(self.view, "action", None)
        if action in VERSIONED_ERRORS:
            parameters = [*parameters, IF_MATCH]
        if action in self.view.etag_actions:
            parameters = [*parameters, ETAG]
        return parameters

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        codes = ["400", "401", "403", "404", "429"]
        if self.method in ("POST", "PUT", "PATCH"):
            codes += ["413", "415"]
        if self._versioned():
            codes += VERSIONED_ERRORS.get(getattr(self.view, "action", None), [])
        for code in codes:
            if code not in responses:
                responses[code] = self._get_response_for_code(ERRORS[code], code)
        return responses
