"""A study's numbers from hand-made per-seed values, recomputed with scipy."""

import json
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from analysis.engine.study_report import (
    json_safe,
    study_final_report,
    study_round_decide,
    study_trajectory,
    study_values_summary,
)

CONFIG = {"tracks": ["guided", "random", "uniform"], "metric": "test_accuracy",
          "direction": "increase", "level": 0.95, "seeds": [0, 1, 2, 3], "rounds": 3}  # fmt: skip
BASE = [0.60, 0.62, 0.58, 0.61]


def _row(index, track, values, parameters, kept=False, sat_out=False) -> dict:
    return {"index": index, "track": track, "values": values, "parameters": parameters,
            "kept": kept, "sat_out": sat_out}  # fmt: skip


# Guided keeps rounds 1 and 3; random keeps nothing and sits round 2 out; uniform keeps round 2.
ROUNDS = [
    _row(0, "base", BASE, 1000, kept=None),
    _row(1, "guided", [0.66, 0.67, 0.63, 0.68], 1100, kept=True),
    _row(1, "random", [0.59, 0.63, 0.57, 0.60], 1102),
    _row(1, "uniform", [0.61, 0.61, 0.60, 0.62], 1099),
    _row(2, "guided", [0.65, 0.66, 0.64, 0.66], 1210),
    _row(2, "random", None, 1000, sat_out=True),
    _row(2, "uniform", [0.63, 0.66, 0.62, 0.64], 1099 + 110, kept=True),
    _row(3, "guided", [0.70, 0.74, 0.69, 0.73], 1230, kept=True),
    _row(3, "random", [0.61, 0.60, 0.58, 0.66], 1125),
    _row(3, "uniform", [0.62, 0.66, 0.61, 0.65], 1330),
]


def test_values_summary_is_the_t_interval_and_none_where_undefined():
    values = [0.61, 0.65, 0.6, 0.7]
    low, high = scipy_stats.t.interval(
        0.95, df=3, loc=np.mean(values), scale=scipy_stats.sem(values)
    )
    summary = study_values_summary(values)
    assert summary == {"n": 4, "mean": pytest.approx(np.mean(values)),
                       "ci_low": pytest.approx(low), "ci_high": pytest.approx(high)}  # fmt: skip
    assert study_values_summary([]) == {"n": 0, "mean": None, "ci_low": None, "ci_high": None}
    assert study_values_summary(None)["mean"] is None
    assert study_values_summary([0.5]) == {"n": 1, "mean": 0.5, "ci_low": None, "ci_high": None}
    assert study_values_summary([0.5, 0.5, 0.5]) == {
        "n": 3, "mean": 0.5, "ci_low": None, "ci_high": None,
    }  # fmt: skip
    # A diverged seed's loss is no number: nothing non-finite reaches the JSON
    assert study_values_summary([1.0, math.inf, 2.0]) == {
        "n": 3, "mean": None, "ci_low": None, "ci_high": None,
    }  # fmt: skip


def test_round_decision_keeps_a_candidate_better_on_the_paired_interval():
    current, candidate = BASE, [0.66, 0.67, 0.63, 0.68]
    decision = study_round_decide(CONFIG, current, candidate)
    reference = scipy_stats.ttest_rel(candidate, current)
    interval = reference.confidence_interval(0.95)
    assert decision["kept"] is True
    assert decision["direction"] == "increase"
    assert decision["comparison"]["p_value"] == pytest.approx(reference.pvalue)
    assert decision["comparison"]["ci_low"] == pytest.approx(interval.low)
    assert decision["comparison"]["ci_high"] == pytest.approx(interval.high)
    assert decision["reason"].startswith("kept: the candidate replaces the current model")
    # A worse candidate, and one equal to the current model on every seed, are not kept.
    assert study_round_decide(CONFIG, current, [0.5, 0.52, 0.49, 0.5])["kept"] is False
    same = study_round_decide(CONFIG, current, list(current))
    assert same["kept"] is False
    assert same["comparison"]["ci_low"] is None
    json.dumps(same, allow_nan=False)
    # For a loss, lower is better.
    loss = study_round_decide({**CONFIG, "direction": "decrease"}, [0.9, 0.8, 0.85, 0.95],
                              [0.7, 0.65, 0.66, 0.8])  # fmt: skip
    assert loss["kept"] is True


