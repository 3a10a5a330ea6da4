"""A transformer spec is accepted where a model spec is; sequence task settings keyed by field."""

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from analysis.engine.model_specs import (
    count_model_parameters,
    model_unit_layers,
    spec_family,
    validate_model_spec,
)
from analysis.engine.run_settings import (
    SEQUENCE_TASK_ATTRIBUTES,
    SettingsError,
    sequence_task_clean,
)
from analysis.engine.sequence_tasks import (
    InductionTask,
    ModularAdditionTask,
    make_sequence_task,
)
from analysis.engine.specs import SpecFieldError, count_parameters, layer_widths
from analysis.engine.transformer_specs import count_transformer_parameters
from tests.analysis.engine_helpers import TINY_CNN, spec_copy
from tests.analysis.transformer_helpers import TINY_TRANSFORMER


def test_either_family_validates_counts_and_locates_units_through_one_entry():
    assert spec_family(TINY_TRANSFORMER) == "transformer" and spec_family(TINY_CNN) == "cnn"
    assert validate_model_spec(TINY_TRANSFORMER) == "transformer"
    assert validate_model_spec(TINY_CNN) == "cnn"
    assert model_unit_layers(TINY_TRANSFORMER)["blocks.1.mlp"] == 24
    assert model_unit_layers(TINY_CNN) == layer_widths(TINY_CNN)
    assert count_model_parameters(TINY_TRANSFORMER) == count_transformer_parameters(
        TINY_TRANSFORMER
    )
    assert count_model_parameters(TINY_CNN) == count_parameters(TINY_CNN)


def test_both_families_report_problems_keyed_by_field():
    transformer = {**TINY_TRANSFORMER, "d_head": 0}
    with pytest.raises(SpecFieldError) as caught:
        validate_model_spec(transformer)
    assert caught.value.field_errors == {
        "d_head": ["must be a whole number from 1 to 1024, got 0."]
    }
    cnn = spec_copy(TINY_CNN)
    cnn["layers"][0]["kernel_size"] = 0
    with pytest.raises(SpecFieldError) as caught:
        validate_model_spec(cnn)
    assert caught.value.field_errors == {
        "spec": ["layer 'conv1': kernel_size must be a positive integer, got 0"]
    }


def test_induction_settings_follow_the_model_when_left_out():
    cleaned = sequence_task_clean({"name": "induction"}, n_ctx=16, d_vocab=12)
    assert cleaned == {"name": "induction", "length": 16, "segment": 4, "eval_seed": 10_000}
    task = make_sequence_task(cleaned, d_vocab=12)
    assert task == InductionTask(d_vocab=12, length=16, segment=4)
    assert SEQUENCE_TASK_ATTRIBUTES["induction"] == tuple(
        task.sample(1, torch.Generator().manual_seed(0)).attributes
    )


def test_modular_addition_settings_and_task():
    cleaned = sequence_task_clean(
        {"name": "modular-addition", "train_fraction": 0.5}, n_ctx=3, d_vocab=8
    )
    assert cleaned == {
        "name": "modular-addition",
        "p": 7,
        "train_fraction": 0.5,
        "split_seed": 0,
    }
    task = make_sequence_task(cleaned, d_vocab=8)
    assert task == ModularAdditionTask(p=7, train_fraction=0.5, split_seed=0)
    assert SEQUENCE_TASK_ATTRIBUTES["modular-addition"] == tuple(task.all_pairs().attributes)


@pytest.mark.parametrize(
    ("raw", "n_ctx", "errors"),
    [
        ("induction", 16, {"dataset": ['must be an object such as {"name": "induction"}.']}),
        (
            {"name": "shapes"},
            16,
            {"dataset.name": ["must be one of induction, modular-addition, got 'shapes'."]},
        ),
        (
            {"name": "induction", "length": 3, "colour": 1},
            16,
            {
                "dataset.colour": [
                    "unknown setting. Expected one of name, length, segment, eval_seed."
                ],
                "dataset.length": ["must be a whole number from 4 to 512 for induction, got 3."],
            },
        ),
        (
            {"name": "induction", "length": 20},
            16,
            {"dataset.length": ["the model takes at most 16 positions (n_ctx)."]},
        ),
        (
            {"name": "induction", "length": 10, "segment": 6},
            16,
            {"dataset.segment": ["must be at most half the length, so it can repeat."]},
        ),
        (
            {"name": "modular-addition", "p": 5},
            3,
            {
                "dataset.p": [
                    "the model's vocabulary of 12 tokens fits p = 11 (the numbers and '=')."
                ]
            },
        ),
        (
            {"name": "modular-addition", "train_fraction": 1.0},
            3,
            {"dataset.train_fraction": ["must be a number from 0.05 to 0.95, got 1.0."]},
        ),
        (
            {"name": "modular-addition"},
            2,
            {"dataset.name": ["modular addition needs 3 positions; the model's n_ctx is 2."]},
        ),
    ],
)
def test_bad_sequence_task_settings_are_keyed_by_option(raw, n_ctx, errors):
    with pytest.raises(SettingsError) as caught:
        sequence_task_clean(raw, n_ctx=n_ctx, d_vocab=12)
    assert caught.value.field_errors == errors


def test_keyed_spec_errors_survive_pickling_as_a_worker_sends_them():
    with pytest.raises(SpecFieldError) as caught:
        validate_model_spec({**TINY_TRANSFORMER, "blocks": [{"n_heads": 0}]})
    copy = pickle.loads(pickle.dumps(caught.value))
    assert type(copy) is type(caught.value)
    assert copy.field_errors == {
        "blocks.0.n_heads": ["must be a whole number from 1 to 64, got 0."]
    }
    assert str(copy) == "blocks.0.n_heads: must be a whole number from 1 to 64, got 0."


def test_the_web_side_modules_import_neither_torch_nor_django():
    # the model form and the run settings validate transformer specs in the web process
    code = (
        "import sys\n"
        "import analysis.engine.transformer_specs, analysis.engine.model_specs\n"
        "import analysis.engine.run_settings\n"
        "print('torch' in sys.modules, 'django' in sys.modules)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=True,
    )
    assert completed.stdout.strip() == "False False"
