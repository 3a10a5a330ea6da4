"""The permission matrix: anonymous, outsider, viewer, researcher and staff against every
endpoint and method, with the expected status and, for lists, the expected rows."""

import pytest
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from analysis.services import run_cancel
from kb.models import Event
from kb.services.changes import change_copy
from tests.api.conftest import TRANSCRIPT
from tests.api.writes import if_match

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "outsider", "viewer", "researcher", "staff"]
# endpoint -> (the kb fixture's record, may a viewer read it?)
RESOURCES = {
    "researchers": ("researcher", False),
    "surveys": ("survey", True),
    "questions": ("question", True),
    "interviews": ("interview", False),
    "answers": ("answer", False),
    "themes": ("theme", True),
    "highlights": ("highlight", False),
    "models": ("model", True),
    "findings": ("finding", True),
    "insights": ("insight", True),
    "changes": ("change", True),
    "outcomes": ("outcome", True),
    "runs": ("run", True),
    "invitations": ("invitation", False),
}
# Runs are started by actions and invitations only created and withdrawn: tests/api/
# test_invitations.py covers those for every role.
WRITABLE = [endpoint for endpoint in RESOURCES if endpoint not in ("runs", "invitations")]


def read_status(role: str, viewer_may: bool) -> int:
    return {
        "anonymous": 401,
        "outsider": 403,
        "viewer": 200 if viewer_may else 403,
        "researcher": 200,
        "staff": 200,
    }[role]


def write_status(role: str, allowed: int) -> int:
    return {"anonymous": 401, "outsider": 403, "viewer": 403}.get(role, allowed)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", RESOURCES)
def test_list_answers_the_role_with_the_expected_rows(api, kb, users, role, endpoint):
    key, viewer_may = RESOURCES[endpoint]
    response = api(users[role]).get(f"/api/{endpoint}/")
    assert response.status_code == read_status(role, viewer_may)
    if response.status_code == 200:
        assert [row["id"] for row in response.json()["results"]] == [kb[key].pk]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", RESOURCES)
def test_detail_answers_the_role(api, kb, users, role, endpoint):
    key, viewer_may = RESOURCES[endpoint]
    response = api(users[role]).get(f"/api/{endpoint}/{kb[key].pk}/")
    assert response.status_code == read_status(role, viewer_may)
    if response.status_code == 200:
        assert response.json()["id"] == kb[key].pk
    assert api(users[role]).get(f"/api/{endpoint}/999999/").status_code in (401, 403, 404)


def create_body(endpoint: str, kb: dict) -> dict:
    """A valid new record for each endpoint."""
    return CREATE_BODIES[endpoint](kb)


CREATE_BODIES = {
    "researchers": lambda kb: {"pseudonym": "P2", "role": "other", "seniority": "junior"},
    "surveys": lambda kb: {"title": "Second", "questions": [{"text": "Why?", "kind": "free_text"}]},
    "questions": lambda kb: {
        "survey": kb["survey"].pk,
        "position": 2,
        "text": "Else?",
        "kind": "free_text",
        "required": False,
    },
    "interviews": lambda kb: {
        "researcher": kb["researcher"].pk,
        "conducted_on": "2026-03-01",
        "transcript": "Short.",
    },
    "answers": lambda kb: {
        "interview": kb["interview"].pk,
        "question": _second_question(kb).pk,
        "value": 3,
    },
    "themes": lambda kb: {"name": "Trust", "parent": kb["theme"].pk},
    "highlights": lambda kb: {
        "interview": kb["interview"].pk,
        "start": 0,
        "end": 7,
        "quote": TRANSCRIPT[:7],
        "themes": [kb["theme"].pk],
    },
    "models": lambda kb: {"name": "InceptionV1", "kind": "external", "family": "inception"},
    "findings": lambda kb: {
        "subject_model": kb["model"].pk,
        "title": "Dead fc1 units",
        "layer_name": "fc1",
        "unit_indices": [3],
        "confidence": 0.7,
    },
    "insights": lambda kb: {
        "title": "Prune fc1",
        "statement": "Dead units.",
        "findings": [{"finding": kb["finding"].pk, "stance": "contradicts"}],
    },
    "changes": lambda kb: {
        "insight": kb["insight"].pk,
        "target_model": kb["model"].pk,
        "operation": "widen_layer",
        "parameters": {"layer": "fc1", "units": 4},
    },
    "outcomes": lambda kb: {
        "change": kb["change"].pk,
        "verdict": "inconclusive",
        "baseline_values": [0.5, 0.6],
        "variant_values": [0.55, 0.6],
    },
}


