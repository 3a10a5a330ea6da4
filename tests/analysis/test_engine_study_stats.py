"""A study's keep rule and final comparisons, recomputed with scipy from per-seed values."""

import json

import numpy as np
import pytest
from scipy import stats as scipy_stats

from analysis.engine.study_stats import compare_tracks, guided_win_rate, keep_decision

CURRENT = [0.80, 0.82, 0.79, 0.81, 0.80]


def _scipy_paired(a, b):
    result = scipy_stats.ttest_rel(a, b)
    interval = result.confidence_interval(confidence_level=0.95)
    differences = np.subtract(a, b)
    return {
        "difference": differences.mean(), "ci_low": interval.low, "ci_high": interval.high,
        "p_value": result.pvalue, "effect_size": differences.mean() / differences.std(ddof=1),
    }  # fmt: skip


def test_a_clear_win_is_kept():
    candidate = [0.85, 0.86, 0.83, 0.87, 0.84]
    decision = keep_decision(CURRENT, candidate, direction="increase")
    assert decision.kept is True
    expected = _scipy_paired(candidate, CURRENT)
    assert {key: decision.comparison[key] for key in expected} == pytest.approx(expected)
    assert decision.comparison["ci_low"] > 0
    assert decision.reason.startswith("kept: the candidate replaces the current model; ")
    assert "lies above 0, the expected direction (increase)" in decision.reason
    assert json.loads(json.dumps(decision.to_dict())) == decision.to_dict()


def test_a_clear_loss_is_not_kept():
    candidate = [0.70, 0.73, 0.71, 0.69, 0.72]
    decision = keep_decision(CURRENT, candidate, direction="increase")
    assert decision.kept is False
    assert decision.comparison["ci_high"] == pytest.approx(
        _scipy_paired(candidate, CURRENT)["ci_high"]
    )
    assert decision.comparison["ci_high"] < 0
    assert decision.reason.startswith("not kept: the track keeps its current model; ")
    assert "lies below 0, against the expected direction" in decision.reason


def test_a_lower_loss_is_a_win_when_lower_is_better():
    current_loss = [0.50, 0.52, 0.49, 0.51, 0.50]
    candidate_loss = [0.40, 0.43, 0.41, 0.40, 0.42]
    assert keep_decision(current_loss, candidate_loss, direction="decrease").kept is True
    assert keep_decision(current_loss, candidate_loss, direction="increase").kept is False


def test_an_interval_that_includes_zero_is_not_kept():
    candidate = [0.81, 0.80, 0.80, 0.82, 0.79]
    decision = keep_decision(CURRENT, candidate, direction="increase")
    expected = _scipy_paired(candidate, CURRENT)
    assert expected["ci_low"] < 0 < expected["ci_high"]
    assert decision.kept is False


def test_a_constant_difference_has_no_interval_and_is_not_kept():
    # The candidate is better by exactly 0.02 on every seed: no spread, so no interval
    candidate = [0.82, 0.84, 0.81, 0.83, 0.82]
    decision = keep_decision(CURRENT, candidate, direction="increase")
    assert decision.kept is False
    assert decision.comparison["difference"] == pytest.approx(0.02)
    undefined = ("ci_low", "ci_high", "p_value", "effect_size")
    assert [decision.comparison[key] for key in undefined] == [None, None, None, None]
    assert "the values do not vary between seeds" in decision.reason
    assert json.loads(json.dumps(decision.to_dict()))["comparison"]["ci_low"] is None


@pytest.mark.parametrize(
    ("current", "candidate", "direction", "message"),
    [
        ([0.8, 0.9], [0.8], "increase", "paired by seed"),
        ([0.8, 0.9], [0.8, 0.9], "up", "direction must be one of"),
        ([0.8], [0.9], "increase", "need at least two values per arm"),
    ],
)
def test_keep_decision_refusals(current, candidate, direction, message):
    with pytest.raises(ValueError, match=message):
        keep_decision(current, candidate, direction=direction)


def test_final_comparison_against_a_control_track_matches_scipy():
    guided = [0.91, 0.89, 0.92, 0.90, 0.93]
    uniform = [0.88, 0.88, 0.90, 0.87, 0.89]
    result = compare_tracks(guided, uniform, direction="increase", minimum_effect=0.01)
    expected = _scipy_paired(guided, uniform)
    assert {key: result[key] for key in expected} == pytest.approx(expected)
    assert result["verdict"] == "improved"
    assert result["explanation"].startswith("the values give 'improved': the 95% interval [")
    assert (result["n"], result["paired"], result["effect_size_kind"]) == (5, True, "d_z")


def test_final_comparison_without_spread_is_inconclusive_with_nulls():
    result = compare_tracks([0.9, 0.8, 0.7], [0.8, 0.7, 0.6], direction="increase")
    assert result["verdict"] == "inconclusive"
    assert (result["ci_low"], result["p_value"], result["effect_size"]) == (None, None, None)


def test_guided_win_rate_with_a_wilson_interval_from_scipy():
    guided = [0.80, 0.84, 0.86, 0.85, 0.88]
    random = [0.81, 0.82, 0.86, 0.83, 0.84]  # round 1 lost, round 3 tied, others won
    result = guided_win_rate(guided, random, direction="increase")
    interval = scipy_stats.binomtest(3, 5).proportion_ci(confidence_level=0.95, method="wilson")
    assert (result["wins"], result["rounds"], result["share"]) == (3, 5, 0.6)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((interval.low, interval.high))
    # and the closed form of Wilson's score interval agrees
    z, n, share = scipy_stats.norm.ppf(0.975), 5, 0.6
    centre = (share + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(share * (1 - share) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((centre - half, centre + half))
    # the same rounds with the loss as the better direction: the lower value wins
    assert guided_win_rate(guided, random, direction="decrease")["wins"] == 1


def test_guided_win_rate_without_rounds_is_undefined():
    result = guided_win_rate([], [], direction="increase")
    assert (result["wins"], result["rounds"], result["share"]) == (0, 0, None)
    assert (result["ci_low"], result["ci_high"]) == (None, None)
