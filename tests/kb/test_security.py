"""Secure by default: a deployment with only SECRET_KEY and ALLOWED_HOSTS passes
`check --deploy`; every response carries the security headers and a CSP without
'unsafe-inline'; failed logins lock out by username and by address; and the client address
that lockouts, the survey-link rate limit and the API throttles count by believes
X-Forwarded-For only as far as TRUSTED_PROXY_COUNT says."""

import runpy
import subprocess
import sys

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory
from rest_framework.request import Request

from kb.api.throttles import AnonThrottle
from kb.client_address import client_address

# A value that passes Django's own strength check (50+ characters, varied).
DEPLOY_SECRET_KEY = "k7Qm2vX9pL4rT8wZ1nB6cF3hJ5dS0gY-a_eU7iO2uK9xM4qW8zR1tV6yN3pH5jL"
FAILURE_LIMIT = 3


@pytest.fixture(autouse=True)
def fast_hashes_and_fresh_counts(settings, fast_passwords):
    """Each failed login hashes a password: MD5 keeps the lockout tests quick. Rate limits
    and throttles count in the cache, which would carry counts from test to test."""
    settings.AXES_FAILURE_LIMIT = FAILURE_LIMIT
    cache.clear()
    yield
    cache.clear()


# --- settings: secure defaults, proxies, bad values ------------------------------------------


def test_only_secret_key_and_hosts_give_debug_off_and_a_clean_check_deploy():
    code = (
        "import os, django\n"
        "os.environ['DJANGO_SETTINGS_MODULE'] = 'kb.settings'\n"
        "django.setup()\n"
        "from django.conf import settings\n"
        "print('DEBUG', settings.DEBUG)\n"
        "from django.core.management import execute_from_command_line\n"
        "execute_from_command_line(['manage.py', 'check', '--deploy', '--fail-level', 'WARNING'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={
            "PATH": "/usr/bin:/bin",
            "SECRET_KEY": DEPLOY_SECRET_KEY,
            "ALLOWED_HOSTS": "kb.example.org",
        },
        cwd=django_settings.BASE_DIR,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "DEBUG False",
        "System check identified no issues (0 silenced).",
    ]


def _settings_from(monkeypatch, **env) -> dict:
    """kb/settings.py evaluated afresh under a production environment plus `env`."""
    monkeypatch.delenv("DEBUG", raising=False)
    monkeypatch.setenv("SECRET_KEY", DEPLOY_SECRET_KEY)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(django_settings.BASE_DIR / "kb" / "settings.py"))


def test_production_defaults_are_https_only_and_trust_no_proxy(monkeypatch):
    values = _settings_from(monkeypatch)
    assert (values["DEBUG"], values["SECURE_SSL_REDIRECT"]) == (False, True)
    assert (values["SESSION_COOKIE_SECURE"], values["CSRF_COOKIE_SECURE"]) == (True, True)
    assert values["SECURE_HSTS_SECONDS"] == 365 * 24 * 3600
    assert (values["SECURE_HSTS_INCLUDE_SUBDOMAINS"], values["SECURE_HSTS_PRELOAD"]) == (True, True)
    assert values["TRUSTED_PROXY_COUNT"] == 0
    assert "SECURE_PROXY_SSL_HEADER" not in values
    assert values.get("SILENCED_SYSTEM_CHECKS", []) == []


def test_behind_a_tls_proxy_the_operator_chooses_what_to_trust(monkeypatch):
    values = _settings_from(
        monkeypatch,
        TRUSTED_PROXY_COUNT="1",
        PROXY_SETS_X_FORWARDED_PROTO="true",
        SECURE_SSL_REDIRECT="false",
        SECURE_HSTS_SECONDS="600",
        CSRF_TRUSTED_ORIGINS="https://kb.example.org, https://kb.example.org:8443",
    )
    assert values["TRUSTED_PROXY_COUNT"] == 1
    assert values["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")
    assert (values["SECURE_SSL_REDIRECT"], values["SECURE_HSTS_SECONDS"]) == (False, 600)
    # The proxy redirects to HTTPS itself: check --deploy takes that on the operator's word.
    assert values["SILENCED_SYSTEM_CHECKS"] == ["security.W008"]
    assert values["CSRF_TRUSTED_ORIGINS"] == [
        "https://kb.example.org",
        "https://kb.example.org:8443",
    ]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CSRF_TRUSTED_ORIGINS", "kb.example.org", "CSRF_TRUSTED_ORIGINS must list origins"),
        ("TRUSTED_PROXY_COUNT", "-1", "TRUSTED_PROXY_COUNT must be at least 0, got -1"),
        ("SECURE_SSL_REDIRECT", "sometimes", "SECURE_SSL_REDIRECT must be a boolean"),
        ("SECURE_HSTS_SECONDS", "a year", "SECURE_HSTS_SECONDS must be an integer"),
    ],
)
def test_a_misconfigured_security_variable_stops_start_up_naming_it(
    monkeypatch, name, value, message
):
    with pytest.raises(ImproperlyConfigured, match=message):
        _settings_from(monkeypatch, **{name: value})


# --- response headers ------------------------------------------------------------------------


def _directives(policy: str) -> dict[str, list[str]]:
    parts = (directive.split() for directive in policy.split(";") if directive.strip())
    return {name: sources for name, *sources in parts}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url", ["/login/", "/", "/api/insights/", "/api/docs/", "/admin/kb/insight/"]
)
def test_every_kind_of_response_carries_the_security_headers(client, staff_user, url):
    if url != "/login/":
        client.force_login(staff_user)
    response = client.get(url)

    assert response.status_code == 200
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    policy = response["Content-Security-Policy"]
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    directives = _directives(policy)
    assert directives["default-src"] == directives["script-src"] == ["'self'"]
    assert directives["style-src"] == ["'self'"]
    assert directives["frame-ancestors"] == ["'none'"]