def test_final_report_compares_each_track_final_model_paired_by_seed():
    report = study_final_report(CONFIG, ROUNDS)
    guided, uniform = ROUNDS[7]["values"], ROUNDS[6]["values"]
    # Final models: guided's last kept candidate (round 3), random never kept (the base),
    # uniform's round-2 candidate.
    assert {track: (final["round"], final["parameters"]) for track, final in
            report["final"].items()} == {"guided": (3, 1230), "random": (0, 1000),
                                         "uniform": (2, 1209)}  # fmt: skip
    assert report["final"]["random"]["values"] == BASE
    assert report["final"]["guided"]["mean"] == pytest.approx(np.mean(guided))
    # Guided against random (the base) and against uniform, recomputed with scipy.
    for name, control in (("guided_vs_random", BASE), ("guided_vs_uniform", uniform)):
        comparison = report["comparisons"][name]
        reference = scipy_stats.ttest_rel(guided, control)
        interval = reference.confidence_interval(0.95)
        differences = np.subtract(guided, control)
        assert comparison["difference"] == pytest.approx(differences.mean())
        assert comparison["p_value"] == pytest.approx(reference.pvalue)
        assert comparison["ci_low"] == pytest.approx(interval.low)
        assert comparison["ci_high"] == pytest.approx(interval.high)
        assert comparison["effect_size"] == pytest.approx(
            differences.mean() / differences.std(ddof=1)
        )
        assert comparison["verdict"] == "improved"
        assert comparison["guided_round"] == 3
    assert report["comparisons"]["guided_vs_uniform"]["control_parameters"] == 1209


def test_win_rate_counts_rounds_where_both_guided_and_random_had_a_candidate():
    report = study_final_report(CONFIG, ROUNDS)
    win_rate = report["win_rate"]
    # Round 2 is left out (random sat out); guided won rounds 1 and 3.
    interval = scipy_stats.binomtest(2, 2).proportion_ci(0.95, method="wilson")
    assert win_rate == {
        "wins": 2, "rounds": 2, "share": 1.0, "ci_low": pytest.approx(interval.low),
        "ci_high": pytest.approx(interval.high), "level": 0.95,
        "method": "wilson (scipy.stats.binomtest)", "round_indexes": [1, 3],
    }  # fmt: skip
    assert report["sat_out"] == {"guided": [], "random": [2], "uniform": []}
    assert (report["rounds_planned"], report["rounds_decided"]) == (3, 3)


def test_trajectory_starts_at_the_base_model_and_skips_rounds_sat_out():
    trajectory = study_trajectory(CONFIG, ROUNDS)
    assert [(p["round"], p["parameters"], p["kept"]) for p in trajectory["random"]] == [
        (0, 1000, None), (1, 1102, False), (3, 1125, False),
    ]  # fmt: skip
    assert [(p["round"], p["kept"]) for p in trajectory["guided"]] == [
        (0, None), (1, True), (2, False), (3, True),
    ]  # fmt: skip
    point = trajectory["uniform"][2]
    summary = study_values_summary(ROUNDS[6]["values"])
    assert point == {"round": 2, "parameters": 1209, "mean": summary["mean"],
                     "ci_low": summary["ci_low"], "ci_high": summary["ci_high"],
                     "kept": True}  # fmt: skip
    assert study_final_report(CONFIG, ROUNDS)["trajectory"] == trajectory


