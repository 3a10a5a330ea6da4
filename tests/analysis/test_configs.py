"""analysis.configs, the web process's door to the one set of run-settings rules
(analysis.engine.run_settings): every setting's bounds, huge and wrongly typed values, and each
error under the key of the setting it is about, as Django's ValidationError."""

import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from analysis import configs
from analysis.configs import (
    BOUNDS,
    CHOICES,
    DATASET_BOUNDS,
    DATASET_NAMES,
    DATASET_SIZE_OPTION,
    TRAIN_FIELDS,
    ablation_config_clean,
    dataset_fit_model,
    experiment_config_clean,
    profile_config_clean,
)
from analysis.engine import run_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
CLEANERS = {
    "experiment": experiment_config_clean,
    "profile": profile_config_clean,
    "ablation": ablation_config_clean,
}
# The top-level bounded settings each kind of run takes.
TOP_LEVEL = [
    ("experiment", "control_seed"),
    ("profile", "seed"),
    ("profile", "top_k"),
    ("ablation", "seed"),
    ("ablation", "random_sets"),
]
TRAIN_BOUNDED = [key for key in BOUNDS if key.startswith("train.")]
SPEC_12 = {"input_shape": [1, 12, 12], "num_classes": 4}


def refusal(kind: str, raw) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as excinfo:
        CLEANERS[kind](raw)
    return excinfo.value.message_dict


def _nested(key: str, value) -> dict:
    """ "top_k", 3 -> {"top_k": 3}; "train.epochs", 3 -> {"train": {"epochs": 3}}."""
    parent, _, child = key.partition(".")
    return {parent: {child: value}} if child else {parent: value}


def _outside(low, high) -> tuple:
    """The nearest values just below and just above the bounds."""
    if isinstance(low, int) and isinstance(high, int):
        return low - 1, high + 1
    return (low / 2 if low > 0 else low - 0.001), high * 1.001


def test_the_bounds_are_these_numbers():
    assert BOUNDS == {
        "seeds": (3, 20),
        "seed": (0, 2**31 - 1),
        "control_seed": (0, 2**31 - 1),
        "top_k": (1, 256),
        "random_sets": (2, 500),
        "concept": (0, 100),
        "train.epochs": (1, 100),
        "train.batch_size": (1, 8192),
        "train.learning_rate": (1e-6, 10.0),
        "train.weight_decay": (0.0, 1.0),
    }
    assert DATASET_BOUNDS == {
        "shapes": {"n": (40, 50_000), "seed": (0, 2**31 - 1), "size": (8, 64)},
        "digits": {"limit": (20, 1797)},
        "fashion-mnist": {"limit": (20, 60_000)},
    }


def test_every_training_setting_has_a_bound_or_a_choice():
    assert {f"train.{name}" for name in TRAIN_FIELDS} == set(TRAIN_BOUNDED) | {"train.optimizer"}
    assert "train.optimizer" in CHOICES


def test_left_out_settings_take_their_defaults():
    dataset = {"name": "shapes", "n": 2000, "seed": 0}
    assert experiment_config_clean(None) == {
        "dataset": dataset, "train": {}, "seeds": [0, 1, 2, 3, 4], "control_seed": 0,
        "concept": "",
    }  # fmt: skip
    assert profile_config_clean({}) == {
        "dataset": dataset, "train": {}, "seed": 0, "concept": "", "top_k": 5,
    }  # fmt: skip
    assert ablation_config_clean({}) == {
        "dataset": dataset, "train": {}, "seed": 0, "mode": "zero", "random_sets": 20,
    }  # fmt: skip


@pytest.mark.parametrize(("kind", "key"), TOP_LEVEL)
def test_each_top_level_setting_takes_its_bounds_and_refuses_one_past_them(kind, key):
    low, high = BOUNDS[key]
    for value in (low, high):
        assert CLEANERS[kind]({key: value})[key] == value
    for value in _outside(low, high):
        assert refusal(kind, {key: value}) == {
            key: [f"must be a whole number from {low} to {high}, got {value}."]
        }


