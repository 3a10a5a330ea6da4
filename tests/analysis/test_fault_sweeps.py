"""Dispatch and the sweeper's rules, on the real broker: a run the broker did not take stays
queued and is sent once later; a job whose lease ran out, or whose worker restarted, goes
back to the queue once. (tests/analysis/test_faults.py runs the same with worker processes.)"""

import datetime
import io
import logging

import pytest
import redis
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from analysis import services
from analysis.dispatch import BROKER_MARK
from analysis.models import AnalysisJob
from tests.analysis.workers import (
    RedisServer,
    free_port,
    require_redis,
    unique_queue,
    web_broker,
)
from tests.factories import ChangeFactory

pytestmark = pytest.mark.django_db

QUICK = {"dataset": {"name": "shapes", "n": 80}, "train": {"epochs": 1}, "seeds": 3}


@pytest.fixture
def queue(settings):
    """A queue of the test's own on the configured Redis, emptied afterwards."""
    require_redis()
    settings.ANALYSIS_QUEUE = unique_queue()
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.set(BROKER_MARK, "1")  # a broker the sweeper has seen before: nothing was lost
    yield lambda: broker.llen(settings.ANALYSIS_QUEUE)
    broker.delete(settings.ANALYSIS_QUEUE)


def _requested(actor):
    """A run whose on-commit dispatch never ran (the test's transaction never commits)."""
    return services.experiment_request(actor=actor, change=ChangeFactory(), config=QUICK)


def test_a_run_the_broker_refuses_stays_queued_and_the_sweep_sends_it_once(
    queue, researcher_user, caplog
):
    run = _requested(researcher_user)
    with web_broker(f"redis://127.0.0.1:{free_port()}/0"), caplog.at_level(logging.WARNING):
        assert services.run_dispatch(run_id=run.pk) is False
    run.refresh_from_db()
    assert (run.status, run.dispatched_at, run.waiting_for_queue) == ("queued", None, True)
    assert queue() == 0
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "analysis.dispatch"]
    assert warning.startswith(f"broker unavailable, 9 job(s) of run(s) [{run.pk}] not sent")
    assert researcher_user.username not in warning

    assert services.runs_sweep() == services.Swept(runs=1, jobs=0)
    assert services.runs_sweep() == services.Swept(runs=0, jobs=0)
    assert services.run_dispatch(run_id=run.pk) is True  # already sent: nothing more
    run.refresh_from_db()
    assert run.dispatched_at is not None and not run.waiting_for_queue
    assert queue() == 9


def test_the_sweep_sends_a_job_whose_lease_ran_out_once(queue, researcher_user):
    run = _requested(researcher_user)
    services.run_dispatch(run_id=run.pk)
    services.job_claim(run_id=run.pk, key="baseline:0", worker="w1@host")
    services.job_claim(run_id=run.pk, key="baseline:1", worker="w1@host")
    expired = timezone.now() - datetime.timedelta(seconds=settings.ANALYSIS_JOB_LEASE_SECONDS + 1)
    AnalysisJob.objects.filter(run=run, key="baseline:0").update(heartbeat_at=expired)

    assert services.runs_sweep() == services.Swept(runs=0, jobs=1)
    assert services.runs_sweep() == services.Swept(runs=0, jobs=0)
    jobs = dict(run.jobs.values_list("key", "status"))
    assert (jobs["baseline:0"], jobs["baseline:1"]) == ("pending", "running")
    assert queue() == 9 + 1


def test_a_restarted_worker_gives_back_only_the_jobs_its_previous_life_held(queue, researcher_user):
    run = _requested(researcher_user)
    services.run_dispatch(run_id=run.pk)
    services.job_claim(run_id=run.pk, key="baseline:0", worker="w1@host")
    services.job_claim(run_id=run.pk, key="baseline:1", worker="w2@host")

    assert services.jobs_release_worker(worker="w1@host") == 1
    assert services.jobs_release_worker(worker="w1@host") == 0
    assert services.jobs_release_worker(worker="") == 0
    jobs = {key: (status, worker) for key, status, worker in run.jobs.values_list(
        "key", "status", "claimed_by")}  # fmt: skip
    assert (jobs["baseline:0"], jobs["baseline:1"]) == (("pending", ""), ("running", "w2@host"))
    assert queue() == 9 + 1


def test_sweep_runs_command_sends_what_waits_and_says_when_the_broker_is_down(
    queue, researcher_user
):
    _requested(researcher_user)
    with (
        web_broker(f"redis://127.0.0.1:{free_port()}/0"),
        pytest.raises(CommandError, match="The broker is not answering"),
    ):
        call_command("sweep_runs")
    out = io.StringIO()
    call_command("sweep_runs", stdout=out)
    assert out.getvalue() == "Sent 1 run(s) and 0 expired job(s).\n"
    assert queue() == 9