def test_a_study_without_a_random_track_has_no_win_rate_and_no_random_comparison():
    config = {**CONFIG, "tracks": ["guided", "uniform"]}
    rows = [row for row in ROUNDS if row["track"] != "random"]
    report = study_final_report(config, rows)
    assert report["comparisons"]["guided_vs_random"] is None
    assert report["comparisons"]["guided_vs_uniform"]["verdict"] == "improved"
    assert report["win_rate"] is None
    assert list(report["trajectory"]) == ["guided", "uniform"]


def test_a_study_that_kept_nothing_compares_the_base_with_itself_as_undefined():
    rows = [ROUNDS[0], _row(1, "guided", [0.5] * 4, 1100), _row(1, "random", [0.4] * 4, 1100),
            _row(1, "uniform", [0.45] * 4, 1100)]  # fmt: skip
    report = study_final_report(CONFIG, rows)
    comparison = report["comparisons"]["guided_vs_random"]
    assert (comparison["difference"], comparison["ci_low"], comparison["p_value"]) == (
        0.0,
        None,
        None,
    )
    assert comparison["verdict"] == "inconclusive"
    # Constant values: the win is counted, the summaries have no interval.
    assert report["win_rate"]["wins"] == 1
    assert report["trajectory"]["guided"][1]["ci_low"] is None
    json.dumps(report, allow_nan=False)


def test_a_report_before_any_round_has_only_the_base_model():
    report = study_final_report(CONFIG, ROUNDS[:1])
    assert report["final"]["guided"]["round"] == 0
    assert report["win_rate"]["rounds"] == 0
    assert report["win_rate"]["share"] is None
    assert report["rounds_decided"] == 0
    assert study_final_report(CONFIG, [])["final"] == {
        "guided": None, "random": None, "uniform": None,
    }  # fmt: skip


def test_non_finite_numbers_become_none():
    rows = [_row(0, "base", [math.nan, 0.5, 0.6, 0.7], 1000, kept=None),
            _row(1, "guided", [0.5, math.inf, 0.6, 0.7], 1100, kept=True),
            _row(1, "random", [0.5, 0.6, 0.6, 0.7], 1100)]  # fmt: skip
    report = study_final_report({**CONFIG, "tracks": ["guided", "random"]}, rows)
    text = json.dumps(report, allow_nan=False)
    assert "NaN" not in text and "Infinity" not in text
    assert report["final"]["guided"]["values"] == [0.5, None, 0.6, 0.7]
    # guided's round-1 mean is undefined, so that round has no winner
    assert (report["win_rate"]["rounds"], report["win_rate"]["round_indexes"]) == (0, [])


def test_a_seed_stored_without_a_number_leaves_its_statistics_undefined():
    # A diverged loss is stored as None (strict JSON); it is read back as no number
    assert study_values_summary([0.5, None, 0.7]) == {
        "n": 3, "mean": None, "ci_low": None, "ci_high": None,
    }  # fmt: skip
    decision = study_round_decide(CONFIG, BASE, [0.9, None, 0.9, 0.95])
    assert decision["kept"] is False
    assert (decision["comparison"]["ci_low"], decision["comparison"]["p_value"]) == (None, None)
    rows = [_row(0, "base", BASE, 1000, kept=None),
            _row(1, "guided", [0.7, None, 0.7, 0.7], 1100, kept=True),
            _row(1, "random", [0.6, 0.6, 0.6, 0.7], 1100, kept=True)]  # fmt: skip
    report = study_final_report({**CONFIG, "tracks": ["guided", "random"]}, rows)
    assert report["comparisons"]["guided_vs_random"]["p_value"] is None
    assert report["comparisons"]["guided_vs_random"]["verdict"] == "inconclusive"
    json.dumps(report, allow_nan=False)
    assert json_safe({"a": (np.float64(1.5), np.float32(math.nan)), "b": np.int64(3)}) == {
        "a": [1.5, None], "b": 3,
    }  # fmt: skip