@pytest.mark.parametrize("kind", CLEANERS)
@pytest.mark.parametrize("key", TRAIN_BOUNDED)
def test_each_training_setting_takes_its_bounds_and_refuses_one_past_them(kind, key):
    low, high = BOUNDS[key]
    name = key.removeprefix("train.")
    for value in (low, high):
        assert CLEANERS[kind](_nested(key, value))["train"] == {name: value}
    whole = isinstance(low, int)
    for value in _outside(low, high):
        message = (
            f"must be a whole number from {low} to {high}, got {value}."
            if whole
            else f"must be a number from {low} to {high}, got {value!r}."
        )
        assert refusal(kind, _nested(key, value)) == {key: [message]}


@pytest.mark.parametrize("kind", CLEANERS)
@pytest.mark.parametrize(
    ("name", "option"),
    [(name, option) for name, options in DATASET_BOUNDS.items() for option in options],
)
def test_each_dataset_option_takes_its_bounds_and_refuses_one_past_them(kind, name, option):
    low, high = DATASET_BOUNDS[name][option]
    for value in (low, high):
        assert (
            CLEANERS[kind]({"dataset": {"name": name, option: value}})["dataset"][option] == value
        )
    for value in (low - 1, high + 1):
        assert refusal(kind, {"dataset": {"name": name, option: value}}) == {
            f"dataset.{option}": [f"must be a whole number from {low} to {high} for {name}, "
                                  f"got {value}."]
        }  # fmt: skip


def test_the_seed_count_takes_its_bounds_and_refuses_one_past_them():
    assert experiment_config_clean({"seeds": 3})["seeds"] == [0, 1, 2]
    assert experiment_config_clean({"seeds": 20})["seeds"] == list(range(20))
    assert experiment_config_clean({"seeds": [7, 3, 2**31 - 1]})["seeds"] == [7, 3, 2**31 - 1]
    for count in (2, 21):
        assert refusal("experiment", {"seeds": count}) == {
            "seeds": [f"use 3 to 20 seeds, got {count}."]
        }
    assert refusal("experiment", {"seeds": list(range(21))}) == {
        "seeds": ["use 3 to 20 seeds, got 21."]
    }


def test_benchmarks_may_lower_the_seed_count_but_not_its_cap():
    assert experiment_config_clean({"seeds": 2}, min_seeds=2)["seeds"] == [0, 1]
    with pytest.raises(ValidationError) as excinfo:
        experiment_config_clean({"seeds": 21}, min_seeds=2)
    assert excinfo.value.message_dict == {"seeds": ["use 2 to 20 seeds, got 21."]}


@pytest.mark.parametrize("count", [10**30, 2**63, 10**6])
def test_a_huge_seed_count_is_refused_without_building_its_list(count):
    tracemalloc.start()
    try:
        errors = refusal("experiment", {"seeds": count})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert list(errors) == ["seeds"]
    assert errors["seeds"][0].startswith("use 3 to 20 seeds, got ")
    assert peak < 100_000  # a list of a million seeds takes some 8 MB


def test_a_huge_number_is_not_echoed_back():
    assert refusal("experiment", {"seeds": 10**30}) == {
        "seeds": ["use 3 to 20 seeds, got a larger number."]
    }
    assert refusal("profile", {"top_k": 10**30}) == {
        "top_k": ["must be a whole number from 1 to 256, got a larger number."]
    }


@pytest.mark.parametrize(
    ("kind", "raw", "key"),
    [
        ("experiment", {"control_seed": 2**63}, "control_seed"),
        ("experiment", {"train": {"epochs": 10**30}}, "train.epochs"),
        ("experiment", {"train": {"learning_rate": 10**400}}, "train.learning_rate"),
        ("experiment", {"dataset": {"name": "shapes", "n": 10**30}}, "dataset.n"),
        ("experiment", {"dataset": {"name": "digits", "limit": 2**63}}, "dataset.limit"),
        ("profile", {"seed": 10**30}, "seed"),
        ("ablation", {"random_sets": 10**30}, "random_sets"),
    ],
)
def test_huge_numbers_are_refused_under_their_setting(kind, raw, key):
    assert list(refusal(kind, raw)) == [key]