def _second_question(kb):
    from kb.services.interviews import question_create

    return question_create(
        actor=None, survey=kb["survey"], position=2, text="Rate it", kind="likert"
    )


PATCHES = {
    "researchers": {"research_area": "circuits"},
    "surveys": {"description": "Updated."},
    "questions": {"text": "How useful, really?"},
    "interviews": {"status": "coded"},
    "answers": {"likert": 5},
    "themes": {"colour": "#112233"},
    "highlights": {"note": "Key quote."},
    "models": {"family": "cnn"},
    "findings": {"status": "supported"},
    "insights": {"status": "actioned"},
    "changes": {"rationale": "Curves need room."},
    "outcomes": {"notes": "Checked."},
}
# What a researcher's DELETE gets: 204, or 400 when other records protect the row (the
# theme is the only theme of a highlight, which must keep one).
DELETES = {
    "researchers": 400, "surveys": 400, "questions": 400, "interviews": 400, "answers": 204,
    "themes": 400, "highlights": 400, "models": 400, "findings": 400, "insights": 400,
    "changes": 400, "outcomes": 204,
}  # fmt: skip


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", WRITABLE)
def test_create_needs_the_researcher_role(api, kb, users, role, endpoint):
    body = create_body(endpoint, kb)
    response = api(users[role]).post(f"/api/{endpoint}/", body, format="json")
    assert response.status_code == write_status(role, 201), response.content
    if response.status_code == 201:
        assert response["Location"] == response.json()["url"]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", WRITABLE)
def test_update_needs_the_researcher_role(api, kb, users, role, endpoint):
    key, _ = RESOURCES[endpoint]
    patch = PATCHES[endpoint]
    record = kb[key]
    if endpoint == "changes":
        # kb's change has a run, so it is fixed; a copy is proposed and editable
        record = change_copy(actor=None, change=record)
    response = api(users[role]).patch(
        f"/api/{endpoint}/{record.pk}/", patch, format="json", headers=if_match(record)
    )
    assert response.status_code == write_status(role, 200), response.content
    if response.status_code == 200:
        assert {name: response.json()[name] for name in patch} == patch


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", WRITABLE)
def test_delete_needs_the_researcher_role(api, kb, users, role, endpoint):
    key, _ = RESOURCES[endpoint]
    model = type(kb[key])
    response = api(users[role]).delete(f"/api/{endpoint}/{kb[key].pk}/")
    assert response.status_code == write_status(role, DELETES[endpoint]), response.content
    assert model.objects.filter(pk=kb[key].pk).exists() == (response.status_code != 204)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    "path",
    ["changes/{change}/run-experiment/", "findings/{finding}/ablate/", "models/{model}/profile/"],
)
def test_starting_a_run_needs_the_researcher_role(api, kb, users, role, path):
    run_cancel(actor=None, run=kb["run"])  # one experiment per change at a time
    url = "/api/" + path.format(**{key: kb[key].pk for key in ("change", "finding", "model")})
    config = {"dataset": {"name": "shapes", "n": 80}, "train": {"epochs": 1}}
    if "run-experiment" in path:
        config["seeds"] = 3
    response = api(users[role]).post(url, {"config": config}, format="json")
    assert response.status_code == write_status(role, 202), response.content
    if response.status_code == 202:
        assert response.json()["url"] == f"http://testserver/api/runs/{response.json()['id']}/"
        assert response.json()["status"] == "queued"


@pytest.mark.parametrize("role", ROLES)
def test_cancel_and_retry_need_the_researcher_role(api, kb, users, role):
    client, run = api(users[role]), kb["run"]
    cancel = client.post(f"/api/runs/{run.pk}/cancel/")
    assert cancel.status_code == write_status(role, 200)
    retry = client.post(f"/api/runs/{run.pk}/retry/")
    assert retry.status_code == write_status(role, 202)
    if role in ("researcher", "staff"):
        assert cancel.json()["status"] == "cancelled"
        assert retry.json()["status"] == "queued"


def test_a_viewer_never_sees_quotes_in_an_insight(api, kb, users):
    viewer = api(users["viewer"]).get(f"/api/insights/{kb['insight'].pk}/").json()
    researcher = api(users["researcher"]).get(f"/api/insights/{kb['insight'].pk}/").json()
    assert viewer["highlights"] is None
    assert researcher["highlights"] == [
        {
            "highlight": kb["highlight"].pk,
            "url": f"http://testserver/api/highlights/{kb['highlight'].pk}/",
            "stance": "supports",
        }
    ]
    assert viewer["findings"] == researcher["findings"]
    assert viewer["changes"][0]["latest_outcome"]["id"] == kb["outcome"].pk


