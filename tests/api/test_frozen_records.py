"""Through the API as on the pages: a measured change is fixed (copy it instead), a measured
model keeps its spec, a run shows its frozen config and where its jobs ran, an outcome shows
its settings, and a hand-entered verdict must agree with its values."""

import pytest

from analysis import services as analysis_services
from analysis.models import AnalysisRun
from kb.models import ArchitectureChange, Event, Outcome
from tests.api.writes import if_match
from tests.factories import SHAPES_SPEC
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(api, researcher_user):
    return api(researcher_user)


def test_a_measured_change_is_refused_a_patch_and_copied_instead(client, kb):
    change = kb["change"]  # evaluated, with a run
    with nothing_written():
        response = client.patch(
            f"/api/changes/{change.pk}/", {"parameters": {"layer": "conv1", "units": 1}},
            format="json", headers=if_match(change),
        )  # fmt: skip
    assert response.status_code == 400
    assert response.json() == {
        "non_field_errors": [
            "This change is running, so it can no longer be edited. Copy it as a new change "
            "to try something else."
        ]
    }
    response = client.post(f"/api/changes/{change.pk}/copy/")
    assert response.status_code == 201
    copy = ArchitectureChange.objects.get(pk=response.json()["id"])
    assert response["Location"] == response.json()["url"]
    assert (copy.status, copy.parameters, copy.insight_id) == (
        "proposed", {"layer": "conv2", "units": 2}, change.insight_id
    )  # fmt: skip
    edited = client.patch(
        f"/api/changes/{copy.pk}/", {"parameters": {"layer": "conv1", "units": 4}},
        format="json", headers=if_match(copy),
    )  # fmt: skip
    assert edited.status_code == 200 and edited.json()["parameters"]["layer"] == "conv1"


def test_copy_needs_the_permission_to_propose_changes(api, viewer_user, kb):
    with nothing_written():
        response = api(viewer_user).post(f"/api/changes/{kb['change'].pk}/copy/")
    assert response.status_code == 403


def test_a_measured_model_keeps_its_spec_but_not_its_description(client, kb):
    model = kb["model"]  # the change's run froze it
    other = {**SHAPES_SPEC, "num_classes": 4}
    other["layers"] = [dict(layer) for layer in SHAPES_SPEC["layers"]]
    other["layers"][0]["out_channels"] = 32
    with nothing_written():
        response = client.patch(
            f"/api/models/{model.pk}/", {"architecture_spec": other}, format="json"
        )
    assert response.status_code == 400
    assert list(response.json()) == ["architecture_spec"]
    response = client.patch(f"/api/models/{model.pk}/", {"family": "tiny"}, format="json")
    assert response.status_code == 200 and response.json()["family"] == "tiny"


def test_a_run_shows_its_frozen_config_environment_and_failure(client, kb):
    run = kb["run"]
    body = client.get(f"/api/runs/{run.pk}/").json()
    assert body["config"]["arms"].keys() == {"baseline", "variant", "control"}
    assert body["config"]["change"] == {
        "id": kb["change"].pk, "operation": "widen_layer",
        "parameters": {"layer": "conv2", "units": 2},
    }  # fmt: skip
    assert body["config_digest"] == run.config_digest
    assert (body["failure"], body["reproduces"], body["environment"]) == ("", None, {})
    assert [job["environment"] for job in body["jobs"]] == [{}] * 9
    environment = {"torch": "2.13.0", "host": "worker-1", "device": "cpu"}
    run.jobs.update(environment=environment)
    AnalysisRun.objects.filter(pk=run.pk).update(
        status="failed", failure="bad_request", environment={"jobs": []}
    )
    body = client.get(f"/api/runs/{run.pk}/").json()
    assert body["failure"] == "bad_request"
    assert body["jobs"][0]["environment"] == environment


def test_an_outcome_shows_the_settings_it_was_measured_with(client, kb):
    run = kb["run"]
    measured = Outcome.objects.create(
        change=kb["change"], metric="test_accuracy", baseline_values=[0.5, 0.6, 0.55],
        variant_values=[0.6, 0.62, 0.64], effect=0.07, verdict="inconclusive",
        source=Outcome.Source.ANALYSIS_RUN, analysis_run=run,
    )  # fmt: skip
    body = client.get(f"/api/outcomes/{measured.pk}/").json()
    assert body["settings"] == {
        "dataset": "shapes", "dataset_size": 2000, "epochs": 1, "seeds": [0, 1, 2]
    }  # fmt: skip
    manual = client.get(f"/api/outcomes/{kb['outcome'].pk}/").json()
    assert manual["settings"] is None


def test_a_manual_verdict_is_computed_and_a_contradicting_one_refused(client, kb):
    change = kb["change"]
    values = {"baseline_values": [0.5, 0.52, 0.51], "variant_values": [0.6, 0.63, 0.61]}
    response = client.post("/api/outcomes/", {"change": change.pk, **values}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["verdict"] == "improved"
    with nothing_written():
        refused = client.post(
            "/api/outcomes/", {"change": change.pk, "verdict": "worse", **values}, format="json"
        )
    assert refused.status_code == 400
    assert list(refused.json()) == ["verdict"]
    assert "The values give 'improved'" in refused.json()["verdict"][0]


def test_status_changes_of_a_run_are_in_the_event_log(client, kb):
    run = kb["run"]
    analysis_services.run_cancel(actor=None, run=run)
    response = client.get("/api/events/", {"target_type": "analysis.analysisrun"})
    actions = [(event["action"], event["changes"]) for event in response.json()["results"]]
    assert ("run_finished", {"status": "cancelled"}) in actions
    assert Event.objects.filter(target_id=run.pk, action="run_requested").exists()
