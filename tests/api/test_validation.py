"""Bad input answers 400 with field-level messages, and nothing is written."""

import pytest
from django.test import override_settings

from analysis.services import run_cancel
from kb.models import Outcome
from kb.services.insights import MEASURED_OUTCOME_IS_FIXED
from kb.services.interviews import question_create
from tests.api.conftest import TRANSCRIPT
from tests.api.writes import if_match
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(api, researcher_user):
    return api(researcher_user)


def assert_refused(response, fields: set[str]) -> None:
    assert response.status_code == 400, response.content
    assert set(response.json()) == fields, response.json()


def test_a_malformed_body_is_refused(client, kb):
    with nothing_written():
        response = client.post("/api/themes/", data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("JSON parse error")


@pytest.mark.parametrize(
    ("endpoint", "body", "fields"),
    [
        # wrong types
        ("findings", {"subject_model": "one", "title": 3, "layer_name": ["x"]},
         {"subject_model", "layer_name"}),
        ("findings", {"subject_model": None, "title": "T", "layer_name": "conv2",
                      "unit_indices": "1,2"}, {"subject_model", "unit_indices"}),
        ("insights", {"title": "T", "statement": "S", "findings": "all"}, {"findings"}),
        ("outcomes", {"change": True, "verdict": "great", "baseline_values": ["a"],
                      "variant_values": []}, {"change", "verdict", "baseline_values",
                                              "variant_values"}),
        # unknown ids
        ("changes", {"insight": 999999, "target_model": 999998, "operation": "manual"},
         {"insight", "target_model"}),
        ("highlights", {"interview": 999999, "start": 0, "end": 2, "quote": "We",
                        "themes": [999999]}, {"interview", "themes"}),
        # out-of-range values
        ("findings", {"subject_model": "@model", "title": "T", "layer_name": "conv2",
                      "confidence": 1.5}, {"confidence"}),
        ("questions", {"survey": "@survey", "position": -1, "text": "Q", "kind": "likert"},
         {"position"}),
        ("outcomes", {"change": "@change", "verdict": "improved", "baseline_values": [1e300],
                      "variant_values": [1]}, {"baseline_values"}),
        # rules the services check
        ("findings", {"subject_model": "@model", "title": "T", "layer_name": "conv2",
                      "unit_indices": [99]}, {"unit_indices"}),
        ("findings", {"subject_model": "@model", "title": "T", "layer_name": "nope"},
         {"layer_name"}),
        ("highlights", {"interview": "@interview", "start": 0, "end": 5, "quote": "Hello",
                        "themes": ["@theme"]}, {"quote"}),
        ("highlights", {"interview": "@interview", "start": 0, "end": 2, "quote": "We",
                        "themes": []}, {"themes"}),
        ("insights", {"title": "T", "statement": "S", "findings": [
            {"finding": "@finding", "stance": "supports"},
            {"finding": "@finding", "stance": "contradicts"}]}, {"findings"}),
        ("interviews", {"researcher": "@researcher", "conducted_on": "2026-01-01",
                        "survey": "@survey", "answers": {"@question": 9}}, {"answers"}),
        ("answers", {"interview": "@interview", "question": "@question", "value": {"a": 1}},
         {"value"}),
        ("themes", {"name": "Actionability"}, {"non_field_errors"}),
        ("themes", {"name": "T", "colour": "red"}, {"colour"}),
        ("models", {"name": "M", "kind": "builtin", "architecture_spec": {"layers": []}},
         {"architecture_spec"}),
        # null characters, which PostgreSQL cannot store
        ("themes", {"name": "a\x00b"}, {"name"}),
        ("changes", {"insight": "@insight", "target_model": "@model", "operation": "manual",
                     "parameters": {"note": "a\x00b"}}, {"parameters"}),
    ],
)  # fmt: skip
def test_bad_input_is_refused_with_field_errors(client, kb, endpoint, body, fields):
    body = _resolve(body, kb)
    with nothing_written():
        response = client.post(f"/api/{endpoint}/", body, format="json")
    assert_refused(response, fields)


def _resolve(value, kb):
    """'@name' stands for the id of the kb fixture's record of that name."""
    if isinstance(value, str) and value.startswith("@"):
        return kb[value[1:]].pk
    if isinstance(value, dict):
        return {_resolve(k, kb) if k.startswith("@") else k: _resolve(v, kb)
                for k, v in value.items()}  # fmt: skip
    if isinstance(value, list):
        return [_resolve(item, kb) for item in value]
    return value


@pytest.mark.parametrize(
    ("parameters", "operation", "field"),
    [
        ({"layer": "conv9", "units": 2}, "widen_layer", "parameters.layer"),
        ({"layer": "conv2", "units": 0}, "widen_layer", "parameters.units"),
        ({"layer": "conv2"}, "widen_layer", "parameters.units"),
        ({"layer": "conv2", "units": 2, "colour": "blue"}, "widen_layer", "parameters.colour"),
        ({"layer": "conv2", "units": 2}, "transmogrify", "operation"),
    ],
)
def test_bad_architecture_change_parameters_are_refused(client, kb, parameters, operation, field):
    body = {"insight": kb["insight"].pk, "target_model": kb["model"].pk,
            "operation": operation, "parameters": parameters}  # fmt: skip
    with nothing_written():
        response = client.post("/api/changes/", body, format="json")
    assert_refused(response, {field})


def test_a_change_on_an_external_model_must_be_manual(client, kb):
    external = client.post("/api/models/", {"name": "InceptionV1"}, format="json").json()
    body = {"insight": kb["insight"].pk, "target_model": external["id"],
            "operation": "widen_layer", "parameters": {"layer": "conv2", "units": 2}}  # fmt: skip
    with nothing_written():
        response = client.post("/api/changes/", body, format="json")
    assert_refused(response, {"operation"})


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"seeds": 1}, "seeds"),
        ({"seeds": [0, 0, 1]}, "seeds"),
        ({"dataset": {"name": "imagenet"}}, "dataset.name"),
        ({"dataset": {"name": "shapes", "n": 5}}, "dataset.n"),
        ({"train": {"epochs": 10_000}}, "train.epochs"),
        ({"seeds": 10**30}, "seeds"),
        ({"seeds": 2**63}, "seeds"),
        ({"seeds": 10**6}, "seeds"),
        ({"seeds": [0, 1, 10**30]}, "seeds"),
        ({"concept": "x" * 1_000_000}, "concept"),
        ({"train": "fast"}, "train"),
        ({"colour": "blue"}, "colour"),
        ("not an object", "config"),
    ],
)
def test_a_bad_experiment_config_is_refused(client, kb, config, field):
    run_cancel(actor=None, run=kb["run"])
    with nothing_written():
        response = client.post(
            f"/api/changes/{kb['change'].pk}/run-experiment/", {"config": config}, format="json"
        )
    assert_refused(response, {field})