def test_a_viewer_cannot_link_quotes(api, kb, users):
    body = {"title": "T", "statement": "S", "highlights": [{"highlight": kb["highlight"].pk}]}
    response = api(users["viewer"]).post("/api/insights/", body, format="json")
    assert response.status_code == 403


PERSONAL_KINDS = {"kb.researcher", "kb.interview", "kb.answer", "kb.highlight",
                  "kb.insighthighlight", "kb.surveyinvitation"}  # fmt: skip


def test_events_about_personal_records_are_absent_for_a_viewer(api, kb, users):
    viewer = api(users["viewer"]).get("/api/events/", {"page_size": 200}).json()["results"]
    researcher = api(users["researcher"]).get("/api/events/", {"page_size": 200}).json()
    kinds = {row["target_type"] for row in researcher["results"]}
    assert kinds >= PERSONAL_KINDS
    assert {row["target_type"] for row in viewer} == kinds - PERSONAL_KINDS
    hidden = Event.objects.filter(target_type__model="interview").first()
    assert api(users["viewer"]).get(f"/api/events/{hidden.pk}/").status_code == 404
    assert api(users["researcher"]).get(f"/api/events/{hidden.pk}/").status_code == 200


def test_a_viewer_search_never_reaches_transcripts(api, kb, users):
    assert api(users["viewer"]).get("/api/insights/", {"search": "pretty"}).json()["count"] == 0
    assert api(users["viewer"]).get("/api/interviews/", {"search": "pretty"}).status_code == 403
    found = api(users["researcher"]).get("/api/interviews/", {"search": "pretty"}).json()
    assert [row["id"] for row in found["results"]] == [kb["interview"].pk]


def _export(client) -> bytes:
    response = client.get("/api/export/")
    assert response.status_code == 200
    return b"".join(response.streaming_content)


def test_the_export_respects_the_role(api, kb, users):
    import json

    viewer = json.loads(_export(api(users["viewer"])))
    researcher = json.loads(_export(api(users["researcher"])))
    assert set(researcher) - set(viewer) == {
        "researchers", "interviews", "answers", "highlights", "insight_highlights",
    }  # fmt: skip
    body = json.dumps(viewer)
    for secret in ("Secret Person", "p1@example.org", "actionable steps", TRANSCRIPT):
        assert secret not in body
    assert [row["id"] for row in viewer["insights"]] == [kb["insight"].pk]
    assert researcher["researchers"][0]["full_name"] == "Secret Person"
    assert api(users["anonymous"]).get("/api/export/").status_code == 401
    assert api(users["outsider"]).get("/api/export/").status_code == 403


@pytest.mark.parametrize(
    ("path", "viewer_status"),
    [
        ("/api/statistics/theme-prevalence/", 200),
        ("/api/statistics/scoreboard/", 200),
        ("/api/export/outcomes.csv", 200),
        ("/api/export/theme-by-researcher.csv", 403),
    ],
)
def test_statistics_and_csv_answer_each_role(api, kb, users, path, viewer_status):
    expected = {"anonymous": 401, "outsider": 403, "viewer": viewer_status,
                "researcher": 200, "staff": 200}  # fmt: skip
    for role, status in expected.items():
        assert api(users[role]).get(path).status_code == status, role


def test_a_token_from_drf_create_token_signs_in(kb, researcher_user):
    call_command("drf_create_token", researcher_user.username, verbosity=0)
    client = APIClient(HTTP_AUTHORIZATION=f"Token {Token.objects.get().key}")
    assert client.get("/api/insights/").status_code == 200
    bad = APIClient(HTTP_AUTHORIZATION="Token not-a-token")
    assert bad.get("/api/insights/").status_code == 401


def test_session_writes_need_the_csrf_token(kb, researcher_user):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(researcher_user)
    body = {"name": "Trust"}
    assert client.post("/api/themes/", body, format="json").status_code == 403
    token = client.get("/login/").cookies["csrftoken"].value
    response = client.post("/api/themes/", body, format="json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201


def test_callers_are_throttled(api, kb, users, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "2/minute", "user": "3/minute"},
    }
    client = api(users["viewer"])
    assert [client.get("/api/themes/").status_code for _ in range(4)] == [200, 200, 200, 429]
    anonymous = api()
    assert [anonymous.get("/api/themes/").status_code for _ in range(3)] == [401, 401, 429]
