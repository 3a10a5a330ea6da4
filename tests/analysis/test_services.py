"""Run requests, claims, leases, progress, cancel and retry: the state machine behind tasks."""

import datetime

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from analysis import services
from analysis.models import AnalysisJob, AnalysisRun
from kb.models import Event
from tests.factories import (
    BuiltinModelFactory,
    ChangeFactory,
    FindingFactory,
    SubjectModelFactory,
)
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db

QUICK = {"dataset": {"name": "shapes", "n": 80}, "train": {"epochs": 1}, "seeds": 3}


def _experiment(actor, **config):
    return services.experiment_request(
        actor=actor, change=ChangeFactory(), config={**QUICK, **config}, dispatch=False
    )


# --- requests -----------------------------------------------------------------------------


def test_experiment_request_saves_the_run_and_one_job_per_arm_and_seed(researcher_user):
    run = _experiment(researcher_user)
    assert run.status == AnalysisRun.Status.QUEUED
    assert sorted(run.jobs.values_list("key", flat=True)) == sorted(
        f"{arm}:{seed}" for arm in ("baseline", "variant", "control") for seed in (0, 1, 2)
    )
    assert run.config["dataset"] == {"name": "shapes", "n": 80, "seed": 0, "size": 12}
    assert run.change.status == "running"
    assert Event.objects.filter(action="run_requested", target_id=run.pk).count() == 1


def test_request_dispatches_only_after_commit(researcher_user, django_capture_on_commit_callbacks):
    change = ChangeFactory()
    with django_capture_on_commit_callbacks() as callbacks:
        services.experiment_request(actor=researcher_user, change=change, config=QUICK)
    assert len(callbacks) == 1


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({"seeds": 2}, "seeds", "use 3 to 20 seeds, got 2."),
        ({"seeds": [1, 1, 2]}, "seeds", "seeds must be distinct."),
        ({"train": {"epochs": 0}}, "train.epochs", "must be a whole number from 1 to 100, got 0."),
        ({"train": {"epochs": 1000}}, "train.epochs", "from 1 to 100, got 1000."),
        ({"train": {"momentum": 0.9}}, "train.momentum", "unknown setting."),
        ({"dataset": {"name": "imagenet"}}, "dataset.name", "must be one of"),
        ({"dataset": {"name": "shapes", "n": 5}}, "dataset.n", "from 40 to 50000 for shapes"),
        ({"dataset": {"name": "digits"}}, "dataset.name", "digits gives inputs [1, 8, 8]"),
        (
            {"dataset": {"name": "shapes", "size": 20}},
            "dataset.size",
            "the model takes [1, 12, 12]",
        ),
        ({"seeds": 10**30}, "seeds", "use 3 to 20 seeds, got a larger number."),
        ({"seeds": [0, 1, 2**63]}, "seeds", "each seed must be a whole number from 0 to"),
        ({"concept": "x" * 10**6}, "concept", "at most 100 characters."),
        ({"colour": "red"}, "colour", "unknown setting."),
    ],
)
def test_bad_experiment_config_is_refused_and_nothing_written(
    researcher_user, config, field, message
):
    change = ChangeFactory()
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        services.experiment_request(
            actor=researcher_user, change=change, config={**QUICK, **config}, dispatch=False
        )
    assert message in " ".join(excinfo.value.message_dict[field])
    change.refresh_from_db()
    assert change.status == "proposed"


def test_change_without_budget_matched_control_is_refused(researcher_user):
    change = ChangeFactory(parameters={"layer": "conv1", "units": 2})
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        services.experiment_request(actor=researcher_user, change=change, config=QUICK)
    assert "no budget-matched control exists" in excinfo.value.message_dict["change"][0]


def test_manual_change_cannot_be_run(researcher_user):
    change = ChangeFactory(operation="manual", parameters={"description": "x"})
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        services.experiment_request(actor=researcher_user, change=change, config=QUICK)
    assert excinfo.value.message_dict == {
        "change": ["A manual change cannot be run; record its outcome."]
    }


def test_external_models_cannot_be_profiled_or_ablated(researcher_user):
    model = SubjectModelFactory()
    finding = FindingFactory(subject_model=model)
    with nothing_written():
        with pytest.raises(ValidationError):
            services.profile_request(actor=researcher_user, subject_model=model)
        with pytest.raises(ValidationError):
            services.ablation_request(actor=researcher_user, finding=finding)


def test_ablation_needs_units(researcher_user):
    finding = FindingFactory(subject_model=BuiltinModelFactory(), layer_name="conv1",
                             unit_indices=[])  # fmt: skip
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        services.ablation_request(actor=researcher_user, finding=finding)
    assert excinfo.value.message_dict == {"finding": ["The finding names no units to ablate."]}


# --- claims and leases --------------------------------------------------------------------


def test_a_job_is_claimed_once(researcher_user):
    run = _experiment(researcher_user)
    first = services.job_claim(run_id=run.pk, key="baseline:0")
    second = services.job_claim(run_id=run.pk, key="baseline:0")
    assert first is not None and first.attempts == 1
    assert second is None
    run.refresh_from_db()
    assert run.status == AnalysisRun.Status.RUNNING


