"""The studies API: a request answers 201 (or 400 by field, with nothing written); the list
filters by status and model; the detail shows the design, progress, every round with its
per-seed values, summary, decision and records, and the final report; cancel and resume;
every role; query counts that do not grow with the rounds or the studies."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from analysis.execution import execute_job
from analysis.models import AnalysisJob, Study, StudyRound
from analysis.studies import study_advance, study_cancel, study_job_key, study_request
from kb.api.mixins import UNKNOWN_FIELD
from tests.analysis import engine_helpers  # noqa: F401  (one torch thread)
from tests.api.test_permissions import ROLES, read_status, write_status
from tests.factories import BuiltinModelFactory, SubjectModelFactory
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db

SETTINGS = {
    "dataset": {"name": "shapes", "n": 80},
    "train": {"epochs": 1},
    "seeds": 3,
    "rounds": 2,
    "concept": "curvature",
}
SEEDS = [0, 1, 2]
ROUND_KEYS = {
    "index", "track", "spec", "plan", "parameters", "params_added", "values", "summary",
    "mechanism", "decision", "kept", "finding", "finding_url", "insight", "insight_url",
    "change", "change_url", "outcome", "outcome_url", "created_at", "decided_at",
}  # fmt: skip


@pytest.fixture
def model():
    return BuiltinModelFactory()


@pytest.fixture
def study(researcher_user, model) -> Study:
    return study_request(actor=researcher_user, model=model, settings=SETTINGS, dispatch=False)


def _give_results(study: Study, index: int, values: dict[str, list[float]]) -> None:
    """Mark round `index`'s jobs done with these metric values (by track, in seed order), as
    if workers had trained them."""
    for track, per_seed in values.items():
        for seed, value in zip(SEEDS, per_seed, strict=True):
            AnalysisJob.objects.filter(run=study, key=study_job_key(index, track, seed)).update(
                status=AnalysisJob.Status.DONE, progress=1.0, finished_at=timezone.now(),
                result={"seed": seed, "metrics": {"test_accuracy": value}, "mechanism": None,
                        "profile": None, "dataset_fingerprint": "given"},
            )  # fmt: skip


def _detail(client, study: Study) -> dict:
    response = client.get(f"/api/studies/{study.pk}/")
    assert response.status_code == 200, response.content
    return response.json()


# --- request ---------------------------------------------------------------------------------


def test_a_researcher_requests_a_study_and_gets_its_design_and_round_zero(
    api, researcher_user, model
):
    response = api(researcher_user).post(
        "/api/studies/", {"model": model.pk, "settings": SETTINGS}, format="json"
    )

    assert response.status_code == 201, response.content
    study = Study.objects.get()
    body = response.json()
    assert response["Location"] == body["url"] == f"http://testserver/api/studies/{study.pk}/"
    assert body["run_url"] == f"http://testserver/api/runs/{study.pk}/"
    assert body["subject_model"] == model.pk
    assert body["status"] == "queued"
    assert body["requested_by"] == researcher_user.pk
    # Sent to the queue only once the request's transaction commits, which a test never does.
    assert body["waiting_for_queue"] is True
    assert body["config"] == study.config
    assert body["config"]["seeds"] == SEEDS
    assert body["config"]["tracks"] == ["guided", "random", "uniform"]
    assert body["result"] == {}
    assert body["progress"] == {
        "round": 0, "rounds": 2, "tracks": {"guided": 0, "random": 0, "uniform": 0},
        "rounds_decided": 0, "jobs_done": 0, "jobs_total": 3, "percent": 0,
        "message": "round 0 of 2: 0 of 3 jobs done", "status": "queued",
    }  # fmt: skip
    [base] = body["rounds"]
    assert set(base) == ROUND_KEYS
    row = StudyRound.objects.get(study=study)
    assert base | {"spec": None, "created_at": None} == {
        "index": 0, "track": "base", "spec": None, "plan": row.plan,
        "parameters": row.parameters, "params_added": 0, "values": None, "summary": None,
        "mechanism": None, "decision": None, "kept": None, "finding": None,
        "finding_url": None, "insight": None, "insight_url": None, "change": None,
        "change_url": None, "outcome": None, "outcome_url": None, "created_at": None,
        "decided_at": None,
    }  # fmt: skip
    assert base["spec"] == row.spec
    assert body["trajectory"] == {"guided": [], "random": [], "uniform": []}


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"settings": {**SETTINGS, "rounds": 0}},
         {"rounds": ["must be a whole number from 1 to 10, got 0."]}),
        ({"settings": {**SETTINGS, "seeds": 2}}, {"seeds": ["use 3 to 20 seeds, got 2."]}),
        ({"settings": {**SETTINGS, "train": {"epochs": 0}}},
         {"train.epochs": ["must be a whole number from 1 to 100, got 0."]}),
        ({"settings": {**SETTINGS, "tracks": ["guided"]}},
         {"tracks": ['must hold "guided" and at least one control track ("random" or '
                     '"uniform") to compare it with.']}),
        ({"settings": "rounds=2"}, {"settings": ["Must be an object."]}),
        ({"settings": SETTINGS, "rounds": 2},
         {"rounds": ["Unknown field; study settings go inside `settings`."]}),
    ],
    ids=["rounds", "seeds", "epochs", "tracks", "settings-not-object", "unknown-field"],
)  # fmt: skip
def test_bad_settings_answer_400_by_field_and_nothing_is_written(
    api, researcher_user, model, body, errors
):
    with nothing_written():
        response = api(researcher_user).post(
            "/api/studies/", {"model": model.pk, **body}, format="json"
        )
    assert response.status_code == 400
    assert response.json() == errors


def test_a_model_that_is_missing_unknown_or_not_built_in_answers_400(api, researcher_user):
    client = api(researcher_user)
    external = SubjectModelFactory(kind="external")
    with nothing_written():
        missing = client.post("/api/studies/", {"settings": SETTINGS}, format="json")
        unknown = client.post("/api/studies/", {"model": 999999, "settings": SETTINGS},
                              format="json")  # fmt: skip
        not_built_in = client.post(
            "/api/studies/", {"model": external.pk, "settings": SETTINGS}, format="json"
        )
    assert missing.status_code == unknown.status_code == not_built_in.status_code == 400
    assert missing.json() == {"model": ["This field is required."]}
    assert unknown.json() == {"model": ['Invalid pk "999999" - object does not exist.']}
    assert not_built_in.json() == {"model": ["Only built-in models can be studied by the engine."]}


# --- list ------------------------------------------------------------------------------------


def test_the_list_filters_by_status_and_model(api, researcher_user, study):
    other_model = BuiltinModelFactory()
    other = study_request(
        actor=researcher_user, model=other_model, settings=SETTINGS, dispatch=False
    )
    study_cancel(actor=researcher_user, study=other)
    client = api(researcher_user)

    def ids(query: dict) -> list[int]:
        response = client.get("/api/studies/", query)
        assert response.status_code == 200, response.content
        return [row["id"] for row in response.json()["results"]]

    assert ids({}) == [other.pk, study.pk]  # newest first
    assert ids({"status": "cancelled"}) == [other.pk]
    assert ids({"status": "queued"}) == [study.pk]
    assert ids({"model": other_model.pk}) == [other.pk]
    assert ids({"model": study.subject_model_id, "status": "cancelled"}) == []
    bad = client.get("/api/studies/", {"status": "paused"})
    assert bad.status_code == 400
    assert list(bad.json()) == ["status"]


def test_studies_are_runs_too_and_other_runs_are_not_studies(api, researcher_user, study, kb):
    client = api(researcher_user)
    assert [row["id"] for row in client.get("/api/studies/").json()["results"]] == [study.pk]
    assert client.get(f"/api/studies/{kb['run'].pk}/").status_code == 404
    assert client.get(f"/api/runs/{study.pk}/").json()["kind"] == "study"


# --- detail ----------------------------------------------------------------------------------


def test_a_decided_round_shows_its_values_summary_and_nulls_for_undefined_numbers(
    api, researcher_user, study
):
    # The base model scores the same on every seed: its interval is undefined.
    _give_results(study, 0, {"base": [0.5, 0.5, 0.5]})
    study_advance(run_id=study.pk)

    body = _detail(api(researcher_user), study)

    base = body["rounds"][0]
    assert (base["index"], base["track"], base["kept"]) == (0, "base", None)  # nothing to keep
    assert base["values"] == [0.5, 0.5, 0.5]
    assert base["summary"] == {"n": 3, "mean": 0.5, "ci_low": None, "ci_high": None}
    assert base["decided_at"] is not None
    # The random candidate trains. The tracks that cannot form a candidate (the given base
    # results hold no profile for the guided rule; no uniform widening meets the budget) sit
    # their rounds out at once and go on to the next: no round waits for the others.
    rows = body["rounds"][1:]
    assert [(row["index"], row["track"]) for row in rows] == [
        (1, "guided"), (1, "random"), (1, "uniform"), (2, "guided"), (2, "uniform"),
    ]  # fmt: skip
    assert all(row["values"] is None for row in rows)
    undecided = [(row["index"], row["track"]) for row in rows if row["decided_at"] is None]
    assert undecided == [(1, "random")]
    assert all("error" in row["plan"] for row in rows if row["decided_at"] is not None)
    assert body["progress"]["tracks"] == {"guided": 2, "random": 1, "uniform": 2}
    point = {"round": 0, "parameters": base["parameters"], "mean": 0.5, "ci_low": None,
             "ci_high": None, "kept": None}  # fmt: skip
    assert body["trajectory"] == {"guided": [point], "random": [point], "uniform": [point]}
    assert body["progress"]["round"] == 1
    assert body["progress"]["rounds_decided"] == 0


def test_a_round_decided_from_real_jobs_links_its_records(api, researcher_user, study, settings,
                                                           tmp_path):  # fmt: skip
    settings.MEDIA_ROOT = tmp_path
    for seed in SEEDS:  # round 0 trained here, as a worker would: its first seed is profiled
        execute_job(run_id=study.pk, key=study_job_key(0, "base", seed))
    base = StudyRound.objects.get(study=study, index=0).values
    given = {"guided": [value + 0.1 for value in base], "random": base,
             "uniform": [value - 0.1 for value in base]}  # fmt: skip
    planned = set(StudyRound.objects.filter(study=study, index=1).values_list("track", flat=True))
    _give_results(study, 1, {track: given[track] for track in planned if track in given})
    study_advance(run_id=study.pk)

    body = _detail(api(researcher_user), study)

    rows = {row["track"]: row for row in body["rounds"] if row["index"] == 1}
    stored = {row.track: row for row in StudyRound.objects.filter(study=study, index=1)}
    assert rows.keys() == stored.keys() == {"guided", "random", "uniform"}
    for track, row in rows.items():
        saved = stored[track]
        assert row["values"] == saved.values
        assert row["summary"] == saved.summary
        assert row["decision"] == saved.decision
        assert row["kept"] == saved.kept
        for name, kind in (("finding", "findings"), ("insight", "insights"),
                           ("change", "changes"), ("outcome", "outcomes")):  # fmt: skip
            pk = getattr(saved, f"{name}_id")
            assert row[name] == pk
            assert row[f"{name}_url"] == (pk and f"http://testserver/api/{kind}/{pk}/")
    # The guided rule read round 0's profile and formed a candidate: its whole chain exists.
    guided = stored["guided"]
    assert "error" not in guided.plan
    assert None not in (guided.finding_id, guided.insight_id, guided.change_id, guided.outcome_id)
    assert rows["random"]["outcome"] is not None


def test_the_detail_costs_the_same_queries_for_one_round_and_for_many(api, researcher_user, study):
    client = api(researcher_user)
    _detail(client, study)  # the user's permissions are cached from here on

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            _detail(client, study)
        return len(queries.captured_queries)

    one_row = count()
    _give_results(study, 0, {"base": [0.5, 0.6, 0.7]})
    study_advance(run_id=study.pk)
    assert StudyRound.objects.filter(study=study).count() == 6  # tracks sitting out go on
    assert count() == one_row


def test_the_list_costs_the_same_queries_for_1_and_20_studies(api, researcher_user, model):
    client = api(researcher_user)
    client.get("/api/studies/")

    def count(rows: int) -> int:
        with CaptureQueriesContext(connection) as queries:
            response = client.get("/api/studies/", {"page_size": 50})
        assert len(response.json()["results"]) == rows
        return len(queries.captured_queries)

    study_request(actor=researcher_user, model=model, settings=SETTINGS, dispatch=False)
    one = count(1)
    for _ in range(19):
        study_request(actor=researcher_user, model=model, settings=SETTINGS, dispatch=False)
    assert count(20) == one


# --- cancel and resume -----------------------------------------------------------------------


def test_cancel_keeps_the_rounds_and_resume_queues_the_study_again(api, researcher_user, study):
    client = api(researcher_user)

    cancelled = client.post(f"/api/studies/{study.pk}/cancel/")
    assert cancelled.status_code == 200, cancelled.content
    assert cancelled.json()["status"] == "cancelled"
    assert [row["track"] for row in cancelled.json()["rounds"]] == ["base"]
    with nothing_written():
        again = client.post(f"/api/studies/{study.pk}/cancel/")
    assert again.status_code == 400
    assert again.json() == {"status": ["A cancelled run cannot be cancelled."]}

    resumed = client.post(f"/api/studies/{study.pk}/resume/")
    assert resumed.status_code == 202, resumed.content
    assert resumed.json()["status"] == "queued"
    with nothing_written():
        twice = client.post(f"/api/studies/{study.pk}/resume/")
    assert twice.status_code == 400
    assert twice.json() == {"status": ["A queued run cannot be retried."]}


def test_cancel_and_resume_take_no_body(api, researcher_user, study):
    with nothing_written():
        response = api(researcher_user).post(
            f"/api/studies/{study.pk}/cancel/", {"reason": "bored"}, format="json"
        )
    assert response.status_code == 400
    assert response.json() == {"reason": [UNKNOWN_FIELD]}


# --- permissions: as for runs ----------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_every_role_reads_studies_as_it_reads_runs(api, users, study, role):
    client = api(users[role])
    listed = client.get("/api/studies/")
    detail = client.get(f"/api/studies/{study.pk}/")
    assert listed.status_code == detail.status_code == read_status(role, viewer_may=True)
    if listed.status_code == 200:
        assert [row["id"] for row in listed.json()["results"]] == [study.pk]
        assert detail.json()["id"] == study.pk


@pytest.mark.parametrize("role", ROLES)
def test_requesting_a_study_needs_the_role_that_requests_runs(api, users, model, role):
    client = api(users[role])
    if role in ("researcher", "staff"):
        response = client.post(
            "/api/studies/", {"model": model.pk, "settings": SETTINGS}, format="json"
        )
        assert response.status_code == 201
        return
    with nothing_written():
        response = client.post(
            "/api/studies/", {"model": model.pk, "settings": SETTINGS}, format="json"
        )
    assert response.status_code == write_status(role, 201)


@pytest.mark.parametrize("role", ROLES)
def test_cancel_and_resume_need_the_role_that_cancels_runs(api, users, study, role):
    client = api(users[role])
    allowed = role in ("researcher", "staff")
    if allowed:
        assert client.post(f"/api/studies/{study.pk}/cancel/").status_code == 200
        assert client.post(f"/api/studies/{study.pk}/resume/").status_code == 202
        return
    study_cancel(actor=None, study=study)  # so that a permitted resume would change it
    with nothing_written():
        cancel = client.post(f"/api/studies/{study.pk}/cancel/")
        resume = client.post(f"/api/studies/{study.pk}/resume/")
    assert cancel.status_code == resume.status_code == write_status(role, 200)
    study.refresh_from_db()
    assert study.status == "cancelled"


# --- schema ----------------------------------------------------------------------------------


def test_the_schema_documents_the_study_operations(api):
    schema = api().get("/api/schema/", {"format": "json"}).json()
    paths = schema["paths"]
    assert set(paths["/api/studies/"]) == {"get", "post"}
    assert set(paths["/api/studies/{id}/"]) == {"get"}
    created = paths["/api/studies/"]["post"]
    assert created["description"].startswith("Request a study of a built-in model")
    assert created["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/StudyDetail"
    }
    assert "post" in paths["/api/studies/{id}/cancel/"]
    assert paths["/api/studies/{id}/resume/"]["post"]["responses"]["202"]
    rounds = schema["components"]["schemas"]["StudyDetail"]["properties"]["rounds"]
    assert rounds["items"] == {"$ref": "#/components/schemas/StudyRound"}
    settings = schema["components"]["schemas"]["StudyRequestRequest"]["properties"]["settings"]
    for key in ("`concept`", "`probe_size`", "`head_role`", "`threshold`", '"steps"', "induction"):
        assert key in settings["description"], key


def test_a_researcher_requests_a_transformer_study_with_its_own_settings(api, researcher_user):
    from tests.analysis.transformer_helpers import TINY_TRANSFORMER

    transformer = BuiltinModelFactory(architecture_spec=TINY_TRANSFORMER)
    settings = {"dataset": {"name": "induction", "length": 16, "segment": 4},
                "train": {"steps": 6}, "seeds": 3, "probe_size": 16, "head_role": "induction",
                "threshold": 0.4}  # fmt: skip
    response = api(researcher_user).post(
        "/api/studies/", {"model": transformer.pk, "settings": settings}, format="json"
    )
    assert response.status_code == 201, response.content
    config = response.json()["config"]
    assert (config["head_role"], config["threshold"], config["train"]["steps"]) == (
        "induction", 0.4, 6,
    )  # fmt: skip
