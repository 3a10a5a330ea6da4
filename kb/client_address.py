"""The address of the client behind a request, the one rule that login lockouts (django-axes),
the survey-link rate limit and the API throttles all count by.

X-Forwarded-For is written by whoever sends the request, so it is believed only as far as
settings.TRUSTED_PROXY_COUNT says proxies stand in front of the site: each appends the address
that connected to it, so with N proxies the client is the N-th entry from the right, and the
entries further left are whatever the client chose to send.
"""

from ipaddress import ip_address

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str | None:
    """The client's IP address as text: REMOTE_ADDR when no proxy is trusted (the default),
    else the address TRUSTED_PROXY_COUNT hops from the right of X-Forwarded-For. A missing or
    malformed forwarded address falls back to REMOTE_ADDR, the proxy itself. None when the
    request carries no address at all (one built in code, such as the test client's login)."""
    remote = _ip_address_or_none(request.META.get("REMOTE_ADDR", ""))
    hops = settings.TRUSTED_PROXY_COUNT
    if hops == 0:
        return remote
    forwarded = [entry.strip() for entry in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [entry for entry in forwarded if entry]
    if not forwarded:
        return remote
    # Fewer entries than proxies: the request skipped the outer proxies; the leftmost entry
    # is still the one a trusted proxy wrote.
    return _ip_address_or_none(forwarded[-min(hops, len(forwarded))]) or remote


def _ip_address_or_none(text: str) -> str | None:
    try:
        return str(ip_address(text))
    except ValueError:
        return None
