"""What the pages do besides create, edit and delete, through the API: anonymise a researcher,
move a question, unlink evidence from an insight. Each needs the researcher role, goes through
the page's service, and writes nothing on bad input."""

import pytest
from django.contrib.auth.models import Permission

from kb.models import Event, InsightFinding, InsightHighlight
from kb.services.interviews import question_create
from kb.services.invitations import invitation_create
from tests.api.writes import if_match
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db

REFUSED = {"anonymous": 401, "outsider": 403, "viewer": 403}
ROLES = ["anonymous", "outsider", "viewer", "researcher", "staff"]


# --- anonymise a researcher -----------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_anonymising_needs_the_researcher_role(api, kb, users, role):
    person = kb["researcher"]
    response = api(users[role]).post(f"/api/researchers/{person.pk}/anonymise/")
    assert response.status_code == REFUSED.get(role, 200), response.content
    person.refresh_from_db()
    assert (person.anonymised_at is not None) == (role not in REFUSED)


def test_anonymising_erases_the_person_and_withdraws_their_links(api, kb, researcher_user, client):
    person = kb["researcher"]
    invitation, token = invitation_create(
        actor=researcher_user, survey=kb["survey"], researcher=person
    )
    response = api(researcher_user).post(f"/api/researchers/{person.pk}/anonymise/")
    body = response.json()
    assert body["pseudonym"] == f"Anonymised researcher {person.pk}"
    assert body["full_name"] == body["affiliation"] == body["contact_email"] == ""
    assert body["anonymised_at"] is not None
    assert "Secret Person" not in response.content.decode()
    # no consent to keep their words: the interview goes; the waiting link stops working
    assert not kb["interview"].__class__.objects.filter(researcher=person).exists()
    invitation.refresh_from_db()
    assert invitation.is_expired
    assert client.get(f"/s/{token}/").status_code == 410


# --- move a question ------------------------------------------------------------------------


@pytest.fixture
def questions(kb, researcher_user):
    first = kb["question"]
    second = question_create(
        actor=researcher_user, survey=kb["survey"], position=2, text="Why?", kind="free_text"
    )
    return first, second


def _order(survey) -> list[int]:
    return list(survey.questions.order_by("position").values_list("pk", flat=True))


@pytest.mark.parametrize("role", ROLES)
def test_moving_a_question_needs_the_researcher_role(api, kb, users, questions, role):
    first, second = questions
    response = api(users[role]).post(
        f"/api/questions/{second.pk}/move/", {"direction": "up"}, format="json"
    )
    assert response.status_code == REFUSED.get(role, 200), response.content
    moved = role not in REFUSED
    assert _order(kb["survey"]) == ([second.pk, first.pk] if moved else [first.pk, second.pk])
    if moved:
        assert response.json()["position"] == 1


def test_moving_past_the_end_changes_nothing(api, kb, researcher_user, questions):
    first, second = questions
    with nothing_written():
        response = api(researcher_user).post(
            f"/api/questions/{second.pk}/move/", {"direction": "down"}, format="json"
        )
    assert response.status_code == 200
    assert response.json()["position"] == 2


def test_positions_start_at_one_so_a_move_always_has_room(api, kb, researcher_user, questions):
    first, second = questions
    body = {"survey": kb["survey"].pk, "position": 0, "text": "Zero?", "kind": "free_text"}
    with nothing_written():
        refused = api(researcher_user).post("/api/questions/", body, format="json")
        patched = api(researcher_user).patch(
            f"/api/questions/{first.pk}/", {"position": 0}, format="json"
        )
    assert refused.status_code == patched.status_code == 400
    assert "position" in refused.json() and "position" in patched.json()
    moved = api(researcher_user).post(
        f"/api/questions/{second.pk}/move/", {"direction": "up"}, format="json"
    )
    assert moved.status_code == 200


@pytest.mark.parametrize("body", [{}, {"direction": "sideways"}, {"direction": 1}])
def test_a_move_without_a_direction_is_refused(api, researcher_user, questions, body):
    with nothing_written():
        response = api(researcher_user).post(
            f"/api/questions/{questions[0].pk}/move/", body, format="json"
        )
    assert response.status_code == 400
    assert "direction" in response.json()


# --- unlink evidence from an insight ----------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_unlinking_needs_the_researcher_role(api, kb, users, role):
    insight, finding = kb["insight"], kb["finding"]
    response = api(users[role]).post(
        f"/api/insights/{insight.pk}/unlink/", {"findings": [finding.pk]}, format="json"
    )
    assert response.status_code == REFUSED.get(role, 200), response.content
    linked = InsightFinding.objects.filter(insight=insight, finding=finding).exists()
    assert linked == (role in REFUSED)


def test_unlinking_removes_the_links_and_keeps_the_records(api, kb, researcher_user):
    insight, finding, highlight = kb["insight"], kb["finding"], kb["highlight"]
    response = api(researcher_user).post(
        f"/api/insights/{insight.pk}/unlink/",
        {"findings": [finding.pk], "highlights": [highlight.pk]},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["findings"] == response.json()["highlights"] == []
    assert not InsightHighlight.objects.filter(insight=insight).exists()
    finding.refresh_from_db()  # the finding and the highlight themselves stay
    highlight.refresh_from_db()
    deleted = Event.objects.filter(action="deleted", target_type__model__startswith="insight")
    assert deleted.count() == 2
    # and the finding can be linked again, now the other way
    relinked = api(researcher_user).patch(
        f"/api/insights/{insight.pk}/",
        {"findings": [{"finding": finding.pk, "stance": "contradicts"}]},
        format="json",
        headers=if_match(insight),
    )
    assert relinked.json()["findings"][0]["stance"] == "contradicts"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "non_field_errors"),
        ({"findings": []}, "non_field_errors"),
        ({"findings": ["x"]}, "findings"),
        ({"findings": [999999]}, "findings"),
        ({"highlights": [999999]}, "highlights"),
        ({"findings": [10**30]}, "findings"),
    ],
)
def test_unlinking_what_is_not_linked_is_refused_and_removes_nothing(
    api, kb, researcher_user, body, field
):
    # a linked finding named beside an unlinked highlight: all or none
    body = {"findings": [kb["finding"].pk], **body} if field == "highlights" else body
    with nothing_written():
        response = api(researcher_user).post(
            f"/api/insights/{kb['insight'].pk}/unlink/", body, format="json"
        )
    assert response.status_code == 400
    assert field in response.json()


def test_a_viewer_role_with_insight_rights_still_cannot_unlink_quotes(api, kb, viewer_user):
    viewer_user.user_permissions.add(Permission.objects.get(codename="change_insight"))
    user = type(viewer_user).objects.get(pk=viewer_user.pk)  # fresh permission cache
    with nothing_written():
        response = api(user).post(
            f"/api/insights/{kb['insight'].pk}/unlink/",
            {"highlights": [kb["highlight"].pk]},
            format="json",
        )
    assert response.status_code == 403
