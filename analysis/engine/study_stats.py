"""A study's decisions and its final answer, from per-seed metric values (numpy/scipy only).

- keep_decision: is a round's candidate better than the track's current model? The study's
  rule: the paired 95% interval of candidate - current excludes zero in the better direction.
- compare_tracks: guided against a control track at equal budget, paired by seed.
- guided_win_rate: the share of rounds where the guided candidate beat the random one, with a
  Wilson interval (stats.wilson_interval, scipy's binomtest).

Every number that is undefined (no spread between seeds, too few rounds) is None.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from analysis.engine.stats import (
    DIRECTIONS,
    compare_arms,
    explain_verdict,
    verdict,
    wilson_interval,
)

KEEP_RULE = (
    "keep the candidate when the paired {level:.0%} interval of candidate - current (by seed) "
    "excludes zero in the better direction"
)


def _check(values_a: Sequence[float], values_b: Sequence[float], direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if len(values_a) != len(values_b):
        raise ValueError(
            f"paired by seed: both need one value per seed, got {len(values_a)} and {len(values_b)}"
        )


@dataclass
class KeepDecision:
    """The keep rule applied to one round of one track; to_dict() is stored with the round."""

    kept: bool
    rule: str
    direction: str
    comparison: dict[str, Any]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Out: a JSON-able dict of all fields."""
        return asdict(self)


def keep_decision(
    current: Sequence[float],
    candidate: Sequence[float],
    *,
    direction: str,
    level: float = 0.95,
) -> KeepDecision:
    """Decide whether a track keeps its candidate.

    In: per-seed metric values of the current model and of the candidate (same seeds, same
    order, at least two), the metric's better direction ("increase"/"decrease"), the interval's
    level. Out: KeepDecision; `comparison` is stats.compare_arms(candidate, current) (difference,
    ci_low/ci_high, p_value, effect_size d_z; None where undefined). An undefined interval (the
    same difference on every seed) keeps the current model: the rule needs an interval.
    """
    _check(current, candidate, direction)
    comparison = compare_arms(candidate, current, paired=True, level=level)
    low, high = comparison["ci_low"], comparison["ci_high"]
    kept = verdict(low, high, direction=direction, minimum_effect=0.0) == "improved"
    why = explain_verdict(low, high, direction=direction, minimum_effect=0.0,
                          n=comparison["n"], level=level)  # fmt: skip
    decision = (
        "kept: the candidate replaces the current model"
        if kept
        else ("not kept: the track keeps its current model")
    )
    return KeepDecision(kept, KEEP_RULE.format(level=level), direction, comparison,
                        f"{decision}; {why}")  # fmt: skip


def compare_tracks(
    guided: Sequence[float],
    control: Sequence[float],
    *,
    direction: str,
    minimum_effect: float = 0.0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Guided against one control track at the end of a study, paired by seed.

    In: each track's final per-seed metric values (same seeds, same order), the better
    direction, the smallest effect that matters. Out: compare_arms(guided, control) plus
    "verdict" (stats.verdict: improved/worse/no_effect/inconclusive, from guided's side) and
    "explanation" in words.
    """
    _check(guided, control, direction)
    comparison = compare_arms(guided, control, paired=True, level=level)
    low, high = comparison["ci_low"], comparison["ci_high"]
    return {
        **comparison,
        "verdict": verdict(low, high, direction=direction, minimum_effect=minimum_effect),
        "explanation": explain_verdict(
            low, high, direction=direction, minimum_effect=minimum_effect,
            n=comparison["n"], level=level,
        ),
    }  # fmt: skip


def guided_win_rate(
    guided_means: Sequence[float],
    random_means: Sequence[float],
    *,
    direction: str,
    level: float = 0.95,
) -> dict[str, Any]:
    """The share of rounds in which the guided candidate beat the random one.

    In: per round, the guided and the random candidate's mean metric over the seeds (same
    rounds, same order), the better direction. A tie is not a win. Out: {"wins", "rounds",
    "share" (None without rounds), "ci_low", "ci_high" (Wilson, None without rounds), "level",
    "method": "wilson (scipy.stats.binomtest)"}.
    """
    _check(guided_means, random_means, direction)
    sign = 1 if direction == "increase" else -1
    wins = sum(sign * (g - r) > 0 for g, r in zip(guided_means, random_means, strict=True))
    rounds = len(guided_means)
    low, high = wilson_interval(wins, rounds, level) if rounds else (None, None)
    return {"wins": int(wins), "rounds": rounds, "share": wins / rounds if rounds else None,
            "ci_low": low, "ci_high": high, "level": level,
            "method": "wilson (scipy.stats.binomtest)"}  # fmt: skip


__all__ = ["KEEP_RULE", "KeepDecision", "compare_tracks", "guided_win_rate", "keep_decision"]
