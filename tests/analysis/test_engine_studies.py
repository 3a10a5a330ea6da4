"""A study's jobs and a whole study run in one process, on tiny models and data."""

import json

import numpy as np
import pytest
from scipy import stats as scipy_stats

from analysis.engine.experiments import run_arm
from analysis.engine.profiles import as_profile
from analysis.engine.specs import count_parameters
from analysis.engine.studies import run_study_locally, study_job_run
from analysis.engine.study_plans import study_base_spec, study_round_plan
from analysis.engine.study_rules import guided_change, round_budget
from analysis.engine.study_settings import experiment_settings_of, study_config_clean
from kb.demo import SHAPES_CNN_SPEC
from tests.analysis import engine_helpers  # noqa: F401  (one CPU thread, as a worker)

SHAPES_CNN = SHAPES_CNN_SPEC
# The shapes CNN on 120 images for one epoch: a job takes well under a second.
TINY_SHAPES = {"dataset": {"name": "shapes", "n": 120}, "train": {"epochs": 1}, "seeds": 3,
               "concept": "curvature"}  # fmt: skip
# A digits MLP that learns within a few epochs, so wider candidates are kept.
DIGITS_MLP = {
    "input_shape": [1, 8, 8],
    "num_classes": 10,
    "layers": [
        {"name": "flatten", "type": "flatten"},
        {"name": "fc1", "type": "linear", "out_features": 6},
        {"name": "relu1", "type": "relu"},
        {"name": "fc_out", "type": "linear", "out_features": 10},
    ],
    "hyperparameters": {"learning_rate": 0.02, "optimizer": "adam", "batch_size": 32},
}
DIGITS_STUDY = {"dataset": {"name": "digits", "limit": 600}, "train": {"epochs": 5},
                "seeds": 3, "rounds": 2, "budget_fraction": 1.0, "concept": "3",
                "metric": "train_loss"}  # fmt: skip


@pytest.fixture(scope="module")
def shapes_config():
    return study_config_clean(TINY_SHAPES, spec=SHAPES_CNN)


def test_a_job_trains_exactly_as_a_change_experiment_arm(shapes_config):
    spec = study_base_spec(shapes_config, SHAPES_CNN)
    job = study_job_run(shapes_config, SHAPES_CNN, seed=1, profile=False, mechanism=None)
    arm = run_arm(spec, experiment_settings_of(shapes_config), seed=1)
    assert job["metrics"] == arm["metrics"]
    assert job["history"] == arm["history"]
    assert job["dataset_fingerprint"] == arm["dataset_fingerprint"]
    assert job["parameters"] == count_parameters(spec) == arm["parameters"]
    assert (job["seed"], job["device"], job["mechanism"], job["profile"]) == (1, "cpu", None, None)
    assert job["seconds"] > 0


def test_a_profiled_job_returns_per_unit_statistics_the_guided_rule_reads(shapes_config):
    # Given the base model's first-seed job with profiling on
    messages = []
    job = study_job_run(
        shapes_config, SHAPES_CNN, seed=0, profile=True, mechanism=None,
        on_progress=lambda fraction, message: messages.append(fraction),
    )  # fmt: skip
    profile = job["profile"]
    # Then the profile covers the probed layers with one number per unit (no activations)
    assert list(profile["layers"]) == ["relu1", "relu2", "relu3"]
    assert profile["class_names"] == ["line", "arc", "circle", "corner"]
    assert profile["attribute_names"] == ["curvature", "orientation"]
    assert profile["n_examples"] == 24  # the test split of 120 images
    for name, width in (("relu1", 8), ("relu2", 12), ("relu3", 32)):
        layer = profile["layers"][name]
        assert len(layer["mean"]) == len(layer["correlations"]["curvature"]) == width
        assert np.shape(layer["class_means"]) == (4, width)
    assert len(json.dumps(profile, allow_nan=False)) < 20_000
    # and the guided rule plans from it, stored form and all
    base = study_base_spec(shapes_config, SHAPES_CNN)
    choice = guided_change(base, profile, "curvature", budget=round_budget(base))
    assert choice.layer in ("conv1", "conv2", "fc1")
    assert as_profile(profile).layers["relu2"].width == 12
    assert messages[-1] == 1.0
    assert messages == sorted(messages)


def test_a_job_checks_the_added_units_of_a_guided_candidate(shapes_config):
    config = shapes_config
    profile = study_job_run(config, SHAPES_CNN, seed=0, profile=True, mechanism=None)["profile"]
    current = {track: {"spec": SHAPES_CNN, "profile": profile} for track in config["tracks"]}
    guided = study_round_plan(config, 1, current)["guided"]
    mechanism = guided["mechanism"]
    job = study_job_run(config, guided["spec"], seed=0, profile=False, mechanism=mechanism)
    check = job["mechanism"]
    assert (check["layer"], check["concept"]) == (mechanism["layer"], "curvature")
    assert check["added_units"] == mechanism["added_units"]
    assert check["score_kind"] == "abs_correlation"
    assert len(check["added_scores"]) == len(mechanism["added_units"])
    # A request the model cannot answer is recorded, not raised.
    wrong = study_job_run(config, guided["spec"], seed=0, profile=False,
                          mechanism={**mechanism, "layer": "nowhere"})  # fmt: skip
    assert wrong["mechanism"]["error"].startswith("\"no layer(s) 'nowhere' in the model")


