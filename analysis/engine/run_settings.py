"""The rules for run settings, in one place: bounds, choices, the datasets with their class and
attribute names, and the functions that clean a run's settings against them.

Everything that takes run settings uses these: the web process through analysis.configs (the
pages' forms, the API, the run_analysis command, the services), and the engine itself
(ExperimentConfig, load_dataset's names). Pure Python, importing neither Django nor torch, so
the web process refuses bad input before a run row exists and the engine refuses the same input.

Each `*_config_clean` returns a complete, normalised config or raises one SettingsError holding
every problem found, as {key: [messages]}. The key names the setting:

- a top-level setting by its name: "seeds", "seed", "control_seed", "top_k", "random_sets",
  "mode", "concept"; an unknown one by its own name;
- a nested setting by its dotted path: "dataset.name", "dataset.n", "dataset.limit",
  "dataset.seed", "dataset.size", "train.epochs", "train.learning_rate", ... (an unknown
  option too: "dataset.colour", "train.momentum");
- "dataset" or "train" only when that setting is not an object at all, and "config" when the
  whole config is not one.

Callers map keys to their own fields (a form field, a command-line flag) by exact match and
never take a message apart. All bounds are inclusive.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from analysis.engine.specs import DEFAULT_HYPERPARAMETERS, HYPERPARAMETER_BOUNDS, OPTIMIZERS

MAX_SEED = 2**31 - 1
MIN_SEEDS = 3
# Fewer seeds than this leave no pairs to compare arms with; only benchmarks and quick engine
# checks go below MIN_SEEDS, and never below this.
MIN_COMPARABLE_SEEDS = 2
MAX_SEEDS = 20
DEFAULT_SEEDS = 5

# Dataset -> the class names its labels stand for, in label order, and the per-example
# attributes it carries. analysis.engine.datasets builds its datasets with exactly these.
DATASET_CLASSES: dict[str, tuple[str, ...]] = {
    "shapes": ("line", "arc", "circle", "corner"),
    "digits": tuple(str(digit) for digit in range(10)),
    "fashion-mnist": ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal",
                      "shirt", "sneaker", "bag", "ankle boot"),
}  # fmt: skip
DATASET_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shapes": ("curvature", "orientation"),
    "digits": (),
    "fashion-mnist": (),
}
DATASET_NAMES = tuple(DATASET_CLASSES)
# What a concept may be on each dataset: one of its classes or attributes.
DATASET_CONCEPTS: dict[str, tuple[str, ...]] = {
    name: (*DATASET_CLASSES[name], *DATASET_ATTRIBUTES[name]) for name in DATASET_NAMES
}

# Setting -> (lowest, highest) allowed value: a whole number when both bounds are ints, any
# number when they are floats. "seeds" counts seeds (a list's seeds lie within "seed");
# "concept" counts characters. A run holds a worker for its whole length: these caps keep one
# request from holding it for days.
BOUNDS: dict[str, tuple[int | float, int | float]] = {
    "seeds": (MIN_SEEDS, MAX_SEEDS),
    "seed": (0, MAX_SEED),
    "control_seed": (0, MAX_SEED),
    "top_k": (1, 256),
    "random_sets": (2, 500),
    "concept": (0, 100),
    **{f"train.{name}": bounds for name, bounds in HYPERPARAMETER_BOUNDS.items()},
}
CHOICES: dict[str, tuple[str, ...]] = {
    "dataset.name": DATASET_NAMES,
    "mode": ("zero", "mean"),
    "train.optimizer": tuple(OPTIMIZERS),
    # How a change experiment draws its random control (changes.CONTROL_POLICIES).
    "control_policy": ("same_operation", "any_operation"),
}
# What a left-out top-level setting becomes.
DEFAULTS: dict[str, Any] = {"seed": 0, "control_seed": 0, "top_k": 5, "random_sets": 20,
                            "mode": "zero", "control_policy": "same_operation"}  # fmt: skip
# Dataset -> option -> (lowest, highest); every option is a whole number.
DATASET_BOUNDS: dict[str, dict[str, tuple[int, int]]] = {
    "shapes": {"n": (40, 50_000), "seed": (0, MAX_SEED), "size": (8, 64)},
    "digits": {"limit": (20, 1797)},
    "fashion-mnist": {"limit": (20, 60_000)},
}
# The option that sets how many examples a dataset gives (a form's "dataset size").
DATASET_SIZE_OPTION = {"shapes": "n", "digits": "limit", "fashion-mnist": "limit"}
DEFAULT_DATASET = {"name": "shapes", "n": 2000, "seed": 0}
# What each dataset feeds a model: (input shape, number of classes); shapes follows the model.
DATASET_SHAPES = {
    "digits": ([1, 8, 8], len(DATASET_CLASSES["digits"])),
    "fashion-mnist": ([1, 28, 28], len(DATASET_CLASSES["fashion-mnist"])),
}
SHAPES_CLASSES = len(DATASET_CLASSES["shapes"])
TRAIN_FIELDS = tuple(DEFAULT_HYPERPARAMETERS)

Errors = dict[str, list[str]]


class SettingsError(ValueError):
    """Run settings were refused. `field_errors`: {key: [messages]}, keyed as the module
    docstring says; str() lists them as "key: message; ..." for callers that only log."""

    def __init__(self, field_errors: Mapping[str, str | list[str]]) -> None:
        self.field_errors: Errors = {
            key: [messages] if isinstance(messages, str) else list(messages)
            for key, messages in field_errors.items()
        }
        super().__init__(
            "; ".join(f"{key}: {' '.join(messages)}" for key, messages in self.field_errors.items())
        )

    def __reduce__(self):
        # Rebuilt from the dict, not from the joined message, when pickled (e.g. by a worker).
        return (type(self), (self.field_errors,))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    # Never echo a huge number or text back: its digits alone could fill the page.
    if _is_int(value) and value.bit_length() > 64:
        return "a larger number"
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _whole_number(value: Any, low: int, high: int, suffix: str = "") -> int:
    if not _is_int(value) or not low <= value <= high:
        raise ValueError(
            f"must be a whole number from {low} to {high}{suffix}, got {_shown(value)}."
        )
    return value


def _number(value: Any, low: float, high: float) -> float:
    # NaN and infinities fail the comparison, so no separate check is needed.
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"must be a number from {low} to {high}, got {_shown(value)}.")
    return value


def _choice(value: Any, key: str) -> str:
    if not isinstance(value, str) or value not in CHOICES[key]:
        raise ValueError(f"must be one of {', '.join(CHOICES[key])}, got {_shown(value)}.")
    return value


def _setting(key: str, value: Any) -> Any:
    """Check one bounded or chosen setting by its key (as in BOUNDS and CHOICES)."""
    if key in CHOICES:
        return _choice(value, key)
    low, high = BOUNDS[key]
    if isinstance(low, int) and isinstance(high, int):
        return _whole_number(value, low, high)
    return _number(value, low, high)


def _gather(errors: Errors, key: str, clean: Callable[..., Any], *args: Any) -> Any:
    """`clean(*args)`, or None with its problem recorded: a SettingsError under the keys it
    names, any other ValueError under `key`."""
    try:
        return clean(*args)
    except SettingsError as problem:
        for field, messages in problem.field_errors.items():
            errors.setdefault(field, []).extend(messages)
    except ValueError as problem:
        errors.setdefault(key, []).append(str(problem))
    return None


def _unknown(errors: Errors, raw: dict, allowed, prefix: str = "") -> None:
    for key in sorted(set(raw) - set(allowed), key=str):
        errors[f"{prefix}{key}"] = [f"unknown setting. Expected one of {', '.join(allowed)}."]


def _clean_dataset(raw: Any) -> dict:
    if raw is None:
        return dict(DEFAULT_DATASET)
    if not isinstance(raw, dict):
        raise SettingsError({"dataset": 'must be an object such as {"name": "shapes"}.'})
    errors: Errors = {}
    name = _gather(errors, "dataset.name", _choice, raw.get("name"), "dataset.name")
    if name is None:
        raise SettingsError(errors)
    options = DATASET_BOUNDS[name]
    _unknown(errors, raw, ("name", *options), prefix="dataset.")
    cleaned = dict(DEFAULT_DATASET) if name == "shapes" else {"name": name}
    for option, (low, high) in options.items():
        if option in raw:
            key, suffix = f"dataset.{option}", f" for {name}"
            cleaned[option] = _gather(errors, key, _whole_number, raw[option], low, high, suffix)
    if errors:
        raise SettingsError(errors)
    return cleaned


def _clean_train(raw: Any) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SettingsError({"train": "must be an object of training settings."})
    errors: Errors = {}
    _unknown(errors, raw, TRAIN_FIELDS, prefix="train.")
    cleaned = {}
    for name in TRAIN_FIELDS:
        if name in raw:
            key = f"train.{name}"
            cleaned[name] = _gather(errors, key, _setting, key, raw[name])
    if errors:
        raise SettingsError(errors)
    return cleaned


def _clean_seeds(raw: Any, minimum: int) -> list[int]:
    """A count becomes seeds 0..count-1; a list is taken as given. The count is checked
    before any list is built."""
    if raw is None:
        return list(range(DEFAULT_SEEDS))
    high = BOUNDS["seeds"][1]
    if _is_int(raw):
        if not minimum <= raw <= high:
            raise ValueError(f"use {minimum} to {high} seeds, got {_shown(raw)}.")
        return list(range(raw))
    if not isinstance(raw, list):
        raise ValueError("give a number of seeds or a list of seeds.")
    if not minimum <= len(raw) <= high:
        raise ValueError(f"use {minimum} to {high} seeds, got {len(raw)}.")
    low_seed, high_seed = BOUNDS["seed"]
    for seed in raw:
        if not _is_int(seed) or not low_seed <= seed <= high_seed:
            raise ValueError(
                f"each seed must be a whole number from {low_seed} to {high_seed}, "
                f"got {_shown(seed)}."
            )
    if len(set(raw)) != len(raw):
        raise ValueError("seeds must be distinct.")
    return raw


def _dataset_name(raw: Any) -> str | None:
    """The dataset a raw config names, or None when it names none that exists."""
    if raw is None:
        return DEFAULT_DATASET["name"]
    name = raw.get("name") if isinstance(raw, dict) else None
    return name if isinstance(name, str) and name in DATASET_NAMES else None


def _clean_concept(raw: Any, dataset: Any) -> str:
    """Blank, or a class or attribute name of the raw `dataset` (checked only when that names
    a dataset; its own error is reported otherwise)."""
    if raw is None or raw == "":
        return ""
    low, high = BOUNDS["concept"]
    if not isinstance(raw, str) or not low <= len(raw) <= high:
        raise ValueError(f"must be a class or attribute name of at most {high} characters.")
    name = _dataset_name(dataset)
    if name is not None and raw not in DATASET_CONCEPTS[name]:
        known = ", ".join(DATASET_CONCEPTS[name])
        raise ValueError(f"{name} has no class or attribute {raw!r}; use one of {known}.")
    return raw


def dataset_concepts(name: str) -> tuple[str, ...]:
    """Out: the class and attribute names a concept may take on dataset `name`."""
    return DATASET_CONCEPTS[name]


def _clean_common(raw: Any, allowed: tuple[str, ...]) -> tuple[dict, Errors, dict]:
    """The shared part of every config: the object itself, unknown keys, dataset and train.
    Out: (raw as a dict, errors so far, cleaned {"dataset", "train"})."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SettingsError({"config": "must be an object of run settings."})
    errors: Errors = {}
    _unknown(errors, raw, allowed)
    cleaned = {
        "dataset": _gather(errors, "dataset", _clean_dataset, raw.get("dataset")),
        "train": _gather(errors, "train", _clean_train, raw.get("train")),
    }
    return raw, errors, cleaned


