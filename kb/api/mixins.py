"""Behaviour shared by the API's views."""

from rest_framework.views import APIView


class ThrottleFirstMixin:
    """Throttle before checking permissions, so that a caller hammering an endpoint it may
    not use (anonymous requests answered 401, say) is slowed down too. DRF's own order
    checks permissions first and never throttles refused requests."""

    def check_permissions(self, request) -> None:
        APIView.check_throttles(self, request)
        super().check_permissions(request)

    def check_throttles(self, request) -> None:
        """Done in check_permissions."""
