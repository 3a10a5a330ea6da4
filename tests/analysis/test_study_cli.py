"""`run_analysis study`: a study run in this process through the workers' path, with a
progress bar and its report, its jobs in the order they were planned and its rows and report
the engine's reference's; --queue; bad flags refused by field with nothing written."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from analysis.models import AnalysisJob, AnalysisRun, Study, StudyRound
from analysis.studies import study_request
from analysis.study_cli import study_run_here
from kb.models import Outcome
from tests.analysis import engine_helpers  # noqa: F401  (one torch thread)
from tests.analysis.study_helpers import assert_rows_and_report_are_the_engines
from tests.factories import BuiltinModelFactory
from tests.helpers import nothing_written

TINY = ["--seeds", "3", "--epochs", "1", "--samples", "80", "--concept", "curvature"]


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def _run_analysis(*args: str) -> str:
    out = StringIO()
    call_command("run_analysis", *args, stdout=out)
    return out.getvalue()


def _refusal(*args: str) -> str:
    with pytest.raises(CommandError) as excinfo:
        _run_analysis(*args)
    return str(excinfo.value)


# The progress bar is drawn by a thread with its own database connection, which must see the
# study's committed rows.
@pytest.mark.django_db(transaction=True)
def test_a_study_runs_here_round_by_round_and_stores_what_workers_would():
    model = BuiltinModelFactory()

    output = _run_analysis("study", "--model", str(model.pk), "--rounds", "1", *TINY)

    study = Study.objects.get()
    assert study.status == AnalysisRun.Status.SUCCEEDED
    assert study.subject_model_id == model.pk
    assert output.startswith(
        f"Study {study.pk} of model {model.pk} ({model.name}): 1 rounds, tracks guided, "
        "random, uniform, 3 seeds\n"
    )
    assert f"[{'#' * 30}] 100%" in output
    assert f"Study {study.pk} succeeded." in output
    rows = list(StudyRound.objects.filter(study=study).order_by("index", "track"))
    assert [(row.index, row.track) for row in rows] == [
        (0, "base"), (1, "guided"), (1, "random"), (1, "uniform"),
    ]  # fmt: skip
    assert all(row.decided_at is not None for row in rows)
    # Every job ran here, none was sent to a worker.
    assert set(study.jobs.values_list("status", flat=True)) == {AnalysisJob.Status.DONE}
    assert study.dispatched_at is not None
    candidates = [row for row in rows[1:] if "error" not in row.plan]
    assert Outcome.objects.filter(source=Outcome.Source.STUDY).count() == len(candidates)
    assert {row.outcome_id for row in candidates} == set(
        Outcome.objects.filter(source=Outcome.Source.STUDY).values_list("pk", flat=True)
    )
    report = study.result
    for track, final in report["final"].items():
        assert f"  {track:<8} test_accuracy mean {final['mean']:.4f} (95% CI " in output
    for name, comparison in report["comparisons"].items():
        assert f"  {name}: difference " in output
        assert f"): {comparison['verdict']}\n" in output
    win_rate = report["win_rate"]
    assert f"  guided beat random: {win_rate['wins']} of {win_rate['rounds']} rounds" in output


@pytest.mark.django_db
def test_a_study_run_here_runs_its_jobs_as_planned_and_gives_the_engines_rows_and_report():
    settings = {"dataset": {"name": "shapes", "n": 80}, "train": {"epochs": 1}, "seeds": 3,
                "rounds": 2, "concept": "curvature"}  # fmt: skip
    study = study_request(
        actor=None, model=BuiltinModelFactory(), settings=settings, dispatch=False
    )

    study_run_here(study)

    study.refresh_from_db()
    assert study.status == AnalysisRun.Status.SUCCEEDED, study.error
    # Each job started after every job planned before it.
    jobs = list(study.jobs.order_by("pk").values_list("key", "started_at"))
    assert [started for _, started in jobs] == sorted(started for _, started in jobs)
    assert len(jobs) == 3 * sum(
        1 for row in StudyRound.objects.filter(study=study) if "error" not in row.plan
    )
    # No barrier: the guided track's round 2 was planned before the uniform track's round 1
    # was decided.
    rows = {(row.index, row.track): row for row in StudyRound.objects.filter(study=study)}
    assert rows[(2, "guided")].created_at < rows[(1, "uniform")].decided_at
    assert_rows_and_report_are_the_engines(study)


@pytest.mark.django_db
def test_queue_saves_the_study_for_the_workers_and_prints_where_to_follow_it():
    model = BuiltinModelFactory()

    output = _run_analysis("study", "--model", str(model.pk), "--rounds", "2", "--queue", *TINY)

    study = Study.objects.get()
    assert study.status == AnalysisRun.Status.QUEUED
    assert study.config["rounds"] == 2
    assert sorted(study.jobs.values_list("key", "status")) == [
        ("r0:base:s0", "pending"), ("r0:base:s1", "pending"), ("r0:base:s2", "pending"),
    ]  # fmt: skip
    assert output.endswith(
        f"Queued for the workers. Page: /studies/{study.pk}/  API: /api/studies/{study.pk}/\n"
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--rounds", "0"], "rounds (--rounds): must be a whole number from 1 to 10, got 0."),
        (["--seeds", "2"], "seeds (--seeds): use 3 to 20 seeds, got 2."),
        (["--budget-fraction", "2"], "budget_fraction (--budget-fraction): must be a number "
         "above 0 and at most 1 (a share of the current model's parameters), got 2.0."),
        (["--tracks", "guided"], 'tracks (--tracks): must hold "guided" and at least one '
         'control track ("random" or "uniform") to compare it with.'),
        (["--rule", "biggest_first"], "rule (--rule): must be one of widen_most_selective, "
         "insert_after_tightest_clusters, got 'biggest_first'."),
        (["--epochs", "0"], "train.epochs (--epochs): must be a whole number from 1 to 100, "
         "got 0."),
        # with TINY's --samples, which a sequence task has no use for: the task is refused
        (["--dataset", "induction"], "dataset.name (--dataset): must be one of shapes, "
         "digits, fashion-mnist, got 'induction'."),
    ],
    ids=["rounds", "seeds", "budget", "tracks", "rule", "epochs", "sequence-task-on-a-cnn"],
)  # fmt: skip
def test_a_bad_flag_is_refused_by_field_and_nothing_is_written(flags, message):
    model = BuiltinModelFactory()
    with nothing_written():
        error = _refusal("study", "--model", str(model.pk), *TINY, *flags)
    assert error == message


@pytest.mark.django_db
def test_a_study_without_a_concept_names_the_concepts_it_could_use():
    model = BuiltinModelFactory()
    with nothing_written():
        error = _refusal("study", "--model", str(model.pk), "--seeds", "3")
    assert error.startswith("concept (--concept): required: the guided rule reads the units'")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["study", *TINY], "--model is required"),
        (["study", "--model", "999999", *TINY], "No model with id 999999."),
        (["study", "--model", "@", "--change", "3", "--steps", "10", *TINY],
         "--change, --steps does not apply to studies."),
        (["profile", "--model", "@", "--rounds", "2", "--tracks", "guided", "random"],
         "--rounds, --tracks applies to studies only."),
    ],
    ids=["no-model", "unknown-model", "flags-of-other-runs", "study-flags-elsewhere"],
)  # fmt: skip
def test_flags_that_do_not_fit_are_refused(args, message):
    model = BuiltinModelFactory()
    args = [str(model.pk) if arg == "@" else arg for arg in args]
    with nothing_written():
        assert _refusal(*args) == message
