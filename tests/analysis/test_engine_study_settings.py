"""A study's settings: one validator, errors keyed by setting, the experiments' own rules for
dataset, training and seeds."""

import math
import subprocess
import sys

import pytest

from analysis.engine.run_settings import SettingsError, experiment_config_clean
from analysis.engine.study_settings import experiment_settings_of, study_config_clean
from kb.demo import SHAPES_CNN_SPEC
from tests.analysis.engine_helpers import MLP

SHAPES_CNN = SHAPES_CNN_SPEC
TRANSFORMER = {"family": "transformer", "d_vocab": 8, "n_ctx": 8, "d_model": 8, "d_head": 4,
               "blocks": [{"n_heads": 2}]}  # fmt: skip


def _errors(raw, spec=SHAPES_CNN, **options) -> dict[str, list[str]]:
    with pytest.raises(SettingsError) as error:
        study_config_clean(raw, spec=spec, **options)
    return error.value.field_errors


def test_defaults_fill_every_setting_and_fit_the_dataset_to_the_model():
    assert study_config_clean({"concept": "curvature"}, spec=SHAPES_CNN) == {
        "dataset": {"name": "shapes", "n": 2000, "seed": 0, "size": 28},
        "train": {},
        "seeds": [0, 1, 2, 3, 4],
        "rounds": 4,
        "budget_fraction": 0.1,
        "concept": "curvature",
        "rule": "widen_most_selective",
        "tracks": ["guided", "random", "uniform"],
        "metric": "test_accuracy",
        "direction": "increase",
        "random_seed": 0,
        "tolerance": 0.05,
        "level": 0.95,
    }


def test_given_settings_are_kept_and_cleaning_the_result_changes_nothing():
    raw = {
        "dataset": {"name": "shapes", "n": 300, "seed": 4},
        "train": {"epochs": 1, "learning_rate": 0.003},
        "seeds": [7, 3, 11],
        "rounds": 2,
        "budget_fraction": 1,
        "concept": "arc",
        "rule": "insert_after_tightest_clusters",
        "tracks": ["uniform", "guided"],
        "metric": "test_loss",
        "random_seed": 99,
        "tolerance": 0,
        "level": 0.9,
    }
    cleaned = study_config_clean(raw, spec=SHAPES_CNN)
    assert cleaned == {
        "dataset": {"name": "shapes", "n": 300, "seed": 4, "size": 28},
        "train": {"epochs": 1, "learning_rate": 0.003},
        "seeds": [7, 3, 11],
        "rounds": 2,
        "budget_fraction": 1.0,
        "concept": "arc",
        "rule": "insert_after_tightest_clusters",
        "tracks": ["guided", "uniform"],
        "metric": "test_loss",
        "direction": "decrease",  # the loss's better direction, as none was given
        "random_seed": 99,
        "tolerance": 0.0,
        "level": 0.9,
    }
    assert study_config_clean(cleaned, spec=SHAPES_CNN) == cleaned


def test_every_problem_is_reported_at_once_under_its_own_key():
    raw = {
        "dataset": {"name": "shapes", "n": 10},
        "train": {"epochs": 0, "momentum": 0.9},
        "seeds": 2,
        "rounds": 11,
        "budget_fraction": 0,
        "concept": "banana",
        "rule": "widest_first",
        "tracks": ["random", "uniform"],
        "metric": "f1",
        "direction": "up",
        "random_seed": -1,
        "tolerance": 0.6,
        "level": 1.0,
        "colour": "red",
    }
    errors = _errors(raw)
    assert sorted(errors) == sorted([
        "dataset.n", "train.epochs", "train.momentum", "seeds", "rounds", "budget_fraction",
        "concept", "rule", "tracks", "metric", "direction", "random_seed", "tolerance",
        "level", "colour",
    ])  # fmt: skip
    assert errors["rounds"] == ["must be a whole number from 1 to 10, got 11."]
    assert errors["seeds"] == ["use 3 to 20 seeds, got 2."]
    assert errors["tracks"] == [
        'must hold "guided" and at least one control track ("random" or "uniform") to '
        "compare it with."
    ]
    assert errors["rule"] == [
        "must be one of widen_most_selective, insert_after_tightest_clusters, got 'widest_first'."
    ]
    assert errors["colour"][0].startswith("unknown setting. Expected one of dataset, train,")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("rounds", 0),
        ("rounds", True),
        ("rounds", 2.0),
        ("budget_fraction", 1.5),
        ("budget_fraction", -0.1),
        ("budget_fraction", math.nan),
        ("budget_fraction", "0.1"),
        ("tracks", "guided"),
        ("tracks", ["guided"]),
        ("tracks", ["guided", "bigger"]),
        ("tracks", ["guided", 1]),
        ("random_seed", 2**31),
        ("random_seed", 1.0),
        ("tolerance", math.inf),
        ("level", 0.4),
    ],
)
def test_a_bad_value_is_refused_under_its_key_alone(key, value):
    assert list(_errors({"concept": "curvature", key: value})) == [key]