def _optional(errors: Errors, raw: dict, key: str) -> Any:
    """The top-level setting `key` (as in BOUNDS and CHOICES), its default when left out."""
    return _gather(errors, key, _setting, key, raw.get(key, DEFAULTS[key]))


def _done(errors: Errors, cleaned: dict) -> dict:
    if errors:
        raise SettingsError(errors)
    return cleaned


def experiment_config_clean(raw: dict | None, *, min_seeds: int = MIN_SEEDS) -> dict:
    """In: {"dataset", "train", "seeds", "control_seed", "control_policy", "concept"}, all
    optional. `min_seeds` is lowered only by benchmarks and quick engine checks; people always
    get at least MIN_SEEDS. Out: the complete config, except that "control_policy" is there
    only when it is not the default same_operation (see _cnn_control_policy); raises
    SettingsError keyed as the module docstring says."""
    allowed = ("dataset", "train", "seeds", "control_seed", "control_policy", "concept")
    raw, errors, cleaned = _clean_common(raw, allowed)
    cleaned["seeds"] = _gather(errors, "seeds", _clean_seeds, raw.get("seeds"), min_seeds)
    cleaned["control_seed"] = _optional(errors, raw, "control_seed")
    cleaned.update(_cnn_control_policy(errors, raw))
    cleaned["concept"] = _gather(
        errors, "concept", _clean_concept, raw.get("concept"), raw.get("dataset")
    )
    return _done(errors, cleaned)


