"""Faults survived with real processes: the broker stopped while runs are requested, a whole
worker killed in the middle of a job, the database cut off in the middle of a run. In each,
every run completes exactly once (analysis/services.py: run_dispatch, runs_sweep,
jobs_release_worker; kb/celery.py: the sweeper in every worker)."""

import statistics
import time

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from analysis.models import AnalysisJob, AnalysisRun
from analysis.services import experiment_request
from kb.models import Event, Outcome
from tests.analysis.workers import (
    RedisServer,
    celery_worker,
    database_cut_off,
    kill_whole_worker,
    require_postgresql,
    require_redis,
    unique_queue,
    wait_for,
    web_broker,
)
from tests.factories import BuiltinModelFactory, ChangeFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

QUICK = {"dataset": {"name": "shapes", "n": 80}, "train": {"epochs": 1}}
# Two seeds (six jobs), each long enough to be cut in the middle of: progress comes per epoch,
# and with 4 epochs a fast CPU (2026-12-01) finished the last job in 0.2 s, before a poll
# every 50 ms saw it mid-training.
INTERRUPTIBLE = {"dataset": {"name": "shapes", "n": 400}, "train": {"epochs": 12}, "seeds": 2}
RUNS_DURING_OUTAGE = 20
QUEUE_DOWN = "will start when the queue is back"


@pytest.fixture
def fault_settings(settings, tmp_path):
    settings.ANALYSIS_QUEUE = unique_queue()
    settings.ANALYSIS_SWEEP_SECONDS = 1
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings


@pytest.fixture
def worker(fault_settings, tmp_path):
    """Starts a worker on the test's queue (again, after a kill: same node name)."""
    log = tmp_path / "worker.log"

    def start(**options):
        return celery_worker(
            queue=fault_settings.ANALYSIS_QUEUE,
            log_path=log,
            media_root=fault_settings.MEDIA_ROOT,
            **options,
        )

    start.log = log
    return start


def _all_finished(runs):
    return all(run.is_finished for run in AnalysisRun.objects.filter(pk__in=runs))


def _last_job_mid_training(run: AnalysisRun):
    """The run's job that is running and has reported progress, once every other job is
    done (jobs run in order on one worker), so the queue holds nothing else when it is cut."""
    jobs = list(run.jobs.all())
    running = [job for job in jobs if job.status == "running" and job.progress > 0]
    done = [job for job in jobs if job.status == "done"]
    return running[0] if len(running) == 1 and len(done) == len(jobs) - 1 else None


def _interruptible_experiment(actor) -> AnalysisRun:
    change = ChangeFactory(parameters={"layer": "conv2", "units": 2})
    return experiment_request(actor=actor, change=change, config=INTERRUPTIBLE, min_seeds=2)


def test_runs_requested_while_the_broker_is_down_all_run_once_when_it_is_back(
    fault_settings, worker, tmp_path, researcher_user, client
):
    model = BuiltinModelFactory()
    broker = RedisServer(tmp_path)
    broker.start()
    api = APIClient()
    api.force_authenticate(researcher_user)
    client.force_login(researcher_user)
    with web_broker(broker.url), worker(concurrency=2, broker_url=broker.url):
        # Given a stopped broker, when runs are requested through the API ...
        broker.stop()
        seconds = []
        for _ in range(RUNS_DURING_OUTAGE):
            started = time.monotonic()
            response = api.post(
                reverse("api:subjectmodel-profile", args=[model.pk]), {"config": QUICK}
            )
            seconds.append(time.monotonic() - started)
            # ... each is accepted, saved as queued, and the caller told it waits for the queue;
            assert response.status_code == 202, response.content
            assert (response.json()["status"], response.json()["waiting_for_queue"]) == (
                "queued",
                True,
            )
        # the pages and forms work too, and say so.
        form = client.post(
            reverse("model-profile", args=[model.pk]),
            {"dataset": "shapes", "dataset_size": 80, "epochs": 1, "concept": ""},
            follow=True,
        )
        assert QUEUE_DOWN in form.content.decode()
        page = client.get(AnalysisRun.objects.first().get_absolute_url())
        assert "this run is saved and will start when the queue is back" in page.content.decode()
        runs = list(AnalysisRun.objects.values_list("pk", flat=True))
        assert len(runs) == RUNS_DURING_OUTAGE + 1
        assert set(AnalysisRun.objects.values_list("status", "dispatched_at")) == {("queued", None)}
        # When the broker is back, the workers' sweeper sends every run.
        broker.start()
        wait_for(
            lambda: _all_finished(runs),
            timeout=240,
            describe=lambda: worker.log.read_text()[-3000:],
        )
    broker.stop()
    print(
        f"\nrun request with the broker down: median {statistics.median(seconds):.3f}s, "
        f"range {min(seconds):.3f}-{max(seconds):.3f}s"
    )
    assert max(seconds) < 2
    # Every run succeeded, each job ran once, and each run finished once.
    assert set(AnalysisRun.objects.values_list("status", flat=True)) == {"succeeded"}
    assert set(AnalysisJob.objects.values_list("attempts", flat=True)) == {1}
    finished = Event.objects.filter(action="run_finished").values_list("target_id", flat=True)
    assert sorted(finished) == sorted(runs)