def test_a_second_experiment_while_one_runs_is_refused(client, kb):
    with nothing_written():
        response = client.post(f"/api/changes/{kb['change'].pk}/run-experiment/", {},
                               format="json")  # fmt: skip
    assert_refused(response, {"change"})


def test_an_invalid_update_changes_nothing(client, kb):
    with nothing_written():
        response = client.patch(
            f"/api/findings/{kb['finding'].pk}/", {"unit_indices": [1, 1]}, format="json",
            headers=if_match(kb["finding"]),
        )  # fmt: skip
    assert_refused(response, {"unit_indices"})
    kb["finding"].refresh_from_db()
    assert kb["finding"].unit_indices == [1, 2]


def test_cancelling_a_finished_run_is_refused(client, kb):
    run_cancel(actor=None, run=kb["run"])
    with nothing_written():
        response = client.post(f"/api/runs/{kb['run'].pk}/cancel/")
    assert_refused(response, {"status"})


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=2048)
def test_a_body_over_the_size_limit_is_refused(client, kb):
    with nothing_written():
        response = client.post(
            "/api/themes/", {"name": "T", "description": "x" * 4000}, format="json"
        )
    assert response.status_code == 413


@pytest.mark.parametrize(
    "query",
    [
        {"status": "bogus"},
        {"created_after": "yesterday"},
        {"model": "abc"},
        {"confidence_min": "nan"},
        {"search": "a\x00b"},
        {"page": "0"},
    ],
)
def test_bad_query_parameters_are_refused(client, kb, query):
    response = client.get("/api/findings/", query)
    assert response.status_code in (400, 404), response.content
    assert response.status_code == (404 if "page" in query else 400)


def test_page_size_is_capped(client, kb):
    response = client.get("/api/themes/", {"page_size": 10_000})
    assert response.status_code == 200
    from kb.api.pagination import MAX_PAGE_SIZE

    assert MAX_PAGE_SIZE == 200
    assert response.json()["count"] == 1


def test_the_transcript_offsets_are_checked(client, kb):
    body = {"interview": kb["interview"].pk, "start": 0, "end": len(TRANSCRIPT) + 5,
            "quote": TRANSCRIPT, "themes": [kb["theme"].pk]}  # fmt: skip
    with nothing_written():
        response = client.post("/api/highlights/", body, format="json")
    assert_refused(response, {"end"})


