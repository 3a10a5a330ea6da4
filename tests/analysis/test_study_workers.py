"""Studies on real worker processes and this machine's Redis: a two-round, three-track,
three-seed study end to end writing every record, and a study whose worker is killed in the
middle of a round, which completes after a worker is started again, every round decided once."""

import time

import pytest

from analysis.models import AnalysisJob, AnalysisRun, StudyRound
from analysis.studies import study_request
from kb.models import ArchitectureChange, Event, Finding, Insight, Outcome
from tests.analysis.workers import (
    celery_worker,
    kill_whole_worker,
    require_redis,
    unique_queue,
    wait_for,
)
from tests.factories import BuiltinModelFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TINY = {
    "dataset": {"name": "shapes", "n": 80},
    "train": {"epochs": 1},
    "seeds": 3,
    "rounds": 2,
    "concept": "curvature",
}
# Jobs long enough to kill a worker in the middle of one: progress comes per epoch, and with 4
# epochs a fast CPU (2026-12-01) ran a job in ~0.1-0.4 s.
INTERRUPTIBLE = {**TINY, "dataset": {"name": "shapes", "n": 800}, "train": {"epochs": 8}}
STUDY_TIMEOUT = 120


@pytest.fixture
def worker(settings, tmp_path):
    """Starts a worker on the test's queue (again, after a kill: same node name)."""
    require_redis()
    settings.ANALYSIS_QUEUE = unique_queue()
    settings.ANALYSIS_SWEEP_SECONDS = 1
    settings.MEDIA_ROOT = tmp_path / "media"
    log = tmp_path / "worker.log"

    def start(**options):
        return celery_worker(
            queue=settings.ANALYSIS_QUEUE, log_path=log, media_root=settings.MEDIA_ROOT, **options
        )

    start.log = log
    return start


def _finished(study):
    study.refresh_from_db()
    return study if study.is_finished else None


def _assert_every_round_decided_once_with_its_records(study) -> None:
    rows = list(StudyRound.objects.filter(study=study).order_by("index", "track"))
    assert [(row.index, row.track) for row in rows] == [(0, "base")] + [
        (index, track) for index in (1, 2) for track in ("guided", "random", "uniform")
    ]
    assert all(row.decided_at is not None for row in rows)
    candidates = [row for row in rows if row.index and "error" not in row.plan]
    for row in candidates:
        assert len(row.values) == 3
        assert row.kept == row.decision["kept"]
        assert row.change is not None and row.outcome is not None and row.insight is not None
        assert row.outcome.change == row.change
        assert row.outcome.source == Outcome.Source.STUDY
        assert row.outcome.variant_values == row.values
    guided = [row for row in candidates if row.track == "guided"]
    for row in guided:
        assert row.mechanism is not None  # the added units were checked on every seed
        assert row.mechanism["seeds"] == 3
        if row.finding is not None:
            assert list(row.insight.findings.all()) == [row.finding]
    # one record of each kind per decided candidate: nothing was written twice
    assert Outcome.objects.filter(source="study").count() == len(candidates)
    assert ArchitectureChange.objects.count() == len(candidates)
    assert Event.objects.filter(action="outcome_recorded").count() == len(candidates)
    assert Finding.objects.count() == sum(row.finding_id is not None for row in guided)
    assert Insight.objects.count() == len({row.insight_id for row in candidates})
    assert Event.objects.filter(action="run_finished", target_id=study.pk).count() == 1


def test_a_two_round_study_runs_on_a_real_worker_and_writes_every_record(worker, researcher_user):
    started = time.monotonic()
    with worker(concurrency=2):
        study = study_request(actor=researcher_user, model=BuiltinModelFactory(), settings=TINY)
        wait_for(
            lambda: _finished(study),
            timeout=STUDY_TIMEOUT,
            describe=lambda: worker.log.read_text()[-3000:],
        )
    seconds = time.monotonic() - started
    print(f"\ntwo-round, three-track, three-seed study, one worker of 2 processes: {seconds:.1f}s")
    assert study.status == AnalysisRun.Status.SUCCEEDED, study.error
    assert study.progress_percent == 100
    _assert_every_round_decided_once_with_its_records(study)
    assert set(study.jobs.values_list("attempts", flat=True)) == {1}
    report = study.result
    assert set(report["final"]) == {"guided", "random", "uniform"}
    assert set(report["comparisons"]) == {"guided_vs_random", "guided_vs_uniform"}
    assert report["rounds_decided"] == 2
    (place, *others) = study.environment["jobs"]
    assert place["environment"]["torch"]
    assert study.environment["dataset_fingerprint"]


def test_a_study_whose_worker_is_killed_mid_round_completes_after_a_restart(
    worker, settings, researcher_user
):
    # The job's lease outlasts the test: only the restarted worker can give it back.
    settings.ANALYSIS_JOB_LEASE_SECONDS = 600
    study = study_request(
        actor=researcher_user, model=BuiltinModelFactory(), settings=INTERRUPTIBLE
    )
    started = time.monotonic()
    with worker() as first:
        # Given a round-1 job in the middle of its training, with epochs left (a study's
        # training reports progress up to 0.9) ...
        job = wait_for(
            lambda: AnalysisJob.objects.filter(
                run=study,
                key__startswith="r1:",
                status="running",
                progress__gt=0,
                progress__lt=0.6,
            ).first(),
            timeout=STUDY_TIMEOUT,
            interval=0.05,
            describe=lambda: worker.log.read_text()[-3000:],
        )
        # ... when the whole worker is killed,
        kill_whole_worker(first)
    killed = time.monotonic()
    decided_before = set(
        StudyRound.objects.filter(study=study, decided_at__isnull=False).values_list(
            "pk", "decided_at"
        )
    )
    # then another worker (the same node name) gives the job back and the study completes.
    with worker(concurrency=2):
        wait_for(
            lambda: _finished(study),
            timeout=STUDY_TIMEOUT,
            describe=lambda: worker.log.read_text()[-3000:],
        )
    print(
        f"\nstudy killed mid-round after {killed - started:.1f}s, completed "
        f"{time.monotonic() - killed:.1f}s after the restart"
    )
    assert study.status == AnalysisRun.Status.SUCCEEDED, study.error
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("done", 2)
    assert "gave back 1 job(s) held by" in worker.log.read_text()
    # Round 0, decided before the kill, was not decided again.
    decided_after = set(StudyRound.objects.values_list("pk", "decided_at"))
    assert decided_before <= decided_after
    assert StudyRound.objects.get(study=study, index=0).decided_at in {
        when for _, when in decided_before
    }
    _assert_every_round_decided_once_with_its_records(study)