@pytest.fixture(scope="module")
def digits_study():
    config = study_config_clean(DIGITS_STUDY, spec=DIGITS_MLP)
    progress = []
    first = run_study_locally(
        config, DIGITS_MLP, on_progress=lambda fraction, message: progress.append(
            (fraction, message))
    )  # fmt: skip
    return config, first, progress


def test_a_local_study_is_deterministic(digits_study):
    config, first, _ = digits_study
    again = run_study_locally(config, DIGITS_MLP)
    assert again == first
    json.dumps(first, allow_nan=False)


def test_a_local_study_writes_every_round_and_reports_on_them(digits_study):
    config, result, progress = digits_study
    rows = result["rounds"]
    assert [(row["index"], row["track"]) for row in rows] == [
        (0, "base"), (1, "guided"), (1, "random"), (1, "uniform"),
        (2, "guided"), (2, "random"), (2, "uniform"),
    ]  # fmt: skip
    base = rows[0]
    assert base["spec"] == study_base_spec(config, DIGITS_MLP)
    assert base["spec"]["hyperparameters"]["epochs"] == 5
    # Round 1: guided widens fc1 and its candidate is kept on the paired interval
    guided = rows[1]
    assert guided["operation"] == "widen_layer"
    assert guided["change_parameters"]["layer"] == "fc1"
    assert guided["kept"] is True and guided["decision"]["kept"] is True
    assert guided["mechanism"]["seeds"] == 3
    assert [row["mechanism"] for row in rows[2:4]] == [None, None]
    # The controls were budgeted by what guided added
    for row in rows[2:4]:
        assert row["plan"]["budget"] == guided["params_added"]
        assert abs(row["params_added"] - guided["params_added"]) <= 0.05 * guided["params_added"]
    # Each decision is the keep rule on the track's current values (the base in round 1)
    reference = scipy_stats.ttest_rel(guided["values"], base["values"])
    assert guided["decision"]["comparison"]["p_value"] == pytest.approx(reference.pvalue)
    # Round 2's guided rule read the profile of the kept candidate (fc1 now wider)
    widened = base["spec"]["layers"][1]["out_features"] + guided["change_parameters"]["units"]
    second = rows[4]
    assert second["plan"]["inputs"][0]["units"] == widened
    assert second["plan"]["budget"] == round_budget(guided["spec"], 1.0)
    # Progress after each of the 3 * (1 + 2 * 3) jobs
    assert [fraction for fraction, _ in progress] == pytest.approx(
        [(done + 1) / 21 for done in range(21)]
    )
    assert progress[0][1] == "round 0 base seed 0 done"


def test_a_local_study_report_matches_its_rounds(digits_study):
    config, result, _ = digits_study
    rows, report = result["rounds"], result["report"]
    final = {}
    for track in config["tracks"]:
        kept = [row for row in rows if row["track"] == track and row["kept"]]
        final[track] = kept[-1] if kept else rows[0]
        assert report["final"][track]["values"] == final[track]["values"]
        assert report["final"][track]["round"] == final[track]["index"]
        assert [point["round"] for point in report["trajectory"][track]] == [0, 1, 2]
    # Guided against random at the end, recomputed with scipy from the stored values
    comparison = report["comparisons"]["guided_vs_random"]
    guided, random = final["guided"]["values"], final["random"]["values"]
    assert np.ptp(np.subtract(guided, random)) > 0  # the differences vary: a t-test is defined
    reference = scipy_stats.ttest_rel(guided, random)
    interval = reference.confidence_interval(0.95)
    assert comparison["p_value"] == pytest.approx(reference.pvalue)
    assert (comparison["ci_low"], comparison["ci_high"]) == pytest.approx(
        (interval.low, interval.high)
    )
    assert comparison["difference"] == pytest.approx(np.mean(np.subtract(guided, random)))
    assert comparison["guided_parameters"] == final["guided"]["parameters"]
    # The win rate: rounds where guided's mean train loss was below random's (lower is better)
    by_round = {(row["index"], row["track"]): np.mean(row["values"]) for row in rows}
    wins = sum(by_round[(index, "guided")] < by_round[(index, "random")] for index in (1, 2))
    interval = scipy_stats.binomtest(int(wins), 2).proportion_ci(0.95, method="wilson")
    assert report["win_rate"]["wins"] == wins
    assert (report["win_rate"]["rounds"], report["win_rate"]["round_indexes"]) == (2, [1, 2])
    assert (report["win_rate"]["ci_low"], report["win_rate"]["ci_high"]) == pytest.approx(
        (interval.low, interval.high)
    )
