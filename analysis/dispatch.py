"""Sends a run's jobs to the workers by task name, so the web process never imports the
worker code (or torch). Called only from `transaction.on_commit`."""

from celery import group

from analysis.models import AnalysisJob
from kb.celery import app

RUN_JOB_TASK = "analysis.run_job"


def job_signature(run_id: int, key: str):
    from django.conf import settings

    return app.signature(RUN_JOB_TASK, args=(run_id, key), queue=settings.ANALYSIS_QUEUE)


def dispatch_run(run_id: int) -> None:
    """Send one message per unfinished job; an experiment's (arm, seed) jobs go out as a group
    so that several workers share the experiment."""
    keys = list(
        AnalysisJob.objects.filter(run_id=run_id)
        .exclude(status=AnalysisJob.Status.DONE)
        .values_list("key", flat=True)
    )
    if keys:
        group(job_signature(run_id, key) for key in keys).apply_async()
