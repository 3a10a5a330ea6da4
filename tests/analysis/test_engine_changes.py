"""Change operations, parameter validation and budget-matched random controls."""

import pytest

from analysis.engine.changes import (
    CONTROL_HYPERPARAMETER_RANGES,
    ChangeError,
    apply_change,
    insert_layer,
    random_control_change,
    remove_layer,
    set_hyperparameter,
    validate_change_parameters,
    widen_layer,
)
from analysis.engine.specs import count_parameters, validate_spec
from tests.analysis.engine_helpers import EXAMPLE_SPEC, TINY_CNN, spec_copy

# Two hidden linear layers of equal fan-in cost so widen controls have somewhere to go.
TWO_HIDDEN = {
    "input_shape": [10],
    "num_classes": 2,
    "layers": [
        {"name": "fc1", "type": "linear", "out_features": 8},
        {"name": "relu1", "type": "relu"},
        {"name": "fc2", "type": "linear", "out_features": 8},
        {"name": "relu2", "type": "relu"},
        {"name": "fc3", "type": "linear", "out_features": 8},
        {"name": "relu3", "type": "relu"},
        {"name": "fc_out", "type": "linear", "out_features": 2},
    ],
}


def test_widen_layer_adds_units_and_downstream_inputs():
    # Given the tiny CNN and an untouched copy of it
    original = spec_copy(TINY_CNN)
    # When conv2 gains 2 channels
    result = widen_layer(TINY_CNN, layer="conv2", units=2)
    # Then conv2 has 8 channels, fc1 takes 2*4*4 more inputs, and the input is unchanged
    assert result.spec["layers"][3]["out_channels"] == 8
    assert result.params_before == count_parameters(TINY_CNN)
    assert result.params_added == 2 * (4 * 9 + 1) + 2 * 16 * 16
    assert result.params_after == result.params_before + result.params_added
    assert result.added_units == [6, 7]
    assert result.touched_layer == "conv2"
    assert result.description == "widen conv2 from 6 to 8 units (+2)"
    assert original == TINY_CNN


@pytest.mark.parametrize(
    ("layer", "units", "field"),
    [("fc_out", 1, "layer"), ("relu1", 1, "layer"), ("nope", 1, "layer"), ("fc1", 0, "units")],
)
def test_widen_layer_refusals(layer, units, field):
    with pytest.raises(ChangeError) as error:
        widen_layer(TINY_CNN, layer=layer, units=units)
    assert field in error.value.field_errors


def test_insert_layer_adds_a_validated_layer():
    original = spec_copy(TINY_CNN)
    layer = {"name": "fc2", "type": "linear", "out_features": 8}
    result = insert_layer(TINY_CNN, after="relu3", layer=layer)
    assert [entry["name"] for entry in result.spec["layers"]][-3:] == ["relu3", "fc2", "fc_out"]
    assert result.params_added == (16 * 8 + 8) + (8 * 4 + 4) - (16 * 4 + 4)
    assert result.added_units == []
    assert result.touched_layer == "fc2"
    assert original == TINY_CNN


@pytest.mark.parametrize(
    ("after", "layer", "field"),
    [
        ("nope", {"name": "x", "type": "relu"}, "after"),
        ("relu1", {"name": "conv1", "type": "relu"}, "layer"),
        ("relu1", {"name": "fc9", "type": "linear", "out_features": 3}, "layer"),
        ("relu1", "relu", "layer"),
    ],
    ids=["missing-after", "taken-name", "invalid-shape", "not-a-dict"],
)
def test_insert_layer_refusals(after, layer, field):
    with pytest.raises(ChangeError) as error:
        insert_layer(TINY_CNN, after=after, layer=layer)
    assert field in error.value.field_errors


def test_remove_layer_keeps_a_valid_spec():
    original = spec_copy(TINY_CNN)
    result = remove_layer(TINY_CNN, layer="relu2")
    validate_spec(result.spec)
    assert "relu2" not in [entry["name"] for entry in result.spec["layers"]]
    assert result.params_added == 0
    assert original == TINY_CNN


@pytest.mark.parametrize("layer", ["flatten", "fc_out", "nope"])
def test_remove_layer_refusals(layer):
    with pytest.raises(ChangeError) as error:
        remove_layer(TINY_CNN, layer=layer)
    assert error.value.field_errors["layer"]


def test_set_hyperparameter_changes_only_that_value():
    original = spec_copy(TINY_CNN)
    result = set_hyperparameter(TINY_CNN, name="learning_rate", value=0.001)
    assert result.spec["hyperparameters"]["learning_rate"] == 0.001
    assert result.params_added == 0
    assert result.touched_layer == ""
    assert original == TINY_CNN


@pytest.mark.parametrize(
    ("name", "value", "field"),
    [("momentum", 0.9, "name"), ("epochs", 0, "value"), ("optimizer", "lbfgs", "value")],
)
def test_set_hyperparameter_refusals(name, value, field):
    with pytest.raises(ChangeError) as error:
        set_hyperparameter(TINY_CNN, name=name, value=value)
    assert field in error.value.field_errors


