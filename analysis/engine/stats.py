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
# Differences of decimal inputs carry binary rounding noise (0.83 - 0.82 != 0.84 - 0.83); a
# spread this small relative to the values is that noise, not variation between seeds.
RELATIVE_SPREAD_FLOOR = 1e-12


def _finite_or_none(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def has_spread(values: Sequence[float], *, scale: float | None = None) -> bool:
    """Do the values vary by more than rounding noise?

    In: values, and the size of the numbers they came from (default: their own largest
    magnitude). Out: False when every value is the same up to RELATIVE_SPREAD_FLOOR * scale.
    A t statistic divides by this spread, so without it the test is undefined.
    """
    data = np.asarray(values, dtype=np.float64)
    if data.size < 2:
        return False
    size = float(np.abs(data).max()) if scale is None else scale
    # The standard deviation itself must be a usable divisor: values around 1e-200 vary
    # relative to their size, but their variance underflows to 0.
    return float(np.ptp(data)) > RELATIVE_SPREAD_FLOOR * size and float(data.std(ddof=1)) > 0


def mean_confidence_interval(
    values: Sequence[float], level: float = 0.95
) -> tuple[float, float, float]:
    """Student-t confidence interval for the mean.

    In: values (n >= 1), confidence level. Out: (mean, low, high); low and high are nan
    (undefined) when n < 2 or when the values have no spread: the interval's width is
    estimated from the spread, and a zero-width interval would claim certainty the data
    cannot give.
    """
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise ValueError("need at least one value")
    mean = float(data.mean())
    if not has_spread(data):
        return mean, math.nan, math.nan
    sem = float(scipy_stats.sem(data))
    low, high = scipy_stats.t.interval(level, df=data.size - 1, loc=mean, scale=sem)
    return mean, float(low), float(high)


def _paired_comparison(variant: np.ndarray, reference: np.ndarray, level: float) -> dict:
    differences = variant - reference
    scale = float(max(np.abs(variant).max(), np.abs(reference).max()))
    mean = float(differences.mean())
    if not has_spread(differences, scale=scale):
        # The same difference on every seed: t = mean / 0 is undefined, and so are the
        # interval, the p-value and d_z. Not infinite evidence: usually a coarse metric.
        return {"difference": mean, "ci_low": None, "ci_high": None, "p_value": None,
                "statistic": None, "df": differences.size - 1, "effect_size": None,
                "effect_size_kind": "d_z", "sd_difference": 0.0}  # fmt: skip
    result = scipy_stats.ttest_rel(variant, reference)
    interval = result.confidence_interval(confidence_level=level)
    spread = float(differences.std(ddof=1))
    return {"difference": mean, "ci_low": float(interval.low), "ci_high": float(interval.high),
            "p_value": float(result.pvalue), "statistic": float(result.statistic),
            "df": int(result.df), "effect_size": mean / spread, "effect_size_kind": "d_z",
            "sd_difference": spread}  # fmt: skip


def _welch_comparison(variant: np.ndarray, reference: np.ndarray, level: float) -> dict:
    difference = float(variant.mean() - reference.mean())
    scale = float(max(np.abs(variant).max(), np.abs(reference).max()))
    undefined = {"difference": difference, "ci_low": None, "ci_high": None, "p_value": None,
                 "statistic": None, "df": None, "effect_size": None,
                 "effect_size_kind": "cohen_d", "sd_difference": None}  # fmt: skip
    if not (has_spread(variant, scale=scale) or has_spread(reference, scale=scale)):
        return undefined  # both arms constant: no standard error, no test
    result = scipy_stats.ttest_ind(variant, reference, equal_var=False)
    interval = result.confidence_interval(confidence_level=level)
    pooled = math.sqrt((variant.var(ddof=1) + reference.var(ddof=1)) / 2)
    return {
        **undefined,
        "ci_low": float(interval.low),
        "ci_high": float(interval.high),
        "p_value": float(result.pvalue),
        "statistic": float(result.statistic),
        "df": float(result.df),
        "effect_size": difference / pooled,
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
    "p_value", "statistic" (t), "df", "effect_size", "effect_size_kind", "sd_difference"}.
    Paired uses ttest_rel and d_z = mean(diff) / sd(diff); unpaired uses Welch's t-test and
    Cohen's d with the average variance. Undefined numbers are None: a paired difference
    that is the same on every seed (or two constant arms, unpaired) has no interval, no
    p-value and no effect size; only the difference itself is defined.
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
    Out: probability in [0, 1] of rejecting H0, from the noncentral t distribution; nan
    (undefined) when sd is 0.
    """
    if n < 2:
        return 0.0
    if sd <= 0:
        return math.nan  # without spread the t statistic, and so its power, is undefined
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
    n < 2, nan (undefined) when sd is 0.
    """
    if n < 2:
        return math.inf
    if sd <= 0:
        return math.nan
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


def explain_verdict(
    diff_low: float | None,
    diff_high: float | None,
    *,
    direction: str,
    minimum_effect: float,
    n: int,
    level: float = 0.95,
) -> str:
    """Why `verdict` classifies this interval as it does, in one sentence.

    In: the interval of variant - reference (None when undefined), the expected direction,
    the smallest effect that matters, n = the fewest values in either arm. Out: e.g. "the
    values give 'improved': the 95% interval [0.0125, 0.0175] of the difference lies above 0,
    the expected direction (increase)".
    """
    given = verdict(diff_low, diff_high, direction=direction, minimum_effect=minimum_effect)
    if diff_low is None or diff_high is None:
        if n < 2:
            return (
                f"the values give '{given}': with fewer than two values per arm there is no "
                "confidence interval"
            )
        return (
            f"the values give '{given}': the values do not vary between seeds (the difference "
            "is the same on every seed), so its spread and its confidence interval are undefined"
        )
    interval = f"the {level:.0%} interval [{diff_low:.4g}, {diff_high:.4g}] of the difference"
    expected = "above" if direction == "increase" else "below"
    against = "below" if direction == "increase" else "above"
    why = {
        "improved": f"lies {expected} 0, the expected direction ({direction})",
        "worse": f"lies {against} 0, against the expected direction ({direction})",
        "no_effect": f"lies within ±{minimum_effect:.4g}, the smallest effect that matters",
        "inconclusive": f"includes 0 and reaches beyond ±{minimum_effect:.4g}, the smallest "
        "effect that matters",
    }[given]
    return f"the values give '{given}': {interval} {why}"


# --- what a metric's values can be, and what a number of seeds can detect ---------------

# The engine's metrics and the range each can take; a difference of two values of a metric in
# [low, high] lies in [low - high, high - low].
METRIC_RANGES: dict[str, tuple[float, float]] = {
    "test_accuracy": (0.0, 1.0),
    "test_loss": (0.0, math.inf),
    "train_loss": (0.0, math.inf),
}
DETECTION_POWER = 0.8


def difference_range(metric: str) -> tuple[float, float] | None:
    """Out: the range variant - reference can take for `metric`; None for unknown metrics."""
    if metric not in METRIC_RANGES:
        return None
    low, high = METRIC_RANGES[metric]
    return low - high, high - low


def interval_range_note(
    low: float | None, high: float | None, *, metric: str, difference: bool = True
) -> str | None:
    """Say plainly when a t-interval reaches values the metric cannot take.

    In: the interval (of a difference, or of one arm's mean when difference is False) and the
    metric. Out: a sentence, or None when the interval is undefined, the metric unknown, or
    the interval inside the range.
    """
    bounds = difference_range(metric) if difference else METRIC_RANGES.get(metric)
    if low is None or high is None or bounds is None:
        return None
    floor, ceiling = bounds
    if floor <= low and high <= ceiling:
        return None
    of = f"a difference in {metric}" if difference else metric
    clipped = f"[{max(low, floor):.4g}, {min(high, ceiling):.4g}]"
    return (
        f"the t-interval extends past the range of {of}, {_range_text(floor, ceiling)}; "
        f"read it as bounded at {clipped}"
    )


def _range_text(floor: float, ceiling: float) -> str:
    return f">= {floor:.4g}" if math.isinf(ceiling) else f"[{floor:.4g}, {ceiling:.4g}]"


def power_warnings(
    variant: Sequence[float],
    reference: Sequence[float],
    *,
    metric: str,
    minimum_effect: float,
) -> list[str]:
    """Can this many seeds detect the smallest effect that matters?

    In: per-seed values of both arms (paired by seed: same order), the metric's name, the
    smallest effect that matters. Out: warnings (empty when the design has at least
    DETECTION_POWER power for minimum_effect under a two-sided paired t-test; the expected
    direction does not enter a two-sided test). Used for measured and hand-entered outcomes.
    """
    if min(len(variant), len(reference)) < 2:
        return ["fewer than 2 seeds in both arms; no comparison possible"]
    if len(variant) != len(reference):
        return [
            f"the arms have different numbers of values ({len(variant)} and "
            f"{len(reference)}), so they cannot be paired by seed; the power of the unpaired "
            "comparison is not estimated"
        ]
    comparison = compare_arms(variant, reference)
    n, sd = comparison["n"], comparison["sd_difference"]
    if not sd:
        return [
            f"the difference in {metric} is the same on all {n} seeds, so its spread, and "
            "with it the power to detect the expected effect, cannot be estimated"
        ]
    detectable = minimum_detectable_effect(n, sd, power=DETECTION_POWER)
    if detectable > minimum_effect:
        return [
            f"N={n} seeds can detect a difference of {detectable:.4g} in {metric} with "
            f"{DETECTION_POWER:.0%} power; the expected effect of {minimum_effect:.4g} "
            "is smaller, so a null result is weak evidence"
        ]
    return []


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion. Out: (low, high); (0, 1) when n == 0."""
    if n == 0:
        return 0.0, 1.0
    interval = scipy_stats.binomtest(successes, n).proportion_ci(
        confidence_level=level, method="wilson"
    )
    return float(interval.low), float(interval.high)
