"""The rules for a study's settings, in one place: what a guided-search study may be asked.

study_config_clean is the one validator: the web process (form, API, command line, services)
refuses bad input with it before a study row exists, and the engine plans and runs only what
it returns. The dataset, training settings, seeds and concept follow the very rules change
experiments use (run_settings.experiment_config_clean; for a transformer,
transformer_experiment_config_clean), so a study's candidate trains exactly as a change
experiment's arm would. Pure Python, importing neither Django nor torch.

Errors are one run_settings.SettingsError keyed as run settings are: a top-level setting by its
name ("rounds", "budget_fraction", "tracks", ...), a nested one by its dotted path
("dataset.n", "train.epochs"), "model" for a model the study cannot search, "config" when the
whole config is not an object.
"""

from __future__ import annotations

from typing import Any

from analysis.engine.run_settings import (
    DATASET_CONCEPTS,
    DATASET_NAMES,
    DEFAULT_DATASET,
    MAX_SEED,
    MIN_COMPARABLE_SEEDS,
    MIN_SEEDS,
    SettingsError,
    dataset_fit_model,
    experiment_config_clean,
    transformer_experiment_config_clean,
)
from analysis.engine.specs import SpecError, unit_layers
from analysis.engine.stats import DIRECTIONS, METRIC_RANGES
from analysis.engine.study_rules import (
    CNN_RULES,
    DEFAULT_BUDGET_FRACTION,
    DEFAULT_HEAD_ROLE,
    DEFAULT_ROLE_THRESHOLD,
    HEAD_ROLES,
    INSERT_ATTENTION_UNTIL_ROLE,
    TRANSFORMER_RULES,
    WIDEN_MOST_SELECTIVE,
)
from analysis.engine.study_tracks import DEFAULT_TOLERANCE
from analysis.engine.transformer_specs import (
    TransformerSpecError,
    is_transformer_spec,
    transformer_hyperparameters,
    validate_transformer_spec,
)

GUIDED, RANDOM, UNIFORM = "guided", "random", "uniform"
TRACKS = (GUIDED, RANDOM, UNIFORM)
CONTROL_TRACKS = (RANDOM, UNIFORM)
ROUNDS_BOUNDS = (1, 10)
DEFAULT_ROUNDS = 4
TOLERANCE_BOUNDS = (0.0, 0.5)
LEVEL_BOUNDS = (0.5, 0.999)
DEFAULT_LEVEL = 0.95
# The metric's better direction when the request names none: accuracy up, losses down.
METRIC_DIRECTIONS = {"test_accuracy": "increase", "test_loss": "decrease", "train_loss": "decrease"}
DEFAULT_METRIC = "test_accuracy"
STUDY_SETTINGS = (
    "dataset", "train", "seeds", "rounds", "budget_fraction", "concept", "rule", "tracks",
    "metric", "direction", "random_seed", "tolerance", "level",
)  # fmt: skip
# The settings change experiments share with studies, cleaned by their rules.
SHARED_SETTINGS = ("dataset", "train", "seeds", "concept")
# A study of a transformer: a sequence task instead of a dataset, training by steps, a probe
# set (as transformer change experiments take them), and a head role with its threshold
# instead of a concept. Its metric is the held-out loss on the scored positions (for the
# induction task, the repeated tokens), lower being better.
TRANSFORMER_STUDY_SETTINGS = (
    "dataset", "train", "seeds", "probe_size", "rounds", "budget_fraction", "head_role",
    "threshold", "rule", "tracks", "metric", "direction", "random_seed", "tolerance", "level",
)  # fmt: skip
TRANSFORMER_SHARED_SETTINGS = ("dataset", "train", "seeds", "probe_size")
DEFAULT_TRANSFORMER_METRIC = "test_loss"
THRESHOLD_BOUNDS = (0.0, 1.0)

Errors = dict[str, list[str]]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _rounds(value: Any) -> int:
    low, high = ROUNDS_BOUNDS
    if not _is_int(value) or not low <= value <= high:
        raise ValueError(f"must be a whole number from {low} to {high}, got {_shown(value)}.")
    return value


def _budget_fraction(value: Any) -> float:
    # NaN fails both comparisons, so it is refused with the rest.
    if not _is_number(value) or not 0 < value <= 1:
        raise ValueError(
            f"must be a number above 0 and at most 1 (a share of the current model's "
            f"parameters), got {_shown(value)}."
        )
    return float(value)


def _bounded_number(value: Any, bounds: tuple[float, float]) -> float:
    low, high = bounds
    if not _is_number(value) or not low <= value <= high:
        raise ValueError(f"must be a number from {low} to {high}, got {_shown(value)}.")
    return float(value)


def _choice(value: Any, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"must be one of {', '.join(choices)}, got {_shown(value)}.")
    return value


