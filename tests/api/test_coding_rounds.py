"""Coding rounds in the API (/api/coding-rounds/), blind coding on the highlight and
agreement endpoints, and theme statistics per coder or for the consensus version.

ann and ben code the round's interview (ann [0, 10), ben [5, 15)); rita is a researcher
outside the round.
"""

import json

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext

from kb.exchange.refi_qda import qdpx_read
from kb.models import CodingRound, Highlight, Researcher
from kb.roles import RESEARCHER
from kb.services import coding_rounds
from kb.services.codebook import highlight_create
from kb.services.insights import insight_create
from kb.services.people import SCOPES_KEEPING_WORDS
from tests.factories import InterviewFactory, ThemeFactory
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db

TRANSCRIPT = "abcdefghijklmnopqrstuvwxyz"
ROLES = ["anonymous", "outsider", "viewer", "researcher", "staff"]
READ_STATUS = {"anonymous": 401, "outsider": 403, "viewer": 403, "researcher": 200, "staff": 200}


def coder(django_user_model, name):
    user = django_user_model.objects.create_user(username=name, password="pw-" + name)
    user.groups.add(Group.objects.get(name=RESEARCHER))
    return django_user_model.objects.get(pk=user.pk)


@pytest.fixture
def world(users, django_user_model):
    ann, ben = coder(django_user_model, "ann"), coder(django_user_model, "ben")
    interview = InterviewFactory(transcript=TRANSCRIPT)
    theme = ThemeFactory(name="Trust")

    def code(user, start, end):
        return highlight_create(
            actor=user, interview=interview, start=start, end=end,
            quote=TRANSCRIPT[start:end], themes=[theme],
        )  # fmt: skip

    ann_h, ben_h = code(ann, 0, 10), code(ben, 5, 15)
    coding_round = coding_rounds.round_start(
        actor=users["researcher"], name="R1", interviews=[interview], coders=[ann, ben]
    )
    return {
        **users, "ann": ann, "ben": ben, "interview": interview, "theme": theme,
        "ann_h": ann_h, "ben_h": ben_h, "round": coding_round,
    }  # fmt: skip


def detail_url(world) -> str:
    return f"/api/coding-rounds/{world['round'].pk}/"


@pytest.mark.parametrize("role", ROLES)
def test_list_and_detail_answer_each_role_as_highlights_do(api, world, role):
    client = api(world[role])
    listing = client.get("/api/coding-rounds/")
    assert listing.status_code == READ_STATUS[role]
    assert client.get(detail_url(world)).status_code == READ_STATUS[role]
    if READ_STATUS[role] == 200:
        (row,) = listing.json()["results"]
        assert row == {
            "id": world["round"].pk,
            "url": f"http://testserver{detail_url(world)}",
            "name": "R1",
            "interviews": [world["interview"].pk],
            "coders": [
                {"coder": world["ann"].pk, "username": "ann", "done_at": None},
                {"coder": world["ben"].pk, "username": "ben", "done_at": None},
            ],
            "created_by": world["researcher"].pk,
            "created_at": row["created_at"],
            "closed_at": None,
            "blind": False,  # rita is not a coder in it
        }
    assert client.get("/api/coding-rounds/999999/").status_code in (401, 403, 404)


def body(world) -> dict:
    return {"name": "R2", "interviews": [world["interview"].pk],
            "coders": [world["ann"].pk, world["ben"].pk]}  # fmt: skip


@pytest.mark.parametrize("role, status", [
    ("anonymous", 401), ("outsider", 403), ("viewer", 403), ("researcher", 201), ("staff", 201),
])  # fmt: skip
def test_starting_a_round_needs_the_right_to_create_highlights(api, world, role, status):
    before = CodingRound.objects.count()
    response = api(world[role]).post("/api/coding-rounds/", body(world), format="json")
    assert response.status_code == status
    assert CodingRound.objects.count() == before + (status == 201)
    if status == 201:
        assert response.json()["name"] == "R2"
        assert response["Location"] == response.json()["url"]


NO_INTERVIEW = 'Invalid pk "999999" - object does not exist.'
MAY_NOT_CODE = "These users may not code (create highlights): victor."


