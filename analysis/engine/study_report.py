"""A study's numbers: each round's summary and keep decision, and the final answer.

Reads only per-seed metric values and parameter counts (the rounds as stored), so the final
report can be recomputed from the rows at any time. Torch-free (numpy/scipy): the web process
may rebuild a report or a trajectory. Every number that is undefined is None, never NaN or an
infinity, so every result here is strict JSON.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from analysis.engine.stats import mean_confidence_interval
from analysis.engine.study_settings import GUIDED, RANDOM, UNIFORM
from analysis.engine.study_stats import compare_tracks, guided_win_rate, keep_decision

BASE = "base"
SUMMARY_LEVEL = 0.95
COMPARISONS = {"guided_vs_random": RANDOM, "guided_vs_uniform": UNIFORM}


def json_safe(value: Any) -> Any:
    """Out: `value` with every non-finite float (NaN, +-inf) replaced by None, tuples as lists
    and numpy scalars as Python numbers, recursively; strict JSON can hold the result."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()  # numpy scalar
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _numbers(values: Sequence[float | None]) -> list[float]:
    """Stored values as floats: a seed whose metric was no number (a diverged loss, stored
    as None) becomes NaN, which leaves every statistic it enters undefined (None)."""
    return [math.nan if value is None else float(value) for value in values]


def study_values_summary(values: Sequence[float | None] | None, *, level: float = SUMMARY_LEVEL):
    """In: one candidate's metric values, one per seed (None for a seed without a number).
    Out: {"n", "mean", "ci_low", "ci_high"}: the mean and its Student-t interval
    (stats.mean_confidence_interval); the interval is None with fewer than two values or no
    spread, everything but n is None without values, and any non-finite number is None."""
    if not values:
        return {"n": 0, "mean": None, "ci_low": None, "ci_high": None}
    mean, low, high = mean_confidence_interval(_numbers(values), level)
    return json_safe({"n": len(values), "mean": mean, "ci_low": low, "ci_high": high})


def study_round_decide(
    config: dict,
    current_values: Sequence[float | None],
    candidate_values: Sequence[float | None],
) -> dict[str, Any]:
    """Apply the study's keep rule to one track's candidate in one round.

    In: the cleaned study config (its direction and level), the track's current model's and
    the candidate's metric values (same seeds, same order; None for a seed without a number,
    which leaves the interval undefined, so the candidate is not kept). Out:
    study_stats.KeepDecision as a dict {"kept", "rule", "direction", "comparison", "reason"},
    strict JSON.
    """
    decision = keep_decision(
        _numbers(current_values), _numbers(candidate_values),
        direction=config["direction"], level=config["level"],
    )  # fmt: skip
    return json_safe(decision.to_dict())


def _has_values(row: dict) -> bool:
    return not row.get("sat_out") and bool(row.get("values"))


def _rows_of(rounds: list[dict], track: str) -> list[dict]:
    return sorted((row for row in rounds if row["track"] == track), key=lambda row: row["index"])


def _base_row(rounds: list[dict]) -> dict | None:
    return next((row for row in rounds if row["track"] == BASE), None)


def _final(rounds: list[dict], track: str) -> dict[str, Any] | None:
    """The track's model at the end: its last kept candidate, or the base model."""
    kept = [row for row in _rows_of(rounds, track) if row.get("kept") and _has_values(row)]
    row = kept[-1] if kept else _base_row(rounds)
    if row is None or not _has_values(row):
        return None
    return {"values": list(row["values"]), "parameters": row["parameters"],
            "round": row["index"], **study_values_summary(row["values"])}  # fmt: skip


def _point(row: dict) -> dict[str, Any]:
    summary = study_values_summary(row["values"])
    return {"round": row["index"], "parameters": row["parameters"], "mean": summary["mean"],
            "ci_low": summary["ci_low"], "ci_high": summary["ci_high"],
            "kept": row.get("kept") if row["track"] != BASE else None}  # fmt: skip