def test_apply_change_dispatches_by_name():
    result = apply_change(TINY_CNN, "widen_layer", {"layer": "fc1", "units": 3})
    assert result.spec["layers"][6]["out_features"] == 19


def test_manual_change_validates_but_cannot_be_applied():
    assert validate_change_parameters("manual", {"description": "try dropout"}) == {
        "description": "try dropout"
    }
    with pytest.raises(ChangeError) as error:
        apply_change(TINY_CNN, "manual", {"description": "try dropout"})
    assert error.value.field_errors == {"operation": "manual changes cannot be applied"}


@pytest.mark.parametrize(
    ("operation", "parameters", "field_errors"),
    [
        ("widen_layer", {"layer": "fc1", "units": 0}, {"units": "must be a positive integer"}),
        ("widen_layer", {"layer": "fc1"}, {"units": "this field is required"}),
        ("widen_layer", {"layer": "", "units": 2}, {"layer": "must be a non-empty name"}),
        ("remove_layer", {"layer": "fc1", "extra": 1}, {"extra": "unexpected field"}),
        ("insert_layer", {"after": "fc1", "layer": 3}, {"layer": "must be a layer object"}),
        ("manual", {"description": "  "}, {"description": "must be a non-empty text"}),
        ("explode", {}, {"operation": "must be one of widen_layer, insert_layer, "
                         "remove_layer, set_hyperparameter, manual"}),
        ("remove_layer", [], {"__all__": "parameters must be an object"}),
    ],
)  # fmt: skip
def test_validate_change_parameters_field_errors(operation, parameters, field_errors):
    with pytest.raises(ChangeError) as error:
        validate_change_parameters(operation, parameters)
    assert error.value.field_errors == field_errors


def test_validate_change_parameters_against_a_spec():
    with pytest.raises(ChangeError) as error:
        validate_change_parameters("widen_layer", {"layer": "fc_out", "units": 1}, TINY_CNN)
    assert "layer" in error.value.field_errors


def test_random_widen_control_matches_budget_elsewhere_and_is_deterministic():
    # Given a guided widening of fc2 by 3 units
    guided = widen_layer(TWO_HIDDEN, layer="fc2", units=10)
    # When controls are drawn with the same seed twice and with several seeds
    first = random_control_change(TWO_HIDDEN, "widen_layer", {"layer": "fc2", "units": 10}, seed=7)
    again = random_control_change(TWO_HIDDEN, "widen_layer", {"layer": "fc2", "units": 10}, seed=7)
    layers = {
        random_control_change(
            TWO_HIDDEN, "widen_layer", {"layer": "fc2", "units": 10}, seed=seed
        ).parameters["layer"]
        for seed in range(12)
    }
    # Then the control is elsewhere, within 5% of the budget, and reproducible
    assert first.parameters == again.parameters
    assert first.parameters["layer"] != "fc2"
    assert abs(first.result.params_added - guided.params_added) <= 0.05 * guided.params_added
    assert layers == {"fc1", "fc3"}
    assert {candidate["layer"] for candidate in first.candidates} == {"fc1", "fc3"}
    assert first.result.added_units == list(range(8, 8 + first.parameters["units"]))


def test_random_insert_control_solves_the_width():
    layer = {"name": "extra", "type": "linear", "out_features": 8}
    guided = insert_layer(TWO_HIDDEN, after="relu2", layer=layer)
    control = random_control_change(
        TWO_HIDDEN, "insert_layer", {"after": "relu2", "layer": layer}, seed=0
    )
    assert control.parameters["after"] != "relu2"
    assert control.parameters["layer"]["type"] == "linear"
    assert abs(control.result.params_added - guided.params_added) <= 0.05 * guided.params_added


def test_random_remove_control_picks_same_type_with_same_budget():
    control = random_control_change(TWO_HIDDEN, "remove_layer", {"layer": "relu2"}, seed=1)
    assert control.parameters["layer"] in {"relu1", "relu3"}
    assert control.result.params_added == 0


def test_random_remove_control_without_budget_match_raises():
    with pytest.raises(ChangeError, match="no budget-matched control exists for remove_layer"):
        random_control_change(EXAMPLE_SPEC, "remove_layer", {"layer": "bn1"}, seed=0)


def test_random_widen_control_without_any_other_layer_raises():
    with pytest.raises(ChangeError, match="no budget-matched control exists for widen_layer"):
        random_control_change(TINY_CNN, "widen_layer", {"layer": "conv1", "units": 1}, seed=0)


def test_random_hyperparameter_control_changes_a_different_hyperparameter():
    parameters = {"name": "learning_rate", "value": 0.001}
    control = random_control_change(TINY_CNN, "set_hyperparameter", parameters, seed=5)
    again = random_control_change(TINY_CNN, "set_hyperparameter", parameters, seed=5)
    assert control.parameters == again.parameters
    assert control.parameters["name"] != "learning_rate"
    assert control.parameters["name"] in CONTROL_HYPERPARAMETER_RANGES
    assert control.result.params_added == 0
    assert control.to_dict()["seed"] == 5
