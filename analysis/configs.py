"""Validation of run configurations, torch-free so the web process can refuse bad input
before a run row exists. Each `*_config_clean` returns a complete, normalised config or
raises ValidationError with one message per field."""

from typing import Any

from django.core.exceptions import ValidationError

from analysis.engine.specs import DEFAULT_HYPERPARAMETERS, SpecError, hyperparameter_problem

DATASET_NAMES = ("shapes", "digits", "fashion-mnist")
DATASET_OPTIONS = {
    "shapes": {"n": (int, 40, 50_000), "seed": (int, 0, 2**31 - 1), "size": (int, 8, 64)},
    "digits": {"limit": (int, 20, 1797)},
    "fashion-mnist": {"limit": (int, 20, 60_000)},
}
DEFAULT_DATASET = {"name": "shapes", "n": 2000, "seed": 0}
# What each dataset feeds a model: (input shape, number of classes); shapes follows the model.
DATASET_SHAPES = {"digits": ([1, 8, 8], 10), "fashion-mnist": ([1, 28, 28], 10)}
SHAPES_CLASSES = 4
MIN_SEEDS = 3
MAX_SEEDS = 20
DEFAULT_SEEDS = 5
TRAIN_FIELDS = tuple(DEFAULT_HYPERPARAMETERS)
# A run holds a worker for its whole length; these caps keep one request from holding it for days.
TRAIN_CAPS = {"epochs": 100, "batch_size": 8192, "learning_rate": 10.0}