def test_an_expired_lease_can_be_taken_over(researcher_user, settings):
    settings.ANALYSIS_JOB_LEASE_SECONDS = 10
    run = _experiment(researcher_user)
    services.job_claim(run_id=run.pk, key="variant:1")
    stale = timezone.now() - datetime.timedelta(seconds=11)
    AnalysisJob.objects.filter(run=run, key="variant:1").update(heartbeat_at=stale)
    job = services.job_claim(run_id=run.pk, key="variant:1")
    assert job is not None and job.attempts == 2


def test_a_job_whose_worker_is_lost_again_and_again_fails_its_run(researcher_user, settings):
    settings.ANALYSIS_JOB_LEASE_SECONDS, settings.ANALYSIS_JOB_MAX_ATTEMPTS = 10, 2
    run = _experiment(researcher_user)
    stale = timezone.now() - datetime.timedelta(seconds=11)
    for attempt in (1, 2):
        assert services.job_claim(run_id=run.pk, key="variant:1").attempts == attempt
        AnalysisJob.objects.filter(run=run, key="variant:1").update(heartbeat_at=stale)
    assert services.job_claim(run_id=run.pk, key="variant:1") is None
    run.refresh_from_db()
    assert (run.status, run.failure) == ("failed", "internal")
    assert run.error == (
        "variant:1: its worker was lost 2 times (killed, or out of memory?); it is not tried again"
    )
    assert AnalysisJob.objects.get(run=run, key="variant:1").status == "failed"


def test_a_finished_job_is_not_claimed_again(researcher_user):
    run = _experiment(researcher_user)
    job = services.job_claim(run_id=run.pk, key="control:2")
    assert services.job_complete(job=job, result={"seed": 2}) is True
    assert services.job_complete(job=job, result={"seed": 99}) is False
    assert services.job_claim(run_id=run.pk, key="control:2") is None
    job.refresh_from_db()
    assert job.result == {"seed": 2}
    assert services.job_is_live(job=job) == "done"


def test_progress_rolls_up_and_renews_the_lease(researcher_user):
    run = _experiment(researcher_user)
    job = services.job_claim(run_id=run.pk, key="baseline:0")
    before = job.heartbeat_at
    services.job_progress(job=job, fraction=0.9, message="epoch 9/10")
    run.refresh_from_db()
    job.refresh_from_db()
    assert run.progress_percent == 10  # 0.9 of one job out of nine
    assert run.progress_message == "epoch 9/10"
    assert job.heartbeat_at >= before


def test_cancelling_stops_jobs_and_frees_the_change(researcher_user):
    run = _experiment(researcher_user)
    job = services.job_claim(run_id=run.pk, key="baseline:0")
    services.run_cancel(actor=researcher_user, run=run)
    assert run.status == AnalysisRun.Status.CANCELLED
    with pytest.raises(services.RunCancelled):
        services.job_progress(job=job, fraction=0.5, message="x")
    assert services.job_claim(run_id=run.pk, key="baseline:1") is None
    run.change.refresh_from_db()
    assert run.change.status == "proposed"
    with pytest.raises(ValidationError, match="A cancelled run cannot be cancelled."):
        services.run_cancel(actor=researcher_user, run=run)


def test_a_run_finishes_once(researcher_user):
    run = _experiment(researcher_user)
    services.job_claim(run_id=run.pk, key="baseline:0")
    calls = []
    assert services.run_finish(run_id=run.pk, status="succeeded", result={"a": 1},
                               write_back=calls.append)  # fmt: skip
    assert not services.run_finish(run_id=run.pk, status="succeeded", result={"a": 2},
                                   write_back=calls.append)  # fmt: skip
    run.refresh_from_db()
    assert (run.status, run.result, run.progress_percent) == ("succeeded", {"a": 1}, 100)
    assert len(calls) == 1
    assert Event.objects.filter(action="run_finished", target_id=run.pk).count() == 1


def test_a_failed_run_keeps_its_error_and_can_be_retried(
    researcher_user, django_capture_on_commit_callbacks
):
    run = _experiment(researcher_user)
    done = services.job_claim(run_id=run.pk, key="baseline:0")
    services.job_complete(job=done, result={"seed": 0})
    failing = services.job_claim(run_id=run.pk, key="variant:0")
    services.job_fail(job=failing, error="ValueError: boom", failure="internal")
    run.refresh_from_db()
    assert run.status == "failed"
    assert run.error == "variant:0: ValueError: boom"
    with django_capture_on_commit_callbacks() as callbacks:
        services.run_retry(actor=researcher_user, run=run)
    assert len(callbacks) == 1
    assert run.status == "queued" and run.error == ""
    statuses = dict(run.jobs.values_list("key", "status"))
    assert statuses["baseline:0"] == "done"
    assert statuses["variant:0"] == "pending"
    with pytest.raises(ValidationError, match="A queued run cannot be retried."):
        services.run_retry(actor=researcher_user, run=run)


def test_a_change_runs_one_experiment_at_a_time(researcher_user):
    run = _experiment(researcher_user)
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        services.experiment_request(actor=researcher_user, change=run.change, config=QUICK)
    assert excinfo.value.message_dict == {
        "change": [f"Run {run.pk} of this change is still in progress."]
    }
