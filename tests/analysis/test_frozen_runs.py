"""A run measures what was frozen into it when it was requested, whatever happens to the live
rows afterwards; each job records where it ran; a rerun of the same config is a reproduction;
failures say whether the request or the code was at fault."""

import datetime
import logging

import pytest
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone

from analysis import services
from analysis.engine.builder import build_model, save_weights
from analysis.engine.specs import count_parameters
from analysis.execution import compare_reproduction
from analysis.models import AnalysisRun
from kb.models import ArchitectureChange, Event, Finding, InsightFinding, Outcome, SubjectModel
from kb.services.subjects import subject_model_create
from tests.analysis import engine_helpers  # noqa: F401  (one torch thread)
from tests.analysis.jobs import QUICK, run_all
from tests.factories import SHAPES_SPEC, BuiltinModelFactory, ChangeFactory, FindingFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]


def test_an_experiment_request_freezes_the_change_the_model_and_every_arm(researcher_user):
    change = ChangeFactory(minimum_effect=0.02)
    run = services.experiment_request(
        actor=researcher_user, change=change, config={**QUICK, "seeds": 3}, dispatch=False
    )
    config = run.config
    assert config["change"] == {
        "id": change.pk, "operation": "widen_layer", "parameters": {"layer": "conv2", "units": 2}
    }  # fmt: skip
    assert config["model"]["architecture_spec"] == SHAPES_SPEC
    assert config["model"]["weights"] is None
    assert (config["metric"], config["direction"], config["minimum_effect"]) == (
        "test_accuracy", "increase", 0.02
    )  # fmt: skip
    assert set(config["arms"]) == {"baseline", "variant", "control"}
    assert config["plan"]["control"]["parameters"] == {"layer": "fc1", "units": 5}
    assert config["seeds"] == [0, 1, 2]
    assert len(run.config_digest) == 64 and run.reproduces is None


def test_an_experiment_measures_its_frozen_arms_after_the_live_rows_change(researcher_user):
    change = ChangeFactory()
    run = services.experiment_request(
        actor=researcher_user, change=change, config={**QUICK, "seeds": 3}, dispatch=False
    )
    frozen_arms = run.config["arms"]
    # Edits behind the services' back (the admin's and the API's edits are refused): neither
    # may reach the running experiment.
    ArchitectureChange.objects.filter(pk=change.pk).update(
        parameters={"layer": "conv1", "units": 7}, expected_metric="test_loss",
        expected_direction="decrease",
    )  # fmt: skip
    wider = {**SHAPES_SPEC, "layers": [dict(layer) for layer in SHAPES_SPEC["layers"]]}
    wider["layers"][0]["out_channels"] = 32
    SubjectModel.objects.filter(pk=change.target_model_id).update(architecture_spec=wider)

    assert run_all(run)[-1] == "finished"
    assert run.status == "succeeded", run.error
    for arm, results in run.result["arms"].items():
        assert {result["parameters"] for result in results} == {count_parameters(frozen_arms[arm])}
    assert run.result["aggregate"]["metric"] == "test_accuracy"
    assert run.result["plan"]["arms"] == frozen_arms
    assert Outcome.objects.get(analysis_run=run).metric == "test_accuracy"


def test_an_ablation_measures_the_units_frozen_when_it_was_requested(researcher_user):
    model = BuiltinModelFactory()
    finding = FindingFactory(subject_model=model, layer_name="conv2", unit_indices=[0, 1])
    run = services.ablation_request(
        actor=researcher_user, finding=finding, config=QUICK, dispatch=False
    )
    Finding.objects.filter(pk=finding.pk).update(layer_name="conv9", unit_indices=[99])

    assert run_all(run) == ["finished"]
    assert run.status == "succeeded", run.error
    assert run.config["finding"]["layer_name"] == "conv2"
    assert run.result["ablation"]["layer"] == "conv2"
    assert run.result["ablation"]["units"] == [0, 1]


def _model_with_weights(researcher_user, tmp_path) -> SubjectModel:
    weights = tmp_path / "shapes.safetensors"
    save_weights(build_model(SHAPES_SPEC), weights)
    with weights.open("rb") as handle:
        return subject_model_create(
            actor=researcher_user, name="Stored", kind="builtin",
            architecture_spec=SHAPES_SPEC, weights=File(handle, name="shapes.safetensors"),
        )  # fmt: skip