def _tracks(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"must be a list of track names from {', '.join(TRACKS)}.")
    unknown = sorted(set(value) - set(TRACKS))
    if unknown:
        raise ValueError(f"unknown track(s) {', '.join(unknown)}; use {', '.join(TRACKS)}.")
    if GUIDED not in value or not set(value) & set(CONTROL_TRACKS):
        raise ValueError(
            'must hold "guided" and at least one control track ("random" or "uniform") to '
            "compare it with."
        )
    return [track for track in TRACKS if track in value]


def _random_seed(value: Any) -> int:
    if not _is_int(value) or not 0 <= value <= MAX_SEED:
        raise ValueError(f"must be a whole number from 0 to {MAX_SEED}, got {_shown(value)}.")
    return value


def _gather(errors: Errors, key: str, clean, *args: Any) -> Any:
    try:
        return clean(*args)
    except SettingsError as problem:
        for field, messages in problem.field_errors.items():
            errors.setdefault(field, []).extend(messages)
    except ValueError as problem:
        errors.setdefault(key, []).append(str(problem))
    return None


def _model_problem(spec: Any) -> str | None:
    """Why a study cannot search this model, or None."""
    if is_transformer_spec(spec):
        try:
            validate_transformer_spec(spec)
        except TransformerSpecError as error:
            return f"the model's spec is invalid: {error}"
        return None
    try:
        hidden = unit_layers(spec)
    except (SpecError, KeyError, TypeError) as error:
        return f"the model's spec is invalid: {error}"
    if not hidden:
        return "the model has no hidden conv2d or linear layer to profile and change."
    return None


def _concept_required(errors: Errors, raw: dict) -> None:
    """A blank concept is refused (the rules read scores for one), naming the choices when
    the raw dataset names a known dataset."""
    if raw.get("concept") not in (None, ""):
        return
    dataset = raw.get("dataset", DEFAULT_DATASET)
    name = dataset.get("name") if isinstance(dataset, dict) else None
    choices = f"; use one of {', '.join(DATASET_CONCEPTS[name])}" if name in DATASET_NAMES else ""
    errors.setdefault("concept", []).append(
        f"required: the guided rule reads the units' scores for a concept{choices}."
    )


def _shared(errors: Errors, raw: dict, spec: dict, min_seeds: int) -> dict:
    """The settings studies share with change experiments, by the experiments' own rules:
    dataset (fitted to the model), train, seeds, and a concept the dataset can measure."""
    shared = {key: raw[key] for key in SHARED_SETTINGS if key in raw}
    cleaned = _gather(
        errors, "config", lambda: experiment_config_clean(shared, min_seeds=min_seeds)
    )
    _concept_required(errors, raw)
    if cleaned is None:
        return {}
    result = {key: cleaned[key] for key in SHARED_SETTINGS}
    result["dataset"] = _gather(errors, "dataset", dataset_fit_model, cleaned["dataset"], spec)
    return result


def study_config_clean(
    raw: dict | None, *, spec: dict, allow_small: bool = False
) -> dict[str, Any]:
    """Clean a study's settings for the model `spec` (its architecture spec).

    In: {"dataset", "train", "seeds", "rounds", "budget_fraction", "concept", "rule",
    "tracks", "metric", "direction", "random_seed", "tolerance", "level"}; all optional but
    the concept. `allow_small` lowers the seed minimum from MIN_SEEDS to
    MIN_COMPARABLE_SEEDS, for benchmarks and quick engine checks only.
    Out: the complete config, every key present: dataset (fitted to the model), train,
    seeds (list of ints), rounds, budget_fraction, concept, rule, tracks (in the order
    guided, random, uniform), metric, direction (the metric's better direction unless
    given), random_seed, tolerance (the control tracks' relative budget tolerance), level
    (of the keep rule's and the comparisons' intervals). Cleaning its own output returns it
    unchanged. Raises SettingsError keyed by setting, with every problem found.

    For a transformer spec the settings are TRANSFORMER_STUDY_SETTINGS instead: dataset (a
    sequence task, default induction, fitted to the model), train (steps, batch_size,
    learning_rate, weight_decay, optimizer; the spec's own values where left out), seeds and
    probe_size, as transformer change experiments clean them; head_role (HEAD_ROLES, default
    induction) and threshold (0..1, default 0.5) in place of the concept; rule
    insert_attention_until_role; metric test_loss by default (the held-out loss on the
    scored positions: the repeated tokens of the induction task), direction decrease.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SettingsError({"config": "must be an object of study settings."})
    if is_transformer_spec(spec):
        return _transformer_study_config_clean(raw, spec, allow_small)
    errors: Errors = {}
    for key in sorted(set(raw) - set(STUDY_SETTINGS), key=str):
        errors[str(key)] = [f"unknown setting. Expected one of {', '.join(STUDY_SETTINGS)}."]
    if problem := _model_problem(spec):
        raise SettingsError({**errors, "model": [problem]})
    min_seeds = MIN_COMPARABLE_SEEDS if allow_small else MIN_SEEDS
    cleaned = _shared(errors, raw, spec, min_seeds)
    metric = _gather(errors, "metric", _choice, raw.get("metric", DEFAULT_METRIC), METRIC_RANGES)
    cleaned |= _common(errors, raw, metric, WIDEN_MOST_SELECTIVE, CNN_RULES)
    if errors:
        raise SettingsError(errors)
    return {key: cleaned[key] for key in STUDY_SETTINGS}


def _common(errors: Errors, raw: dict, metric: Any, rule: str, rules) -> dict[str, Any]:
    """The settings every study takes, whatever its model's family."""
    default_direction = METRIC_DIRECTIONS.get(metric, "increase")
    return {
        "rounds": _gather(errors, "rounds", _rounds, raw.get("rounds", DEFAULT_ROUNDS)),
        "budget_fraction": _gather(errors, "budget_fraction", _budget_fraction,
                                   raw.get("budget_fraction", DEFAULT_BUDGET_FRACTION)),
        "rule": _gather(errors, "rule", _choice, raw.get("rule", rule), rules),
        "tracks": _gather(errors, "tracks", _tracks, raw.get("tracks", list(TRACKS))),
        "metric": metric,
        "direction": _gather(errors, "direction", _choice,
                             raw.get("direction", default_direction), DIRECTIONS),
        "random_seed": _gather(errors, "random_seed", _random_seed, raw.get("random_seed", 0)),
        "tolerance": _gather(errors, "tolerance", _bounded_number,
                             raw.get("tolerance", DEFAULT_TOLERANCE), TOLERANCE_BOUNDS),
        "level": _gather(errors, "level", _bounded_number, raw.get("level", DEFAULT_LEVEL),
                         LEVEL_BOUNDS),
    }  # fmt: skip