@pytest.mark.parametrize(
    "change, errors",
    [
        ({"name": ""}, {"name": ["This field may not be blank."]}),
        ({"interviews": []}, {"interviews": ["This list may not be empty."]}),
        ({"interviews": [999999]}, {"interviews": [NO_INTERVIEW]}),
        ({"coders": ["x"]}, {"coders": ["Incorrect type. Expected pk value, received str."]}),
        ({"coders": "one"}, {"coders": ["Choose at least 2 coders."]}),
        ({"coders": "viewer"}, {"coders": [MAY_NOT_CODE]}),
        ({"colour": "red"}, {"colour": ["Unknown or read-only field."]}),
    ],
)  # fmt: skip
def test_bad_input_is_a_400_with_field_errors_and_nothing_written(api, world, change, errors):
    data = body(world)
    if change.get("coders") == "one":
        change = {"coders": [world["ann"].pk]}
    elif change.get("coders") == "viewer":
        change = {"coders": [world["ann"].pk, world["viewer"].pk]}
    data.update(change)
    with nothing_written():
        response = api(world["researcher"]).post("/api/coding-rounds/", data, format="json")
    assert response.status_code == 400
    assert response.json() == errors


def test_blind_coding_on_the_highlight_endpoints(api, world):
    ann = api(world["ann"])
    ids = [row["id"] for row in ann.get("/api/highlights/").json()["results"]]
    assert ids == [world["ann_h"].pk]
    assert ann.get(f"/api/highlights/{world['ben_h'].pk}/").status_code == 404
    with nothing_written():
        patched = ann.patch(
            f"/api/highlights/{world['ben_h'].pk}/", {"note": "peek"}, format="json"
        )
        assert patched.status_code == 404
        assert ann.delete(f"/api/highlights/{world['ben_h'].pk}/").status_code == 404
    assert ann.get(detail_url(world)).json()["blind"] is True
    rita_ids = [row["id"] for row in api(world["researcher"]).get("/api/highlights/").json()[
        "results"
    ]]  # fmt: skip
    assert rita_ids == [world["ann_h"].pk, world["ben_h"].pk]


def test_blind_coding_on_the_agreement_endpoint(api, world):
    url = f"/api/statistics/agreement/?interview={world['interview'].pk}"
    as_ann = api(world["ann"]).get(url).json()
    assert [c["username"] for c in as_ann["coders"]] == ["ann"]
    as_rita = api(world["researcher"]).get(url).json()
    assert [c["username"] for c in as_rita["coders"]] == ["ann", "ben"]
    # 26 characters: both [5, 10); ann alone [0, 5), ben alone [10, 15). p_o = 16/26,
    # each codes 10/26: p_e = (10/26)^2 + (16/26)^2, kappa = (p_o - p_e) / (1 - p_e).
    p_o, p_e = 16 / 26, (10 / 26) ** 2 + (16 / 26) ** 2
    assert as_rita["overall"]["kappa"] == pytest.approx((p_o - p_e) / (1 - p_e))


def test_a_coder_marks_done_once_and_then_sees_everything(api, world):
    ann = api(world["ann"])
    response = ann.post(f"{detail_url(world)}done/")
    assert response.status_code == 200
    assert response.json()["blind"] is False
    assert response.json()["coders"][0]["done_at"] is not None
    assert len(ann.get("/api/highlights/").json()["results"]) == 2
    with nothing_written():
        again = ann.post(f"{detail_url(world)}done/")
    assert again.status_code == 400
    assert again.json() == {"non_field_errors": ["You have already marked your part done."]}


@pytest.mark.parametrize("role, status", [
    ("anonymous", 401), ("outsider", 403), ("viewer", 403), ("researcher", 400),
])  # fmt: skip
def test_only_a_coder_marks_done(api, world, role, status):
    with nothing_written():
        response = api(world[role]).post(f"{detail_url(world)}done/")
    assert response.status_code == status
    if status == 400:
        assert response.json() == {"non_field_errors": ["You are not a coder in this round."]}


def test_done_and_close_take_no_body(api, world):
    with nothing_written():
        response = api(world["ann"]).post(f"{detail_url(world)}done/", {"x": 1}, format="json")
    assert response.status_code == 400
    assert response.json() == {"x": ["Unknown or read-only field."]}


