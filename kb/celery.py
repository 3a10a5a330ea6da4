"""The Celery application. Only worker processes import analysis tasks (and with them torch).

Every worker also runs the sweeper (`RunSweeper`, below) in its main process, so recovering
from a broker outage, a dead worker or a lost database needs no extra process and no manual
step: `celery -A kb worker -n NAME@%h` is the whole deployment of the workers.
"""

import logging
import os

from celery import Celery, bootsteps

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kb.settings")

logger = logging.getLogger(__name__)

app = Celery("kb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["analysis"])


class RunSweeper(bootsteps.StartStopStep):
    """Sends what the broker should hold and does not, from each worker's main process
    (beside the pool, so a worker whose every pool process is busy still sweeps).

    When the worker starts, it first gives back the jobs that its previous life (same node
    name) held when it died. Then, at start, after every reconnection to the broker and every
    ANALYSIS_SWEEP_SECONDS, it sends runs the broker never took and jobs whose lease ran out
    (analysis.services.runs_sweep; row locks keep several workers from sending one twice).
    """

    requires = {"celery.worker.consumer.connection:Connection"}

    def __init__(self, parent, **kwargs) -> None:
        super().__init__(parent, **kwargs)
        self.timer_entry = None
        self.released_own_jobs = False

    def start(self, consumer) -> None:
        from django.conf import settings

        # Only on the first start: after a reconnection, this life's own pool processes
        # hold the jobs claimed under this name.
        if not self.released_own_jobs:
            self.released_own_jobs = True
            self._guarded(self._release_own_jobs, consumer.hostname)
        self._guarded(self._sweep)
        self.timer_entry = consumer.timer.call_repeatedly(
            settings.ANALYSIS_SWEEP_SECONDS, self._guarded, (self._sweep,)
        )

    def stop(self, consumer) -> None:
        if self.timer_entry is not None:
            self.timer_entry.cancel()
            self.timer_entry = None

    shutdown = stop

    @staticmethod
    def _release_own_jobs(worker: str) -> None:
        from analysis.services import jobs_release_worker

        if sent := jobs_release_worker(worker=worker):
            logger.warning("gave back %d job(s) held by %s before it restarted", sent, worker)

    @staticmethod
    def _sweep() -> None:
        from analysis.services import runs_sweep

        swept = runs_sweep()
        if swept.runs or swept.jobs:
            logger.warning("sweeper sent %d run(s) and %d expired job(s)", swept.runs, swept.jobs)

    @staticmethod
    def _guarded(sweep, *args) -> None:
        """Run one sweep; a broker or database that is down now is tried again next time."""
        from django.db import DatabaseError, close_old_connections

        from analysis.dispatch import BrokerUnavailable

        try:
            # Drops a connection that a database restart broke, as a request would.
            close_old_connections()
            sweep(*args)
        except BrokerUnavailable:
            pass  # logged where it was raised
        except DatabaseError as error:
            logger.warning("sweeper: database unavailable, trying again later: %s", error)


app.steps["consumer"].add(RunSweeper)
