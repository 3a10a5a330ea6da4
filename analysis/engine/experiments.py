"""Change experiments: baseline vs guided variant vs budget-matched random control.

Designed to fan out as one job per (arm, seed): plan_experiment() once, run_arm() per job
(JSON-able in and out), aggregate_experiment() once all jobs are done.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

from analysis.engine.activations import profile_activations
from analysis.engine.changes import ChangeResult, RandomControl, apply_change, random_control_change
from analysis.engine.datasets import ArrayDataset, load_dataset
from analysis.engine.profiles import concept_kind, concept_scores
from analysis.engine.specs import DEFAULT_HYPERPARAMETERS, copy_spec, count_parameters
from analysis.engine.stats import (
    compare_arms,
    mean_confidence_interval,
    minimum_detectable_effect,
    verdict,
)
from analysis.engine.training import TrainConfig, train_model

ARMS = ("baseline", "variant", "control")
METRICS = ("test_accuracy", "test_loss", "train_loss")
MIN_SEEDS = 3
DETECTION_POWER = 0.8


@dataclass
class ExperimentConfig:
    """What to train on, how, with which seeds, and what result counts as success.

    train: TrainConfig fields; hyperparameter fields (epochs, learning_rate, ...) are written
    into the baseline spec before the change is applied, so a set_hyperparameter change still
    wins in the variant arm. minimum_effect: the smallest metric difference that matters.
    """

    dataset: dict[str, Any] = field(
        default_factory=lambda: {"name": "shapes", "n": 2000, "seed": 0}
    )
    train: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    metric: str = "test_accuracy"
    direction: str = "increase"
    minimum_effect: float = 0.01
    concept: str | None = None
    allow_small: bool = False

    def __post_init__(self) -> None:
        unknown = sorted(set(self.train) - set(TrainConfig.field_names()))
        if unknown:
            raise ValueError(f"train: unknown field(s) {', '.join(unknown)}")
        if len(set(self.seeds)) != len(self.seeds) or not all(
            isinstance(s, int) for s in self.seeds
        ):
            raise ValueError("seeds must be distinct integers")
        if len(self.seeds) < MIN_SEEDS and not self.allow_small:
            raise ValueError(f"need at least {MIN_SEEDS} seeds (set allow_small for quick tests)")
        if len(self.seeds) < 2:
            raise ValueError("need at least 2 seeds to compare arms")
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}")
        if self.direction not in ("increase", "decrease"):
            raise ValueError("direction must be 'increase' or 'decrease'")
        if not self.minimum_effect >= 0:
            raise ValueError("minimum_effect must be >= 0")

    @classmethod
    def coerce(cls, config: ExperimentConfig | dict[str, Any]) -> ExperimentConfig:
        """In: a config or its to_dict() form. Out: an ExperimentConfig."""
        return config if isinstance(config, cls) else cls(**config)

    def to_dict(self) -> dict[str, Any]:
        """Out: a JSON-able dict of all fields."""
        return asdict(self)


@dataclass
class ExperimentPlan:
    """The three arm specs and the changes that produced them."""

    operation: str
    parameters: dict[str, Any]
    arms: dict[str, dict]
    variant: ChangeResult
    control: RandomControl

    def to_dict(self) -> dict[str, Any]:
        """Out: JSON-able dict; `arms` maps arm name to its spec."""
        return {
            "operation": self.operation,
            "parameters": self.parameters,
            "arms": self.arms,
            "variant": self.variant.to_dict(),
            "control": self.control.to_dict(),
        }

    def mechanism_for(self, concept: str | None) -> dict[str, Any] | None:
        """Out: the mechanism argument for run_arm on the variant arm, or None if not checkable."""
        if not concept or not self.variant.added_units:
            return None
        return {
            "layer": self.variant.touched_layer,
            "added_units": list(self.variant.added_units),
            "concept": concept,
        }


def _baseline_spec(spec: dict, config: ExperimentConfig) -> dict:
    baseline = copy_spec(spec)
    overrides = {
        key: value for key, value in config.train.items() if key in DEFAULT_HYPERPARAMETERS
    }
    if overrides:
        baseline["hyperparameters"] = {**baseline.get("hyperparameters", {}), **overrides}
    return baseline


def plan_experiment(
    spec: dict,
    operation: str,
    parameters: dict[str, Any],
    config: ExperimentConfig | dict[str, Any],
    *,
    control_seed: int,
) -> ExperimentPlan:
    """Build the baseline, variant and random-control specs.

    In: the model spec, the guided change, config, seed for drawing the control location.
    Out: ExperimentPlan. Raises ChangeError when the change or its control is impossible.
    """
    config = ExperimentConfig.coerce(config)
    baseline = _baseline_spec(spec, config)
    variant = apply_change(baseline, operation, parameters)
    control = random_control_change(baseline, operation, parameters, seed=control_seed)
    arms = {"baseline": baseline, "variant": variant.spec, "control": control.result.spec}
    return ExperimentPlan(operation, dict(parameters), arms, variant, control)


@functools.lru_cache(maxsize=4)
def _cached_dataset(key: str) -> ArrayDataset:
    options = json.loads(key)
    return load_dataset(options.pop("name"), **options)


def dataset_for(config: ExperimentConfig | dict[str, Any]) -> ArrayDataset:
    """Out: the config's dataset (cached per process, so jobs of one worker share it)."""
    return _cached_dataset(json.dumps(ExperimentConfig.coerce(config).dataset, sort_keys=True))