def test_weights_that_changed_on_disk_fail_the_run_as_a_bad_request(researcher_user, tmp_path):
    model = _model_with_weights(researcher_user, tmp_path)
    run = services.profile_request(
        actor=researcher_user, subject_model=model, config=QUICK, dispatch=False
    )
    assert run.config["model"]["weights_sha256"] == model.weights_sha256
    name = model.weights.name
    default_storage.delete(name)
    default_storage.save(name, ContentFile(b"other bytes"))

    assert run_all(run) == ["failed"]
    assert run.status == "failed"
    assert run.failure == AnalysisRun.Failure.BAD_REQUEST
    assert "no longer has the digest the run froze" in run.error
    assert not Finding.objects.filter(subject_model=model).exists()


def test_a_programming_error_fails_the_run_as_internal_with_the_traceback_logged(
    researcher_user, caplog, client
):
    model = BuiltinModelFactory()
    run = services.profile_request(
        actor=researcher_user, subject_model=model, config=QUICK, dispatch=False
    )
    broken = {key: value for key, value in run.config.items() if key != "model"}
    AnalysisRun.objects.filter(pk=run.pk).update(config=broken)

    with caplog.at_level(logging.ERROR, logger="analysis.execution"):
        assert run_all(run) == ["failed"]
    assert run.failure == AnalysisRun.Failure.INTERNAL
    assert run.error == "main: internal error (KeyError); the traceback is in the worker log"
    (record,) = [r for r in caplog.records if r.name == "analysis.execution"]
    assert record.exc_info[0] is KeyError
    finished = Event.objects.get(action="run_finished", target_id=run.pk)
    assert finished.changes == {"status": "failed", "failure": "internal"}
    client.force_login(researcher_user)
    page = client.get(reverse("run-detail", args=[run.pk])).content.decode()
    assert "Internal error: a fault in Insight KB, not in the request" in page


def test_every_job_records_its_environment_and_the_run_lists_them(researcher_user):
    model = BuiltinModelFactory()
    run = services.profile_request(
        actor=researcher_user, subject_model=model, config=QUICK, dispatch=False
    )
    assert run_all(run) == ["finished"]
    job = run.jobs.get()
    assert set(job.environment) == {
        "torch", "numpy", "python", "device", "threads", "code_revision", "host"
    }  # fmt: skip
    assert job.environment["device"] == "cpu" and job.environment["threads"] == 1
    assert run.environment["jobs"] == [{"environment": job.environment, "jobs": ["main"]}]


def test_status_changes_made_by_conditional_updates_are_in_the_event_log(researcher_user):
    model = BuiltinModelFactory()
    run = services.profile_request(
        actor=researcher_user, subject_model=model, config=QUICK, dispatch=False
    )
    run_all(run)
    log = list(
        Event.objects.filter(target_id=run.pk, target_type__model="analysisrun")
        .order_by("pk")
        .values_list("action", "changes")
    )
    assert log == [
        ("run_requested", {"kind": "profile"}),
        ("status_changed", {"status": ["queued", "running"]}),
        ("run_finished", {"status": "succeeded"}),
    ]


def test_a_retried_run_logs_its_way_back_to_the_queue(researcher_user):
    model = BuiltinModelFactory()
    run = services.profile_request(
        actor=researcher_user, subject_model=model, config=QUICK, dispatch=False
    )
    services.run_cancel(actor=researcher_user, run=run)
    services.run_retry(actor=researcher_user, run=run)
    actions = list(
        Event.objects.filter(target_id=run.pk, target_type__model="analysisrun")
        .order_by("pk")
        .values_list("action", "changes")
    )
    assert actions[1:] == [
        ("run_finished", {"status": "cancelled"}),
        ("status_changed", {"status": ["cancelled", "queued"]}),
        ("run_requested", {"kind": "profile"}),
    ]


