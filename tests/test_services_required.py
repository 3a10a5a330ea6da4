"""A test whose service is missing skips with the reason locally and fails in CI
(KB_REQUIRE_SERVICES=1, set by .ci/run): shown on the browser tests' Chromium, pointed at a
path where there is none, in a pytest run of its own."""

import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

REPO = Path(settings.BASE_DIR)
NEEDS_A_BROWSER = "def test_needs_a_browser(browser):\n    pass\n"


def _pytest_without_chromium(tmp_path: Path, require: str) -> subprocess.CompletedProcess:
    test = tmp_path / "test_needs_a_browser.py"
    test.write_text(NEEDS_A_BROWSER)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "kb.settings",
        "CHROMIUM_PATH": str(tmp_path / "no-chromium-here"),
        "KB_REQUIRE_SERVICES": require,
        # Only the browser tests' conftest is needed: no Django app loading, no other plugin.
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(test), "-p", "tests.browser.conftest",
         "--rootdir", str(tmp_path), "-p", "no:cacheprovider", "-q", "-rs"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_a_missing_service_skips_locally_and_fails_in_ci(tmp_path):
    reason = f"Chromium is unavailable: no browser at {tmp_path / 'no-chromium-here'}"
    local = _pytest_without_chromium(tmp_path, require="")
    assert local.returncode == 0, local.stdout
    assert "1 skipped" in local.stdout
    assert reason in local.stdout
    ci = _pytest_without_chromium(tmp_path, require="1")
    assert ci.returncode == 1, ci.stdout
    assert "1 error" in ci.stdout and "skipped" not in ci.stdout
    assert f"{reason}" in ci.stdout and "KB_REQUIRE_SERVICES=1: required here" in ci.stdout
