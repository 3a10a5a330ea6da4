"""Study services: the request (validated, frozen, nothing written when refused), deciding each
track's rows from their jobs' results and planning its next round as soon as its own
dependencies allow (study_advance, idempotent: no barrier per round), the records each round
writes once all its rows are decided, the order new jobs go to the queue, cancel and resume.
Round 0's jobs run in this process as a worker would; later rounds' results are given where a
test needs to know the answer."""

import numpy as np
import pytest
import redis
from django.core.exceptions import ValidationError
from django.utils import timezone
from scipy import stats as scipy_stats

from analysis import services
from analysis.engine.plans import baseline_spec
from analysis.engine.specs import count_parameters
from analysis.execution import execute_job
from analysis.frozen import FROZEN_VERSION, config_digest
from analysis.models import AnalysisJob, AnalysisRun, Study, StudyRound
from analysis.studies import (
    study_advance,
    study_cancel,
    study_job_inputs,
    study_job_key,
    study_request,
    study_resume,
)
from analysis.study_selectors import study_progress, study_rounds, study_trajectory
from kb.models import ArchitectureChange, Event, Finding, Insight, InsightFinding, Outcome
from tests.analysis import engine_helpers  # noqa: F401  (one torch thread)
from tests.analysis.transformer_helpers import TINY_TRANSFORMER
from tests.factories import SHAPES_SPEC, BuiltinModelFactory, SubjectModelFactory
from tests.helpers import nothing_written

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]

TINY = {
    "dataset": {"name": "shapes", "n": 80},
    "train": {"epochs": 1},
    "seeds": 3,
    "rounds": 2,
    "concept": "curvature",
}
SEEDS = [0, 1, 2]
# Round 1's given results: the guided candidate better on every seed by a varying margin,
# the random one worse, the uniform one the same plus noise.
GUIDED_GAIN = [0.10, 0.14, 0.12]
GUIDED_LOSS = [-0.04, -0.06, -0.05]
RANDOM_LOSS = [-0.05, -0.09, -0.02]
UNIFORM_NOISE = [0.01, -0.01, 0.02]


def _study(actor, **settings) -> Study:
    return study_request(
        actor=actor, model=BuiltinModelFactory(), settings={**TINY, **settings}, dispatch=False
    )


def _run_round_zero(study: Study) -> list[str]:
    """Round 0's jobs in this process, as a worker runs them; the last one decides round 0."""
    keys = [study_job_key(0, "base", seed) for seed in SEEDS]
    return [execute_job(run_id=study.pk, key=key) for key in keys]


def _give_results(study: Study, index: int, values: dict[str, list[float]]) -> None:
    """Mark round `index`'s jobs done with these metric values (by track, in seed order)."""
    for track, per_seed in values.items():
        for seed, value in zip(SEEDS, per_seed, strict=True):
            AnalysisJob.objects.filter(run=study, key=study_job_key(index, track, seed)).update(
                status=AnalysisJob.Status.DONE,
                progress=1.0,
                finished_at=timezone.now(),
                result={"seed": seed, "metrics": {"test_accuracy": value}, "mechanism": None,
                        "profile": None, "dataset_fingerprint": "given"},
            )  # fmt: skip


def _base_values(study: Study) -> list[float]:
    return StudyRound.objects.get(study=study, index=0).values


def _round_one_given(study: Study) -> dict[str, list[float]]:
    base = _base_values(study)
    return {
        "guided": [b + d for b, d in zip(base, GUIDED_GAIN, strict=True)],
        "random": [b + d for b, d in zip(base, RANDOM_LOSS, strict=True)],
        "uniform": [b + d for b, d in zip(base, UNIFORM_NOISE, strict=True)],
    }


def _record_counts() -> tuple[int, ...]:
    return tuple(
        model.objects.count()
        for model in (Finding, Insight, InsightFinding, ArchitectureChange, Outcome, AnalysisJob)
    )


# --- request --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "errors"),
    [
        ({"rounds": 0}, {"rounds": ["must be a whole number from 1 to 10, got 0."]}),
        ({"seeds": 2}, {"seeds": ["use 3 to 20 seeds, got 2."]}),
        ({"tracks": ["guided"]}, {"tracks": [
            'must hold "guided" and at least one control track ("random" or "uniform") to '
            "compare it with."]}),
        ({"budget_fraction": 0}, {"budget_fraction": [
            "must be a number above 0 and at most 1 (a share of the current model's "
            "parameters), got 0."]}),
        ({"train": {"epochs": 0}}, {"train.epochs": [
            "must be a whole number from 1 to 100, got 0."]}),
    ],
)  # fmt: skip
def test_a_bad_setting_is_refused_by_field_and_nothing_is_written(researcher_user, given, errors):
    model = BuiltinModelFactory()
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        study_request(actor=researcher_user, model=model, settings={**TINY, **given})
    assert excinfo.value.message_dict == errors


def test_a_study_without_a_concept_or_with_an_unknown_setting_is_refused(researcher_user):
    model = BuiltinModelFactory()
    settings = {key: value for key, value in TINY.items() if key != "concept"}
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        study_request(actor=researcher_user, model=model, settings={**settings, "speed": 2})
    assert set(excinfo.value.message_dict) == {"concept", "speed"}
    assert excinfo.value.message_dict["concept"][0].startswith("required: the guided rule")