def test_rerunning_the_same_config_is_recorded_as_a_bit_for_bit_reproduction(
    researcher_user, client
):
    change = ChangeFactory()
    settings = {**QUICK, "seeds": 3}
    first = services.experiment_request(
        actor=researcher_user, change=change, config=settings, dispatch=False
    )
    run_all(first)
    second = services.experiment_request(
        actor=researcher_user, change=change, config=settings, dispatch=False
    )
    assert second.reproduces == first and second.config_digest == first.config_digest
    run_all(second)
    assert second.status == "succeeded", second.error
    reproduction = second.result["reproduction"]
    # 3 arms x 3 seeds x 3 metrics (test accuracy, test loss, train loss)
    assert reproduction == {
        "of_run": first.pk, "compared": 27, "matched": True, "mismatched": 0, "mismatches": []
    }  # fmt: skip
    outcome = Outcome.objects.get(analysis_run=second)
    assert f"Reproduces run {first.pk}: all 27 per-seed values are identical" in outcome.notes
    # the scoreboard still counts the change once: its latest outcome
    assert change.outcomes.count() == 2
    client.force_login(researcher_user)
    page = client.get(reverse("run-detail", args=[second.pk])).content.decode()
    assert (
        f'Reproduces <a href="{reverse("run-detail", args=[first.pk])}">run {first.pk}</a>: all 27'
        in page
    )
    host = second.jobs.first().environment["host"]
    assert f'<th scope="row">{host}</th>' in page
    # the outcome shows where its jobs ran, next to the settings
    change_page = client.get(reverse("change-detail", args=[change.pk])).content.decode()
    torch_version = second.jobs.first().environment["torch"]
    assert f"<dt>Ran on</dt><dd>{host} (cpu; torch {torch_version}" in change_page
    assert "): 9 jobs</dd>" in change_page

    other = services.experiment_request(
        actor=researcher_user, change=change, config={**settings, "seeds": 4}, dispatch=False
    )
    assert other.reproduces is None


def test_the_motivating_finding_gives_the_concept_only_when_the_dataset_has_it(researcher_user):
    change = ChangeFactory()
    vague = FindingFactory(subject_model=change.target_model, concept="edges of a curve")
    InsightFinding.objects.create(insight=change.insight, finding=vague)
    run = services.experiment_request(
        actor=researcher_user, change=change, config={**QUICK, "seeds": 3}, dispatch=False
    )
    assert run.config["concept"] == "" and run.config["mechanism"] is None
    services.run_cancel(actor=researcher_user, run=run)
    measurable = FindingFactory(subject_model=change.target_model, concept="curvature")
    InsightFinding.objects.create(insight=change.insight, finding=measurable)
    run = services.experiment_request(
        actor=researcher_user, change=change, config={**QUICK, "seeds": 3}, dispatch=False
    )
    assert run.config["concept"] == "curvature"
    assert run.config["mechanism"] == {
        "layer": "conv2", "added_units": [8, 9], "concept": "curvature"
    }  # fmt: skip


def test_a_reproduction_counts_every_mismatch_and_lists_the_first_twenty():
    def results(value):
        row = {"test_accuracy": value, "test_loss": value}
        arms = ("baseline", "variant", "control")
        return {arm: [{"seed": seed, "metrics": row} for seed in range(5)] for arm in arms}

    earlier = AnalysisRun(pk=7, result={"arms": results(0.5)})
    reproduction = compare_reproduction(earlier, results(0.25))
    assert (reproduction["compared"], reproduction["mismatched"]) == (30, 30)
    assert len(reproduction["mismatches"]) == 20 and not reproduction["matched"]
    assert reproduction["mismatches"][0] == {
        "arm": "baseline", "seed": 0, "metric": "test_accuracy", "earlier": 0.5, "now": 0.25
    }  # fmt: skip


def test_a_job_taken_over_after_its_lease_ran_out_is_in_the_event_log(researcher_user, settings):
    run = services.profile_request(
        actor=researcher_user, subject_model=BuiltinModelFactory(), config=QUICK, dispatch=False
    )
    assert services.job_claim(run_id=run.pk, key="main") is not None
    stale = timezone.now() - datetime.timedelta(seconds=settings.ANALYSIS_JOB_LEASE_SECONDS + 1)
    run.jobs.update(heartbeat_at=stale)
    assert services.job_claim(run_id=run.pk, key="main").attempts == 2
    event = Event.objects.get(action="job_reclaimed", target_id=run.pk)
    assert event.changes == {"job": "main", "attempt": 2}