@pytest.mark.parametrize("role, status", [
    ("anonymous", 401), ("outsider", 403), ("viewer", 403), ("researcher", 200),
])  # fmt: skip
def test_closing_a_round_ends_blind_coding(api, world, role, status):
    response = api(world[role]).post(f"{detail_url(world)}close/")
    assert response.status_code == status
    closed = CodingRound.objects.get(pk=world["round"].pk).closed_at is not None
    assert closed is (status == 200)
    if status == 200:
        assert len(api(world["ann"]).get("/api/highlights/").json()["results"]) == 2
        with nothing_written():
            again = api(world[role]).post(f"{detail_url(world)}close/")
        assert again.json() == {"non_field_errors": ["This round is already closed."]}


# --- theme statistics per coder or for the consensus ---------------------------------------


def prevalence(api, user, query=""):
    return api(user).get(f"/api/statistics/theme-prevalence/{query}")


def trust_row(response) -> tuple:
    (row,) = [r for r in response.json()["themes"] if r["name"] == "Trust"]
    return row["highlights"], row["researchers"]["count"], row["researchers"]["n"]


def test_theme_statistics_per_coder_and_for_the_consensus(api, world):
    for part in ("ann", "ben"):
        coding_rounds.round_mark_done(actor=world[part], coding_round=world["round"])
    key = f"d-{world['interview'].pk}-{world['theme'].pk}-0-15"
    coding_rounds.round_consensus_build(
        actor=world["researcher"], coding_round=world["round"], decisions={key: "keep"}
    )
    rita = world["researcher"]
    assert trust_row(prevalence(api, rita)) == (2, 1, 1)  # the coders', not the consensus
    assert trust_row(prevalence(api, rita, f"?coder={world['ann'].pk}")) == (1, 1, 1)
    assert trust_row(prevalence(api, rita, "?version=consensus")) == (1, 1, 1)
    assert Highlight.objects.get(is_consensus=True).quote == TRANSCRIPT[0:15]


@pytest.mark.parametrize(
    "query, errors",
    [
        ("?coder=abc", {"coder": ["A valid integer is required."]}),
        ("?coder=0", {"coder": ["Ensure this value is greater than or equal to 1."]}),
        ("?coder=999999", {"coder": ["No user with id 999999."]}),
        ("?coder=99999999999999999999", {"coder": [
            "Ensure this value is less than or equal to 9223372036854775807."]}),
        ("?version=draft", {"version": ['"draft" is not a valid choice.']}),
        ("?version=consensus&coder={ann}", {"version": [
            "Choose one coder or the consensus version, not both."]}),
    ],
)  # fmt: skip
def test_bad_statistics_scopes_are_400_with_field_errors(api, world, query, errors):
    response = prevalence(api, world["researcher"], query.format(ann=world["ann"].pk))
    assert response.status_code == 400
    assert response.json() == errors


def test_a_viewer_gets_statistics_but_not_per_coder(api, world):
    assert prevalence(api, world["viewer"], "?version=consensus").status_code == 200
    assert prevalence(api, world["viewer"], f"?coder={world['ann'].pk}").status_code == 403


def test_the_schema_documents_rounds_and_the_statistics_scopes(api, world):
    schema = api().get("/api/schema/?format=json").json()
    assert {"/api/coding-rounds/", "/api/coding-rounds/{id}/", "/api/coding-rounds/{id}/done/",
            "/api/coding-rounds/{id}/close/"} <= set(schema["paths"])  # fmt: skip
    parameters = schema["paths"]["/api/statistics/theme-prevalence/"]["get"]["parameters"]
    by_name = {p["name"]: p for p in parameters}
    assert by_name["coder"]["schema"]["type"] == "integer"
    assert by_name["version"]["schema"]["enum"] == ["consensus"]


def test_the_json_export_leaves_out_what_a_blind_coder_may_not_see(api, world):
    def exported(user):
        response = api(user).get("/api/export/?sections=highlights")
        return [row["id"] for row in json.loads(b"".join(response.streaming_content))[
            "highlights"
        ]]  # fmt: skip

    assert exported(world["ann"]) == [world["ann_h"].pk]
    assert exported(world["researcher"]) == [world["ann_h"].pk, world["ben_h"].pk]


