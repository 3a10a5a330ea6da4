"""Fixtures the page tests share: a signed-in researcher and a complete knowledge base."""

import pytest

from tests.kb.pages import world_build


@pytest.fixture
def client_r(client, researcher_user):
    """The test client, signed in as the researcher."""
    client.force_login(researcher_user)
    return client


@pytest.fixture
def world(settings, tmp_path):
    """One linked record of every kind (tests.kb.pages), its figures in a temporary folder."""
    settings.MEDIA_ROOT = tmp_path
    return world_build()


@pytest.fixture
def as_role(client, request):
    """as_role("viewer") signs the test client in as that role's user ("anonymous": not at
    all) and returns it."""

    def login(role: str):
        if role != "anonymous":
            client.force_login(request.getfixturevalue(f"{role}_user"))
        return client

    return login