def test_a_seed_list_with_a_huge_or_wrong_seed_is_refused():
    message = "each seed must be a whole number from 0 to 2147483647, got "
    cases = {
        (0, 1, 10**30): "a larger number.", (0, 1, -1): "-1.", (0, 1, 2.0): "2.0.",
        (0, 1, True): "True.", (0, 1, "2"): "'2'.",
    }  # fmt: skip
    for seeds, shown in cases.items():
        assert refusal("experiment", {"seeds": list(seeds)}) == {"seeds": [message + shown]}
    assert refusal("experiment", {"seeds": [0, 1, 1]}) == {"seeds": ["seeds must be distinct."]}


@pytest.mark.parametrize(
    ("kind", "raw", "errors"),
    [
        ("experiment", {"seeds": "five"},
         {"seeds": ["give a number of seeds or a list of seeds."]}),
        ("experiment", {"seeds": True}, {"seeds": ["give a number of seeds or a list of seeds."]}),
        ("experiment", {"control_seed": "0"},
         {"control_seed": ["must be a whole number from 0 to 2147483647, got '0'."]}),
        ("profile", {"top_k": 5.0}, {"top_k": ["must be a whole number from 1 to 256, got 5.0."]}),
        ("profile", {"top_k": False},
         {"top_k": ["must be a whole number from 1 to 256, got False."]}),
        ("profile", {"seed": None},
         {"seed": ["must be a whole number from 0 to 2147483647, got None."]}),
        ("ablation", {"mode": "max"}, {"mode": ["must be one of zero, mean, got 'max'."]}),
        ("ablation", {"mode": ["zero"]}, {"mode": ["must be one of zero, mean, got ['zero']."]}),
        ("experiment", {"train": {"learning_rate": "0.1"}},
         {"train.learning_rate": ["must be a number from 1e-06 to 10.0, got '0.1'."]}),
        ("experiment", {"train": {"learning_rate": float("nan")}},
         {"train.learning_rate": ["must be a number from 1e-06 to 10.0, got nan."]}),
        ("experiment", {"train": {"weight_decay": float("inf")}},
         {"train.weight_decay": ["must be a number from 0.0 to 1.0, got inf."]}),
        ("experiment", {"train": {"optimizer": "lion"}},
         {"train.optimizer": ["must be one of sgd, adam, adamw, got 'lion'."]}),
        ("experiment", {"train": "fast"}, {"train": ["must be an object of training settings."]}),
        ("experiment", {"dataset": "shapes"},
         {"dataset": ['must be an object such as {"name": "shapes"}.']}),
        ("experiment", {"dataset": {"name": "imagenet"}},
         {"dataset.name": ["must be one of shapes, digits, fashion-mnist, got 'imagenet'."]}),
        ("experiment", {"dataset": {"n": 80}},
         {"dataset.name": ["must be one of shapes, digits, fashion-mnist, got None."]}),
        ("experiment", {"dataset": {"name": "digits", "limit": "all"}},
         {"dataset.limit": ["must be a whole number from 20 to 1797 for digits, got 'all'."]}),
        ("profile", {"concept": 3},
         {"concept": ["must be a class or attribute name of at most 100 characters."]}),
        ("ablation", "not an object", {"config": ["must be an object of run settings."]}),
    ],
)  # fmt: skip
def test_wrong_types_are_refused_under_their_setting(kind, raw, errors):
    assert refusal(kind, raw) == errors


