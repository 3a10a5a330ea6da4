"""Confidence intervals, arm comparisons, power and verdicts against scipy directly."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from analysis.engine.stats import (
    compare_arms,
    mean_confidence_interval,
    minimum_detectable_effect,
    power_for_effect,
    verdict,
    wilson_interval,
)

VARIANT = [0.81, 0.84, 0.80, 0.86, 0.83]
REFERENCE = [0.78, 0.80, 0.79, 0.81, 0.80]


def test_mean_confidence_interval_matches_scipy_t():
    values = [1.0, 2.0, 4.0, 7.0]
    low, high = scipy_stats.t.interval(
        0.95, df=3, loc=np.mean(values), scale=scipy_stats.sem(values)
    )
    assert mean_confidence_interval(values) == pytest.approx((3.5, low, high), abs=1e-12)


def test_mean_confidence_interval_edge_cases():
    mean, low, high = mean_confidence_interval([2.0])
    assert mean == 2.0 and math.isnan(low) and math.isnan(high)
    assert mean_confidence_interval([1.0, 1.0, 1.0]) == (1.0, 1.0, 1.0)


def test_paired_comparison_matches_ttest_rel():
    result = compare_arms(VARIANT, REFERENCE)
    differences = np.subtract(VARIANT, REFERENCE)
    expected = scipy_stats.ttest_rel(VARIANT, REFERENCE)
    interval = expected.confidence_interval(0.95)
    assert result["n"] == 5
    assert result["difference"] == pytest.approx(differences.mean())
    assert result["p_value"] == pytest.approx(expected.pvalue)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((interval.low, interval.high))
    assert result["effect_size"] == pytest.approx(differences.mean() / differences.std(ddof=1))
    assert result["effect_size_kind"] == "d_z"


def test_unpaired_comparison_is_welch():
    result = compare_arms(VARIANT, REFERENCE[:4], paired=False)
    expected = scipy_stats.ttest_ind(VARIANT, REFERENCE[:4], equal_var=False)
    assert result["p_value"] == pytest.approx(expected.pvalue)
    assert result["ci_low"] == pytest.approx(expected.confidence_interval(0.95).low)
    assert result["effect_size_kind"] == "cohen_d"


def test_identical_arms_give_no_evidence():
    result = compare_arms([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert (result["difference"], result["p_value"], result["effect_size"]) == (0.0, 1.0, 0.0)


def test_power_matches_noncentral_t_and_mde_inverts_it():
    n, effect, sd = 5, 0.02, 0.015
    critical = scipy_stats.t.ppf(0.975, 4)
    noncentrality = effect / sd * math.sqrt(n)
    expected = scipy_stats.nct.sf(critical, 4, noncentrality) + scipy_stats.nct.cdf(
        -critical, 4, noncentrality
    )
    assert power_for_effect(n, effect, sd) == pytest.approx(expected)
    detectable = minimum_detectable_effect(n, sd)
    assert power_for_effect(n, detectable, sd) == pytest.approx(0.8, abs=1e-6)
    assert minimum_detectable_effect(3, sd) > detectable
    assert minimum_detectable_effect(5, 0.0) == 0.0


@pytest.mark.parametrize(
    ("low", "high", "direction", "expected"),
    [
        (0.01, 0.05, "increase", "improved"),
        (-0.05, -0.01, "increase", "worse"),
        (-0.05, -0.01, "decrease", "improved"),
        (0.01, 0.05, "decrease", "worse"),
        (-0.004, 0.006, "increase", "no_effect"),
        (-0.02, 0.03, "increase", "inconclusive"),
        (None, None, "increase", "inconclusive"),
        (0.001, 0.002, "increase", "improved"),
    ],
)
def test_verdict_cases(low, high, direction, expected):
    assert verdict(low, high, direction=direction, minimum_effect=0.01) == expected


def test_verdict_rejects_unknown_direction():
    with pytest.raises(ValueError, match="direction"):
        verdict(0.0, 1.0, direction="up", minimum_effect=0.0)


def test_wilson_interval_matches_scipy_and_handles_zero():
    expected = scipy_stats.binomtest(7, 20).proportion_ci(method="wilson")
    assert wilson_interval(7, 20) == pytest.approx((expected.low, expected.high))
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_power_is_symmetric_and_finite_for_two_seeds():
    assert power_for_effect(5, -0.02, 0.015) == power_for_effect(5, 0.02, 0.015)
    assert minimum_detectable_effect(2, 0.01) > minimum_detectable_effect(3, 0.01)
    assert power_for_effect(2, 1.0, 0.01) == pytest.approx(1.0)
