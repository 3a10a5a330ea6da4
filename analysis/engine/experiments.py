"""Change experiments: baseline vs guided variant vs budget-matched random control.

Designed to fan out as one job per (arm, seed): plan_experiment() (analysis/engine/plans.py,
torch-free) once when the run is requested, run_arm() per job
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
from analysis.engine.datasets import ArrayDataset, load_dataset
from analysis.engine.plans import plan_experiment
from analysis.engine.profiles import concept_kind, concept_scores
from analysis.engine.run_settings import (
    DEFAULT_DATASET,
    DEFAULT_SEEDS,
    MIN_COMPARABLE_SEEDS,
    MIN_SEEDS,
    SettingsError,
    experiment_config_clean,
)
from analysis.engine.specs import count_parameters
from analysis.engine.stats import (
    DIRECTIONS,
    METRIC_RANGES,
    compare_arms,
    mean_confidence_interval,
    power_warnings,
    verdict,
)
from analysis.engine.training import TrainConfig, train_model

ARMS = ("baseline", "variant", "control")
# The metrics' ranges live beside the statistics (stats.METRIC_RANGES), which the web process
# imports without torch; this module imports torch.
METRICS = tuple(METRIC_RANGES)


@dataclass
class ExperimentConfig:
    """What to train on, how, with which seeds, and what result counts as success.

    dataset, train, seeds, concept: checked and normalised by run_settings'
    experiment_config_clean, the rules the web process checks a request with (a seed count
    becomes seeds 0..count-1); allow_small lowers the seed minimum from MIN_SEEDS to
    MIN_COMPARABLE_SEEDS for benchmarks and quick checks. train: training settings
    (epochs, learning_rate, ...), written into the baseline spec before the change is applied,
    so a set_hyperparameter change still wins in the variant arm. minimum_effect: the smallest
    metric difference that matters. Raises SettingsError (a ValueError) keyed by field.
    """

    dataset: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_DATASET))
    train: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: list(range(DEFAULT_SEEDS)))
    metric: str = "test_accuracy"
    direction: str = "increase"
    minimum_effect: float = 0.01
    concept: str | None = None
    allow_small: bool = False

    def __post_init__(self) -> None:
        raw = {"dataset": self.dataset, "train": self.train, "seeds": self.seeds,
               "concept": self.concept}  # fmt: skip
        minimum = MIN_COMPARABLE_SEEDS if self.allow_small else MIN_SEEDS
        errors = self._outcome_errors()
        try:
            cleaned = experiment_config_clean(raw, min_seeds=minimum)
        except SettingsError as error:
            raise SettingsError({**error.field_errors, **errors}) from None
        if errors:
            raise SettingsError(errors)
        self.dataset = cleaned["dataset"]
        self.train = cleaned["train"]
        self.seeds = cleaned["seeds"]
        self.concept = cleaned["concept"] or None

    def _outcome_errors(self) -> dict[str, list[str]]:
        """Problems with what counts as success (set by the change, not by the request)."""
        errors = {}
        if not isinstance(self.metric, str) or self.metric not in METRICS:
            errors["metric"] = [f"must be one of {', '.join(METRICS)}, got {self.metric!r}."]
        if not isinstance(self.direction, str) or self.direction not in DIRECTIONS:
            errors["direction"] = [
                f"must be one of {', '.join(DIRECTIONS)}, got {self.direction!r}."
            ]
        effect = self.minimum_effect
        if isinstance(effect, bool) or not isinstance(effect, int | float) or not effect >= 0:
            errors["minimum_effect"] = [f"must be a number >= 0, got {effect!r}."]
        return errors

    @classmethod
    def coerce(cls, config: ExperimentConfig | dict[str, Any]) -> ExperimentConfig:
        """In: a config or its to_dict() form. Out: an ExperimentConfig."""
        return config if isinstance(config, cls) else cls(**config)

    def to_dict(self) -> dict[str, Any]:
        """Out: a JSON-able dict of all fields."""
        return asdict(self)


@functools.lru_cache(maxsize=4)
def _cached_dataset(key: str) -> ArrayDataset:
    options = json.loads(key)
    return load_dataset(options.pop("name"), **options)


def dataset_for(config: ExperimentConfig | dict[str, Any]) -> ArrayDataset:
    """Out: the config's dataset (cached per process, so jobs of one worker share it)."""
    return _cached_dataset(json.dumps(ExperimentConfig.coerce(config).dataset, sort_keys=True))


