"""Survey links through the API: only roles that may see researchers list, create or withdraw
them; the link itself appears once, in the answer to the POST; bad input writes nothing."""

import pytest
from django.urls import reverse

from kb.models import SurveyInvitation
from kb.services.invitations import invitation_create, invitation_respond, token_digest
from kb.services.people import researcher_anonymise, researcher_create
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "outsider", "viewer", "researcher", "staff"]
REFUSED = {"anonymous": 401, "outsider": 403, "viewer": 403}


@pytest.fixture
def link(kb):
    """The kb's waiting link for its researcher, and its token."""
    return kb["invitation"], kb["invitation_token"]


def _token(body: dict) -> str:
    return body["link"].rstrip("/").rsplit("/", 1)[1]


@pytest.mark.parametrize("role", ROLES)
def test_reading_links_needs_a_role_that_sees_researchers(api, users, link, role):
    invitation, token = link
    client = api(users[role])
    listed = client.get("/api/invitations/")
    detail = client.get(f"/api/invitations/{invitation.pk}/")
    assert listed.status_code == REFUSED.get(role, 200)
    assert detail.status_code == REFUSED.get(role, 200)
    if role in REFUSED:
        return
    assert [row["id"] for row in listed.json()["results"]] == [invitation.pk]
    row = detail.json()
    assert row["state"] == "waiting"
    assert row["researcher"] == invitation.researcher_id
    assert row["researcher_url"].endswith(f"/api/researchers/{invitation.researcher_id}/")
    assert row["interview"] is None and row["interview_url"] is None
    # Neither the token nor its digest is ever read back.
    assert "link" not in row and "token_digest" not in row
    assert token not in listed.content.decode() + detail.content.decode()
    assert invitation.token_digest not in listed.content.decode() + detail.content.decode()


@pytest.mark.parametrize("role", ROLES)
def test_creating_a_link_needs_the_researcher_role(api, kb, users, role):
    body = {"survey": kb["survey"].pk, "researcher": kb["researcher"].pk, "valid_days": 3}
    response = api(users[role]).post("/api/invitations/", body, format="json")
    assert response.status_code == REFUSED.get(role, 201), response.content
    assert SurveyInvitation.objects.count() == (1 if role in REFUSED else 2)


def test_the_link_is_in_the_created_answer_only_and_opens_the_survey(
    api, client, kb, researcher_user
):
    caller = api(researcher_user)
    body = {"survey": kb["survey"].pk, "researcher": kb["researcher"].pk}
    created = caller.post("/api/invitations/", body, format="json")
    assert created.status_code == 201
    data = created.json()
    token = _token(data)
    assert data["link"] == f"http://testserver{reverse('survey-respond', args=[token])}"
    assert created["Location"] == data["url"]
    assert data["state"] == "waiting"
    invitation = SurveyInvitation.objects.get(pk=data["id"])
    assert invitation.token_digest == token_digest(token)
    assert invitation.created_by == researcher_user
    lifetime = invitation.expires_at - invitation.created_at
    assert round(lifetime.total_seconds() / 86400) == 14  # the default
    assert "link" not in caller.get(data["url"]).json()
    page = client.get(reverse("survey-respond", args=[token]))
    assert page.status_code == 200
    assert "How useful?" in page.content.decode()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"survey": "one"}, "survey"),
        ({"researcher": "R"}, "researcher"),
        ({"survey": 999999}, "survey"),
        ({"researcher": 999999}, "researcher"),
        ({"researcher": None}, "researcher"),
        ({"valid_days": 0}, "valid_days"),
        ({"valid_days": 91}, "valid_days"),
        ({"valid_days": "soon"}, "valid_days"),
    ],
)
def test_bad_input_gets_field_errors_and_writes_nothing(api, kb, researcher_user, body, field):
    valid = {"survey": kb["survey"].pk, "researcher": kb["researcher"].pk}
    with nothing_written():
        response = api(researcher_user).post("/api/invitations/", {**valid, **body}, format="json")
    assert response.status_code == 400
    assert field in response.json()


def test_an_anonymised_researcher_is_refused(api, kb, researcher_user):
    researcher_anonymise(actor=researcher_user, researcher=kb["researcher"])
    body = {"survey": kb["survey"].pk, "researcher": kb["researcher"].pk}
    with nothing_written():
        response = api(researcher_user).post("/api/invitations/", body, format="json")
    assert response.status_code == 400
    assert "anonymised" in response.json()["researcher"][0]


@pytest.mark.parametrize("role", ROLES)
def test_withdrawing_needs_the_researcher_role_and_stops_the_link(api, client, users, link, role):
    invitation, token = link
    response = api(users[role]).post(f"/api/invitations/{invitation.pk}/withdraw/")
    assert response.status_code == REFUSED.get(role, 200), response.content
    invitation.refresh_from_db()
    assert invitation.is_expired == (role not in REFUSED)
    if role not in REFUSED:
        assert response.json()["state"] == "expired"
        assert client.get(reverse("survey-respond", args=[token])).status_code == 410


def test_an_answered_link_cannot_be_withdrawn(api, kb, researcher_user, link):
    invitation, token = link
    invitation_respond(token=token, answers={kb["question"].pk: 2})
    with nothing_written():
        response = api(researcher_user).post(f"/api/invitations/{invitation.pk}/withdraw/")
    assert response.status_code == 400
    assert "answered already" in str(response.json())
    row = api(researcher_user).get(f"/api/invitations/{invitation.pk}/").json()
    assert row["state"] == "answered"
    assert row["interview_url"].endswith(f"/api/interviews/{row['interview']}/")


def test_links_are_filtered_by_state_survey_and_researcher(api, kb, researcher_user, link):
    waiting, _ = link
    other = researcher_create(
        actor=researcher_user, pseudonym="P9", role="other", seniority="junior"
    )
    withdrawn, _ = invitation_create(actor=researcher_user, survey=kb["survey"], researcher=other)
    caller = api(researcher_user)
    caller.post(f"/api/invitations/{withdrawn.pk}/withdraw/")

    def ids(query: str) -> list[int]:
        response = caller.get(f"/api/invitations/?{query}")
        assert response.status_code == 200, response.content
        return sorted(row["id"] for row in response.json()["results"])

    assert ids("state=waiting") == [waiting.pk]
    assert ids("state=expired") == [withdrawn.pk]
    assert ids("state=answered") == []
    assert ids(f"researcher={other.pk}") == [withdrawn.pk]
    assert ids(f"survey={kb['survey'].pk}") == sorted([waiting.pk, withdrawn.pk])
    assert caller.get("/api/invitations/?state=lost").status_code == 400


def test_links_cannot_be_edited_or_deleted(api, researcher_user, link):
    invitation, _ = link
    caller = api(researcher_user)
    with nothing_written():
        patched = caller.patch(
            f"/api/invitations/{invitation.pk}/", {"valid_days": 90}, format="json"
        )
        deleted = caller.delete(f"/api/invitations/{invitation.pk}/")
    assert patched.status_code == deleted.status_code == 405
