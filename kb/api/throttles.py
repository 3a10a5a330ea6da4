"""Rate limits that read their rate from settings on every request, so tests and
deployments can change them without re-importing DRF's classes (which freeze the rates).
Anonymous clients are counted per address as kb.client_address gives it, the same address
login lockouts and the survey-link rate limit count by."""

from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from kb.client_address import client_address


class _KbThrottleMixin:
    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def get_ident(self, request) -> str | None:
        # DRF's own reads X-Forwarded-For whenever NUM_PROXIES is unset.
        return client_address(request)


class AnonThrottle(_KbThrottleMixin, AnonRateThrottle):
    pass


class UserThrottle(_KbThrottleMixin, UserRateThrottle):
    pass
