"""Run settings for the web process: the pages' forms, the API (through analysis.services), the
run_analysis command and the services call the `*_config_clean` functions here, and the forms
build their widgets from the bounds below.

The rules themselves live in analysis.engine.run_settings, which the engine checks its own
configs with too; this module only turns its SettingsError into Django's ValidationError with
the same {key: [messages]} (the key convention is in that module's docstring). Callers map
keys to their own fields by exact match and never take a message apart. Torch-free, so the
web process refuses bad input before a run row exists.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from django.core.exceptions import ValidationError

from analysis.engine import run_settings
from analysis.engine.run_settings import (
    BOUNDS,
    CHOICES,
    DATASET_BOUNDS,
    DATASET_CONCEPTS,
    DATASET_NAMES,
    DATASET_SHAPES,
    DATASET_SIZE_OPTION,
    DEFAULT_DATASET,
    DEFAULT_PROBE_SIZE,
    DEFAULT_SEEDS,
    DEFAULTS,
    MAX_SEED,
    MAX_SEEDS,
    MIN_SEEDS,
    PROBE_SIZE_BOUNDS,
    SEQUENCE_TASK_BOUNDS,
    SEQUENCE_TASK_NAMES,
    SEQUENCE_TRAIN_BOUNDS,
    SEQUENCE_TRAIN_DEFAULTS,
    SHAPES_CLASSES,
    TRAIN_FIELDS,
    TRANSFORMER_DEFAULT_CONTROL_POLICY,
    Errors,
    SettingsError,
    dataset_concepts,
)
from analysis.engine.specs import SpecError, validate_hyperparameters
from analysis.engine.transformer_specs import validate_transformer_spec

__all__ = [
    "BOUNDS",
    "CHOICES",
    "DATASET_BOUNDS",
    "DATASET_CONCEPTS",
    "DATASET_NAMES",
    "DATASET_SHAPES",
    "DATASET_SIZE_OPTION",
    "DEFAULTS",
    "DEFAULT_DATASET",
    "DEFAULT_PROBE_SIZE",
    "DEFAULT_SEEDS",
    "MAX_SEED",
    "MAX_SEEDS",
    "MIN_SEEDS",
    "PROBE_SIZE_BOUNDS",
    "SEQUENCE_TASK_BOUNDS",
    "SEQUENCE_TASK_NAMES",
    "SEQUENCE_TRAIN_BOUNDS",
    "SEQUENCE_TRAIN_DEFAULTS",
    "SHAPES_CLASSES",
    "TRAIN_FIELDS",
    "TRANSFORMER_DEFAULT_CONTROL_POLICY",
    "Errors",
    "ablation_config_clean",
    "dataset_concepts",
    "dataset_fit_model",
    "experiment_config_clean",
    "profile_config_clean",
    "transformer_experiment_config_clean",
    "transformer_run_config_clean",
]


@contextmanager
def _as_validation_error() -> Iterator[None]:
    try:
        yield
    except SettingsError as error:
        raise ValidationError(error.field_errors) from None


def experiment_config_clean(raw: dict | None, *, min_seeds: int = MIN_SEEDS) -> dict:
    """In: {"dataset", "train", "seeds", "control_seed", "control_policy", "concept"}, all
    optional. `min_seeds` is lowered only by benchmarks; people always get at least MIN_SEEDS.
    Out: the complete config ("control_policy" only when it is any_operation: the default
    same_operation is left out, as CNN runs froze it before they could choose); raises
    ValidationError keyed by setting."""
    with _as_validation_error():
        return run_settings.experiment_config_clean(raw, min_seeds=min_seeds)


def profile_config_clean(raw: dict | None) -> dict:
    """In: {"dataset", "train", "seed", "concept", "top_k"}, all optional.
    Out: the complete config; raises ValidationError keyed by setting."""
    with _as_validation_error():
        return run_settings.profile_config_clean(raw)


def ablation_config_clean(raw: dict | None) -> dict:
    """In: {"dataset", "train", "seed", "mode", "random_sets"}, all optional.
    Out: the complete config; raises ValidationError keyed by setting."""
    with _as_validation_error():
        return run_settings.ablation_config_clean(raw)


def dataset_fit_model(dataset: dict, spec: dict) -> dict:
    """In: a cleaned dataset config and a model spec. Out: the dataset config, shapes images
    sized to the model. Raises ValidationError under "dataset.name" when the dataset cannot
    feed the model, under "dataset.size" when the given size does not fit."""
    with _as_validation_error():
        return run_settings.dataset_fit_model(dataset, spec)


def _transformer_fields(spec: dict) -> tuple[int, int, dict]:
    """The model's n_ctx, d_vocab and hyperparameters; ValidationError under
    "subject_model" when its spec is not a valid transformer."""
    config = validate_transformer_spec(spec)
    try:
        hyperparameters = validate_hyperparameters(spec.get("hyperparameters", {}))
    except SpecError as error:
        raise ValidationError({"subject_model": str(error)}) from None
    return config.n_ctx, config.d_vocab, hyperparameters


def transformer_experiment_config_clean(
    raw: dict | None, *, spec: dict, min_seeds: int = MIN_SEEDS
) -> dict:
    """In: the settings of a change experiment on the transformer `spec`: {"dataset": a
    sequence task, "train", "seeds", "probe_size", "control_seed", "control_policy"}, all
    optional. Out: the complete config, the task fitted to the model; raises ValidationError
    keyed by setting ("dataset.length", "train.steps", "control_policy")."""
    n_ctx, d_vocab, hyperparameters = _transformer_fields(spec)
    with _as_validation_error():
        return run_settings.transformer_experiment_config_clean(
            raw, n_ctx=n_ctx, d_vocab=d_vocab, hyperparameters=hyperparameters,
            min_seeds=min_seeds,
        )  # fmt: skip


def transformer_run_config_clean(raw: dict | None, *, kind: str, spec: dict) -> dict:
    """In: the settings of a profiling (`kind` "profile") or ablation ("ablation") run on the
    transformer `spec`: {"dataset": a sequence task, "train", "seed", "probe_size"} (ablation
    also "mode", "random_sets"), all optional. Out: the complete config, the task fitted to
    the model; raises ValidationError keyed by setting ("dataset.length", "train.steps")."""
    n_ctx, d_vocab, hyperparameters = _transformer_fields(spec)
    with _as_validation_error():
        return run_settings.transformer_run_config_clean(
            raw, kind=kind, n_ctx=n_ctx, d_vocab=d_vocab, hyperparameters=hyperparameters
        )