def test_a_whole_worker_killed_mid_job_runs_the_job_again_soon_after_it_restarts(
    fault_settings, worker, researcher_user
):
    require_redis()
    # The job's lease outlasts the test: only the restarted worker can give it back.
    fault_settings.ANALYSIS_JOB_LEASE_SECONDS = 600
    run = _interruptible_experiment(researcher_user)
    with worker() as first:
        job = wait_for(
            lambda: _last_job_mid_training(run),
            timeout=120,
            interval=0.05,
            describe=lambda: worker.log.read_text()[-3000:],
        )
        kill_whole_worker(first)
    restarted = time.monotonic()
    with worker():
        ready = time.monotonic() - restarted
        wait_for(
            lambda: AnalysisJob.objects.filter(pk=job.pk, attempts=2).exists(),
            timeout=30,
            describe=lambda: worker.log.read_text()[-3000:],
        )
        claimed_again = time.monotonic() - restarted
        wait_for(
            lambda: _all_finished([run.pk]),
            timeout=120,
            describe=lambda: worker.log.read_text()[-3000:],
        )
    print(
        f"\njob claimed again {claimed_again:.1f}s after the worker was started again "
        f"({ready:.1f}s of it starting up)"
    )
    # The restarted worker gave the job back itself (the log line below), long before its
    # 600 s lease could run out. That is the behaviour checked; the time (about 5-10 s after
    # the worker is ready on a quiet host, reported above) is a measurement, and a host busy
    # with other tests stretches it, so the bound only separates "at restart" from "at lease".
    assert claimed_again - ready < 60
    run.refresh_from_db()
    assert run.status == AnalysisRun.Status.SUCCEEDED, run.error
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("done", 2)
    assert Outcome.objects.filter(change=run.change).count() == 1
    assert "gave back 1 job(s) held by" in worker.log.read_text()


def test_a_run_finishes_when_its_database_is_cut_off_in_the_middle(
    fault_settings, worker, researcher_user
):
    require_redis()
    require_postgresql()
    fault_settings.ANALYSIS_JOB_LEASE_SECONDS = 3
    run = _interruptible_experiment(researcher_user)
    with worker():
        wait_for(
            lambda: _last_job_mid_training(run),
            timeout=120,
            interval=0.05,
            describe=lambda: worker.log.read_text()[-3000:],
        )
        with database_cut_off():
            time.sleep(4)
        wait_for(
            lambda: _all_finished([run.pk]),
            timeout=120,
            describe=lambda: worker.log.read_text()[-3000:],
        )
    run.refresh_from_db()
    assert run.status == AnalysisRun.Status.SUCCEEDED, run.error
    assert not run.jobs.exclude(status="done").exists()
    # The worker felt the outage (its connection was cut); whether the job mid-training had to
    # be claimed again depends on when it next needed the database, so that is not asserted.
    assert Outcome.objects.filter(change=run.change).count() == 1
    assert "OperationalError" in worker.log.read_text()