def _cnn_control_policy(errors: Errors, raw: dict) -> dict:
    """{"control_policy": policy} for a CNN experiment whose control is not the default
    same-operation one, else {}: a CNN run froze no policy before it could choose one, so the
    default is left out and the digests of those runs' configs stay what they were."""
    policy = _optional(errors, raw, "control_policy")
    return {} if policy in (None, DEFAULTS["control_policy"]) else {"control_policy": policy}


def profile_config_clean(raw: dict | None) -> dict:
    """In: {"dataset", "train", "seed", "concept", "top_k"}, all optional; trains first when
    the model has no weights. Out: the complete config; raises SettingsError."""
    raw, errors, cleaned = _clean_common(raw, ("dataset", "train", "seed", "concept", "top_k"))
    cleaned["seed"] = _optional(errors, raw, "seed")
    cleaned["concept"] = _gather(
        errors, "concept", _clean_concept, raw.get("concept"), raw.get("dataset")
    )
    cleaned["top_k"] = _optional(errors, raw, "top_k")
    return _done(errors, cleaned)


def ablation_config_clean(raw: dict | None) -> dict:
    """In: {"dataset", "train", "seed", "mode", "random_sets"}, all optional.
    Out: the complete config; raises SettingsError."""
    allowed = ("dataset", "train", "seed", "mode", "random_sets")
    raw, errors, cleaned = _clean_common(raw, allowed)
    cleaned["seed"] = _optional(errors, raw, "seed")
    cleaned["mode"] = _optional(errors, raw, "mode")
    cleaned["random_sets"] = _optional(errors, raw, "random_sets")
    return _done(errors, cleaned)