def _train_config(arm_spec: dict, config: ExperimentConfig) -> TrainConfig:
    settings = {k: v for k, v in config.train.items() if k not in DEFAULT_HYPERPARAMETERS}
    return TrainConfig.from_spec(arm_spec, **settings)


def mechanism_check(model, test: ArrayDataset, mechanism: dict[str, Any]) -> dict[str, Any]:
    """Did the added units become selective for the concept?

    In: trained model, probe set, {"layer", "added_units", "concept"}. Out: JSON-able dict with
    per-unit scores (class selectivity, or |Pearson r| for an attribute) of added vs original
    units of the layer, their means, and a two-sided Mann-Whitney U test.
    """
    layer, concept = mechanism["layer"], mechanism["concept"]
    profile = profile_activations(model, test, layers=[layer])
    scores = concept_scores(profile, layer, concept)
    added = sorted(int(unit) for unit in mechanism["added_units"])
    original = [unit for unit in range(len(scores)) if unit not in set(added)]
    added_scores, original_scores = scores[added], scores[original]
    test_result = scipy_stats.mannwhitneyu(added_scores, original_scores, alternative="two-sided")
    return {
        "layer": layer,
        "concept": concept,
        "score_kind": "selectivity"
        if concept_kind(profile, concept) == "class"
        else "abs_correlation",
        "added_units": added,
        "added_scores": [round(float(x), 6) for x in added_scores],
        "original_scores": [round(float(x), 6) for x in original_scores],
        "added_mean": float(added_scores.mean()),
        "original_mean": float(original_scores.mean()),
        "mann_whitney_u": float(test_result.statistic),
        "p_value": float(test_result.pvalue),
    }


