"""The study benchmark's measurement on the tiniest settings: two real workers run a study on
the test database, the engine runs the same design back to back, and the result carries the
keys `manage.py benchmark` prints. Nothing here asserts a timing: the machine is shared."""

import json

import pytest

from analysis.models import AnalysisRun, Study
from analysis.study_benchmark import (
    NAME,
    TARGET,
    StudyBenchSize,
    measure_study_vs_jobs,
    study_floor,
)
from tests.analysis.workers import require_redis

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TINIEST = StudyBenchSize(samples=40, epochs=1, rounds=1, seeds=3)


def test_the_measurement_runs_a_real_study_and_reports_a_positive_ratio(settings, tmp_path):
    require_redis()
    settings.MEDIA_ROOT = tmp_path / "media"

    result = json.loads(json.dumps(measure_study_vs_jobs(size=TINIEST, scratch=tmp_path)))

    assert set(result) == {
        "name", "reference_s", "subject_s", "ratio", "target", "higher_is_better", "ok",
        "jobs_back_to_back_s", "study_runs_s", "jobs_runs_s", "jobs", "jobs_per_round", "floor",
        "worker_jobs_s",
        "study_vs_own_jobs", "load_average", "workers", "samples",
        "epochs", "rounds", "seeds", "repeats", "tracks",
    }  # fmt: skip
    assert result["name"] == NAME == "study_vs_jobs"
    assert result["target"] == TARGET == 1.15
    assert result["higher_is_better"] is False
    assert result["ratio"] > 0
    assert result["ok"] == (result["ratio"] <= TARGET)
    assert result["reference_s"] == pytest.approx(result["jobs_back_to_back_s"] / 2, abs=1e-3)
    assert result["ratio"] == pytest.approx(result["subject_s"] / result["reference_s"], rel=1e-2)
    assert (result["samples"], result["epochs"], result["rounds"], result["seeds"]) == (
        40, 1, 1, 3
    )  # fmt: skip
    assert result["tracks"] == ["guided", "random", "uniform"]
    assert result["workers"] == 2
    assert len(result["study_runs_s"]) == len(result["jobs_runs_s"]) == 1
    warm_up, study = Study.objects.order_by("pk")  # an untimed one-round study goes first
    assert warm_up.status == AnalysisRun.Status.SUCCEEDED
    assert study.status == AnalysisRun.Status.SUCCEEDED
    assert result["jobs"] == study.jobs.count() == sum(result["jobs_per_round"].values())
    assert list(result["jobs_per_round"]) == ["0", "1"]
    assert result["jobs_per_round"]["0"] == 3  # the base model over the seeds
    assert result["floor"] == round(study_floor(result["jobs"], workers=2), 4)
    assert result["worker_jobs_s"] > 0
    assert result["study_vs_own_jobs"] == pytest.approx(
        result["study_runs_s"][-1] / (result["worker_jobs_s"] / 2), rel=1e-2
    )
    assert len(result["load_average"]) == 3
    # The workers ran it: the jobs record the two worker processes' node names.
    assert study.jobs.exclude(claimed_by="").count() == study.jobs.count()


@pytest.mark.parametrize(
    ("jobs", "floor"),
    [
        (21, 11 / 10.5),  # the quick benchmark: 3 + 2 rounds x 3 tracks x 3 seeds
        (12, 1.0),  # even counts pack with no idle worker
        (9, 5 / 4.5),
        (0, 0.0),
    ],
)
def test_the_floor_is_every_job_packed_onto_the_workers(jobs, floor):
    assert study_floor(jobs, workers=2) == pytest.approx(floor)
