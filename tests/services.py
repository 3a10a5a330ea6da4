"""What a test does when something outside Python that it needs (Redis, PostgreSQL, Chromium, a
dataset installed by apt) is missing: locally it skips with the reason; in CI, where
KB_REQUIRE_SERVICES=1, it fails, because a skipped fault test is a failure nobody sees."""

import os

import pytest

REQUIRE_SERVICES_VARIABLE = "KB_REQUIRE_SERVICES"


def services_required() -> bool:
    return os.environ.get(REQUIRE_SERVICES_VARIABLE, "") == "1"


def require_service(name: str, available: bool, reason: str) -> None:
    """Go on when `available`; otherwise skip (locally) or fail (CI) saying `name: reason`."""
    __tracebackhide__ = True  # reported at the test's line, not here
    if available:
        return
    message = f"{name} is unavailable: {reason}"
    if services_required():
        pytest.fail(f"{message} ({REQUIRE_SERVICES_VARIABLE}=1: required here)", pytrace=False)
    pytest.skip(message)