def _fit_shapes(dataset: dict, input_shape: list) -> dict:
    """The shapes config with the model's image size, or SettingsError if none fits."""
    if len(input_shape) != 3 or input_shape[0] != 1 or input_shape[1] != input_shape[2]:
        raise SettingsError(
            {
                "dataset.name": "shapes images are square and grey: the model "
                f"must take [1, N, N], not {input_shape}."
            }
        )
    if "size" in dataset and dataset["size"] != input_shape[1]:
        raise SettingsError(
            {
                "dataset.size": f"shapes images of size {dataset['size']} give inputs "
                f"[1, {dataset['size']}, {dataset['size']}]; the model takes {input_shape}."
            }
        )
    # The model's size is taken as the dataset's own, so it must lie within the same bounds.
    low, high = DATASET_BOUNDS["shapes"]["size"]
    if not _is_int(input_shape[1]) or not low <= input_shape[1] <= high:
        raise SettingsError(
            {
                "dataset.name": f"shapes images are {low} to {high} pixels wide; the model "
                f"takes {input_shape}."
            }
        )
    return {**dataset, "size": input_shape[1]}


def dataset_fit_model(dataset: dict, spec: dict) -> dict:
    """Check a cleaned dataset config against a model spec; shapes images take the model's
    input size unless one is given. Raises SettingsError under "dataset.name" when the
    dataset cannot feed the model, under "dataset.size" when the given size does not fit."""
    input_shape, classes = list(spec.get("input_shape", [])), spec.get("num_classes")
    name = dataset["name"]
    if name == "shapes":
        dataset = _fit_shapes(dataset, input_shape)
        expected = ([1, dataset["size"], dataset["size"]], SHAPES_CLASSES)
    else:
        expected = DATASET_SHAPES[name]
    if input_shape != expected[0] or classes != expected[1]:
        raise SettingsError(
            {
                "dataset.name": f"{name} gives inputs {expected[0]} and {expected[1]} "
                f"classes; the model takes {input_shape} and "
                f"{classes} classes."
            }
        )
    return dataset


