"""Spec validation, shape inference, parameter counts and the built modules."""

import pytest
import torch

from analysis.engine.builder import build_model, select_device, set_seed
from analysis.engine.specs import (
    DEFAULT_HYPERPARAMETERS,
    SpecError,
    count_parameters,
    layer_widths,
    unit_layers,
    validate_hyperparameters,
    validate_spec,
)
from tests.analysis.engine_helpers import EXAMPLE_SPEC, MLP, TINY_CNN, spec_copy


def _with_layer(spec, index, **changes):
    spec = spec_copy(spec)
    spec["layers"][index].update(changes)
    return spec


def test_validate_spec_infers_every_layer_shape():
    # Given the example CNN
    # When its shapes are inferred
    shapes = validate_spec(EXAMPLE_SPEC)
    # Then conv keeps 28x28 (padding 1), pooling halves it and flatten yields 8*14*14
    assert [(s.name, s.output_shape) for s in shapes] == [
        ("conv1", (8, 28, 28)),
        ("relu1", (8, 28, 28)),
        ("pool1", (8, 14, 14)),
        ("bn1", (8, 14, 14)),
        ("drop1", (8, 14, 14)),
        ("flatten", (1568,)),
        ("fc1", (32,)),
        ("fc_out", (4,)),
    ]


@pytest.mark.parametrize("spec", [EXAMPLE_SPEC, TINY_CNN, MLP], ids=["example", "tiny", "mlp"])
def test_count_parameters_equals_built_module(spec):
    # Given a spec and the module built from it
    model = build_model(spec)
    # Then the analytic count equals the module's trainable parameters
    assert count_parameters(spec) == sum(p.numel() for p in model.parameters())


def test_build_model_names_submodules_after_layers_and_maps_shapes():
    # Given the example spec
    model = build_model(EXAMPLE_SPEC)
    modules = dict(model.named_modules())
    # Then every layer name is a submodule and batchnorm picks 2d for the spatial input
    assert [name for name, _ in model.named_children()] == [
        layer["name"] for layer in EXAMPLE_SPEC["layers"]
    ]
    assert isinstance(modules["conv1"], torch.nn.Conv2d)
    assert isinstance(modules["bn1"], torch.nn.BatchNorm2d)
    assert modules["drop1"].p == 0.1
    # And a batch maps to [N, num_classes]
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 4)


def test_batchnorm_on_flat_input_is_1d():
    spec = spec_copy(MLP)
    spec["layers"].insert(1, {"name": "bn", "type": "batchnorm"})
    assert isinstance(dict(build_model(spec).named_modules())["bn"], torch.nn.BatchNorm1d)
    assert count_parameters(spec) == sum(p.numel() for p in build_model(spec).parameters())


def test_layer_widths_include_inheriting_layers():
    assert layer_widths(EXAMPLE_SPEC) == {
        "conv1": 8,
        "relu1": 8,
        "pool1": 8,
        "bn1": 8,
        "drop1": 8,
        "fc1": 32,
        "fc_out": 4,
    }


def test_unit_layers_exclude_output_layer():
    assert unit_layers(EXAMPLE_SPEC) == ["conv1", "fc1"]
    assert unit_layers(MLP) == ["fc1"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (_with_layer(EXAMPLE_SPEC, 6, out_features=0),
         "layer 'fc1': out_features must be a positive integer, got 0"),
        (_with_layer(EXAMPLE_SPEC, 0, kernel_size=40),
         "layer 'conv1': kernel_size 40 is larger than its input"),
        (_with_layer(EXAMPLE_SPEC, 4, p=1.0), "layer 'drop1': p must be a number in [0, 1)"),
        (_with_layer(EXAMPLE_SPEC, 1, type="softmax"), "layer 'relu1': unknown type 'softmax'"),
        (_with_layer(EXAMPLE_SPEC, 1, name="conv1"), "layer 'conv1': duplicate layer name"),
        (_with_layer(EXAMPLE_SPEC, 1, name="bad name"),
         "layer #1: name must be a non-empty identifier"),
        (_with_layer(EXAMPLE_SPEC, 0, dilation=1), "layer 'conv1': unknown field(s) dilation"),
        (_with_layer(EXAMPLE_SPEC, 7, out_features=5),
         "layer 'fc_out': the last layer must output num_classes=4 features"),
    ],
    ids=["zero-width", "big-kernel", "dropout-p", "type", "duplicate", "name", "field", "classes"],
)  # fmt: skip
def test_invalid_layers_raise_spec_error_naming_the_layer(spec, message):
    with pytest.raises(SpecError) as error:
        validate_spec(spec)
    assert str(error.value).startswith(message)


def test_linear_on_spatial_input_without_flatten_is_refused():
    spec = spec_copy(EXAMPLE_SPEC)
    del spec["layers"][5]
    with pytest.raises(SpecError, match="layer 'fc1': linear needs a flat input"):
        validate_spec(spec)


def test_conv_on_flat_input_is_refused():
    spec = spec_copy(MLP)
    spec["layers"].insert(
        1, {"name": "conv", "type": "conv2d", "out_channels": 2, "kernel_size": 1}
    )
    with pytest.raises(SpecError, match="layer 'conv': conv2d needs a \\[C, H, W\\] input"):
        validate_spec(spec)


@pytest.mark.parametrize(
    ("hyperparameters", "message"),
    [
        ({"optimizer": "rmsprop"}, "hyperparameter 'optimizer': must be one of sgd, adam, adamw"),
        ({"learning_rate": 0}, "hyperparameter 'learning_rate': must be a number from 1e-06 to 10"),
        ({"epochs": 1.5}, "hyperparameter 'epochs': must be a whole number from 1 to 100"),
        ({"batch_size": 0}, "hyperparameter 'batch_size': must be a whole number from 1 to 8192"),
        ({"weight_decay": -1}, "hyperparameter 'weight_decay': must be a number from 0 to 1"),
        # a model's own spec is held to the run settings' caps
        ({"epochs": 1000}, "hyperparameter 'epochs': must be a whole number from 1 to 100"),
        ({"learning_rate": 11.0}, "hyperparameter 'learning_rate': must be a number from 1e-06"),
        ({"momentum": 0.9}, "hyperparameters: unknown field(s) momentum"),
    ],
)
def test_invalid_hyperparameters_raise(hyperparameters, message):
    with pytest.raises(SpecError) as error:
        validate_hyperparameters(hyperparameters)
    assert str(error.value).startswith(message)


def test_hyperparameters_default_when_missing():
    assert validate_hyperparameters({"epochs": 3}) == {**DEFAULT_HYPERPARAMETERS, "epochs": 3}


def test_set_seed_makes_initialisation_identical():
    set_seed(3)
    first = build_model(TINY_CNN).state_dict()
    set_seed(3)
    second = build_model(TINY_CNN).state_dict()
    assert all(torch.equal(first[key], second[key]) for key in first)


def test_select_device_is_chosen_once():
    assert select_device() is select_device()
    assert select_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