def study_trajectory(config: dict, rounds: list[dict]) -> dict[str, list[dict[str, Any]]]:
    """The metric against parameter count, per track, for the study's figure.

    In: the cleaned config and the decided rounds (rows as in study_final_report). Out:
    {track: [{"round", "parameters", "mean", "ci_low", "ci_high", "kept"}]} for every track of
    the config, each starting with the base model at round 0 (kept None: nothing was decided)
    followed by the track's candidates in round order, kept or not; a round the track sat out
    has no candidate and so no point. Intervals at 95%, None where undefined.
    """
    base = _base_row(rounds)
    start = [_point(base)] if base is not None and _has_values(base) else []
    return {
        track: start + [_point(row) for row in _rows_of(rounds, track) if _has_values(row)]
        for track in config["tracks"]
    }


def _comparison(config: dict, final: dict, control: str) -> dict[str, Any] | None:
    guided, other = final.get(GUIDED), final.get(control)
    if guided is None or other is None or len(guided["values"]) != len(other["values"]):
        return None
    if len(guided["values"]) < 2:
        return None
    result = compare_tracks(
        _numbers(guided["values"]), _numbers(other["values"]),
        direction=config["direction"], level=config["level"],
    )  # fmt: skip
    return {**result, "guided_round": guided["round"], "control_round": other["round"],
            "guided_parameters": guided["parameters"],
            "control_parameters": other["parameters"]}  # fmt: skip


def _win_rate(config: dict, rounds: list[dict]) -> dict[str, Any] | None:
    """Rounds where both the guided and the random track had a candidate with a mean (a
    round whose mean is undefined, e.g. a diverged loss, says nothing about who won)."""
    if RANDOM not in config["tracks"]:
        return None
    means = {
        track: {row["index"]: study_values_summary(row["values"])["mean"]
                for row in _rows_of(rounds, track) if _has_values(row)}
        for track in (GUIDED, RANDOM)
    }  # fmt: skip
    indexes = [index for index, mean in means[RANDOM].items()
               if mean is not None and means[GUIDED].get(index) is not None]  # fmt: skip
    result = guided_win_rate(
        [means[GUIDED][index] for index in indexes],
        [means[RANDOM][index] for index in indexes],
        direction=config["direction"], level=config["level"],
    )  # fmt: skip
    return {**result, "round_indexes": indexes}


def study_final_report(config: dict, rounds: list[dict]) -> dict[str, Any]:
    """The study's answer, from its decided rounds.

    In: the cleaned study config and the rounds as stored, each {"index", "track" ("base" for
    round 0), "values" (per seed, in the config's seed order; None or empty when the track
    sat the round out), "parameters", "kept", "sat_out"} (other keys are ignored).
    Out (strict JSON): {"metric", "direction", "level", "seeds", "tracks", "rounds_planned",
    "rounds_decided", "final": {track: {"values", "parameters", "round" (of the kept candidate;
    0 for the base model), "n", "mean", "ci_low", "ci_high"} or None}, "comparisons":
    {"guided_vs_random", "guided_vs_uniform"}: compare_tracks on the final values paired by
    seed (difference, ci_low, ci_high, p_value, effect_size d_z, verdict, explanation) or None
    when a track is not in the study, "win_rate": guided_win_rate over the rounds where both
    guided and random had a candidate with a mean, "round_indexes" naming them (share with a
    Wilson interval; None without a random track), "trajectory": study_trajectory,
    "sat_out": {track: [round indexes]}}.
    """
    final = {track: _final(rounds, track) for track in config["tracks"]}
    decided = [row["index"] for row in rounds if row["track"] != BASE]
    report = {
        "metric": config["metric"],
        "direction": config["direction"],
        "level": config["level"],
        "seeds": list(config["seeds"]),
        "tracks": list(config["tracks"]),
        "rounds_planned": config["rounds"],
        "rounds_decided": max(decided, default=0),
        "final": final,
        "comparisons": {
            name: _comparison(config, final, control) if control in config["tracks"] else None
            for name, control in COMPARISONS.items()
        },
        "win_rate": _win_rate(config, rounds),
        "trajectory": study_trajectory(config, rounds),
        "sat_out": {
            track: [row["index"] for row in _rows_of(rounds, track) if row.get("sat_out")]
            for track in config["tracks"]
        },
    }
    return json_safe(report)


__all__ = [
    "BASE",
    "json_safe",
    "study_final_report",
    "study_round_decide",
    "study_trajectory",
    "study_values_summary",
]