def run_arm(
    arm_spec: dict,
    config: ExperimentConfig | dict[str, Any],
    *,
    seed: int,
    on_progress: Callable[[float, str], None] | None = None,
    mechanism: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train one arm with one seed (one worker job).

    In: the arm's spec, config, seed, optional progress callback and mechanism request
    {"layer", "added_units", "concept"}. Out: JSON-able {"seed", "metrics", "history",
    "seconds", "parameters", "device", "dataset_fingerprint", "mechanism"}.
    """
    config = ExperimentConfig.coerce(config)
    dataset = dataset_for(config)
    train_config = _train_config(arm_spec, config)
    result = train_model(arm_spec, dataset, train_config, seed=seed, on_progress=on_progress)
    mechanism_result = None
    if mechanism:
        _, test = dataset.split(train_config.test_fraction, seed=train_config.split_seed)
        try:
            mechanism_result = mechanism_check(result.model, test, mechanism)
        except (KeyError, ValueError) as error:
            mechanism_result = {"error": str(error), **mechanism}
    return {
        "seed": seed,
        "metrics": result.metrics,
        "history": result.history,
        "seconds": result.seconds,
        "parameters": count_parameters(arm_spec),
        "device": result.device,
        "dataset_fingerprint": dataset.fingerprint,
        "mechanism": mechanism_result,
    }


def _metric_table(arm_results: dict[str, list[dict]], metric: str) -> dict[int, dict[str, float]]:
    table: dict[int, dict[str, float]] = {}
    for arm, results in arm_results.items():
        for result in results:
            table.setdefault(result["seed"], {})[arm] = result["metrics"][metric]
    return dict(sorted(table.items()))


def _arm_summary(values: list[float]) -> dict[str, Any]:
    mean, low, high = mean_confidence_interval(values)
    clean = [None if math.isnan(x) else x for x in (low, high)]
    return {
        "n": len(values),
        "mean": mean,
        "ci_low": clean[0],
        "ci_high": clean[1],
        "values": values,
    }


def _comparison(table, variant: str, reference: str, config: ExperimentConfig) -> dict | None:
    seeds = [seed for seed, row in table.items() if variant in row and reference in row]
    if len(seeds) < 2:
        return None
    result = compare_arms([table[s][variant] for s in seeds], [table[s][reference] for s in seeds])
    result["seeds"] = seeds
    result["verdict"] = verdict(
        result["ci_low"],
        result["ci_high"],
        direction=config.direction,
        minimum_effect=config.minimum_effect,
    )
    return result


def _power_warnings(comparison: dict | None, config: ExperimentConfig) -> list[str]:
    if comparison is None:
        return ["fewer than 2 seeds finished in both arms; no comparison possible"]
    n, sd = comparison["n"], comparison["sd_difference"] or 0.0
    detectable = minimum_detectable_effect(n, sd, power=DETECTION_POWER)
    if detectable > config.minimum_effect:
        return [
            f"N={n} seeds can detect a difference of {detectable:.4g} in {config.metric} with "
            f"{DETECTION_POWER:.0%} power; the expected effect of {config.minimum_effect:.4g} "
            "is smaller, so a null result is weak evidence"
        ]
    return []


def _warnings(arm_results, table, comparison, config) -> list[str]:
    warnings = _power_warnings(comparison, config)
    if len(table) < MIN_SEEDS:
        warnings.append(f"only {len(table)} seeds; at least {MIN_SEEDS} are recommended")
    incomplete = [seed for seed, row in table.items() if len(row) < len(arm_results)]
    if incomplete:
        warnings.append(f"seeds missing in some arm: {incomplete}")
    fingerprints = {r.get("dataset_fingerprint") for rs in arm_results.values() for r in rs}
    if len(fingerprints) > 1:
        warnings.append("arms were trained on different data (dataset fingerprints differ)")
    return warnings


def summarise_mechanism(variant_results: list[dict]) -> dict[str, Any] | None:
    """Pool the per-seed mechanism checks of the variant arm.

    Out: None when there were none; else {"seeds", "added_mean", "original_mean",
    "mann_whitney_u", "p_value" (pooled two-sided test), "seeds_added_at_least_original",
    "interpretation", "errors"}.
    """
    checks = [r["mechanism"] for r in variant_results if r.get("mechanism")]
    if not checks:
        return None
    valid = [check for check in checks if "error" not in check]
    errors = [check["error"] for check in checks if "error" in check]
    if not valid:
        return {"seeds": 0, "errors": errors, "interpretation": "mechanism check failed"}
    added = np.concatenate([check["added_scores"] for check in valid])
    original = np.concatenate([check["original_scores"] for check in valid])
    pooled = scipy_stats.mannwhitneyu(added, original, alternative="two-sided")
    return {
        "layer": valid[0]["layer"],
        "concept": valid[0]["concept"],
        "score_kind": valid[0]["score_kind"],
        "seeds": len(valid),
        "added_mean": float(added.mean()),
        "original_mean": float(original.mean()),
        "mann_whitney_u": float(pooled.statistic),
        "p_value": float(pooled.pvalue),
        "seeds_added_at_least_original": sum(c["added_mean"] >= c["original_mean"] for c in valid),
        "interpretation": _interpret_mechanism(added.mean(), original.mean(), pooled.pvalue),
        "errors": errors,
    }


def _interpret_mechanism(added_mean: float, original_mean: float, p_value: float) -> str:
    if p_value >= 0.05:
        return f"added units are about as selective as the original units (p={p_value:.3g})"
    relation = "more" if added_mean > original_mean else "less"
    return f"added units are {relation} selective than the original units (p={p_value:.3g})"


def aggregate_experiment(
    arm_results: dict[str, list[dict]], config: ExperimentConfig | dict[str, Any]
) -> dict[str, Any]:
    """Combine per-seed run_arm() results into the experiment's answer.

    In: {"baseline": [...], "variant": [...], "control": [...]} run_arm results, config.
    Out: JSON-able {"metric", "direction", "minimum_effect", "per_seed" (rows of seed and each
    arm's metric), "arms" (mean, 95% CI, values), "variant_vs_baseline", "variant_vs_control"
    (paired comparisons with CI, p-value, d_z and verdict), "verdict", "warnings",
    "mechanism"}.
    """
    config = ExperimentConfig.coerce(config)
    table = _metric_table(arm_results, config.metric)
    arms = {
        arm: _arm_summary([row[arm] for row in table.values() if arm in row])
        for arm in ARMS
        if arm in arm_results and arm_results[arm]
    }
    versus_baseline = _comparison(table, "variant", "baseline", config)
    versus_control = _comparison(table, "variant", "control", config)
    return {
        "metric": config.metric,
        "direction": config.direction,
        "minimum_effect": config.minimum_effect,
        "per_seed": [{"seed": seed, **row} for seed, row in table.items()],
        "arms": arms,
        "variant_vs_baseline": versus_baseline,
        "variant_vs_control": versus_control,
        "verdict": versus_baseline["verdict"] if versus_baseline else "inconclusive",
        "warnings": _warnings(arm_results, table, versus_baseline, config),
        "mechanism": summarise_mechanism(arm_results.get("variant", [])),
    }


def run_experiment_locally(
    spec: dict,
    operation: str,
    parameters: dict[str, Any],
    config: ExperimentConfig | dict[str, Any],
    control_seed: int = 0,
    on_progress: Callable[[float, str], None] | None = None,
) -> dict[str, Any]:
    """Plan, run every (arm, seed) sequentially in this process, and aggregate.

    Out: JSON-able {"plan", "config", "arm_results", "aggregate"}.
    """
    config = ExperimentConfig.coerce(config)
    plan = plan_experiment(spec, operation, parameters, config, control_seed=control_seed)
    mechanism = plan.mechanism_for(config.concept)
    jobs = [(arm, seed) for arm in ARMS for seed in config.seeds]
    arm_results: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    for done, (arm, seed) in enumerate(jobs):
        arm_mechanism = mechanism if arm == "variant" else None
        result = run_arm(plan.arms[arm], config, seed=seed, mechanism=arm_mechanism)
        arm_results[arm].append(result)
        if on_progress is not None:
            on_progress((done + 1) / len(jobs), f"{arm} seed {seed} done")
    return {
        "plan": plan.to_dict(),
        "config": config.to_dict(),
        "arm_results": arm_results,
        "aggregate": aggregate_experiment(arm_results, config),
    }
