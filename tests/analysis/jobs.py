"""Running a run's jobs in this process, as a worker would, for the execution tests."""

from analysis.execution import execute_job
from analysis.models import AnalysisRun

# Small enough to train in a second: 80 shapes, one epoch.
QUICK = {"dataset": {"name": "shapes", "n": 80}, "train": {"epochs": 1}}


def run_all(run: AnalysisRun) -> list[str]:
    """Execute every job of the run in order; returns what each call did, and refreshes the
    run."""
    outcomes = [
        execute_job(run_id=run.pk, key=key) for key in run.jobs.values_list("key", flat=True)
    ]
    run.refresh_from_db()
    return outcomes
