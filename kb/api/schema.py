"""OpenAPI generation: every operation documents the error responses it can give, and says
what it does (the generic viewsets' own docstrings describe the code, not the endpoint)."""

import inspect

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


STANDARD_ACTIONS = {
    "list": "The {plural} your role may see, a page at a time; filter, search and order them "
    "with the query parameters.",
    "retrieve": "One {name}.",
    "create": "Create a new {name}. Bad input answers 400 with messages per field, and nothing "
    "is written.",
    "partial_update": "Change some fields of the {name}; the others stay as they are. Bad input "
    "answers 400, and nothing is written.",
    "destroy": "Delete the {name}. One that other records depend on answers 400 with the reason.",
}


class KbAutoSchema(AutoSchema):
    def get_description(self) -> str:
        """An action's own docstring; for the standard actions, what they do to this kind of
        record, then what the viewset's own docstring adds."""
        action = getattr(self.view, "action", None)
        template = STANDARD_ACTIONS.get(action)
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

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        codes = ["400", "401", "403", "404", "429"]
        if self.method in ("POST", "PUT", "PATCH"):
            codes += ["413", "415"]
        for code in codes:
            if code not in responses:
                responses[code] = self._get_response_for_code(ERRORS[code], code)
        return responses