@pytest.mark.parametrize(
    ("kind", "raw", "errors"),
    [
        ("experiment", {"colour": "red"},
         {"colour": ["unknown setting. Expected one of dataset, train, seeds, control_seed, "
                     "control_policy, concept."]}),
        ("profile", {"seeds": 3},
         {"seeds": ["unknown setting. Expected one of dataset, train, seed, concept, top_k."]}),
        ("ablation", {"concept": "circle"},
         {"concept": ["unknown setting. Expected one of dataset, train, seed, mode, "
                      "random_sets."]}),
        ("experiment", {"train": {"momentum": 0.9}},
         {"train.momentum": ["unknown setting. Expected one of learning_rate, optimizer, epochs, "
                             "batch_size, weight_decay."]}),
        ("experiment", {"dataset": {"name": "digits", "n": 80}},
         {"dataset.n": ["unknown setting. Expected one of name, limit."]}),
    ],
)  # fmt: skip
def test_unknown_settings_are_refused_under_their_own_key(kind, raw, errors):
    assert refusal(kind, raw) == errors


def test_a_bad_top_k_is_reported_under_top_k_not_seed():
    assert refusal("profile", {"top_k": 0}) == {
        "top_k": ["must be a whole number from 1 to 256, got 0."]
    }


def test_a_bad_ablation_seed_is_reported_under_seed_not_random_sets():
    assert refusal("ablation", {"seed": -1}) == {
        "seed": ["must be a whole number from 0 to 2147483647, got -1."]
    }


def test_every_problem_is_reported_at_once_each_under_its_key():
    raw = {
        "dataset": {"name": "shapes", "n": 20, "size": 100},
        "train": {"epochs": 0, "batch_size": 64},
        "seeds": 2,
        "control_seed": -1,
        "concept": "wings",
    }
    assert refusal("experiment", raw) == {
        "dataset.n": ["must be a whole number from 40 to 50000 for shapes, got 20."],
        "dataset.size": ["must be a whole number from 8 to 64 for shapes, got 100."],
        "train.epochs": ["must be a whole number from 1 to 100, got 0."],
        "seeds": ["use 3 to 20 seeds, got 2."],
        "control_seed": ["must be a whole number from 0 to 2147483647, got -1."],
        "concept": [
            "shapes has no class or attribute 'wings'; use one of line, arc, circle, corner, "
            "curvature, orientation."
        ],
    }


@pytest.mark.parametrize("kind", ["experiment", "profile"])
def test_a_concept_must_be_a_class_or_attribute_of_the_dataset(kind):
    clean = CLEANERS[kind]
    assert clean({"concept": "curvature"})["concept"] == "curvature"
    assert clean({"concept": "circle"})["concept"] == "circle"
    assert clean({"dataset": {"name": "digits"}, "concept": "3"})["concept"] == "3"
    assert clean({"dataset": {"name": "fashion-mnist"}, "concept": "ankle boot"})["concept"] == (
        "ankle boot"
    )
    assert clean({"concept": ""})["concept"] == ""
    assert refusal(kind, {"dataset": {"name": "digits"}, "concept": "curvature"}) == {
        "concept": ["digits has no class or attribute 'curvature'; use one of 0, 1, 2, 3, 4, 5, "
                    "6, 7, 8, 9."]
    }  # fmt: skip


@pytest.mark.parametrize("kind", ["experiment", "profile"])
def test_a_million_character_concept_is_refused_by_its_length(kind):
    assert refusal(kind, {"concept": "x" * 1_000_000}) == {
        "concept": ["must be a class or attribute name of at most 100 characters."]
    }
    assert refusal(kind, {"concept": "x" * 101}) == refusal(kind, {"concept": "x" * 1_000_000})


def test_a_concept_is_not_checked_against_a_dataset_that_is_itself_refused():
    assert refusal("profile", {"dataset": {"name": "imagenet"}, "concept": "circle"}) == {
        "dataset.name": ["must be one of shapes, digits, fashion-mnist, got 'imagenet'."]
    }


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        ("experiment", {"dataset": {"name": "digits", "limit": 50}, "train": {"epochs": 1,
         "optimizer": "sgd", "learning_rate": 0.1}, "seeds": [4, 5, 6], "concept": "7"}),
        ("profile", {"dataset": {"name": "shapes", "n": 80, "size": 12}, "top_k": 3,
         "concept": "arc"}),
        ("ablation", {"dataset": {"name": "fashion-mnist"}, "mode": "mean", "random_sets": 4}),
    ],
)  # fmt: skip
def test_a_cleaned_config_is_clean(kind, raw):
    cleaned = CLEANERS[kind](raw)
    assert CLEANERS[kind](cleaned) == cleaned