def test_the_list_runs_as_many_queries_for_three_rounds_as_for_one(api, world):
    client = api(world["researcher"])

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/api/coding-rounds/").status_code == 200
        return len(captured)

    queries()  # the first request also loads the caller's permissions
    one = queries()
    assert one == 4  # count, rounds, their coders (with users), their interviews
    for name in ("R2", "R3"):
        coding_rounds.round_start(
            actor=world["researcher"], name=name, interviews=[world["interview"]],
            coders=[world["ann"], world["ben"]],
        )  # fmt: skip
    assert queries() == one


def test_a_blind_coder_sees_only_their_own_quotes_linked_to_an_insight(api, world):
    insight = insight_create(
        actor=world["researcher"], title="Trust needs steps", statement="Quotes say so.",
        supporting_highlights=[world["ann_h"], world["ben_h"]],
    )  # fmt: skip

    def linked(user) -> list[int]:
        response = api(user).get(f"/api/insights/{insight.pk}/")
        return [row["highlight"] for row in response.json()["highlights"]]

    assert linked(world["ann"]) == [world["ann_h"].pk]
    assert linked(world["researcher"]) == [world["ann_h"].pk, world["ben_h"].pk]


def test_the_project_export_leaves_out_what_a_blind_coder_may_not_see(api, world):
    Researcher.objects.filter(pk=world["interview"].researcher_id).update(
        consent_scope=sorted(SCOPES_KEEPING_WORDS)[0]
    )

    def exported(user) -> list[tuple[int, int]]:
        response = api(user).get("/api/export/project.qdpx")
        assert response.status_code == 200
        (source,) = qdpx_read(response.content).sources
        return sorted((selection.start, selection.end) for selection in source.selections)

    assert exported(world["ann"]) == [(0, 10)]
    assert exported(world["researcher"]) == [(0, 10), (5, 15)]


# --- the review's fixes: the event log, per-coder statistics, revising after done ---------


def highlight_events(api, user) -> set[tuple[str, int]]:
    rows = api(user).get("/api/events/?page_size=100").json()["results"]
    return {(r["action"], r["target_id"]) for r in rows if r["target_type"] == "kb.highlight"}


def test_the_event_list_hides_other_coders_highlights_from_a_blind_coder(api, world):
    ann_h, ben_h = world["ann_h"].pk, world["ben_h"].pk
    assert highlight_events(api, world["ann"]) == {("created", ann_h), ("linked", ann_h)}
    everything = {(action, pk) for pk in (ann_h, ben_h) for action in ("created", "linked")}
    assert highlight_events(api, world["researcher"]) == everything
    coding_rounds.round_mark_done(actor=world["ann"], coding_round=world["round"])
    assert highlight_events(api, world["ann"]) == everything


def test_per_coder_statistics_count_only_what_the_blind_caller_may_see(api, world):
    query = f"?coder={world['ben'].pk}"
    assert trust_row(prevalence(api, world["researcher"], query)) == (1, 1, 1)
    assert trust_row(prevalence(api, world["ann"], query)) == (0, 0, 0)
    assert trust_row(prevalence(api, world["ann"])) == (1, 1, 1)  # ann's own only


def test_a_coder_who_is_done_gets_400_for_revising_until_the_round_closes(api, world):
    coding_rounds.round_mark_done(actor=world["ann"], coding_round=world["round"])
    ann, url = api(world["ann"]), f"/api/highlights/{world['ann_h'].pk}/"
    body = {"interview": world["interview"].pk, "start": 20, "end": 25,
            "quote": TRANSCRIPT[20:25], "themes": [world["theme"].pk]}  # fmt: skip
    with nothing_written():
        answers = [
            ann.post("/api/highlights/", body, format="json"),
            ann.patch(url, {"note": "after seeing ben's"}, format="json"),
            ann.delete(url),
        ]
    for response in answers:
        assert response.status_code == 400
        assert "You marked your part of the coding round R1 done" in json.dumps(response.json())
    coding_rounds.round_close(actor=world["researcher"], coding_round=world["round"])
    assert ann.delete(url).status_code == 204