def test_only_builtin_models_can_be_studied(researcher_user):
    subject = SubjectModelFactory()
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        study_request(actor=researcher_user, model=subject, settings=TINY)
    assert excinfo.value.message_dict == {
        "model": ["Only built-in models can be studied by the engine."]
    }


def test_a_transformer_is_studied_with_its_own_settings_and_cnn_ones_are_refused(
    researcher_user,
):
    transformer = BuiltinModelFactory(architecture_spec=TINY_TRANSFORMER)
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        study_request(actor=researcher_user, model=transformer, settings=TINY)
    assert set(excinfo.value.message_dict) == {"concept", "dataset.name", "train.epochs"}


def test_the_request_freezes_the_design_and_saves_round_zero_with_its_jobs(researcher_user):
    study = _study(researcher_user)
    study.refresh_from_db()
    assert isinstance(study, Study)
    assert (study.kind, study.status) == ("study", "queued")
    config = study.config
    assert config["version"] == FROZEN_VERSION
    assert config["model"]["architecture_spec"] == SHAPES_SPEC
    assert config["seeds"] == SEEDS
    assert config["tracks"] == ["guided", "random", "uniform"]
    assert (config["rounds"], config["rule"], config["direction"]) == (
        2, "widen_most_selective", "increase",
    )  # fmt: skip
    assert study.config_digest == config_digest(config)
    (base,) = study_rounds(study)
    assert (base.index, base.track, base.decided_at) == (0, "base", None)
    assert base.spec == baseline_spec(SHAPES_SPEC, config["train"])
    assert base.parameters == count_parameters(base.spec)
    assert sorted(study.jobs.values_list("key", flat=True)) == [
        "r0:base:s0", "r0:base:s1", "r0:base:s2",
    ]  # fmt: skip
    assert study.progress_message == "round 0 of 2: 0 of 3 jobs done"
    assert Event.objects.filter(action="run_requested", target_id=study.pk).count() == 1


