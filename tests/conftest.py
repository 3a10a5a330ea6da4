"""The fixed cast of users every test can use, one per role, plus an outsider."""

import os
from pathlib import Path

import pytest
from django.contrib.auth.models import Group

from kb.roles import RESEARCHER, VIEWER, roles_ensure

# Tests that load torch must not oversubscribe the two cores here.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_sessionstart(session) -> None:
    """The SQLite test database is a file that worker processes share. Django recreates the
    file but not its write-ahead log, and a stale log makes the new file unreadable."""
    from django.conf import settings

    test_name = settings.DATABASES["default"].get("TEST", {}).get("NAME")
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3") and test_name:
        path = Path(test_name)
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            stale.unlink(missing_ok=True)


@pytest.fixture
def fast_passwords(settings) -> None:
    """MD5 instead of PBKDF2 for tests that create or sign in many users: each PBKDF2 hash
    costs a noticeable part of a second here."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def roles(db) -> None:
    roles_ensure()


def _user(django_user_model, username: str, group: str | None = None, **flags):
    user = django_user_model.objects.create_user(
        username=username, password="pw-" + username, **flags
    )
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def researcher_user(roles, django_user_model):
    """Creates and edits everything, starts runs."""
    return _user(django_user_model, "rita", RESEARCHER)


@pytest.fixture
def viewer_user(roles, django_user_model):
    """Reads insights and results; never transcripts or personal data."""
    return _user(django_user_model, "victor", VIEWER)


@pytest.fixture
def staff_user(roles, django_user_model):
    """Uses the admin."""
    return _user(django_user_model, "sam", is_staff=True, is_superuser=True)


@pytest.fixture
def outsider_user(roles, django_user_model):
    """Signed in, but in no group: must see nothing."""
    return _user(django_user_model, "olga")