def mechanism_check(model, test: ArrayDataset, mechanism: dict[str, Any]) -> dict[str, Any]:
    """Did the added units become selective for the concept?

    In: trained model, probe set, {"layer", "added_units", "concept"}. Out: JSON-able dict with
    per-unit scores (class selectivity, or |Pearson r| for an attribute) of added vs original
    units of the layer, their means, and a two-sided Mann-Whitney U test within this one
    model (descriptive: its units share the model; summarise_mechanism tests across seeds).
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
    # Every training setting of a run is a hyperparameter, already written into the arm's spec.
    train_config = TrainConfig.from_spec(arm_spec)
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


def _warnings(arm_results, table, config: ExperimentConfig) -> list[str]:
    paired = [row for row in table.values() if "variant" in row and "baseline" in row]
    warnings = power_warnings(
        [row["variant"] for row in paired],
        [row["baseline"] for row in paired],
        metric=config.metric,
        minimum_effect=config.minimum_effect,
    )
    if len(table) < MIN_SEEDS:
        warnings.append(f"only {len(table)} seeds; at least {MIN_SEEDS} are recommended")
    incomplete = [seed for seed, row in table.items() if len(row) < len(arm_results)]
    if incomplete:
        warnings.append(f"seeds missing in some arm: {incomplete}")
    fingerprints = {r.get("dataset_fingerprint") for rs in arm_results.values() for r in rs}
    if len(fingerprints) > 1:
        warnings.append("arms were trained on different data (dataset fingerprints differ)")
    return warnings


MECHANISM_TEST = "paired t-test over seeds (each seed: added-unit mean minus original-unit mean)"


def summarise_mechanism(variant_results: list[dict]) -> dict[str, Any] | None:
    """Test the variant arm's per-seed mechanism checks across seeds.

    Units of one seed share a model, so they are not independent observations, and pooling
    units over seeds would count each model many times. Each seed gives one number instead,
    the mean score of its added units minus the mean score of its original units; a paired
    t-test over seeds (a one-sample t-test of those differences against 0) asks whether the
    difference is consistently non-zero. A t-test rather than Wilcoxon's signed-rank test:
    with 3-5 seeds the signed-rank test cannot reach p < 0.05 at all (its smallest two-sided
    p is 0.25 for 3 seeds, 0.0625 for 5).

    Out: None when there were none; else {"layer", "concept", "score_kind", "seeds" (count),
    "per_seed": [{"seed", "added_mean", "original_mean", "difference"}], "added_mean",
    "original_mean" (means over seeds), "test", "difference" (mean over seeds), "ci_low",
    "ci_high" (95%), "statistic" (t), "df", "p_value", "seeds_added_at_least_original",
    "interpretation", "errors"}. Test numbers are None when undefined: fewer than 2 seeds, or
    the same difference on every seed.
    """
    checks = [r["mechanism"] for r in variant_results if r.get("mechanism")]
    if not checks:
        return None
    valid = [(r["seed"], r["mechanism"]) for r in variant_results
             if r.get("mechanism") and "error" not in r["mechanism"]]  # fmt: skip
    errors = [check["error"] for check in checks if "error" in check]
    if not valid:
        return {"seeds": 0, "errors": errors, "interpretation": "mechanism check failed"}
    added = [check["added_mean"] for _, check in valid]
    original = [check["original_mean"] for _, check in valid]
    test = _mechanism_test(added, original)
    first = valid[0][1]
    return {
        "layer": first["layer"],
        "concept": first["concept"],
        "score_kind": first["score_kind"],
        "seeds": len(valid),
        "per_seed": [
            {"seed": seed, "added_mean": a, "original_mean": o, "difference": a - o}
            for (seed, _), a, o in zip(valid, added, original, strict=True)
        ],
        "added_mean": float(np.mean(added)),
        "original_mean": float(np.mean(original)),
        **test,
        "seeds_added_at_least_original": sum(a >= o for a, o in zip(added, original, strict=True)),
        "interpretation": _interpret_mechanism(test, len(valid)),
        "errors": errors,
    }


def _mechanism_test(added: list[float], original: list[float]) -> dict[str, Any]:
    difference = float(np.mean(added) - np.mean(original))
    undefined = {"ci_low": None, "ci_high": None, "statistic": None, "df": None, "p_value": None}
    if len(added) < 2:
        return {"test": MECHANISM_TEST, "difference": difference, **undefined}
    result = compare_arms(added, original, paired=True)
    keys = ("difference", "ci_low", "ci_high", "statistic", "df", "p_value")
    return {"test": MECHANISM_TEST, **{key: result[key] for key in keys}}


def _interpret_mechanism(test: dict[str, Any], seeds: int) -> str:
    difference, p_value = test["difference"], test["p_value"]
    if seeds < 2:
        return (
            f"on its one checked seed the added units' mean score minus the original units' "
            f"was {difference:+.3g}; one seed allows no test across seeds"
        )
    if p_value is None:
        return (
            f"the added units differed from the original units by {difference:+.3g} on every "
            f"one of {seeds} seeds alike, so the test across seeds is undefined"
        )
    summary = (
        f"mean per-seed difference {difference:+.3g}, 95% CI [{test['ci_low']:.3g}, "
        f"{test['ci_high']:.3g}], paired t-test over {seeds} seeds p={p_value:.3g}"
    )
    if p_value >= 0.05:
        return f"added units are about as selective as the original units ({summary})"
    relation = "more" if difference > 0 else "less"
    return f"added units are {relation} selective than the original units ({summary})"


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
        "warnings": _warnings(arm_results, table, config),
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
    plan = plan_experiment(spec, operation, parameters, config.train, control_seed=control_seed)
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