# The transformer family's datasets: procedural sequence tasks (analysis.engine.sequence_tasks).
# Kept apart from DATASET_NAMES until runs can train transformers, so no form offers them yet.
# Task -> option -> (lowest, highest); whole numbers except train_fraction. The induction
# task's vocabulary is the model's d_vocab; modular addition's p must be the model's d_vocab - 1.
SEQUENCE_TASK_BOUNDS: dict[str, dict[str, tuple[int | float, int | float]]] = {
    "induction": {"length": (4, 512), "segment": (2, 256), "eval_seed": (0, MAX_SEED)},
    "modular-addition": {"p": (2, 257), "train_fraction": (0.05, 0.95),
                         "split_seed": (0, MAX_SEED)},
}  # fmt: skip
SEQUENCE_TASK_NAMES = tuple(SEQUENCE_TASK_BOUNDS)
# The per-position attributes each task gives profiling.
SEQUENCE_TASK_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "induction": ("position", "occurred_earlier", "earlier_offset"),
    "modular-addition": ("position", "a", "b", "answer"),
}


def _sequence_option(errors: Errors, name: str, option: str, value: Any) -> Any:
    low, high = SEQUENCE_TASK_BOUNDS[name][option]
    key, suffix = f"dataset.{option}", f" for {name}"
    if isinstance(low, int) and isinstance(high, int):
        return _gather(errors, key, _whole_number, value, low, high, suffix)
    return _gather(errors, key, _number, value, low, high)