def test_dataset_size_option_names_a_bounded_option_of_every_dataset():
    assert set(DATASET_SIZE_OPTION) == set(DATASET_NAMES) == set(DATASET_BOUNDS)
    for name, option in DATASET_SIZE_OPTION.items():
        assert option in DATASET_BOUNDS[name]


def test_a_dataset_that_cannot_feed_the_model_is_refused_under_its_name():
    with pytest.raises(ValidationError) as excinfo:
        dataset_fit_model({"name": "digits"}, SPEC_12)
    assert excinfo.value.message_dict == {
        "dataset.name": [
            "digits gives inputs [1, 8, 8] and 10 classes; the model takes [1, 12, 12] and "
            "4 classes."
        ]
    }
    with pytest.raises(ValidationError) as excinfo:
        dataset_fit_model({"name": "shapes", "n": 80, "seed": 0}, {"input_shape": [3, 8, 8]})
    assert list(excinfo.value.message_dict) == ["dataset.name"]


def test_a_shapes_size_the_model_cannot_take_is_refused_under_the_size():
    dataset = {"name": "shapes", "n": 80, "seed": 0}
    assert dataset_fit_model(dataset, SPEC_12) == {**dataset, "size": 12}
    assert dataset_fit_model({**dataset, "size": 12}, SPEC_12) == {**dataset, "size": 12}
    with pytest.raises(ValidationError) as excinfo:
        dataset_fit_model({**dataset, "size": 20}, SPEC_12)
    assert excinfo.value.message_dict == {
        "dataset.size": [
            "shapes images of size 20 give inputs [1, 20, 20]; the model takes [1, 12, 12]."
        ]
    }


def test_a_shapes_model_with_images_outside_the_size_bounds_is_refused_under_the_name():
    # The size would otherwise be taken from the model unchecked, and the engine would refuse
    # the run in a worker.
    with pytest.raises(ValidationError) as excinfo:
        dataset_fit_model({"name": "shapes", "n": 80, "seed": 0}, {"input_shape": [1, 96, 96]})
    assert excinfo.value.message_dict == {
        "dataset.name": ["shapes images are 8 to 64 pixels wide; the model takes [1, 96, 96]."]
    }


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        ("experiment", {"dataset": {"name": "shapes", "n": 20, "size": 100},
                        "train": {"epochs": 0}, "seeds": 2, "concept": "wings"}),
        ("profile", {"dataset": {"name": "digits", "n": 80}, "top_k": 0, "concept": "arc"}),
        ("ablation", {"mode": "max", "random_sets": 1, "colour": "red"}),
        ("ablation", "not an object"),
    ],
)  # fmt: skip
def test_the_errors_are_the_engine_rules_errors_under_the_same_keys(kind, raw):
    """configs.py only adapts: Django's errors are the engine's, key for key, word for word."""
    engine_clean = getattr(run_settings, CLEANERS[kind].__name__)
    with pytest.raises(run_settings.SettingsError) as excinfo:
        engine_clean(raw)
    assert refusal(kind, raw) == excinfo.value.field_errors


def test_the_public_names_are_the_engine_rules_own():
    for name in ("BOUNDS", "CHOICES", "DATASET_BOUNDS", "DATASET_CONCEPTS", "DATASET_NAMES",
                 "DATASET_SIZE_OPTION", "DEFAULTS", "MIN_SEEDS", "TRAIN_FIELDS"):  # fmt: skip
        assert getattr(configs, name) is getattr(run_settings, name)
    assert configs.dataset_concepts("digits") == tuple("0123456789")


def test_configs_do_not_import_torch():
    code = "import sys, analysis.configs\nprint('torch' in sys.modules)\n"
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == "False"