def test_an_answered_question_keeps_its_kind(client, kb):
    with nothing_written():
        response = client.patch(
            f"/api/questions/{kb['question'].pk}/", {"kind": "free_text"}, format="json"
        )
    assert_refused(response, {"kind"})
    assert response.json()["kind"] == [
        "The question has 1 answer; its kind cannot change. Add a new question."
    ]


def test_the_only_theme_of_a_highlight_is_not_deleted(client, kb):
    with nothing_written():
        response = client.delete(f"/api/themes/{kb['theme'].pk}/")
    assert response.status_code == 400
    assert response.json() == {
        "non_field_errors": [
            "Actionability is the only theme of 1 highlight; tag them with another theme first."
        ]
    }


def test_an_outcome_measured_by_a_run_is_not_deleted(client, kb):
    outcome = Outcome.objects.create(
        change=kb["change"], metric="test_accuracy", baseline_values=[0.8], variant_values=[0.9],
        effect=0.1, verdict="improved", source=Outcome.Source.ANALYSIS_RUN, analysis_run=kb["run"],
    )  # fmt: skip
    with nothing_written():
        response = client.delete(f"/api/outcomes/{outcome.pk}/")
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": [MEASURED_OUTCOME_IS_FIXED]}


def test_an_insight_update_that_both_supports_and_contradicts_is_refused(client, kb):
    links = [{"finding": kb["finding"].pk, "stance": stance}
             for stance in ("supports", "contradicts")]  # fmt: skip
    with nothing_written():
        response = client.patch(
            f"/api/insights/{kb['insight'].pk}/", {"title": "New", "findings": links},
            format="json", headers=if_match(kb["insight"]),
        )  # fmt: skip
    assert_refused(response, {"findings"})


CONSENT_RULE = "Consent needs a date and a scope; without consent the scope must be none."


@pytest.mark.parametrize(
    ("consent", "field"),
    [
        ({"consent_given": True, "consent_scope": "quotes"}, "consent_date"),
        ({"consent_given": True, "consent_date": "2026-01-05", "consent_scope": "none"},
         "consent_scope"),
        ({"consent_scope": "quotes"}, "consent_scope"),
    ],
)  # fmt: skip
def test_a_consent_error_comes_with_the_email_error_each_under_its_field(client, consent, field):
    body = {"pseudonym": "P", "role": "ml_engineer", "seniority": "senior",
            "contact_email": "not an address", **consent}  # fmt: skip
    with nothing_written():
        response = client.post("/api/researchers/", body, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "contact_email": ["Enter a valid email address."],
        field: [CONSENT_RULE],
    }


def test_a_consent_patch_is_refused_under_the_field_to_fix(client, kb):
    researcher = kb["researcher"]  # without consent
    with nothing_written():
        response = client.patch(
            f"/api/researchers/{researcher.pk}/",
            {"consent_given": True, "consent_scope": "quotes"},
            format="json",
        )
    assert response.status_code == 400
    assert response.json() == {"consent_date": [CONSENT_RULE]}
    researcher.refresh_from_db()
    assert (researcher.consent_given, researcher.consent_scope) == (False, "none")


def test_a_confidence_above_one_reads_as_on_the_page(client, kb):
    body = {"subject_model": kb["model"].pk, "title": "T", "layer_name": "conv2",
            "confidence": 1.7}  # fmt: skip
    with nothing_written():
        response = client.post("/api/findings/", body, format="json")
    assert response.status_code == 400
    assert response.json() == {"confidence": ["Confidence must lie between 0 and 1."]}


def test_deleting_a_question_closes_the_gap_behind_it(api, kb, researcher_user):
    later = question_create(
        actor=researcher_user, survey=kb["survey"], position=2, text="Later?", kind="free_text"
    )
    extra = question_create(
        actor=researcher_user, survey=kb["survey"], position=3, text="Last?", kind="free_text"
    )
    response = api(researcher_user).delete(f"/api/questions/{later.pk}/")
    assert response.status_code == 204
    extra.refresh_from_db()
    assert extra.position == 2


def test_a_question_without_a_position_goes_after_the_last(api, kb, researcher_user):
    body = {"survey": kb["survey"].pk, "text": "Anything else?", "kind": "free_text"}
    response = api(researcher_user).post("/api/questions/", body, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["position"] == kb["question"].position + 1
    taken = {**body, "position": kb["question"].position}
    with nothing_written():
        clash = api(researcher_user).post("/api/questions/", taken, format="json")
    assert clash.status_code == 400
