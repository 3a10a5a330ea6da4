"""Settings helpers fail fast on bad values; DEBUG off demands a SECRET_KEY."""

import subprocess
import sys

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from kb.settings import env_bool, env_int, env_list


def test_env_bool_parses_and_refuses(monkeypatch):
    monkeypatch.setenv("FLAG", "yes")
    assert env_bool("FLAG", False) is True
    monkeypatch.setenv("FLAG", "0")
    assert env_bool("FLAG", True) is False
    monkeypatch.setenv("FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="FLAG must be a boolean"):
        env_bool("FLAG", True)


def test_env_int_refuses_text_and_small_values(monkeypatch):
    monkeypatch.setenv("SIZE", "ten")
    with pytest.raises(ImproperlyConfigured, match="SIZE must be an integer, got 'ten'"):
        env_int("SIZE", 1)
    monkeypatch.setenv("SIZE", "3")
    with pytest.raises(ImproperlyConfigured, match="SIZE must be at least 10, got 3"):
        env_int("SIZE", 10, minimum=10)


def test_env_list_splits_on_commas(monkeypatch):
    monkeypatch.setenv("HOSTS", "a.example, b.example,")
    assert env_list("HOSTS", []) == ["a.example", "b.example"]


def _start_with(env: dict) -> subprocess.CompletedProcess:
    code = (
        "import os; os.environ['DJANGO_SETTINGS_MODULE'] = 'kb.settings'\n"
        "import django; django.setup()"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **env},
        cwd=settings.BASE_DIR,
    )


def test_debug_off_without_secret_key_stops_start_up():
    result = _start_with({"DEBUG": "false"})
    assert result.returncode != 0
    assert "SECRET_KEY is required when DEBUG is off" in result.stderr


def test_bad_database_url_stops_start_up():
    result = _start_with({"DEBUG": "true", "DATABASE_URL": "nosuchdb://x"})
    assert result.returncode != 0
    assert "DATABASE_URL is not a valid database URL" in result.stderr


def test_time_zone_is_utc():
    assert settings.TIME_ZONE == "UTC"