def test_the_request_dispatches_round_zero_after_commit(
    researcher_user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        study_request(actor=researcher_user, model=BuiltinModelFactory(), settings=TINY)
    assert len(callbacks) == 1


# --- deciding rounds ------------------------------------------------------------------------


def test_round_zero_is_decided_by_its_last_job_and_round_one_is_planned(researcher_user):
    study = _study(researcher_user)
    assert _run_round_zero(study) == ["done", "done", "done"]
    base = StudyRound.objects.get(study=study, index=0)
    assert base.decided_at is not None and base.kept is None
    assert len(base.values) == 3
    assert base.summary["mean"] == pytest.approx(np.mean(base.values))
    # The base's first seed was profiled: the guided rule read that profile.
    profiled = study.jobs.get(key="r0:base:s0").result["profile"]
    assert profiled is not None
    assert study.jobs.get(key="r0:base:s1").result["profile"] is None
    rows = {row.track: row for row in StudyRound.objects.filter(study=study, index=1)}
    assert set(rows) == {"guided", "random", "uniform"}
    guided = rows["guided"]
    assert guided.plan["rule"] == "widen_most_selective"
    assert guided.plan["change"]["operation"] == "widen_layer"
    assert guided.params_added == guided.parameters - base.parameters
    # The controls spend what the guided candidate adds, within their 5% tolerance.
    for track in ("random", "uniform"):
        assert (rows[track].plan["budget"], rows[track].plan["budget_source"]) == (
            guided.params_added, "guided",
        )  # fmt: skip
        assert abs(rows[track].params_added - guided.params_added) <= 0.05 * guided.params_added
    # Created, and so sent, the guided track's first: its chain is the critical path.
    keys = list(
        study.jobs.filter(key__startswith="r1:").order_by("pk").values_list("key", flat=True)
    )
    assert keys == [
        f"r1:{track}:s{seed}" for track in ("guided", "random", "uniform") for seed in SEEDS
    ]
    # What each job trains: the guided candidate checks its added units on every seed and is
    # profiled at the first; the controls are neither.
    request = guided.plan["mechanism_request"]
    assert (request["layer"], request["concept"]) == (guided.plan["layer"], "curvature")
    assert study_job_inputs(run_id=study.pk, key="r1:guided:s0") == {
        "spec": guided.spec, "seed": 0, "profile": True, "mechanism": request,
    }  # fmt: skip
    assert study_job_inputs(run_id=study.pk, key="r1:guided:s1")["profile"] is False
    assert study_job_inputs(run_id=study.pk, key="r1:random:s0") == {
        "spec": rows["random"].spec, "seed": 0, "profile": False, "mechanism": None,
    }  # fmt: skip
    study.refresh_from_db()
    assert study.progress_message == "round 1 of 2: 0 of 9 jobs done"
    assert study.progress_percent == 33


def test_round_one_is_planned_once_the_base_model_is_profiled_and_decided_after_it(
    researcher_user,
):
    """The base model's first seed profiles it: round 1 needs nothing more to be planned, so
    its jobs fill the workers while the base model's other seeds train; its rows compare
    with the base model's values over every seed, so they are decided after it."""
    study = _study(researcher_user)
    # Given the base model's first-seed job done, its others not,
    assert execute_job(run_id=study.pk, key=study_job_key(0, "base", 0)) == "done"
    # then round 1 is planned from its profile, its jobs created, the guided track's first.
    assert StudyRound.objects.get(study=study, index=0).decided_at is None
    keys = list(
        study.jobs.filter(key__startswith="r1:").order_by("pk").values_list("key", flat=True)
    )
    assert keys == [
        f"r1:{track}:s{seed}" for track in ("guided", "random", "uniform") for seed in SEEDS
    ]
    study.refresh_from_db()
    assert study.progress_message == (
        "base model, guided round 1, random round 1, uniform round 1 of 2: 1 of 12 jobs done"
    )
    # When round 1's jobs are done before the base model's,
    given = {"guided": [0.6, 0.7, 0.8], "random": [0.5, 0.5, 0.6], "uniform": [0.5, 0.6, 0.6]}
    _give_results(study, 1, given)
    assert study_advance(run_id=study.pk) is False
    # then none of its rows is decided: each compares with the base model, still training.
    assert not StudyRound.objects.filter(study=study, index=1, decided_at__isnull=False).exists()
    # Once the base model is, the round is decided and recorded as a whole.
    for seed in SEEDS[1:]:
        execute_job(run_id=study.pk, key=study_job_key(0, "base", seed))
    rows = {row.track: row for row in StudyRound.objects.filter(study=study, index=1)}
    assert all(row.decided_at is not None for row in rows.values())
    assert rows["guided"].outcome.baseline_values == _base_values(study)
    assert Outcome.objects.filter(source="study").count() == 3


def test_a_decided_round_writes_every_record_and_the_controls_are_marked(researcher_user):
    study = _study(researcher_user)
    _run_round_zero(study)
    given = _round_one_given(study)
    _give_results(study, 1, given)
    assert study_advance(run_id=study.pk) is False  # decided round 1, planned round 2
    rows = {row.track: row for row in StudyRound.objects.filter(study=study, index=1)}
    base = _base_values(study)
    guided, random, uniform = rows["guided"], rows["random"], rows["uniform"]
    assert [row.values for row in (guided, random, uniform)] == [
        given["guided"], given["random"], given["uniform"],
    ]  # fmt: skip
    assert (guided.kept, random.kept, uniform.kept) == (True, False, False)
    # the guided round: finding -> insight -> change -> outcome, all linked
    finding, insight = guided.finding, guided.insight
    assert finding.subject_model == study.subject_model
    assert finding.concept == "curvature"
    (chosen,) = [row for row in guided.plan["inputs"] if row["layer"] == guided.plan["layer"]]
    assert (finding.layer_name, finding.unit_indices) == (
        chosen["profiled_layer"], [chosen["top_unit"]],
    )  # fmt: skip
    assert list(finding.evidence_runs.all()) == [AnalysisRun.objects.get(pk=study.pk)]
    assert list(insight.findings.all()) == [finding]
    assert guided.plan["reason"] in insight.statement
    change = guided.change
    assert (change.insight, change.target_model) == (insight, study.subject_model)
    assert (change.operation, change.parameters) == (
        guided.plan["operation"], guided.plan["parameters"],
    )  # fmt: skip
    assert change.status == "evaluated"
    outcome = guided.outcome
    assert (outcome.source, outcome.analysis_run, outcome.change) == ("study", None, change)
    assert outcome.baseline_values == base
    assert outcome.variant_values == given["guided"]
    assert outcome.control_values == given["random"]
    assert outcome.verdict == "improved"
    # the controls: a change and an outcome each, marked, no finding of their own
    for row in (random, uniform):
        assert row.finding is None
        assert row.insight == insight
        assert f"Control track ({row.track}) of study #{study.pk}" in row.change.rationale
        assert row.outcome.baseline_values == base
        assert row.outcome.control_values == []
        assert f"Control track ({row.track}) of study #{study.pk}." in row.outcome.notes
    assert Outcome.objects.filter(source="study").count() == 3
    assert Event.objects.filter(action="outcome_recorded").count() == 3
    # Round 2 starts from each track's current model. The guided track kept its candidate,
    # whose profile the given results lack: it sits the round out, and the controls size
    # their own budget.
    round_two = {row.track: row for row in StudyRound.objects.filter(study=study, index=2)}
    assert round_two["guided"].plan["field_errors"] == {
        "profile": "profile the current model first (its first-seed job)"
    }
    assert (round_two["guided"].spec, round_two["guided"].kept) == (guided.spec, False)
    assert not study.jobs.filter(key__startswith="r2:guided:").exists()
    assert round_two["random"].plan["budget_source"] == "own"


def test_the_stored_statistics_are_recomputed_by_scipy_from_the_per_seed_values(
    researcher_user,
):
    study = _study(researcher_user)
    _run_round_zero(study)
    _give_results(study, 1, _round_one_given(study))
    study_advance(run_id=study.pk)
    for row in StudyRound.objects.filter(study=study, index=1):
        outcome = row.outcome
        current, candidate = np.array(outcome.baseline_values), np.array(outcome.variant_values)
        test = scipy_stats.ttest_rel(candidate, current)
        interval = test.confidence_interval(0.95)
        assert outcome.effect == pytest.approx(np.mean(candidate - current), abs=1e-12)
        assert outcome.p_value == pytest.approx(test.pvalue, rel=1e-9)
        assert (outcome.ci_low, outcome.ci_high) == (
            pytest.approx(interval.low, rel=1e-9), pytest.approx(interval.high, rel=1e-9),
        )  # fmt: skip
        assert row.decision["kept"] == (interval.low > 0)
        low, high = scipy_stats.t.interval(
            0.95, len(candidate) - 1, loc=np.mean(candidate), scale=scipy_stats.sem(candidate)
        )
        assert row.summary["mean"] == pytest.approx(np.mean(candidate))
        assert (row.summary["ci_low"], row.summary["ci_high"]) == (
            pytest.approx(low), pytest.approx(high),
        )  # fmt: skip
        if row.track == "guided":
            versus = scipy_stats.ttest_rel(candidate, np.array(outcome.control_values))
            control_interval = versus.confidence_interval(0.95)
            assert outcome.effect_vs_control == pytest.approx(
                np.mean(candidate - np.array(outcome.control_values))
            )
            assert outcome.control_ci_low == pytest.approx(control_interval.low)
            assert outcome.control_ci_high == pytest.approx(control_interval.high)


def test_advancing_again_decides_nothing_twice(researcher_user):
    study = _study(researcher_user)
    _run_round_zero(study)
    _give_results(study, 1, _round_one_given(study))
    study_advance(run_id=study.pk)
    decided = dict(
        StudyRound.objects.filter(study=study).values_list("pk", "decided_at").order_by("pk")
    )
    counts = _record_counts()
    for _ in range(2):
        assert study_advance(run_id=study.pk) is False
    assert _record_counts() == counts
    assert (
        dict(StudyRound.objects.filter(study=study).values_list("pk", "decided_at").order_by("pk"))
        == decided
    )
    # a redelivered message of a done job does the same: nothing
    assert execute_job(run_id=study.pk, key="r1:guided:s0") == "done"
    assert _record_counts() == counts


def test_a_row_waits_until_its_last_job_is_done(researcher_user):
    study = _study(researcher_user)
    _run_round_zero(study)
    given = _round_one_given(study)
    _give_results(study, 1, {"guided": given["guided"], "random": given["random"]})
    AnalysisJob.objects.filter(run=study, key="r1:guided:s2").update(status="running", result={})
    assert study_advance(run_id=study.pk) is False
    decided = StudyRound.objects.filter(study=study, index=1, decided_at__isnull=False)
    assert list(decided.values_list("track", flat=True)) == ["random"]
    # The random track's round 2 waits for the guided candidate of round 2, which waits for
    # the guided track's round 1.
    assert not StudyRound.objects.filter(study=study, index=2).exists()
    progress = study_progress(study)
    assert (progress["jobs_done"], progress["jobs_total"]) == (2, 6)  # guided's and uniform's
    assert progress["tracks"] == {"guided": 1, "random": 1, "uniform": 1}
    assert progress["round"] == 1 and progress["rounds_decided"] == 0


def test_the_guided_track_trains_its_next_round_while_the_controls_still_train_theirs(
    researcher_user,
):
    study = _study(researcher_user)
    _run_round_zero(study)
    base, given = _base_values(study), _round_one_given(study)
    # Given the guided candidate of round 1 done, worse than the base model on every seed,
    _give_results(study, 1, {"guided": [b + d for b, d in zip(base, GUIDED_LOSS, strict=True)]})
    # when a worker advances the study,
    assert study_advance(run_id=study.pk) is False
    # then the guided track's round 1 is decided (not kept) and its round 2 planned from the
    # base model again, its jobs created, while the controls' round-1 jobs still wait.
    rows = {(row.index, row.track): row for row in StudyRound.objects.filter(study=study)}
    assert set(rows) == {(0, "base"), (1, "guided"), (1, "random"), (1, "uniform"), (2, "guided")}
    guided_one, guided_two = rows[(1, "guided")], rows[(2, "guided")]
    assert (guided_one.decided_at is not None, guided_one.kept) == (True, False)
    assert rows[(1, "random")].decided_at is None and rows[(1, "uniform")].decided_at is None
    assert guided_two.plan["layer"] != guided_one.plan["layer"]  # the rejected layer is skipped
    jobs = dict(study.jobs.values_list("key", "status"))
    assert {jobs[f"r2:guided:s{seed}"] for seed in SEEDS} == {"pending"}
    assert {jobs[f"r1:{track}:s{seed}"] for track in ("random", "uniform") for seed in SEEDS} == {
        "pending"
    }
    # No record of round 1 yet: the guided outcome compares with the random candidate.
    assert (guided_one.change, guided_one.insight, guided_one.outcome) == (None, None, None)
    assert (Outcome.objects.count(), ArchitectureChange.objects.count()) == (0, 0)
    study.refresh_from_db()
    assert study.progress_message == (
        "guided round 2, random round 1, uniform round 1 of 2: 0 of 9 jobs done"
    )
    assert study_progress(study)["tracks"] == {"guided": 2, "random": 1, "uniform": 1}

    # When the random candidate's jobs are done, the random track's round 2 follows the guided
    # candidate of round 2 (it spends what that adds); the uniform track is still in round 1.
    _give_results(study, 1, {"random": given["random"]})
    study_advance(run_id=study.pk)
    random_two = StudyRound.objects.get(study=study, index=2, track="random")
    assert (random_two.plan["budget"], random_two.plan["budget_source"]) == (
        guided_two.params_added, "guided",
    )  # fmt: skip
    assert not StudyRound.objects.filter(study=study, index=2, track="uniform").exists()
    assert Outcome.objects.count() == 0

    # When the uniform candidate's are done too, round 1 is recorded, once, as a whole.
    _give_results(study, 1, {"uniform": given["uniform"]})
    study_advance(run_id=study.pk)
    rows = {row.track: row for row in StudyRound.objects.filter(study=study, index=1)}
    assert Outcome.objects.filter(source="study").count() == 3
    assert rows["guided"].outcome.variant_values == rows["guided"].values
    assert rows["guided"].outcome.control_values == given["random"]
    assert rows["guided"].outcome.verdict == "worse"
    assert StudyRound.objects.filter(study=study, index=2).count() == 3
    assert study_progress(study)["rounds_decided"] == 1


def test_the_last_round_finishes_the_study_with_the_final_report(researcher_user):
    study = _study(researcher_user, rounds=1)
    _run_round_zero(study)
    _give_results(study, 1, _round_one_given(study))
    assert study_advance(run_id=study.pk) is True
    study.refresh_from_db()
    assert (study.status, study.progress_percent) == ("succeeded", 100)
    report = study.result
    guided_final = report["final"]["guided"]
    assert (guided_final["round"], guided_final["values"]) == (1, _round_one_given(study)["guided"])
    assert report["final"]["random"]["round"] == 0  # not kept: the base model
    comparison = report["comparisons"]["guided_vs_random"]
    test = scipy_stats.ttest_rel(guided_final["values"], report["final"]["random"]["values"])
    assert comparison["p_value"] == pytest.approx(test.pvalue)
    assert report["win_rate"]["wins"] == 1 and report["win_rate"]["rounds"] == 1
    assert report["trajectory"] == study_trajectory(study)
    assert [point["round"] for point in report["trajectory"]["guided"]] == [0, 1]
    assert study.environment["dataset_fingerprint"]
    assert Event.objects.filter(action="run_finished", target_id=study.pk).count() == 1
    assert study_advance(run_id=study.pk) is False  # finished: nothing more


def test_a_whole_tiny_study_runs_in_process_and_every_round_is_decided_once(researcher_user):
    study = _study(researcher_user)
    outcomes = []
    for _ in range(3):  # round 0, round 1, round 2
        keys = study.jobs.exclude(status="done").values_list("key", flat=True)
        outcomes += [execute_job(run_id=study.pk, key=key) for key in list(keys)]
    study.refresh_from_db()
    assert study.status == "succeeded", study.error
    assert outcomes[-1] == "finished" and outcomes.count("finished") == 1
    rows = study_rounds(study)
    assert [(row.index, row.track) for row in rows] == [(0, "base")] + [
        (index, track) for index in (1, 2) for track in ("guided", "random", "uniform")
    ]
    assert all(row.decided_at is not None for row in rows)
    with_candidates = [row for row in rows if row.index and "error" not in row.plan]
    assert Outcome.objects.filter(source="study").count() == len(with_candidates)
    assert set(study.result["trajectory"]) == {"guided", "random", "uniform"}
    progress = study_progress(study)
    assert (progress["round"], progress["rounds"], progress["rounds_decided"]) == (2, 2, 2)


# --- cancel and resume ----------------------------------------------------------------------


def test_cancel_keeps_the_decided_rounds_and_resume_sends_the_unfinished_jobs(
    researcher_user, django_capture_on_commit_callbacks
):
    study = _study(researcher_user)
    _run_round_zero(study)
    given = _round_one_given(study)
    _give_results(study, 1, {"guided": given["guided"]})
    counts = _record_counts()
    study_cancel(actor=researcher_user, study=study)
    assert study.status == "cancelled"
    assert StudyRound.objects.get(study=study, index=0).decided_at is not None
    assert _record_counts() == counts
    assert execute_job(run_id=study.pk, key="r1:random:s0") == "gone"
    with pytest.raises(ValidationError, match="A cancelled run cannot be cancelled."):
        study_cancel(actor=researcher_user, study=study)

    with django_capture_on_commit_callbacks() as callbacks:
        resumed = study_resume(actor=researcher_user, study=study)
    assert len(callbacks) == 2  # the unfinished jobs, and a done job to decide what is done
    assert resumed.status == "queued"
    jobs = dict(study.jobs.filter(key__startswith="r1:").values_list("key", "status"))
    assert {key for key, status in jobs.items() if status == "done"} == {
        f"r1:guided:s{seed}" for seed in SEEDS
    }
    assert {status for key, status in jobs.items() if "guided" not in key} == {"pending"}
    _give_results(study, 1, {"random": given["random"], "uniform": given["uniform"]})
    study_advance(run_id=study.pk)
    assert StudyRound.objects.filter(study=study, index=1, decided_at__isnull=False).count() == 3


def test_resuming_a_study_stopped_between_its_last_job_and_the_decision_nudges_a_worker(
    researcher_user, django_capture_on_commit_callbacks
):
    study = _study(researcher_user)
    _run_round_zero(study)
    study_cancel(actor=researcher_user, study=study)
    # every job of round 1 finished after the cancel was requested
    _give_results(study, 1, _round_one_given(study))
    with django_capture_on_commit_callbacks() as callbacks:
        study_resume(actor=researcher_user, study=study)
    assert len(callbacks) == 2  # the dispatch (nothing to send) and the nudge
    # the nudged worker finds its job done and decides the round
    assert execute_job(run_id=study.pk, key="r1:guided:s2") == "done"
    assert StudyRound.objects.filter(study=study, index=1, decided_at__isnull=False).count() == 3


def test_a_finished_study_cannot_be_resumed_and_nothing_is_written(researcher_user):
    study = _study(researcher_user)
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        study_resume(actor=researcher_user, study=study)
    assert excinfo.value.message_dict == {"status": ["A queued run cannot be retried."]}


def test_a_failed_decision_fails_the_study_and_resume_decides_the_round(researcher_user):
    study = _study(researcher_user)
    _run_round_zero(study)
    given = _round_one_given(study)
    _give_results(study, 1, given)
    # A result without the study's metric cannot be decided: the study fails visibly.
    AnalysisJob.objects.filter(run=study, key="r1:uniform:s1").update(
        result={"seed": 1, "metrics": {}}
    )
    assert study_advance(run_id=study.pk) is False
    study.refresh_from_db()
    assert (study.status, study.failure) == ("failed", "internal")
    assert study.error.startswith("deciding a round: internal error (KeyError)")
    assert not Outcome.objects.exists()  # the round's writes were rolled back together
    _give_results(study, 1, {"uniform": given["uniform"]})
    study_resume(actor=researcher_user, study=study)
    assert study_advance(run_id=study.pk) is False
    assert Outcome.objects.filter(source="study").count() == 3


def test_the_sweeper_finds_a_study_whose_decision_was_lost(researcher_user, settings):
    """A study whose every job is done but whose round was never decided (its worker died
    in between) is nudged by the sweep once a lease has passed, and only once per lease."""
    from analysis.dispatch import broker_mark
    from tests.analysis.workers import require_redis, unique_queue

    require_redis()
    broker_mark()  # this broker holds the queue: the sweep sends nothing else again
    settings.ANALYSIS_QUEUE = unique_queue()
    study = _study(researcher_user)
    _run_round_zero(study)
    _give_results(study, 1, _round_one_given(study))
    assert services.runs_sweep() == services.Swept()  # the last job finished just now
    past = timezone.now() - timezone.timedelta(seconds=settings.ANALYSIS_JOB_LEASE_SECONDS + 5)
    AnalysisRun.objects.filter(pk=study.pk).update(dispatched_at=past)
    study.jobs.update(finished_at=past)
    assert services.runs_sweep() == services.Swept()  # its caller runs its jobs, not workers
    base = StudyRound.objects.get(study=study, index=0)
    StudyRound.objects.filter(pk=base.pk).update(plan={**base.plan, "dispatch": True})
    assert services.runs_sweep() == services.Swept(studies=1)
    assert services.runs_sweep() == services.Swept()
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    assert broker.llen(settings.ANALYSIS_QUEUE) == 1  # one message, for one done job
    broker.delete(settings.ANALYSIS_QUEUE)
    # the nudged job's worker decides the round
    assert execute_job(run_id=study.pk, key="r1:uniform:s2") == "done"
    assert StudyRound.objects.filter(study=study, index=1, decided_at__isnull=False).count() == 3


@pytest.mark.django_db(transaction=True)
def test_two_workers_advancing_at_once_decide_the_round_once(researcher_user):
    """Two workers finish a round's last jobs at the same moment and both call study_advance:
    the lock on the study's row lets one decide; the other then finds the round decided."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    from tests.analysis.workers import require_postgresql

    require_postgresql()
    study = _study(researcher_user)
    _run_round_zero(study)
    _give_results(study, 1, _round_one_given(study))

    def advance(_: int) -> bool:
        try:
            return study_advance(run_id=study.pk)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        assert list(pool.map(advance, range(2))) == [False, False]
    assert StudyRound.objects.filter(study=study, index=1, decided_at__isnull=False).count() == 3
    assert StudyRound.objects.filter(study=study, index=2).count() == 3
    assert Outcome.objects.filter(source="study").count() == 3
    assert Event.objects.filter(action="outcome_recorded").count() == 3


@pytest.mark.django_db(transaction=True)
def test_two_workers_advancing_different_tracks_at_once_plan_each_row_once(researcher_user):
    """The guided and the random candidates of round 1 finish at the same moment on two
    workers: each row is decided once, round 2's guided and random rows planned once."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    from tests.analysis.workers import require_postgresql

    require_postgresql()
    study = _study(researcher_user)
    _run_round_zero(study)
    base, given = _base_values(study), _round_one_given(study)
    _give_results(study, 1, {"guided": [b + d for b, d in zip(base, GUIDED_LOSS, strict=True)],
                             "random": given["random"]})  # fmt: skip

    def advance(_: int) -> bool:
        try:
            return study_advance(run_id=study.pk)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        assert list(pool.map(advance, range(2))) == [False, False]
    study.refresh_from_db()
    assert study.status == "running", study.error
    rows = sorted(StudyRound.objects.filter(study=study).values_list("index", "track"))
    assert rows == [(0, "base"), (1, "guided"), (1, "random"), (1, "uniform"), (2, "guided"),
                    (2, "random")]  # fmt: skip
    assert study.jobs.filter(key__startswith="r2:").count() == 6
    assert Outcome.objects.count() == 0


# --- who sends the next rounds: the caller, or the workers once they have the study ---------


def _round_two_sent(study: Study, callbacks) -> bool:
    """Whether deciding round 1 sent round 2's jobs: they exist, the study counts as not yet
    dispatched (the sweeper sends them should the broker be down) and one dispatch waits for
    the commit."""
    study.refresh_from_db()
    return (
        study.jobs.filter(key__startswith="r2:").exists()
        and study.dispatched_at is None
        and len(callbacks) == 1
    )


def test_a_caller_run_study_resumed_from_a_page_has_its_next_rounds_sent_to_the_workers(
    researcher_user, django_capture_on_commit_callbacks
):
    study = _study(researcher_user)  # its caller runs its jobs (dispatch=False)
    _run_round_zero(study)
    study_cancel(actor=researcher_user, study=study)
    study_resume(actor=researcher_user, study=study)
    assert StudyRound.objects.get(study=study, index=0).plan["dispatch"] is True
    _give_results(study, 1, _round_one_given(study))
    with django_capture_on_commit_callbacks() as callbacks:
        study_advance(run_id=study.pk)
    assert _round_two_sent(study, callbacks)


def test_a_caller_run_study_whose_job_a_worker_ran_has_its_next_rounds_sent_to_the_workers(
    researcher_user, django_capture_on_commit_callbacks
):
    """The sweeper sent a job of a study whose caller died; the worker that ran it decides
    the round and sends the next."""
    study = _study(researcher_user)
    _run_round_zero(study)
    _give_results(study, 1, _round_one_given(study))
    study.jobs.filter(key="r1:uniform:s2").update(claimed_by="celery@worker-1")
    with django_capture_on_commit_callbacks() as callbacks:
        study_advance(run_id=study.pk)
    assert _round_two_sent(study, callbacks)
    assert StudyRound.objects.get(study=study, index=0).plan["dispatch"] is True


def test_a_caller_run_study_keeps_its_rounds_while_its_caller_runs_them(
    researcher_user, django_capture_on_commit_callbacks
):
    study = _study(researcher_user)
    _run_round_zero(study)
    _give_results(study, 1, _round_one_given(study))
    with django_capture_on_commit_callbacks() as callbacks:
        study_advance(run_id=study.pk)
    study.refresh_from_db()
    assert study.jobs.filter(key__startswith="r2:").exists()
    assert (study.dispatched_at is not None, callbacks) == (True, [])
    assert StudyRound.objects.get(study=study, index=0).plan["dispatch"] is False


def test_the_sweeper_hands_a_caller_run_study_whose_caller_died_to_the_workers(
    researcher_user, settings
):
    """The caller died in round 1: the sweeper sent the job whose lease ran out and a worker
    claimed it; the round's other jobs, never sent, go to the workers at the next sweep."""
    from analysis.dispatch import broker_mark
    from tests.analysis.workers import require_redis, unique_queue

    require_redis()
    broker_mark()
    settings.ANALYSIS_QUEUE = unique_queue()
    study = _study(researcher_user)
    _run_round_zero(study)
    _give_results(study, 1, {"guided": _round_one_given(study)["guided"]})
    study.jobs.filter(key="r1:random:s0").update(
        status=AnalysisJob.Status.RUNNING, claimed_by="celery@worker-1", heartbeat_at=timezone.now()
    )
    assert services.runs_sweep() == services.Swept()  # handed over: dispatch it next sweep
    assert StudyRound.objects.get(study=study, index=0).plan["dispatch"] is True
    assert services.runs_sweep() == services.Swept(runs=1)
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    assert broker.llen(settings.ANALYSIS_QUEUE) == 6  # the round's unfinished jobs
    broker.delete(settings.ANALYSIS_QUEUE)
    assert services.runs_sweep() == services.Swept()


def _queued_keys(broker_url: str, queue: str) -> list[str]:
    """The job keys of the messages waiting on the broker's queue, oldest first."""
    import json

    messages = redis.Redis.from_url(broker_url).lrange(queue, 0, -1)
    # Pushed on the left, taken from the right; a message's headers show its task's arguments.
    return [json.loads(message)["headers"]["argsrepr"].split("'")[1] for message in messages][::-1]


@pytest.fixture
def study_queue(settings):
    """A queue of this test's own on the real Redis, as the analysis queue; emptied after."""
    from tests.analysis.workers import require_redis, unique_queue

    require_redis()
    settings.ANALYSIS_QUEUE = queue = unique_queue()
    yield queue
    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(queue)


def test_new_jobs_go_to_the_queue_once_in_the_order_planned_guided_first(
    researcher_user, settings, django_capture_on_commit_callbacks, study_queue
):
    queue = study_queue
    study = study_request(
        actor=researcher_user, model=BuiltinModelFactory(), settings=TINY
    )  # the workers run it: round 0's own dispatch is left out here
    with django_capture_on_commit_callbacks(execute=True):
        _run_round_zero(study)
    assert _queued_keys(settings.CELERY_BROKER_URL, queue) == [
        f"r1:{track}:s{seed}" for track in ("guided", "random", "uniform") for seed in SEEDS
    ]
    study.refresh_from_db()
    assert study.dispatched_at is not None
    # The guided candidate is done before the controls': only its round 2 is sent, not
    # the controls' round-1 jobs again, which are on the queue already.
    base = _base_values(study)
    _give_results(study, 1, {"guided": [b + d for b, d in zip(base, GUIDED_LOSS, strict=True)]})
    with django_capture_on_commit_callbacks(execute=True):
        study_advance(run_id=study.pk)
    assert _queued_keys(settings.CELERY_BROKER_URL, queue)[9:] == [
        f"r2:guided:s{seed}" for seed in SEEDS
    ]
    study.refresh_from_db()
    assert study.dispatched_at is not None


def _assert_controls_round_one_then_guided_round_two_queued(settings, queue, study):
    """Every unfinished job is on the queue, in the order planned, and the study counts as
    dispatched."""
    controls = [f"r1:{track}:s{seed}" for track in ("random", "uniform") for seed in SEEDS]
    assert _queued_keys(settings.CELERY_BROKER_URL, queue) == [
        *controls,
        *(f"r2:guided:s{seed}" for seed in SEEDS),
    ]
    study.refresh_from_db()
    assert study.dispatched_at is not None


def test_a_caller_run_studys_unsent_jobs_go_with_the_first_jobs_its_new_workers_plan(
    researcher_user, settings, django_capture_on_commit_callbacks, study_queue
):
    """The caller died in round 1 and a worker ran its guided job: deciding the guided row
    plans its round 2, and the controls' round-1 jobs, which the caller never sent nor
    ran, go to the queue with it."""
    queue = study_queue
    study = _study(researcher_user)
    _run_round_zero(study)
    base = _base_values(study)
    _give_results(study, 1, {"guided": [b + d for b, d in zip(base, GUIDED_LOSS, strict=True)]})
    study.jobs.filter(key="r1:guided:s2").update(claimed_by="celery@worker-1")
    with django_capture_on_commit_callbacks(execute=True):
        study_advance(run_id=study.pk)
    _assert_controls_round_one_then_guided_round_two_queued(settings, queue, study)


def test_jobs_planned_after_a_failed_send_go_with_every_unfinished_job(
    researcher_user, settings, django_capture_on_commit_callbacks, study_queue
):
    """An earlier send failed (the study is marked not dispatched) and the sweeper has not
    come by yet: the next planning sends every unfinished job, not only its own."""
    queue = study_queue
    study = study_request(actor=researcher_user, model=BuiltinModelFactory(), settings=TINY)
    _run_round_zero(study)  # round 1's send "fails": nothing reaches the queue
    AnalysisRun.objects.filter(pk=study.pk).update(dispatched_at=None)
    base = _base_values(study)
    _give_results(study, 1, {"guided": [b + d for b, d in zip(base, GUIDED_LOSS, strict=True)]})
    with django_capture_on_commit_callbacks(execute=True):
        study_advance(run_id=study.pk)
    _assert_controls_round_one_then_guided_round_two_queued(settings, queue, study)


def test_resuming_sends_a_done_job_so_a_row_done_before_the_cancel_is_decided(
    researcher_user, django_capture_on_commit_callbacks, monkeypatch
):
    """Cancelled after the guided row's last job but before its decision: resume sends one
    done job besides the unfinished ones, whose worker decides that row at once."""
    nudged = []
    monkeypatch.setattr(services, "jobs_send", lambda jobs: nudged.extend(jobs))
    study = _study(researcher_user)
    _run_round_zero(study)
    base = _base_values(study)
    _give_results(study, 1, {"guided": [b + d for b, d in zip(base, GUIDED_LOSS, strict=True)]})
    study_cancel(actor=researcher_user, study=study)
    with django_capture_on_commit_callbacks(execute=True):
        study_resume(actor=researcher_user, study=study)
    controls = [f"r1:{track}:s{seed}" for track in ("random", "uniform") for seed in SEEDS]
    # the unfinished jobs, then the latest done one
    assert [key for run_id, key in nudged if run_id == study.pk] == [*controls, "r1:guided:s2"]


# --- a metric that is no number --------------------------------------------------------------


def _with_none(values: list[float], seed: int) -> list[float | None]:
    return [None if index == seed else value for index, value in enumerate(values)]


def test_a_candidate_without_a_number_at_a_seed_is_not_kept_and_records_no_outcome(
    researcher_user,
):
    """A seed whose metric was NaN (stored as None by the job) leaves the comparison
    undefined: the candidate is not kept, no outcome is recorded and the decision says so;
    the study goes on."""
    study = _study(researcher_user)
    _run_round_zero(study)
    given = _round_one_given(study)
    _give_results(study, 1, given | {"guided": _with_none(given["guided"], 1)})
    assert study_advance(run_id=study.pk) is False
    study.refresh_from_db()
    assert study.status != "failed", study.error
    guided = StudyRound.objects.get(study=study, index=1, track="guided")
    assert guided.values == _with_none(given["guided"], 1)
    assert (guided.summary["n"], guided.summary["mean"]) == (3, None)
    assert guided.kept is False
    assert guided.decision["comparison"]["difference"] is None
    why = (
        "no outcome recorded: the metric is no number (the candidate's at seed(s) 1), so the "
        "effect is undefined"
    )
    assert guided.decision["outcome"] == why
    assert guided.decision["reason"].endswith(f"; {why}")
    assert guided.outcome is None
    assert (guided.insight is not None, guided.change.status) == (True, "evaluated")
    assert set(Outcome.objects.values_list("study_round__track", flat=True)) == {
        "random", "uniform",
    }  # fmt: skip
    assert StudyRound.objects.filter(study=study, index=2).count() == 3


def test_a_random_candidate_without_a_number_is_left_out_of_the_guided_outcome(
    researcher_user,
):
    study = _study(researcher_user)
    _run_round_zero(study)
    given = _round_one_given(study)
    _give_results(study, 1, given | {"random": _with_none(given["random"], 2)})
    study_advance(run_id=study.pk)
    rows = {row.track: row for row in StudyRound.objects.filter(study=study, index=1)}
    guided = rows["guided"].outcome
    assert (guided.control_values, guided.effect_vs_control) == ([], None)
    assert guided.notes.endswith(
        "\n- Not compared with the random candidate: its metric is no number at seed(s) 2."
    )
    assert guided.verdict == "improved"
    assert rows["random"].outcome is None
    assert rows["random"].decision["outcome"].startswith("no outcome recorded")
    assert rows["uniform"].outcome is not None