def _transformer_shared(errors: Errors, raw: dict, spec: dict, min_seeds: int) -> dict:
    """The task, training, seeds and probe set, by transformer change experiments' rules
    (the task fitted to the model's n_ctx and d_vocab, training by steps)."""
    config = validate_transformer_spec(spec)
    shared = {key: raw[key] for key in TRANSFORMER_SHARED_SETTINGS if key in raw}
    cleaned = _gather(
        errors, "config", lambda: transformer_experiment_config_clean(
            shared, n_ctx=config.n_ctx, d_vocab=config.d_vocab,
            hyperparameters=transformer_hyperparameters(spec), min_seeds=min_seeds,
        ),
    )  # fmt: skip
    if cleaned is None:
        return {}
    return {key: cleaned[key] for key in TRANSFORMER_SHARED_SETTINGS}


def _transformer_study_config_clean(raw: dict, spec: dict, allow_small: bool) -> dict[str, Any]:
    """study_config_clean for a transformer: TRANSFORMER_STUDY_SETTINGS, all optional."""
    errors: Errors = {}
    for key in sorted(set(raw) - set(TRANSFORMER_STUDY_SETTINGS), key=str):
        errors[str(key)] = [
            f"unknown setting for a transformer. Expected one of "
            f"{', '.join(TRANSFORMER_STUDY_SETTINGS)}."
        ]
    if problem := _model_problem(spec):
        raise SettingsError({**errors, "model": [problem]})
    min_seeds = MIN_COMPARABLE_SEEDS if allow_small else MIN_SEEDS
    cleaned = _transformer_shared(errors, raw, spec, min_seeds)
    metric = _gather(
        errors, "metric", _choice, raw.get("metric", DEFAULT_TRANSFORMER_METRIC), METRIC_RANGES
    )
    cleaned |= _common(errors, raw, metric, INSERT_ATTENTION_UNTIL_ROLE, TRANSFORMER_RULES)
    cleaned["head_role"] = _gather(
        errors, "head_role", _choice, raw.get("head_role", DEFAULT_HEAD_ROLE), HEAD_ROLES
    )
    cleaned["threshold"] = _gather(
        errors, "threshold", _bounded_number, raw.get("threshold", DEFAULT_ROLE_THRESHOLD),
        THRESHOLD_BOUNDS,
    )  # fmt: skip
    if errors:
        raise SettingsError(errors)
    return {key: cleaned[key] for key in TRANSFORMER_STUDY_SETTINGS}


def experiment_settings_of(config: dict) -> dict[str, Any]:
    """The ExperimentConfig fields (experiments.run_arm's config) of a cleaned study config:
    the same dataset, training and seeds, so a study's job trains as an experiment's arm."""
    return {
        "dataset": config["dataset"],
        "train": config["train"],
        "seeds": config["seeds"],
        "metric": config["metric"],
        "direction": config["direction"],
        "concept": config["concept"],
        # The study's request already enforced the seed count (benchmarks may lower it).
        "allow_small": True,
    }


__all__ = [
    "CONTROL_TRACKS",
    "DEFAULT_ROUNDS",
    "GUIDED",
    "METRIC_DIRECTIONS",
    "RANDOM",
    "STUDY_SETTINGS",
    "TRACKS",
    "TRANSFORMER_STUDY_SETTINGS",
    "UNIFORM",
    "experiment_settings_of",
    "study_config_clean",
]
