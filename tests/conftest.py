"""The fixed cast of users every test can use, one per role, plus an outsider."""

import os

import pytest
from django.contrib.auth.models import Group

from kb.roles import RESEARCHER, VIEWER, roles_ensure

# Tests that load torch must not oversubscribe the two cores here.
os.environ.setdefault("OMP_NUM_THREADS", "1")


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