def test_the_concept_is_required_for_the_guided_rule():
    assert _errors({}) == {
        "concept": [
            "required: the guided rule reads the units' scores for a concept; use one of "
            "line, arc, circle, corner, curvature, orientation."
        ]
    }
    # Reported beside other problems, naming no choices when the dataset is unknown
    assert _errors({"seeds": 1, "concept": "", "dataset": {"name": "cifar"}}) == {
        "dataset.name": ["must be one of shapes, digits, fashion-mnist, got 'cifar'."],
        "seeds": ["use 3 to 20 seeds, got 1."],
        "concept": ["required: the guided rule reads the units' scores for a concept."],
    }


def test_seeds_need_at_least_three_unless_a_quick_check_allows_two():
    assert list(_errors({"concept": "arc", "seeds": 2})) == ["seeds"]
    small = study_config_clean({"concept": "arc", "seeds": 2}, spec=SHAPES_CNN, allow_small=True)
    assert small["seeds"] == [0, 1]
    assert _errors({"concept": "arc", "seeds": 1}, allow_small=True) == {
        "seeds": ["use 2 to 20 seeds, got 1."]
    }


@pytest.mark.parametrize(
    "shared",
    [
        {"dataset": {"name": "digits", "limit": 5}},
        {"dataset": {"name": "shapes", "n": 10**6, "colour": 1}},
        {"dataset": "shapes"},
        {"train": {"batch_size": 0, "optimizer": "lion"}},
        {"train": []},
        {"seeds": [1, 1, 2]},
        {"seeds": [0, 1, -2]},
        {"seeds": 21},
    ],
)
def test_dataset_training_and_seeds_follow_the_experiments_rules(shared):
    with pytest.raises(SettingsError) as expected:
        experiment_config_clean({**shared, "concept": "arc"})
    errors = _errors({**shared, "concept": "arc"})
    assert errors == expected.value.field_errors


def test_the_dataset_must_feed_the_model():
    assert _errors({"concept": "arc", "dataset": {"name": "shapes", "size": 16}}) == {
        "dataset.size": [
            "shapes images of size 16 give inputs [1, 16, 16]; the model takes [1, 28, 28]."
        ]
    }
    assert list(_errors({"concept": "3", "dataset": {"name": "digits"}})) == ["dataset.name"]


def test_a_model_the_study_cannot_search_is_refused_under_model():
    broken = {**TRANSFORMER, "blocks": []}
    assert _errors({}, spec=broken) == {
        "model": ["the model's spec is invalid: blocks: must be a list of 1 to 48 block objects."]
    }
    no_hidden = {"input_shape": [6], "num_classes": 3,
                 "layers": [{"name": "fc_out", "type": "linear", "out_features": 3}]}  # fmt: skip
    assert _errors({"concept": "arc"}, spec=no_hidden) == {
        "model": ["the model has no hidden conv2d or linear layer to profile and change."]
    }
    assert list(_errors({"concept": "arc"}, spec={"layers": "none"})) == ["model"]


def test_a_config_that_is_not_an_object_is_refused():
    assert _errors(["concept"]) == {"config": ["must be an object of study settings."]}


def test_experiment_settings_carry_the_study_training_to_run_arm():
    cleaned = study_config_clean(
        {"concept": "arc", "train": {"epochs": 1}, "seeds": 3}, spec=SHAPES_CNN
    )
    assert experiment_settings_of(cleaned) == {
        "dataset": cleaned["dataset"], "train": {"epochs": 1}, "seeds": [0, 1, 2],
        "metric": "test_accuracy", "direction": "increase", "concept": "arc",
        "allow_small": True,
    }  # fmt: skip
    # An MLP has no image size to fit: a shapes dataset cannot feed it.
    assert list(_errors({"concept": "arc"}, spec=MLP)) == ["dataset.name"]


def test_study_settings_plans_and_report_do_not_import_torch_or_django():
    code = (
        "import sys, analysis.engine.study_settings, analysis.engine.study_plans, "
        "analysis.engine.study_report; print('torch' in sys.modules, 'django' in sys.modules)"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert output.stdout.strip() == "False False"