def test_a_broker_restarted_empty_gets_the_live_runs_again_once(
    settings, tmp_path, researcher_user
):
    """Redis without persistence forgets its queue when it restarts: the sweep that finds
    its mark gone sends every live run again, once."""
    settings.ANALYSIS_QUEUE = unique_queue()
    broker = RedisServer(tmp_path)
    broker.start()
    try:
        with web_broker(broker.url):
            assert services.runs_sweep() == services.Swept()  # marks the new broker
            run = _requested(researcher_user)
            services.run_dispatch(run_id=run.pk)
            queued = redis.Redis.from_url(broker.url)
            assert queued.llen(settings.ANALYSIS_QUEUE) == 9
            broker.stop()
            broker.start()
            assert queued.llen(settings.ANALYSIS_QUEUE) == 0

            assert services.runs_sweep() == services.Swept(runs=1)
            assert services.runs_sweep() == services.Swept()
            assert queued.llen(settings.ANALYSIS_QUEUE) == 9
    finally:
        broker.stop()


@pytest.mark.usefixtures("media")
def test_a_run_whose_worker_died_before_finishing_it_is_finished_after_a_nudge(
    queue, researcher_user
):
    """Every job done, the run still running: the worker that completed the last job died
    before aggregating. Once a lease has passed the sweep sends one done job again, once
    per lease; the worker that receives it finds the job done and finishes the run."""
    from analysis.execution import JOB_RUNNERS, execute_job
    from analysis.models import AnalysisRun
    from tests.analysis.jobs import QUICK as SMALL
    from tests.factories import BuiltinModelFactory

    run = services.profile_request(
        actor=researcher_user, subject_model=BuiltinModelFactory(),
        config={**SMALL, "concept": "curvature"}, dispatch=False,
    )  # fmt: skip
    job = services.job_claim(run_id=run.pk, key="main", worker="w1@host")
    services.job_complete(job=job, result=JOB_RUNNERS[run.kind](job))  # ... and the worker dies
    assert services.runs_sweep() == services.Swept()  # the last job finished just now
    past = timezone.now() - datetime.timedelta(seconds=settings.ANALYSIS_JOB_LEASE_SECONDS + 5)
    AnalysisRun.objects.filter(pk=run.pk).update(dispatched_at=past)
    assert services.runs_sweep() == services.Swept()  # ... more than a lease ago, not yet
    run.jobs.update(finished_at=past)
    assert services.runs_sweep() == services.Swept(unfinished=1)
    assert services.runs_sweep() == services.Swept()  # nudged again only after a lease
    assert queue() == 1
    out = io.StringIO()
    AnalysisRun.objects.filter(pk=run.pk).update(dispatched_at=past)
    call_command("sweep_runs", stdout=out)
    assert "1 run(s) whose jobs were done but that were never finished" in out.getvalue()

    assert execute_job(run_id=run.pk, key="main", worker="w2@host") == "finished"
    run.refresh_from_db()
    assert run.status == "succeeded" and run.result["localisation"]
    AnalysisRun.objects.filter(pk=run.pk).update(dispatched_at=past)
    assert services.runs_sweep() == services.Swept()  # finished: nothing to nudge


@pytest.mark.usefixtures("media")
@pytest.mark.django_db(transaction=True)
def test_retrying_a_run_whose_jobs_were_all_done_sends_one_to_finish_it(queue, researcher_user):
    """Cancelled while stuck between its last job and its finish, then retried: no job is
    left to send, so one done job goes again at once, and its worker finishes the run."""
    from analysis.execution import JOB_RUNNERS, execute_job
    from tests.analysis.jobs import QUICK as SMALL
    from tests.factories import BuiltinModelFactory

    run = services.profile_request(
        actor=researcher_user, subject_model=BuiltinModelFactory(),
        config={**SMALL, "concept": "curvature"}, dispatch=False,
    )  # fmt: skip
    job = services.job_claim(run_id=run.pk, key="main", worker="w1@host")
    services.job_complete(job=job, result=JOB_RUNNERS[run.kind](job))  # ... the worker dies
    services.run_cancel(actor=researcher_user, run=run)
    run = services.run_retry(actor=researcher_user, run=run)
    assert run.status == "queued"
    assert queue() == 1  # the done job, sent again on commit
    assert execute_job(run_id=run.pk, key="main", worker="w2@host") == "finished"
    run.refresh_from_db()
    assert run.status == "succeeded"
