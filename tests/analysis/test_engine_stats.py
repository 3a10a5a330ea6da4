"""Confidence intervals, arm comparisons, power and verdicts against scipy directly."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from analysis.engine.stats import (
    compare_arms,
    explain_verdict,
    has_spread,
    interval_range_note,
    mean_confidence_interval,
    minimum_detectable_effect,
    power_for_effect,
    power_warnings,
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


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scipy on degenerate data
def test_mean_confidence_interval_of_identical_values_is_undefined_not_zero_width():
    # Given values with no spread (scipy itself gives nan for a zero scale)
    assert all(map(math.isnan, scipy_stats.t.interval(0.95, df=2, loc=1.0, scale=0.0)))
    # Then the interval is undefined rather than [1, 1]
    mean, low, high = mean_confidence_interval([1.0, 1.0, 1.0])
    assert mean == 1.0 and math.isnan(low) and math.isnan(high)


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
    assert (result["statistic"], result["df"]) == (pytest.approx(expected.statistic), 4)


def test_unpaired_comparison_is_welch():
    result = compare_arms(VARIANT, REFERENCE[:4], paired=False)
    expected = scipy_stats.ttest_ind(VARIANT, REFERENCE[:4], equal_var=False)
    assert result["p_value"] == pytest.approx(expected.pvalue)
    assert result["ci_low"] == pytest.approx(expected.confidence_interval(0.95).low)
    assert result["effect_size_kind"] == "cohen_d"


def test_identical_arms_have_no_p_value_interval_or_effect_size():
    result = compare_arms([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert (result["difference"], result["sd_difference"]) == (0.0, 0.0)
    assert [result[key] for key in ("p_value", "ci_low", "ci_high", "effect_size")] == [None] * 4
    assert result["statistic"] is None


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scipy on degenerate data
@pytest.mark.parametrize(
    ("variant", "reference"),
    [
        ([2.0, 3.0, 4.0], [1.0, 2.0, 3.0]),  # exactly constant: scipy says t = inf, p = 0
        ([0.81, 0.82, 0.83], [0.80, 0.81, 0.82]),  # constant up to binary rounding noise
    ],
)
def test_a_constant_paired_difference_has_no_p_value_and_no_interval(variant, reference):
    # Given a difference that is the same on every seed, which scipy reports as certain
    scipy_result = scipy_stats.ttest_rel(variant, reference)
    assert scipy_result.pvalue < 1e-10
    # When the arms are compared
    result = compare_arms(variant, reference)
    # Then only the difference is defined; the verdict cannot claim anything
    assert result["difference"] == pytest.approx(np.mean(np.subtract(variant, reference)))
    assert [result[key] for key in ("p_value", "ci_low", "ci_high", "effect_size")] == [None] * 4
    assert (result["sd_difference"], result["df"]) == (0.0, 2)
    assert verdict(result["ci_low"], result["ci_high"], direction="increase",
                   minimum_effect=0.001) == "inconclusive"  # fmt: skip


def test_unpaired_comparison_of_two_constant_arms_is_undefined():
    result = compare_arms([1.0, 1.0, 1.0], [2.0, 2.0], paired=False)
    assert result["difference"] == -1.0
    assert [result[key] for key in ("p_value", "ci_low", "ci_high", "effect_size")] == [None] * 4


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scipy on degenerate data
def test_unpaired_comparison_with_one_constant_arm_matches_welch():
    variant, reference = [0.9, 0.9, 0.9], [0.8, 0.85, 0.83]
    result = compare_arms(variant, reference, paired=False)
    expected = scipy_stats.ttest_ind(variant, reference, equal_var=False)
    interval = expected.confidence_interval(0.95)
    assert result["p_value"] == pytest.approx(expected.pvalue)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((interval.low, interval.high))
    assert result["df"] == pytest.approx(expected.df)


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


def test_power_without_spread_is_undefined():
    assert math.isnan(power_for_effect(5, 0.02, 0.0))
    assert math.isnan(minimum_detectable_effect(5, 0.0))
    assert minimum_detectable_effect(1, 0.01) == math.inf


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


@pytest.mark.parametrize(
    ("low", "high", "direction", "n", "expected"),
    [
        (0.0125, 0.0175, "increase", 3, "the values give 'improved': the 95% interval "
         "[0.0125, 0.0175] of the difference lies above 0, the expected direction (increase)"),
        (0.0125, 0.0175, "decrease", 3, "the values give 'worse': the 95% interval "
         "[0.0125, 0.0175] of the difference lies above 0, against the expected direction "
         "(decrease)"),
        (-0.004, 0.006, "increase", 3, "the values give 'no_effect': the 95% interval "
         "[-0.004, 0.006] of the difference lies within ±0.01, the smallest effect that "
         "matters"),
        (-0.02, 0.03, "increase", 3, "the values give 'inconclusive': the 95% interval "
         "[-0.02, 0.03] of the difference includes 0 and reaches beyond ±0.01, the smallest "
         "effect that matters"),
        (None, None, "increase", 1, "the values give 'inconclusive': with fewer than two "
         "values per arm there is no confidence interval"),
        (None, None, "increase", 3, "the values give 'inconclusive': the values do not vary "
         "between seeds (the difference is the same on every seed), so its spread and its "
         "confidence interval are undefined"),
    ],
)  # fmt: skip
def test_explain_verdict_names_the_verdict_and_its_reason(low, high, direction, n, expected):
    assert explain_verdict(low, high, direction=direction, minimum_effect=0.01, n=n) == expected
    assert expected.startswith(
        f"the values give '{verdict(low, high, direction=direction, minimum_effect=0.01)}'"
    )


@pytest.mark.parametrize(
    ("low", "high", "metric", "difference", "expected"),
    [
        (-0.2, 0.4, "test_accuracy", True, None),
        (-1.3, 0.4, "test_accuracy", True, "the t-interval extends past the range of a "
         "difference in test_accuracy, [-1, 1]; read it as bounded at [-1, 0.4]"),
        (0.95, 1.02, "test_accuracy", False, "the t-interval extends past the range of "
         "test_accuracy, [0, 1]; read it as bounded at [0.95, 1]"),
        (-0.1, 0.3, "test_loss", False, "the t-interval extends past the range of test_loss, "
         ">= 0; read it as bounded at [0, 0.3]"),
        (-5.0, 9.0, "test_loss", True, None),  # a difference of losses can be any number
        (-5.0, 9.0, "top1_accuracy", True, None),  # an unknown metric has no known range
        (None, None, "test_accuracy", True, None),
    ],
)  # fmt: skip
def test_interval_range_note(low, high, metric, difference, expected):
    assert interval_range_note(low, high, metric=metric, difference=difference) == expected


def test_power_warnings_use_the_minimum_detectable_effect_of_the_paired_differences():
    # Given five seeds whose differences spread too much to detect 0.01
    variant, reference = [0.81, 0.84, 0.80, 0.86, 0.83], [0.78, 0.80, 0.79, 0.81, 0.80]
    sd = np.std(np.subtract(variant, reference), ddof=1)
    detectable = minimum_detectable_effect(5, sd)
    # Then the warning says what five seeds can detect
    assert power_warnings(variant, reference, metric="test_accuracy", minimum_effect=0.01) == [
        f"N=5 seeds can detect a difference of {detectable:.4g} in test_accuracy with 80% "
        "power; the expected effect of 0.01 is smaller, so a null result is weak evidence"
    ]
    # And a larger smallest-effect-that-matters needs no warning
    assert power_warnings(variant, reference, metric="test_accuracy", minimum_effect=0.1) == []


@pytest.mark.parametrize(
    ("variant", "reference", "expected"),
    [
        ([0.9], [0.8], "fewer than 2 seeds in both arms; no comparison possible"),
        ([0.9, 0.91, 0.92], [0.8, 0.81], "the arms have different numbers of values (3 and "
         "2), so they cannot be paired by seed; the power of the unpaired comparison is not "
         "estimated"),
        ([0.9, 0.91, 0.92], [0.8, 0.81, 0.82], "the difference in test_accuracy is the same "
         "on all 3 seeds, so its spread, and with it the power to detect the expected effect, "
         "cannot be estimated"),
    ],
)  # fmt: skip
def test_power_warnings_when_power_cannot_be_estimated(variant, reference, expected):
    warnings = power_warnings(variant, reference, metric="test_accuracy", minimum_effect=0.01)
    assert warnings == [expected]


def test_values_whose_variance_underflows_have_no_spread():
    # Found by the API fuzzer: 7.8e-226 varies relative to its size, but its variance is 0.
    tiny = [0.0, 7.785268208198689e-226]
    assert not has_spread(tiny)
    unpaired = compare_arms(tiny, [0.0, 0.0, 0.0], paired=False)
    assert (unpaired["p_value"], unpaired["effect_size"]) == (None, None)
    paired = compare_arms([0.0, 7.785268208198689e-226, 0.0], [0.0, 0.0, 0.0])
    assert (paired["p_value"], paired["effect_size"]) == (None, None)