def _sequence_defaults(name: str, n_ctx: int, d_vocab: int) -> dict:
    if name == "induction":
        length = min(n_ctx, SEQUENCE_TASK_BOUNDS["induction"]["length"][1])
        return {"name": name, "length": length, "segment": max(2, length // 4),
                "eval_seed": 10_000}  # fmt: skip
    return {"name": name, "p": d_vocab - 1, "train_fraction": 0.3, "split_seed": 0}


def _sequence_fit(cleaned: dict, n_ctx: int, d_vocab: int) -> Errors:
    """Problems between the task's options and the model, keyed by the option to change."""
    if cleaned["name"] == "induction":
        if cleaned["length"] > n_ctx:
            return {"dataset.length": [f"the model takes at most {n_ctx} positions (n_ctx)."]}
        if 2 * cleaned["segment"] > cleaned["length"]:
            return {"dataset.segment": ["must be at most half the length, so it can repeat."]}
        return {}
    if cleaned["p"] != d_vocab - 1:
        return {"dataset.p": [f"the model's vocabulary of {d_vocab} tokens fits p = "
                              f"{d_vocab - 1} (the numbers and '=')."]}  # fmt: skip
    if n_ctx < 3:
        return {"dataset.name": ["modular addition needs 3 positions; the model's n_ctx is "
                                 f"{n_ctx}."]}  # fmt: skip
    return {}


def sequence_task_clean(raw: Any, *, n_ctx: int, d_vocab: int) -> dict:
    """Clean a sequence task's settings for a transformer taking n_ctx positions over d_vocab
    tokens (its validated spec's fields).

    In: {"name": "induction", "length", "segment", "eval_seed"} or {"name":
    "modular-addition", "p", "train_fraction", "split_seed"}, options optional. Out: the
    complete settings; left-out options follow the model (length = n_ctx up to 512, segment =
    length // 4, p = d_vocab - 1). Raises SettingsError keyed "dataset.<option>" ("dataset"
    when raw is not an object, "dataset.name" for an unknown task).
    """
    if not isinstance(raw, dict):
        raise SettingsError({"dataset": 'must be an object such as {"name": "induction"}.'})
    name = raw.get("name")
    if name not in SEQUENCE_TASK_NAMES:
        known = ", ".join(SEQUENCE_TASK_NAMES)
        raise SettingsError({"dataset.name": f"must be one of {known}, got {_shown(name)}."})
    errors: Errors = {}
    _unknown(errors, raw, ("name", *SEQUENCE_TASK_BOUNDS[name]), prefix="dataset.")
    cleaned = _sequence_defaults(name, n_ctx, d_vocab)
    for option in SEQUENCE_TASK_BOUNDS[name]:
        if option in raw:
            cleaned[option] = _sequence_option(errors, name, option, raw[option])
    if errors:
        raise SettingsError(errors)
    if fit := _sequence_fit(cleaned, n_ctx, d_vocab):
        raise SettingsError(fit)
    return cleaned


# Profiling and ablation runs on a transformer model: a sequence task instead of a dataset,
# training (only when the model has no weights) by steps instead of epochs, and a probe set of
# `probe_size` held-out sequences. The train options a transformer run takes, with their
# bounds ("optimizer" is a choice, as for CNN runs); left-out ones come from the spec's
# hyperparameters (epochs aside), "steps" from SEQUENCE_TRAIN_DEFAULTS.
SEQUENCE_TRAIN_BOUNDS: dict[str, tuple[int | float, int | float]] = {
    "steps": (1, 20_000),
    "batch_size": HYPERPARAMETER_BOUNDS["batch_size"],
    "learning_rate": HYPERPARAMETER_BOUNDS["learning_rate"],
    "weight_decay": HYPERPARAMETER_BOUNDS["weight_decay"],
}
SEQUENCE_TRAIN_FIELDS = (*SEQUENCE_TRAIN_BOUNDS, "optimizer")
SEQUENCE_TRAIN_DEFAULTS: dict[str, Any] = {"steps": 300}
PROBE_SIZE_BOUNDS = (8, 4096)
DEFAULT_PROBE_SIZE = 256
TRANSFORMER_RUN_SETTINGS: dict[str, tuple[str, ...]] = {
    "profile": ("dataset", "train", "seed", "probe_size"),
    "ablation": ("dataset", "train", "seed", "probe_size", "mode", "random_sets"),
}


def _clean_sequence_train(raw: Any, hyperparameters: dict) -> dict:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SettingsError({"train": "must be an object of training settings."})
    errors: Errors = {}
    _unknown(errors, raw, SEQUENCE_TRAIN_FIELDS, prefix="train.")
    cleaned = {name: hyperparameters[name] for name in SEQUENCE_TRAIN_FIELDS
               if name in hyperparameters}  # fmt: skip
    cleaned = {**SEQUENCE_TRAIN_DEFAULTS, **cleaned}
    for name in SEQUENCE_TRAIN_FIELDS:
        if name not in raw:
            continue
        key = f"train.{name}"
        if name == "optimizer":
            cleaned[name] = _gather(errors, key, _choice, raw[name], "train.optimizer")
        else:
            low, high = SEQUENCE_TRAIN_BOUNDS[name]
            check = _whole_number if isinstance(low, int) and isinstance(high, int) else _number
            cleaned[name] = _gather(errors, key, check, raw[name], low, high)
    if errors:
        raise SettingsError(errors)
    return cleaned


def transformer_run_config_clean(
    raw: dict | None, *, kind: str, n_ctx: int, d_vocab: int, hyperparameters: dict
) -> dict:
    """Clean the settings of a profiling (`kind` "profile") or ablation ("ablation") run on a
    transformer taking n_ctx positions over d_vocab tokens, whose spec's hyperparameters
    (merged over the defaults) are `hyperparameters`.

    In: {"dataset": a sequence task (default induction), "train": {"steps", "batch_size",
    "learning_rate", "weight_decay", "optimizer"}, "seed", "probe_size"}, and for ablation
    "mode" and "random_sets"; all optional. Out: the complete config. Raises SettingsError
    keyed as for CNN runs ("dataset.length", "train.steps", "probe_size", ...).
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SettingsError({"config": "must be an object of run settings."})
    errors: Errors = {}
    _unknown(errors, raw, TRANSFORMER_RUN_SETTINGS[kind])
    dataset = raw.get("dataset", {"name": "induction"})
    cleaned = {
        "dataset": _gather(
            errors, "dataset", lambda: sequence_task_clean(dataset, n_ctx=n_ctx, d_vocab=d_vocab)
        ),
        "train": _gather(
            errors, "train", _clean_sequence_train, raw.get("train"), hyperparameters
        ),
        "seed": _optional(errors, raw, "seed"),
        "probe_size": _gather(
            errors, "probe_size", _whole_number, raw.get("probe_size", DEFAULT_PROBE_SIZE),
            *PROBE_SIZE_BOUNDS,
        ),
    }  # fmt: skip
    if kind == "ablation":
        cleaned["mode"] = _optional(errors, raw, "mode")
        cleaned["random_sets"] = _optional(errors, raw, "random_sets")
    return _done(errors, cleaned)


# A change experiment on a transformer: the profiling run's task, training and probe set, and
# the experiment's seeds and random control.
TRANSFORMER_EXPERIMENT_SETTINGS = (
    "dataset", "train", "seeds", "probe_size", "control_seed", "control_policy",
)  # fmt: skip
TRANSFORMER_DEFAULT_CONTROL_POLICY = "any_operation"


def transformer_experiment_config_clean(
    raw: dict | None,
    *,
    n_ctx: int,
    d_vocab: int,
    hyperparameters: dict,
    min_seeds: int = MIN_SEEDS,
) -> dict:
    """Clean the settings of a change experiment on a transformer taking n_ctx positions over
    d_vocab tokens, whose spec's hyperparameters are `hyperparameters`.

    In: {"dataset": a sequence task (default induction), "train" (as for transformer runs),
    "seeds", "probe_size", "control_seed", "control_policy" (same_operation or
    any_operation, the default)}, all optional. Out: the complete config. Raises
    SettingsError keyed by setting ("dataset.length", "train.steps", "control_policy").
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SettingsError({"config": "must be an object of run settings."})
    errors: Errors = {}
    _unknown(errors, raw, TRANSFORMER_EXPERIMENT_SETTINGS)
    run_part = {key: raw[key] for key in ("dataset", "train", "probe_size") if key in raw}
    cleaned = _gather(
        errors, "config", lambda: transformer_run_config_clean(
            run_part, kind="profile", n_ctx=n_ctx, d_vocab=d_vocab,
            hyperparameters=hyperparameters,
        ),
    ) or {}  # fmt: skip
    cleaned.pop("seed", None)  # each arm trains with every seed of the experiment
    cleaned["seeds"] = _gather(errors, "seeds", _clean_seeds, raw.get("seeds"), min_seeds)
    cleaned["control_seed"] = _optional(errors, raw, "control_seed")
    # The any-operation control by default: the "random tweak" a transformer change is
    # compared against (CNN experiments keep the same-operation control by default).
    policy = raw.get("control_policy", TRANSFORMER_DEFAULT_CONTROL_POLICY)
    cleaned["control_policy"] = _gather(
        errors, "control_policy", _setting, "control_policy", policy
    )
    return _done(errors, cleaned)