@pytest.mark.django_db
def test_the_api_docs_page_has_no_inline_script_or_style(client):
    html = client.get("/api/docs/").content.decode()
    assert "<style" not in html and "<script>" not in html
    assert '<script src="/api/docs/?script="></script>' in html
    script = client.get("/api/docs/?script=")
    assert script["Content-Type"] == "application/javascript"
    assert "SwaggerUIBundle(" in script.content.decode()


# --- the client address ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trusted_proxies", "forwarded_for", "expected"),
    [
        # No proxy trusted: whatever the client writes in X-Forwarded-For is ignored.
        (0, "203.0.113.7", "10.0.0.1"),
        (0, "", "10.0.0.1"),
        # One proxy: the rightmost entry is the address that connected to it.
        (1, "6.6.6.6, 203.0.113.7", "203.0.113.7"),
        (1, "", "10.0.0.1"),
        # Two proxies: the second from the right; a shorter header gives its leftmost entry.
        (2, "6.6.6.6, 203.0.113.7, 192.0.2.1", "203.0.113.7"),
        (2, "203.0.113.7", "203.0.113.7"),
        (1, "2001:db8::7", "2001:db8::7"),
        # Not an address: the proxy itself, never the junk.
        (1, "6.6.6.6, not-an-address", "10.0.0.1"),
    ],
)
def test_client_address_believes_forwarded_for_only_as_far_as_the_trusted_proxies(
    settings, trusted_proxies, forwarded_for, expected
):
    settings.TRUSTED_PROXY_COUNT = trusted_proxies
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=forwarded_for)

    assert client_address(request) == expected
    # The API's throttles count anonymous clients by the same address.
    assert AnonThrottle().get_ident(Request(request)) == expected


def test_a_request_without_an_address_has_none_rather_than_a_made_up_one(settings):
    # Axes stores the address in an address column: a placeholder would not fit it.
    settings.TRUSTED_PROXY_COUNT = 1
    assert client_address(RequestFactory().get("/", REMOTE_ADDR="")) is None


@pytest.mark.django_db
def test_the_survey_link_rate_limit_counts_by_the_trusted_client_address(client, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    settings.SURVEY_RESPONSE_RATE_LIMIT = 2
    url = "/s/no-such-token/"

    def post(forwarded_for: str) -> int:
        return client.post(
            url, {}, REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=forwarded_for
        ).status_code

    # The same client, whatever it puts in front of the address the proxy saw.
    assert [post(f"{spoof}, 203.0.113.7") for spoof in ("1.1.1.1", "2.2.2.2", "3.3.3.3")] == [
        404,
        404,
        429,
    ]
    # Another client behind the same proxy has its own budget.
    assert post("1.1.1.1, 203.0.113.8") == 404


# --- login lockouts (django-axes) ------------------------------------------------------------


def _log_in(client, username: str, password: str, *, page: str = "/login/", **meta) -> int:
    response = client.post(page, {"username": username, "password": password}, **meta)
    return response.status_code


@pytest.mark.django_db
def test_failed_logins_lock_the_username_out_from_every_address(
    client, researcher_user, viewer_user
):
    failures = [
        _log_in(client, "rita", "wrong", REMOTE_ADDR=f"10.0.1.{n}") for n in range(FAILURE_LIMIT)
    ]

    assert failures == [200] * (FAILURE_LIMIT - 1) + [429]
    # The right password no longer helps, from any address...
    assert _log_in(client, "rita", "pw-rita", REMOTE_ADDR="10.0.2.1") == 429
    assert "_auth_user_id" not in client.session
    # ...while other users still log in.
    assert _log_in(client, "victor", "pw-victor", REMOTE_ADDR="10.0.2.1") == 302


@pytest.mark.django_db
def test_failed_logins_lock_the_address_out_on_the_site_and_admin_logins(client, staff_user):
    # One address tries several usernames, across both login pages, each time claiming to be
    # forwarded for someone else: with no trusted proxy, that claim is ignored.
    attempts = [
        ("/login/", "alice"),
        ("/admin/login/", "bob"),
        ("/login/", "carol"),
    ]
    statuses = [
        _log_in(
            client,
            user,
            "guess",
            page=page,
            REMOTE_ADDR="10.0.3.1",
            HTTP_X_FORWARDED_FOR=f"192.0.2.{n}",
        )
        for n, (page, user) in enumerate(attempts)
    ]

    assert statuses == [200, 200, 429]
    assert _log_in(client, "sam", "pw-sam", page="/admin/login/", REMOTE_ADDR="10.0.3.1") == 429
    assert _log_in(client, "sam", "pw-sam", page="/admin/login/", REMOTE_ADDR="10.0.3.2") == 302


@pytest.mark.django_db
def test_behind_one_trusted_proxy_the_lockout_follows_the_rightmost_forwarded_hop(
    client, settings, researcher_user
):
    settings.TRUSTED_PROXY_COUNT = 1

    def attempt(username: str, password: str, forwarded_for: str) -> int:
        return _log_in(
            client, username, password, REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=forwarded_for
        )

    statuses = [attempt(f"guess{n}", "guess", f"6.6.6.{n}, 203.0.113.7") for n in range(3)]

    assert statuses == [200, 200, 429]
    # The locked client stays locked whatever it prepends; its neighbour behind the same
    # proxy (same REMOTE_ADDR) is not locked.
    assert attempt("rita", "pw-rita", "1.1.1.1, 203.0.113.7") == 429
    assert attempt("rita", "pw-rita", "203.0.113.8") == 302
