"""The change experiment end to end, its planning, configuration and aggregation."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from scipy import stats as scipy_stats

from analysis import configs
from analysis.engine.experiments import (
    MECHANISM_TEST,
    ExperimentConfig,
    aggregate_experiment,
    run_experiment_locally,
    summarise_mechanism,
)
from analysis.engine.run_settings import SettingsError
from tests.analysis.engine_helpers import TINY_CNN

REPO_ROOT = Path(__file__).resolve().parents[2]
QUICK = {
    "dataset": {"name": "shapes", "n": 300, "seed": 0, "size": 12},
    "train": {"epochs": 1, "batch_size": 32},
    "seeds": [0, 1, 2],
    "concept": "curvature",
}


def _fake_results(values_by_arm):
    return {
        arm: [
            {"seed": seed, "metrics": {"test_accuracy": value}, "dataset_fingerprint": "f"}
            for seed, value in enumerate(values)
        ]
        for arm, values in values_by_arm.items()
    }


def test_run_experiment_locally_returns_a_complete_aggregate():
    # Given a tiny CNN, a guided widening of conv2 and a 3-seed, 1-epoch configuration
    # When the whole experiment runs in this process
    outcome = run_experiment_locally(
        TINY_CNN, "widen_layer", {"layer": "conv2", "units": 2}, QUICK, control_seed=0
    )
    aggregate = outcome["aggregate"]
    # Then every arm ran every seed and the answer is complete and JSON-able
    json.dumps(outcome)
    assert {arm: len(runs) for arm, runs in outcome["arm_results"].items()} == {
        "baseline": 3,
        "variant": 3,
        "control": 3,
    }
    assert [row["seed"] for row in aggregate["per_seed"]] == [0, 1, 2]
    assert set(aggregate["arms"]) == {"baseline", "variant", "control"}
    assert aggregate["verdict"] in {"improved", "no_effect", "worse", "inconclusive"}
    assert aggregate["variant_vs_baseline"]["n"] == 3
    assert aggregate["variant_vs_control"]["seeds"] == [0, 1, 2]
    assert any(warning.startswith("N=3 seeds can detect") for warning in aggregate["warnings"])
    # And the mechanism check compared the two added conv2 channels with the original six
    mechanism = aggregate["mechanism"]
    assert (mechanism["layer"], mechanism["concept"], mechanism["seeds"]) == (
        "conv2",
        "curvature",
        3,
    )
    assert mechanism["score_kind"] == "abs_correlation"
    first = outcome["arm_results"]["variant"][0]["mechanism"]
    assert (len(first["added_scores"]), len(first["original_scores"])) == (2, 6)
    assert 0.0 <= mechanism["p_value"] <= 1.0
    assert [row["seed"] for row in mechanism["per_seed"]] == [0, 1, 2]
    # And the control widened a different layer by a matching budget
    plan = outcome["plan"]
    assert plan["control"]["parameters"]["layer"] != "conv2"
    added = plan["variant"]["params_added"]
    assert abs(plan["control"]["result"]["params_added"] - added) <= 0.05 * added


# Run settings as a request or a frozen run hands them over; what configs.py refuses for the
# web process, the engine must refuse too, under the same keys with the same messages.
SETTINGS_CASES = [
    {},
    {"seeds": 20},
    {"seeds": 2},
    {"seeds": 21},
    {"seeds": 10**30},
    {"seeds": list(range(21))},
    {"seeds": [0, 1, True]},
    {"seeds": [0, 1, -1]},
    {"seeds": [0, 1, 2**31]},
    {"seeds": [0, 0, 1]},
    {"seeds": "five"},
    {"train": {"test_fraction": 0.99}},
    {"train": {"threads": 64}},
    {"train": {"split_seed": 1}},
    {"train": {"epochs": 101}},
    {"train": {"learning_rate": float("nan")}},
    {"train": {"optimizer": "lion"}},
    {"train": "fast"},
    {"dataset": "shapes"},
    {"dataset": {"name": "imagenet"}},
    {"dataset": {"name": "shapes", "n": 10}},
    {"dataset": {"name": "shapes", "noise": 0.5}},
    {"dataset": {"name": "fashion-mnist", "path": "/etc"}},
    {"concept": "wings"},
    {"concept": "x" * 101},
    {"dataset": {"name": "digits"}, "concept": "curvature"},
    {"dataset": {"name": "digits", "limit": 50}, "train": {"epochs": 1, "optimizer": "sgd"},
     "seeds": [4, 5, 6], "concept": "7"},
    {"dataset": {"name": "shapes", "n": 20, "size": 100}, "train": {"epochs": 0},
     "seeds": [0, 1, 1], "concept": "wings"},
]  # fmt: skip


def _web_outcome(settings: dict) -> tuple[str, dict]:
    try:
        cleaned = configs.experiment_config_clean(settings)
    except ValidationError as error:
        return "refused", error.message_dict
    return "accepted", {key: cleaned[key] for key in ("dataset", "train", "seeds", "concept")}


def _engine_outcome(settings: dict) -> tuple[str, dict]:
    try:
        config = ExperimentConfig(**settings)
    except SettingsError as error:
        return "refused", error.field_errors
    return "accepted", {"dataset": config.dataset, "train": config.train,
                        "seeds": config.seeds, "concept": config.concept or ""}  # fmt: skip


@pytest.mark.parametrize("settings", SETTINGS_CASES)
def test_the_engine_refuses_exactly_what_the_web_process_refuses(settings):
    web, engine = _web_outcome(settings), _engine_outcome(settings)
    assert engine == web


def test_every_case_of_the_comparison_is_told_apart():
    outcomes = [_web_outcome(settings)[0] for settings in SETTINGS_CASES]
    assert (outcomes.count("accepted"), outcomes.count("refused")) == (3, 25)


def test_a_refused_config_is_still_a_value_error_naming_its_field():
    with pytest.raises(ValueError, match=r"^seeds: use 3 to 20 seeds, got 2\.$"):
        ExperimentConfig(**{**QUICK, "seeds": [0, 1]})


def test_what_counts_as_success_is_refused_under_its_own_field():
    with pytest.raises(SettingsError) as excinfo:
        ExperimentConfig(**{**QUICK, "seeds": [0], "metric": "f1", "direction": "up",
                            "minimum_effect": -0.1})  # fmt: skip
    assert excinfo.value.field_errors == {
        "seeds": ["use 3 to 20 seeds, got 1."],
        "metric": ["must be one of test_accuracy, test_loss, train_loss, got 'f1'."],
        "direction": ["must be one of increase, decrease, got 'up'."],
        "minimum_effect": ["must be a number >= 0, got -0.1."],
    }


def test_small_seed_counts_are_allowed_when_asked_but_never_below_two_or_above_the_cap():
    assert ExperimentConfig(**{**QUICK, "seeds": [0, 1], "allow_small": True}).seeds == [0, 1]
    for seeds, count in (([0], 1), (list(range(21)), 21)):
        with pytest.raises(SettingsError) as excinfo:
            ExperimentConfig(**{**QUICK, "seeds": seeds, "allow_small": True})
        assert excinfo.value.field_errors == {"seeds": [f"use 2 to 20 seeds, got {count}."]}


def test_a_config_is_normalised_and_survives_its_dict_form():
    config = ExperimentConfig(dataset={"name": "shapes", "n": 300, "size": 12}, seeds=3)
    assert (config.dataset, config.seeds, config.concept) == (
        {"name": "shapes", "n": 300, "seed": 0, "size": 12}, [0, 1, 2], None,
    )  # fmt: skip
    assert ExperimentConfig.coerce(config.to_dict()) == config


def test_aggregate_verdict_and_comparisons_from_known_numbers():
    results = _fake_results(
        {
            "baseline": [0.70, 0.72, 0.71, 0.69, 0.70],
            "variant": [0.75, 0.78, 0.76, 0.74, 0.76],
            "control": [0.70, 0.73, 0.70, 0.70, 0.71],
        }
    )
    aggregate = aggregate_experiment(results, {**QUICK, "seeds": [0, 1, 2, 3, 4]})
    assert aggregate["verdict"] == "improved"
    assert aggregate["variant_vs_baseline"]["difference"] == pytest.approx(0.054)
    assert aggregate["variant_vs_control"]["verdict"] == "improved"
    assert aggregate["arms"]["variant"]["mean"] == pytest.approx(0.758)
    assert aggregate["mechanism"] is None
    assert aggregate["warnings"] == []


def test_aggregate_warns_about_missing_seeds():
    results = _fake_results({"baseline": [0.7, 0.7, 0.71], "variant": [0.7, 0.72]})
    aggregate = aggregate_experiment(results, QUICK)
    assert "seeds missing in some arm: [2]" in aggregate["warnings"]
    assert aggregate["variant_vs_baseline"]["n"] == 2


def test_aggregate_of_a_constant_difference_claims_nothing():
    # Given a variant exactly 0.02 better than the baseline on every seed
    results = _fake_results({"baseline": [0.70, 0.72, 0.71], "variant": [0.72, 0.74, 0.73]})
    aggregate = aggregate_experiment(results, QUICK)
    # Then there is no p-value, no interval and no effect size, and the verdict is inconclusive
    comparison = aggregate["variant_vs_baseline"]
    assert comparison["difference"] == pytest.approx(0.02)
    assert [comparison[key] for key in ("p_value", "ci_low", "ci_high", "effect_size")] == [
        None, None, None, None,
    ]  # fmt: skip
    assert (comparison["verdict"], aggregate["verdict"]) == ("inconclusive", "inconclusive")
    assert aggregate["warnings"] == [
        "the difference in test_accuracy is the same on all 3 seeds, so its spread, and with "
        "it the power to detect the expected effect, cannot be estimated"
    ]


def _check(added_scores, original_scores):
    return {
        "layer": "conv2", "concept": "curvature", "score_kind": "abs_correlation",
        "added_units": [6, 7], "added_scores": added_scores,
        "original_scores": original_scores, "added_mean": float(np.mean(added_scores)),
        "original_mean": float(np.mean(original_scores)),
    }  # fmt: skip


def _variant_results(checks):
    return [{"seed": seed, "mechanism": check} for seed, check in checks]


MECHANISM_SCORES = [  # per seed: scores of the two added units, of the six original units
    (0, [0.30, 0.50], [0.10, 0.20, 0.15, 0.30, 0.05, 0.20]),
    (1, [0.20, 0.25], [0.20, 0.25, 0.10, 0.15, 0.30, 0.20]),
    (2, [0.60, 0.40], [0.30, 0.20, 0.25, 0.35, 0.10, 0.20]),
    (3, [0.15, 0.35], [0.20, 0.10, 0.30, 0.25, 0.15, 0.20]),
]


def test_mechanism_is_tested_across_seeds_with_one_difference_per_seed():
    # Given four seeds' checks of two added units against six original units
    results = _variant_results(
        [(seed, _check(added, original)) for seed, added, original in MECHANISM_SCORES]
    )
    added_means = [np.mean(added) for _, added, _ in MECHANISM_SCORES]
    original_means = [np.mean(original) for _, _, original in MECHANISM_SCORES]
    differences = np.subtract(added_means, original_means)
    # When they are summarised
    summary = summarise_mechanism(results)
    # Then the test is a paired t-test over the four per-seed differences, as scipy computes it
    expected = scipy_stats.ttest_rel(added_means, original_means)
    assert expected.pvalue == pytest.approx(scipy_stats.ttest_1samp(differences, 0).pvalue)
    interval = expected.confidence_interval(0.95)
    assert summary["test"] == MECHANISM_TEST
    assert summary["seeds"] == 4
    assert [row["seed"] for row in summary["per_seed"]] == [0, 1, 2, 3]
    assert [row["difference"] for row in summary["per_seed"]] == pytest.approx(differences)
    assert summary["difference"] == pytest.approx(differences.mean())
    assert summary["statistic"] == pytest.approx(expected.statistic)
    assert (summary["df"], summary["p_value"]) == (3, pytest.approx(expected.pvalue))
    assert (summary["ci_low"], summary["ci_high"]) == pytest.approx((interval.low, interval.high))
    assert summary["seeds_added_at_least_original"] == 4
    # And the verdict is the per-seed test's: pooling the 8 added units as if independent
    # would have called them more selective (Mann-Whitney p < 0.05)
    pooled = scipy_stats.mannwhitneyu(
        sum((added for _, added, _ in MECHANISM_SCORES), []),
        sum((original for _, _, original in MECHANISM_SCORES), []),
    )
    assert pooled.pvalue < 0.05 < summary["p_value"]
    assert "mann_whitney_u" not in summary
    assert summary["interpretation"] == (
        f"added units are about as selective as the original units (mean per-seed difference "
        f"{differences.mean():+.3g}, 95% CI [{interval.low:.3g}, {interval.high:.3g}], paired "
        f"t-test over 4 seeds p={expected.pvalue:.3g})"
    )


def test_mechanism_that_is_consistent_across_seeds_is_called_more_selective():
    results = _variant_results(
        [(seed, _check([0.4 + 0.01 * seed, 0.5], [0.2, 0.25])) for seed in range(3)]
    )
    summary = summarise_mechanism(results)
    assert summary["p_value"] < 0.05
    assert summary["interpretation"].startswith(
        "added units are more selective than the original units (mean per-seed difference"
    )


def test_mechanism_with_one_seed_or_a_constant_difference_has_no_test():
    one = summarise_mechanism(_variant_results([(5, _check([0.4, 0.6], [0.2, 0.2]))]))
    assert (one["seeds"], one["difference"]) == (1, pytest.approx(0.3))
    assert [one[key] for key in ("statistic", "p_value", "ci_low", "ci_high")] == [None] * 4
    assert one["interpretation"] == (
        "on its one checked seed the added units' mean score minus the original units' was "
        "+0.3; one seed allows no test across seeds"
    )
    constant = summarise_mechanism(
        _variant_results([(0, _check([0.5], [0.25])), (1, _check([0.75], [0.5]))])
    )
    assert [constant[key] for key in ("statistic", "p_value", "ci_low", "ci_high")] == [None] * 4
    assert constant["interpretation"] == (
        "the added units differed from the original units by +0.25 on every one of 2 seeds "
        "alike, so the test across seeds is undefined"
    )


def test_mechanism_errors_are_reported_beside_the_valid_seeds():
    results = _variant_results(
        [(seed, _check(added, original)) for seed, added, original in MECHANISM_SCORES[:3]]
    ) + [{"seed": 3, "mechanism": {"error": "no such concept"}}]
    summary = summarise_mechanism(results)
    assert (summary["seeds"], summary["errors"]) == (3, ["no such concept"])
    assert summarise_mechanism([{"seed": 0, "mechanism": {"error": "x"}}]) == {
        "seeds": 0, "errors": ["x"], "interpretation": "mechanism check failed",
    }  # fmt: skip
    assert summarise_mechanism([{"seed": 0, "mechanism": None}]) is None


def test_torch_free_modules_do_not_import_torch():
    code = (
        "import sys\n"
        "import analysis.engine, analysis.engine.specs, analysis.engine.changes\n"
        "import analysis.engine.stats, analysis.engine.profiles\n"
        "print('torch' in sys.modules, 'django' in sys.modules)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == "False False"
