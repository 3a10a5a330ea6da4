"""Error reports that carry no personal data.

A server error on an interview page would otherwise put the transcript into the report that
is mailed to the admins and shown on the debug page: Django's reports list every frame's
local variables, the posted form and the settings. This filter keeps what locates the fault
(the URL's path, the view, the traceback with its source lines, the names of the locals, of
the posted fields and of the query's parameters) and drops the values, a search query
included. Set as DEFAULT_EXCEPTION_REPORTER_FILTER and DEFAULT_EXCEPTION_REPORTER.
"""

import re

from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter


class PersonalDataFreeFilter(SafeExceptionReporterFilter):
    """Frame locals and posted values become a placeholder; settings are left out."""

    # Django's list, the CSRF token that request.META carries, and the query string and
    # referring address, which carry search terms (a name searched for).
    hidden_settings = re.compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|CSRF|QUERY_STRING|REFERER|URI",
        flags=re.IGNORECASE,
    )

    def is_active(self, request) -> bool:
        # Django's filter steps aside when DEBUG is on; personal data is personal then too.
        return True

    def get_traceback_frame_variables(self, request, tb_frame) -> list[tuple[str, str]]:
        return [(name, self.cleansed_substitute) for name in sorted(tb_frame.f_locals)]

    def get_post_parameters(self, request) -> dict[str, str]:
        if request is None:
            return {}
        return {name: self.cleansed_substitute for name in request.POST}

    def get_safe_settings(self) -> dict:
        return {}


class PersonalDataFreeReporter(ExceptionReporter):
    """Django's report, with the query's values and the query string of the URL left out."""

    def get_traceback_data(self) -> dict:
        data = super().get_traceback_data()
        if self.request is not None:
            hidden = self.filter.cleansed_substitute
            data["request_GET_items"] = [(name, hidden) for name in self.request.GET]
            data["request_insecure_uri"] = self.request.path
        return data
