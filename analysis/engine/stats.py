"""Statistics for comparing experiment arms across seeds (numpy/scipy only, no torch)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import optimize
from scipy import stats as scipy_stats

VERDICTS = ("improved", "no_effect", "worse", "inconclusive")
DIRECTIONS = ("increase", "decrease")


def _finite_or_none(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def mean_confidence_interval(
    values: Sequence[float], level: float = 0.95
) -> tuple[float, float, float]:
    """Student-t confidence interval for the mean.

    In: values (n >= 1), confidence level. Out: (mean, low, high); low/high are nan when n < 2
    and equal to the mean when all values are identical.
    """
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise ValueError("need at least one value")
    mean = float(data.mean())
    if data.size < 2:
        return mean, math.nan, math.nan
    sem = float(scipy_stats.sem(data))
    if sem == 0:
        return mean, mean, mean
    low, high = scipy_stats.t.interval(level, df=data.size - 1, loc=mean, scale=sem)
    return mean, float(low), float(high)


def _paired_comparison(variant: np.ndarray, reference: np.ndarray, level: float) -> dict:
    differences = variant - reference
    mean, low, high = mean_confidence_interval(differences, level)
    spread = float(differences.std(ddof=1))
    if spread == 0:
        # A constant difference: the t statistic is undefined; zero means no evidence at all.
        p_value = 1.0 if mean == 0 else 0.0
        effect = 0.0 if mean == 0 else math.copysign(math.inf, mean)
    else:
        p_value = float(scipy_stats.ttest_rel(variant, reference).pvalue)
        effect = mean / spread
    return {"difference": mean, "ci_low": low, "ci_high": high, "p_value": p_value,
            "effect_size": effect, "effect_size_kind": "d_z", "sd_difference": spread}  # fmt: skip


def _welch_comparison(variant: np.ndarray, reference: np.ndarray, level: float) -> dict:
    result = scipy_stats.ttest_ind(variant, reference, equal_var=False)
    interval = result.confidence_interval(confidence_level=level)
    pooled = math.sqrt((variant.var(ddof=1) + reference.var(ddof=1)) / 2)
    difference = float(variant.mean() - reference.mean())
    return {
        "difference": difference,
        "ci_low": float(interval.low),
        "ci_high": float(interval.high),
        "p_value": float(result.pvalue),
        "effect_size": difference / pooled if pooled > 0 else math.nan,
        "effect_size_kind": "cohen_d",
        "sd_difference": math.nan,
    }


def compare_arms(
    variant: Sequence[float],
    reference: Sequence[float],
    *,
    paired: bool = True,
    level: float = 0.95,
) -> dict[str, Any]:
    """Compare two arms' per-seed metric values.

    In: variant and reference values (paired: same seeds, same order). Out: JSON-able dict
    {"n", "paired", "level", "difference" (mean of variant - reference), "ci_low", "ci_high",
    "p_value", "effect_size", "effect_size_kind", "sd_difference"}. Paired uses ttest_rel and
    d_z = mean(diff) / sd(diff); unpaired uses Welch's t-test and Cohen's d with the average
    variance. Undefined numbers are None.
    """
    variant_values = np.asarray(variant, dtype=np.float64)
    reference_values = np.asarray(reference, dtype=np.float64)
    if paired and variant_values.shape != reference_values.shape:
        raise ValueError("paired comparison needs equally many values in both arms")
    if min(variant_values.size, reference_values.size) < 2:
        raise ValueError("need at least two values per arm")
    compare = _paired_comparison if paired else _welch_comparison
    result = compare(variant_values, reference_values, level)
    clean = {key: _finite_or_none(value) if isinstance(value, float) else value
             for key, value in result.items()}  # fmt: skip
    return {"n": int(variant_values.size), "paired": paired, "level": level, **clean}


def power_for_effect(n: int, effect: float, sd: float, *, alpha: float = 0.05) -> float:
    """Power of a two-sided paired (one-sample) t-test.

    In: number of pairs n (>= 2), true mean difference `effect`, sd of the differences, alpha.
    Out: probability in [0, 1] of rejecting H0, from the noncentral t distribution.
    """
    if n < 2:
        return 0.0
    if sd <= 0:
        return 1.0 if effect != 0 else alpha
    df = n - 1
    # Two-sided, so only the size of the effect matters.
    noncentrality = abs(effect) / sd * math.sqrt(n)
    critical = scipy_stats.t.ppf(1 - alpha / 2, df)
    upper = scipy_stats.nct.sf(critical, df, noncentrality)
    lower = scipy_stats.nct.cdf(-critical, df, noncentrality)
    # scipy's series for the far tail can underflow to nan; that tail's mass is ~0 there.
    return float(np.nan_to_num(upper, nan=1.0) + np.nan_to_num(lower, nan=0.0))


def minimum_detectable_effect(
    n: int, sd: float, *, power: float = 0.8, alpha: float = 0.05
) -> float:
    """Smallest mean difference a paired t-test with n pairs detects with the given power.

    In: n pairs, sd of the differences. Out: the effect (same units as the metric); inf for
    n < 2, 0 when sd is 0.
    """
    if n < 2:
        return math.inf
    if sd <= 0:
        return 0.0
    upper = sd
    while power_for_effect(n, upper, sd, alpha=alpha) < power:
        upper *= 2
    return float(
        optimize.brentq(
            lambda effect: power_for_effect(n, effect, sd, alpha=alpha) - power, 0.0, upper
        )
    )


def verdict(
    diff_low: float | None,
    diff_high: float | None,
    *,
    direction: str,
    minimum_effect: float,
) -> str:
    """Classify a confidence interval [diff_low, diff_high] of variant - reference.

    "improved": the CI excludes 0 on the expected side (low > 0 for "increase", high < 0 for
    "decrease"); "worse": it excludes 0 on the other side; "no_effect": it lies entirely
    within [-minimum_effect, +minimum_effect]; "inconclusive": anything else, including an
    undefined CI. Checks run in that order.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if diff_low is None or diff_high is None or math.isnan(diff_low) or math.isnan(diff_high):
        return "inconclusive"
    sign = 1 if direction == "increase" else -1
    better_low, better_high = sorted((sign * diff_low, sign * diff_high))
    if better_low > 0:
        return "improved"
    if better_high < 0:
        return "worse"
    if -minimum_effect <= diff_low and diff_high <= minimum_effect:
        return "no_effect"
    return "inconclusive"


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion. Out: (low, high); (0, 1) when n == 0."""
    if n == 0:
        return 0.0, 1.0
    interval = scipy_stats.binomtest(successes, n).proportion_ci(
        confidence_level=level, method="wilson"
    )
    return float(interval.low), float(interval.high)
