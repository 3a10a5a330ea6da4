"""Transformer change experiments, and their mechanism check: did the added heads take on the
predicted role?

The experiment mirrors experiments.py for CNNs: baseline vs guided change vs budget-matched
random control (either policy of transformer_changes.transformer_control_for), each trained on
a sequence task over the same seeds (transformer_training.py), compared with the same paired
statistics (stats.compare_arms through experiments' aggregate helpers). Beside the CNN check
(experiments.summarise_mechanism: added units' selectivity against the original units'), the
transformer check asks what the interpretability literature asks of an inserted attention
layer: "does the added layer hold a head whose induction score exceeds the baseline's best,
seed by seed". Each seed gives one number, the best added head's score minus the best score of
any head in that seed's baseline model; a paired t-test over seeds asks whether the difference
is consistently non-zero. head_mechanism_check is a pure function over head profiles
(TransformerProfile or its to_dict() form).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from analysis.engine.experiments import _arm_summary, _comparison, _metric_table, _warnings
from analysis.engine.head_profiles import profile_transformer
from analysis.engine.sequence_tasks import make_sequence_task
from analysis.engine.stats import compare_arms

# The plan is torch-free (the web process freezes it into a run): it lives in transformer_plans.
from analysis.engine.transformer_plans import (
    ARMS,
    HEAD_ROLES,
    TransformerExperimentConfig,
    arm_settings,
    head_mechanism_target,
    plan_transformer_experiment,
)
from analysis.engine.transformer_specs import count_transformer_parameters
from analysis.engine.transformer_training import (
    SequenceTrainConfig,
    held_out_batch,
    train_transformer,
)

HEAD_MECHANISM_TEST = (
    "paired t-test over seeds (each seed: the best added head's score minus the best score "
    "of any head in the baseline model)"
)


def _heads_of(profile: Any) -> dict[str, dict[str, list]]:
    data = profile.to_dict() if hasattr(profile, "to_dict") else profile
    return data["heads"]


def _best(scores: list, heads: list[int] | None = None) -> tuple[float, int] | None:
    """Out: (best finite score, its head) among `heads` (all when None); None if none is
    finite (a score nobody could measure is missing, not zero)."""
    chosen = range(len(scores)) if heads is None else heads
    finite = [
        (float(scores[head]), head)
        for head in chosen
        if head < len(scores) and scores[head] is not None and math.isfinite(scores[head])
    ]
    return max(finite, key=lambda item: (item[0], -item[1])) if finite else None


def _baseline_best(heads: dict[str, dict[str, list]], score: str):
    found = [
        (best[0], layer, best[1])
        for layer, scores in heads.items()
        if (best := _best(scores[score])) is not None
    ]
    return max(found, key=lambda item: item[0]) if found else None


def _seed_row(seed, baseline, variant, layer: str, added: list[int], score: str):
    base_heads, variant_heads = _heads_of(baseline), _heads_of(variant)
    if layer not in variant_heads:
        return None, f"seed {seed}: the variant has no layer {layer!r}"
    added_best = _best(variant_heads[layer][score], added)
    baseline_best = _baseline_best(base_heads, score)
    if added_best is None or baseline_best is None:
        return None, f"seed {seed}: no measurable {score} score"
    return {
        "seed": seed,
        "added_best": added_best[0],
        "added_head": added_best[1],
        "baseline_best": baseline_best[0],
        "baseline_layer": baseline_best[1],
        "baseline_head": baseline_best[2],
        "difference": added_best[0] - baseline_best[0],
    }, None


def _test(rows: list[dict]) -> dict[str, Any]:
    difference = float(np.mean([row["difference"] for row in rows]))
    undefined = {"ci_low": None, "ci_high": None, "statistic": None, "df": None, "p_value": None}
    if len(rows) < 2:
        return {"difference": difference, **undefined}
    result = compare_arms(
        [row["added_best"] for row in rows], [row["baseline_best"] for row in rows], paired=True
    )
    keys = ("difference", "ci_low", "ci_high", "statistic", "df", "p_value")
    return {key: result[key] for key in keys}


def _interpret(test: dict[str, Any], seeds: int, exceeded: int, score: str) -> str:
    counted = (
        f"the added heads' best {score} score exceeded the baseline's best on {exceeded} of "
        f"{seeds} seeds"
    )
    if seeds < 2:
        return f"{counted}; one seed allows no test across seeds"
    if test["p_value"] is None:
        return f"{counted}, by {test['difference']:+.3g} on every seed alike (test undefined)"
    summary = (
        f"mean difference {test['difference']:+.3g}, 95% CI [{test['ci_low']:.3g}, "
        f"{test['ci_high']:.3g}], paired t-test p={test['p_value']:.3g}"
    )
    if test["p_value"] >= 0.05:
        return f"{counted}: the added heads did not clearly take on the role ({summary})"
    if test["difference"] < 0:
        return f"{counted}: the added heads scored below the baseline's best head ({summary})"
    return f"{counted}: the added heads took on the role ({summary})"


def head_mechanism_check(
    baseline_profiles: dict[int, Any],
    variant_profiles: dict[int, Any],
    *,
    layer: str,
    added_heads: list[int],
    score: str = "induction",
) -> dict[str, Any]:
    """Did the added heads of `layer` take on the role `score` names, seed by seed?

    In: {seed: head profile} of the baseline and the variant arm (TransformerProfile or its
    to_dict()), the variant's layer holding the added heads ("blocks.{i}.attn"), their
    indices, the role score (HEAD_ROLES). Out: JSON-able {"layer", "score", "added_heads",
    "test", "seeds" (count used), "per_seed": [{"seed", "added_best", "added_head",
    "baseline_best", "baseline_layer", "baseline_head", "difference"}], "added_mean",
    "baseline_mean", "difference", "ci_low", "ci_high", "statistic", "df", "p_value",
    "seeds_added_exceeds_baseline", "interpretation", "errors"}. Only seeds in both arms
    count; a seed without a measurable score is left out and named in "errors". Test numbers
    are None when undefined (under 2 seeds, or the same difference on every seed).
    """
    if score not in HEAD_ROLES:
        raise ValueError(f"score must be one of {', '.join(HEAD_ROLES)}, got {score!r}")
    rows, errors = [], []
    for seed in sorted(set(baseline_profiles) & set(variant_profiles)):
        row, error = _seed_row(
            seed, baseline_profiles[seed], variant_profiles[seed], layer, added_heads, score
        )
        if row is None:
            errors.append(error)
        else:
            rows.append(row)
    base = {"layer": layer, "score": score, "added_heads": sorted(added_heads),
            "test": HEAD_MECHANISM_TEST, "seeds": len(rows), "per_seed": rows}  # fmt: skip
    if not rows:
        return {**base, "errors": errors, "interpretation": "mechanism check failed"}
    test = _test(rows)
    exceeded = sum(row["difference"] > 0 for row in rows)
    return {
        **base,
        "added_mean": float(np.mean([row["added_best"] for row in rows])),
        "baseline_mean": float(np.mean([row["baseline_best"] for row in rows])),
        **test,
        "seeds_added_exceeds_baseline": exceeded,
        "interpretation": _interpret(test, len(rows), exceeded, score),
        "errors": errors,
    }


# ---------------------------------------------------------------------------------------------
# The experiment: baseline vs guided change vs random control, over seeds
# ---------------------------------------------------------------------------------------------


def run_transformer_arm(
    arm_spec: dict,
    config: TransformerExperimentConfig | dict,
    *,
    seed: int,
    profile: bool = True,
    on_progress: Callable[[float, str], None] | None = None,
) -> dict[str, Any]:
    """Train one arm with one seed on the task and, when `profile`, score its heads on the
    held-out probe sequences.

    Out: JSON-able {"seed", "metrics" (test_loss, test_accuracy, train_loss), "history",
    "seconds", "parameters", "device", "head_profile" ({"heads": ...} or None)}.
    """
    config = TransformerExperimentConfig.coerce(config)
    settings = arm_settings(arm_spec, config)
    task = make_sequence_task(settings["dataset"], d_vocab=arm_spec["d_vocab"])
    extra = (
        {"eval_seed": settings["dataset"]["eval_seed"]}
        if "eval_seed" in settings["dataset"]
        else {}
    )
    train_config = SequenceTrainConfig(
        **settings["train"], eval_size=settings["probe_size"], **extra
    )
    result = train_transformer(arm_spec, task, train_config, seed=seed, on_progress=on_progress)
    head_profile = None
    if profile:
        probe = held_out_batch(task, train_config)
        head_profile = {"heads": profile_transformer(result.model, probe).to_dict()["heads"]}
    return {
        "seed": seed,
        "metrics": result.metrics,
        "history": result.history,
        "seconds": result.seconds,
        "parameters": count_transformer_parameters(arm_spec),
        "device": result.device,
        "head_profile": head_profile,
    }


def aggregate_transformer_experiment(
    arm_results: dict[str, list[dict]],
    config: TransformerExperimentConfig | dict,
    target: dict[str, Any] | None,
) -> dict[str, Any]:
    """Combine per-seed run_transformer_arm() results: the CNN experiments' aggregate
    ({"metric", "direction", "minimum_effect", "per_seed", "arms", "variant_vs_baseline",
    "variant_vs_control", "verdict", "warnings"}) plus "mechanism", the head mechanism check
    of the added heads (`target` from head_mechanism_target; None when nothing to check)."""
    config = TransformerExperimentConfig.coerce(config)
    table = _metric_table(arm_results, config.metric)
    arms = {
        arm: _arm_summary([row[arm] for row in table.values() if arm in row])
        for arm in ARMS
        if arm_results.get(arm)
    }
    versus_baseline = _comparison(table, "variant", "baseline", config)
    mechanism = None
    if target is not None:
        profiles = {
            arm: {
                r["seed"]: r["head_profile"] for r in arm_results.get(arm, []) if r["head_profile"]
            }
            for arm in ("baseline", "variant")
        }
        mechanism = head_mechanism_check(
            profiles["baseline"], profiles["variant"], **target, score=config.score
        )
    return {
        "metric": config.metric,
        "direction": config.direction,
        "minimum_effect": config.minimum_effect,
        "per_seed": [{"seed": seed, **row} for seed, row in table.items()],
        "arms": arms,
        "variant_vs_baseline": versus_baseline,
        "variant_vs_control": _comparison(table, "variant", "control", config),
        "verdict": versus_baseline["verdict"] if versus_baseline else "inconclusive",
        "warnings": _warnings(arm_results, table, config),
        "mechanism": mechanism,
    }


def run_transformer_experiment_locally(
    spec: dict,
    operation: str,
    parameters: dict,
    config: TransformerExperimentConfig | dict,
    on_progress: Callable[[float, str], None] | None = None,
) -> dict[str, Any]:
    """Plan, train every (arm, seed) in this process, and aggregate.

    Out: JSON-able {"plan", "config", "arm_results", "aggregate"}; the control arm is not
    profiled (the mechanism check compares the variant with the baseline).
    """
    config = TransformerExperimentConfig.coerce(config)
    plan = plan_transformer_experiment(spec, operation, parameters, config)
    target = head_mechanism_target(plan)
    jobs = [(arm, seed) for arm in ARMS for seed in config.seeds]
    arm_results: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    for done, (arm, seed) in enumerate(jobs):
        profile = target is not None and arm != "control"
        arm_results[arm].append(
            run_transformer_arm(plan.arms[arm], config, seed=seed, profile=profile)
        )
        if on_progress is not None:
            on_progress((done + 1) / len(jobs), f"{arm} seed {seed} done")
    return {
        "plan": plan.to_dict(),
        "config": config.to_dict(),
        "arm_results": arm_results,
        "aggregate": aggregate_transformer_experiment(arm_results, config, target),
    }
