"""Sends jobs to the workers by task name, so the web process never imports the worker code
(or torch). The services decide what to send (analysis/services.py: after a request commits,
and from the workers' sweeper); this module only talks to the broker."""

import logging

from celery import group
from kombu.exceptions import OperationalError as BrokerOperationalError

from kb.celery import app

logger = logging.getLogger(__name__)

RUN_JOB_TASK = "analysis.run_job"


# A key the sweeper keeps in the broker's Redis: gone means Redis started empty (restarted
# without persistence, or first used), so the messages it held for queued jobs are lost.
BROKER_MARK = "insightkb:broker-holds-queue"


class BrokerUnavailable(Exception):
    """The broker did not take the messages; nothing was sent that the caller must undo."""


def job_signature(run_id: int, key: str):
    from django.conf import settings

    return app.signature(RUN_JOB_TASK, args=(run_id, key), queue=settings.ANALYSIS_QUEUE)


def jobs_send(jobs: list[tuple[int, str]]) -> None:
    """Send one message per (run id, job key); an experiment's (arm, seed) jobs go out as a
    group so that several workers share the experiment.

    Fails within about a second when the broker is down (see the Celery block of
    kb/settings.py) with BrokerUnavailable, after logging which runs were not sent (ids only).
    """
    if not jobs:
        return
    try:
        group(job_signature(run_id, key) for run_id, key in jobs).apply_async()
    except BrokerOperationalError as error:
        run_ids = sorted({run_id for run_id, _ in jobs})
        logger.warning(
            "broker unavailable, %d job(s) of run(s) %s not sent; the sweeper will send them: %s",
            len(jobs),
            run_ids,
            error,
        )
        raise BrokerUnavailable(str(error)) from error


def broker_started_empty() -> bool:
    """Whether the broker's Redis lacks the sweeper's mark (see BROKER_MARK). False for other
    transports, which keep their messages in files. Raises BrokerUnavailable."""
    import redis

    try:
        with app.connection_for_write() as connection:
            client = getattr(connection.default_channel, "client", None)
            return client is not None and not client.exists(BROKER_MARK)
    except (BrokerOperationalError, redis.RedisError, OSError) as error:
        raise BrokerUnavailable(str(error)) from error


def broker_mark() -> None:
    """Record in the broker's Redis that it holds the queue (after lost messages were sent
    again)."""
    import redis

    try:
        with app.connection_for_write() as connection:
            client = getattr(connection.default_channel, "client", None)
            if client is not None:
                client.set(BROKER_MARK, "1")
    except (BrokerOperationalError, redis.RedisError, OSError) as error:
        raise BrokerUnavailable(str(error)) from error
