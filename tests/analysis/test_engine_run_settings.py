"""analysis.engine.run_settings, the rules every run setting is checked by, without Django:
errors come back as a dict keyed by setting inside one ValueError."""

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.engine.run_settings import (
    BOUNDS,
    DATASET_ATTRIBUTES,
    DATASET_BOUNDS,
    DATASET_CLASSES,
    DATASET_CONCEPTS,
    DATASET_NAMES,
    DATASET_SIZE_OPTION,
    MIN_COMPARABLE_SEEDS,
    MIN_SEEDS,
    SettingsError,
    ablation_config_clean,
    dataset_concepts,
    dataset_fit_model,
    experiment_config_clean,
    profile_config_clean,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def field_errors(clean, raw, **options) -> dict[str, list[str]]:
    with pytest.raises(SettingsError) as excinfo:
        clean(raw, **options)
    return excinfo.value.field_errors


def test_a_settings_error_is_a_value_error_holding_a_dict_by_field():
    error = SettingsError({"seeds": "use 3 to 20 seeds, got 2.", "train.epochs": ["a.", "b."]})
    assert isinstance(error, ValueError)
    assert error.field_errors == {"seeds": ["use 3 to 20 seeds, got 2."],
                                  "train.epochs": ["a.", "b."]}  # fmt: skip
    assert str(error) == "seeds: use 3 to 20 seeds, got 2.; train.epochs: a. b."


def test_a_settings_error_survives_pickling_with_its_fields():
    error = pickle.loads(pickle.dumps(SettingsError({"dataset.n": "too small."})))
    assert (type(error), error.field_errors) == (SettingsError, {"dataset.n": ["too small."]})


def test_every_problem_comes_back_at_once_each_under_its_key():
    raw = {
        "dataset": {"name": "shapes", "n": 20, "colour": "red"},
        "train": {"epochs": 0, "threads": 4},
        "seeds": [0, 1, True],
        "concept": "wings",
    }
    assert field_errors(experiment_config_clean, raw) == {
        "dataset.colour": ["unknown setting. Expected one of name, n, seed, size."],
        "dataset.n": ["must be a whole number from 40 to 50000 for shapes, got 20."],
        "train.threads": ["unknown setting. Expected one of learning_rate, optimizer, epochs, "
                          "batch_size, weight_decay."],
        "train.epochs": ["must be a whole number from 1 to 100, got 0."],
        "seeds": ["each seed must be a whole number from 0 to 2147483647, got True."],
        "concept": ["shapes has no class or attribute 'wings'; use one of line, arc, circle, "
                    "corner, curvature, orientation."],
    }  # fmt: skip


def test_a_clean_config_comes_back_complete():
    assert experiment_config_clean({"seeds": 3, "concept": "arc"}) == {
        "dataset": {"name": "shapes", "n": 2000, "seed": 0}, "train": {}, "seeds": [0, 1, 2],
        "control_seed": 0, "concept": "arc",
    }  # fmt: skip
    assert profile_config_clean({"dataset": {"name": "digits"}, "concept": "7"})["concept"] == "7"
    assert ablation_config_clean({"mode": "mean"})["mode"] == "mean"


def test_the_seed_minimum_can_be_lowered_to_comparable_but_the_cap_stays():
    assert (MIN_SEEDS, MIN_COMPARABLE_SEEDS, BOUNDS["seeds"]) == (3, 2, (3, 20))
    assert experiment_config_clean({"seeds": [5, 9]}, min_seeds=2)["seeds"] == [5, 9]
    assert field_errors(experiment_config_clean, {"seeds": 21}, min_seeds=2) == {
        "seeds": ["use 2 to 20 seeds, got 21."]
    }


def test_each_dataset_declares_its_names_bounds_and_size_option():
    assert DATASET_NAMES == ("shapes", "digits", "fashion-mnist")
    for mapping in (DATASET_CLASSES, DATASET_ATTRIBUTES, DATASET_BOUNDS, DATASET_SIZE_OPTION):
        assert tuple(mapping) == DATASET_NAMES
    for name in DATASET_NAMES:
        assert dataset_concepts(name) == DATASET_CONCEPTS[name]
        assert DATASET_CONCEPTS[name] == (*DATASET_CLASSES[name], *DATASET_ATTRIBUTES[name])
        assert DATASET_SIZE_OPTION[name] in DATASET_BOUNDS[name]


def test_a_dataset_is_fitted_to_the_model_or_refused_under_its_key():
    dataset = {"name": "shapes", "n": 80, "seed": 0}
    spec = {"input_shape": [1, 16, 16], "num_classes": 4}
    assert dataset_fit_model(dataset, spec) == {**dataset, "size": 16}
    with pytest.raises(SettingsError) as excinfo:
        dataset_fit_model({**dataset, "size": 12}, spec)
    assert list(excinfo.value.field_errors) == ["dataset.size"]
    with pytest.raises(SettingsError) as excinfo:
        dataset_fit_model({"name": "digits"}, spec)
    assert list(excinfo.value.field_errors) == ["dataset.name"]


@pytest.mark.parametrize("side", [4, 100])
def test_a_shapes_model_whose_images_lie_outside_the_size_bounds_is_refused(side):
    spec = {"input_shape": [1, side, side], "num_classes": 4}
    with pytest.raises(SettingsError) as excinfo:
        dataset_fit_model({"name": "shapes", "n": 80, "seed": 0}, spec)
    assert excinfo.value.field_errors == {
        "dataset.name": [f"shapes images are 8 to 64 pixels wide; the model takes "
                         f"[1, {side}, {side}]."]
    }  # fmt: skip


def test_the_rules_import_neither_django_nor_torch():
    code = (
        "import sys, analysis.engine.run_settings\n"
        "print(sorted(m for m in ('torch', 'django') if m in sys.modules))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == "[]"
