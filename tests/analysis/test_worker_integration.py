"""Real worker processes on this machine's Redis run change experiments end to end."""

import os
import signal

import pytest
from django.core.files.storage import default_storage

from analysis.models import AnalysisJob, AnalysisRun
from analysis.services import experiment_request
from kb.models import Event, Outcome
from tests.analysis.workers import (
    celery_worker,
    child_pids,
    require_redis,
    unique_queue,
    wait_for,
)
from tests.factories import ChangeFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TINY_DATA = {"name": "shapes", "n": 160}
RUN_TIMEOUT = 240


@pytest.fixture
def worker_settings(settings, tmp_path):
    require_redis()
    settings.ANALYSIS_QUEUE = unique_queue()
    # Long enough that a busy host (SQLite's write lock, the other test process training)
    # never lets a live job's lease run out; the killed-worker test shortens it.
    settings.ANALYSIS_JOB_LEASE_SECONDS = 60
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings


def _finished(run: AnalysisRun):
    run.refresh_from_db()
    return run if run.is_finished else None


def test_worker_runs_an_experiment_and_writes_one_outcome(
    worker_settings, tmp_path, researcher_user
):
    change = ChangeFactory(parameters={"layer": "conv2", "units": 2})
    with celery_worker(
        queue=worker_settings.ANALYSIS_QUEUE,
        log_path=tmp_path / "worker.log",
        media_root=worker_settings.MEDIA_ROOT,
        concurrency=2,
    ):
        run = experiment_request(
            actor=researcher_user,
            change=change,
            config={
                "dataset": TINY_DATA,
                "train": {"epochs": 1},
                "seeds": 3,
            },
        )
        wait_for(
            lambda: _finished(run),
            timeout=RUN_TIMEOUT,
            describe=lambda: (tmp_path / "worker.log").read_text()[-3000:],
        )
    assert run.status == AnalysisRun.Status.SUCCEEDED, run.error
    assert run.progress_percent == 100
    outcome = Outcome.objects.get()
    assert outcome.analysis_run == run
    assert outcome.source == Outcome.Source.ANALYSIS_RUN
    assert len(outcome.baseline_values) == len(outcome.variant_values) == 3
    assert len(outcome.control_values) == 3
    assert outcome.verdict == run.result["aggregate"]["verdict"]
    change.refresh_from_db()
    assert change.status == "evaluated"
    assert sorted(run.jobs.values_list("attempts", flat=True)) == [1] * 9
    for path in run.result["figures"].values():
        assert default_storage.open(path).read(8) == b"\x89PNG\r\n\x1a\n"
    (place,) = run.environment["jobs"]  # one worker: one environment for every job
    assert place["environment"]["torch"].startswith("2.13.0")
    assert place["environment"]["host"]
    assert sorted(place["jobs"]) == sorted(run.jobs.values_list("key", flat=True))
    assert run.config["seeds"] == [0, 1, 2]
    assert Event.objects.filter(action="run_finished", target_id=run.pk).count() == 1


def test_killed_worker_child_leads_to_redelivery_and_one_outcome(
    worker_settings, tmp_path, researcher_user
):
    worker_settings.ANALYSIS_JOB_LEASE_SECONDS = 3  # the dead job is claimed again soon
    change = ChangeFactory(parameters={"layer": "conv2", "units": 2})
    log = tmp_path / "worker.log"
    with celery_worker(
        queue=worker_settings.ANALYSIS_QUEUE,
        log_path=log,
        media_root=worker_settings.MEDIA_ROOT,
        concurrency=1,
    ) as worker:
        run = experiment_request(
            actor=researcher_user,
            change=change,
            config={
                "dataset": {"name": "shapes", "n": 600},
                # progress comes per epoch: 12 keep a job mid-training for a few tenths of a
                # second even on a fast CPU (4 took ~0.1 s there)
                "train": {"epochs": 12},
                "seeds": 3,
            },
        )
        # Given a job that has reported progress at least once (per epoch) and has half its
        # training left, so that it is still running when it is killed ...
        job = wait_for(
            lambda: AnalysisJob.objects.filter(
                run=run, status="running", progress__gt=0, progress__lt=0.5
            ).first(),
            timeout=120,
            interval=0.05,
            describe=lambda: log.read_text()[-3000:],
        )
        # ... when the pool process running it is killed outright,
        children = child_pids(worker.pid)
        assert children, "the prefork pool has no child process"
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        wait_for(
            lambda: _finished(run), timeout=RUN_TIMEOUT, describe=lambda: log.read_text()[-3000:]
        )
    # then the job was delivered again, and the run completed with exactly one outcome.
    assert run.status == AnalysisRun.Status.SUCCEEDED, run.error
    job.refresh_from_db()
    assert job.status == AnalysisJob.Status.DONE
    assert job.attempts == 2
    assert Outcome.objects.filter(change=change).count() == 1
    assert Event.objects.filter(action="run_finished", target_id=run.pk).count() == 1
    assert "WorkerLostError" in log.read_text() or "signal 9" in log.read_text()
