"""Rate limits that read their rate from settings on every request, so tests and
deployments can change them without re-importing DRF's classes (which freeze the rates)."""

from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle


class _LiveRateMixin:
    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)


class AnonThrottle(_LiveRateMixin, AnonRateThrottle):
    pass


class UserThrottle(_LiveRateMixin, UserRateThrottle):
    pass
