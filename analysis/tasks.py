"""Celery tasks: thin wrappers that take ids and call the execution service.

`acks_late` with `reject_on_worker_lost` puts a job back on the queue when its worker dies;
the job's lease and conditional claim make the redelivery safe.
"""

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init
from django.conf import settings

from analysis.dispatch import RUN_JOB_TASK
from analysis.services import TRANSIENT_ERRORS


@shared_task(
    name=RUN_JOB_TASK,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=True,
    max_retries=5,
    soft_time_limit=settings.ANALYSIS_SOFT_TIME_LIMIT,
    time_limit=settings.ANALYSIS_SOFT_TIME_LIMIT + 60,
)
def run_job(self, run_id: int, key: str) -> str:
    """Run one job of a run. Returns what happened: done, finished, held, gone, failed..."""
    from analysis.execution import execute_job

    try:
        outcome = execute_job(run_id=run_id, key=key, worker=self.request.hostname or "")
    except SoftTimeLimitExceeded:
        from analysis.execution import fail_job_on_time_limit

        fail_job_on_time_limit(run_id=run_id, key=key)
        return "time limit"
    if outcome == "held":
        # Another worker holds a live lease (or a dead one that has not expired yet): look
        # again once the lease can have run out.
        raise self.retry(countdown=settings.ANALYSIS_JOB_LEASE_SECONDS, max_retries=20)
    return outcome


@worker_process_init.connect
def load_engine_in_pool_process(**kwargs) -> None:
    """Import torch and the engine when a pool process starts, not during its first job, and
    pin torch to one thread (on two cores more threads were 20-300x slower)."""
    from analysis.execution import configure_torch

    configure_torch()