def _clean_int(value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be a whole number from {low} to {high}")
    if not low <= value <= high:
        raise ValueError(f"must be from {low} to {high}, got {value}")
    return value


def _clean_dataset(raw: Any) -> dict:
    if raw is None:
        return dict(DEFAULT_DATASET)
    if not isinstance(raw, dict) or raw.get("name") not in DATASET_NAMES:
        raise ValidationError({"dataset": f"name must be one of {', '.join(DATASET_NAMES)}."})
    allowed = DATASET_OPTIONS[raw["name"]]
    cleaned = dict(DEFAULT_DATASET) if raw["name"] == "shapes" else {"name": raw["name"]}
    for key, value in raw.items():
        if key == "name":
            continue
        if key not in allowed:
            raise ValidationError({"dataset": f"{raw['name']} has no option {key!r}."})
        _, low, high = allowed[key]
        try:
            cleaned[key] = _clean_int(value, low, high)
        except ValueError as error:
            raise ValidationError({"dataset": f"{key} {error}."}) from None
    return cleaned


def _clean_train(raw: Any) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValidationError({"train": "must be an object of training settings."})
    unknown = sorted(set(raw) - set(TRAIN_FIELDS))
    if unknown:
        raise ValidationError({"train": f"unknown setting(s): {', '.join(unknown)}."})
    for name, value in raw.items():
        try:
            problem = hyperparameter_problem(name, value)
        except SpecError as error:
            problem = str(error)
        if problem:
            raise ValidationError({"train": f"{name}: {problem}"})
        if name in TRAIN_CAPS and value > TRAIN_CAPS[name]:
            raise ValidationError({"train": f"{name}: at most {TRAIN_CAPS[name]}, got {value}"})
    return dict(raw)


def _clean_seeds(raw: Any, minimum: int = MIN_SEEDS) -> list[int]:
    if raw is None:
        return list(range(DEFAULT_SEEDS))
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = list(range(raw))
    if not isinstance(raw, list) or not all(
        isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0 for seed in raw
    ):
        raise ValidationError({"seeds": "give a number of seeds or a list of non-negative seeds."})
    if len(set(raw)) != len(raw):
        raise ValidationError({"seeds": "seeds must be distinct."})
    if not minimum <= len(raw) <= MAX_SEEDS:
        raise ValidationError({"seeds": f"use {minimum} to {MAX_SEEDS} seeds, got {len(raw)}."})
    return raw


def _reject_unknown(raw: dict, allowed: set[str]) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ValidationError({key: "unknown setting." for key in unknown})


def experiment_config_clean(raw: dict | None, *, min_seeds: int = MIN_SEEDS) -> dict:
    """In: {"dataset", "train", "seeds", "control_seed", "concept"}, all optional.
    `min_seeds` is lowered only by benchmarks; people always get at least MIN_SEEDS."""
    raw = dict(raw or {})
    _reject_unknown(raw, {"dataset", "train", "seeds", "control_seed", "concept"})
    control_seed = raw.get("control_seed", 0)
    try:
        control_seed = _clean_int(control_seed, 0, 2**31 - 1)
    except ValueError as error:
        raise ValidationError({"control_seed": str(error)}) from None
    concept = raw.get("concept") or ""
    if not isinstance(concept, str):
        raise ValidationError({"concept": "must be a class or attribute name."})
    return {
        "dataset": _clean_dataset(raw.get("dataset")),
        "train": _clean_train(raw.get("train")),
        "seeds": _clean_seeds(raw.get("seeds"), min_seeds),
        "control_seed": control_seed,
        "concept": concept,
    }


def profile_config_clean(raw: dict | None) -> dict:
    """In: {"dataset", "train", "seed", "concept", "top_k"}; trains first when the model
    has no weights."""
    raw = dict(raw or {})
    _reject_unknown(raw, {"dataset", "train", "seed", "concept", "top_k"})
    try:
        seed = _clean_int(raw.get("seed", 0), 0, 2**31 - 1)
        top_k = _clean_int(raw.get("top_k", 5), 1, 256)
    except ValueError as error:
        raise ValidationError({"seed": str(error)}) from None
    concept = raw.get("concept") or ""
    if not isinstance(concept, str):
        raise ValidationError({"concept": "must be a class or attribute name."})
    return {
        "dataset": _clean_dataset(raw.get("dataset")),
        "train": _clean_train(raw.get("train")),
        "seed": seed,
        "concept": concept,
        "top_k": top_k,
    }


def ablation_config_clean(raw: dict | None) -> dict:
    """In: {"dataset", "train", "seed", "mode", "random_sets"}."""
    raw = dict(raw or {})
    _reject_unknown(raw, {"dataset", "train", "seed", "mode", "random_sets"})
    mode = raw.get("mode", "zero")
    if mode not in ("zero", "mean"):
        raise ValidationError({"mode": "must be 'zero' or 'mean'."})
    try:
        seed = _clean_int(raw.get("seed", 0), 0, 2**31 - 1)
        random_sets = _clean_int(raw.get("random_sets", 20), 2, 500)
    except ValueError as error:
        raise ValidationError({"random_sets": str(error)}) from None
    return {
        "dataset": _clean_dataset(raw.get("dataset")),
        "train": _clean_train(raw.get("train")),
        "seed": seed,
        "mode": mode,
        "random_sets": random_sets,
    }


def dataset_fit_model(dataset: dict, spec: dict) -> dict:
    """Check a cleaned dataset config against a model spec; shapes images take the model's
    input size unless one is given. Raises ValidationError({"dataset": ...}) on a mismatch."""
    input_shape, classes = list(spec.get("input_shape", [])), spec.get("num_classes")
    name = dataset["name"]
    if name == "shapes":
        if len(input_shape) != 3 or input_shape[0] != 1 or input_shape[1] != input_shape[2]:
            raise ValidationError(
                {
                    "dataset": "shapes images are square and grey: the model "
                    f"must take [1, N, N], not {input_shape}."
                }
            )
        dataset = {**dataset, "size": dataset.get("size", input_shape[1])}
        expected = ([1, dataset["size"], dataset["size"]], SHAPES_CLASSES)
    else:
        expected = DATASET_SHAPES[name]
    if input_shape != expected[0] or classes != expected[1]:
        raise ValidationError(
            {
                "dataset": f"{name} gives inputs {expected[0]} and {expected[1]} "
                f"classes; the model takes {input_shape} and "
                f"{classes} classes."
            }
        )
    return dataset
