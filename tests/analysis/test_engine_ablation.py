"""Unit ablation through a temporary forward hook."""

import pytest
import torch

from analysis.engine.ablation import ablate_units, layer_width, measure_ablation
from analysis.engine.builder import build_model, set_seed
from tests.analysis.engine_helpers import (
    PLANTED_UNIT,
    TINY_CNN,
    planted_model_and_data,
    tiny_shapes,
)


def _state_copy(model):
    return {key: value.clone() for key, value in model.state_dict().items()}


def test_ablating_the_planted_unit_changes_output_and_restores_bitwise():
    # Given the planted model, its state and its outputs
    model, dataset = planted_model_and_data()
    state = _state_copy(model)
    with torch.inference_mode():
        before = model(dataset.inputs)
        # When the planted unit is zeroed
        with ablate_units(model, "relu1", [PLANTED_UNIT]):
            ablated = model(dataset.inputs)
        after = model(dataset.inputs)
    # Then class 2's logit collapses inside the block, and everything is bitwise restored after
    assert not torch.equal(before, ablated)
    assert torch.all(ablated[:, 2] == 0)
    assert torch.equal(before, after)
    assert all(torch.equal(state[key], value) for key, value in model.state_dict().items())
    assert not model.relu1._forward_hooks


def test_conv_ablation_zeroes_whole_channels_with_gradients_enabled():
    set_seed(0)
    model = build_model(TINY_CNN).eval()
    seen = []
    inputs = torch.rand(2, 1, 12, 12)
    with ablate_units(model, "conv1", [1, 3]):
        handle = model.relu1.register_forward_hook(lambda _m, i, _o: seen.append(i[0]))
        model(inputs).sum().backward()
        handle.remove()
    assert torch.all(seen[0][:, [1, 3]] == 0)
    assert torch.any(seen[0][:, 0] != 0)


def test_mean_mode_uses_the_given_means():
    model, dataset = planted_model_and_data()
    means = [0.0, 0.0, 0.0, 7.5, 0.0, 0.0, 0.0, 0.0]
    captured = []
    with torch.inference_mode(), ablate_units(model, "fc1", [3], mode="mean", means=means):
        handle = model.relu1.register_forward_hook(lambda _m, i, _o: captured.append(i[0]))
        model(dataset.inputs)
        handle.remove()
    assert torch.all(captured[0][:, 3] == 7.5)


def test_mean_mode_without_means_and_unknown_mode_are_refused():
    model, _ = planted_model_and_data()
    with (
        pytest.raises(ValueError, match="needs the per-unit means"),
        ablate_units(model, "fc1", [0], mode="mean"),
    ):
        pass
    with pytest.raises(ValueError, match="mode must be"), ablate_units(model, "fc1", [0], mode="x"):
        pass


def test_measure_ablation_compares_target_with_random_sets():
    model, dataset = planted_model_and_data()
    result = measure_ablation(model, dataset, layer="relu1", units=[PLANTED_UNIT], random_sets=5)
    assert result.baseline["accuracy"] == 1.0
    assert result.ablated["accuracy"] == 0.75
    assert result.drop == 0.25
    assert result.random_drops == [0.0] * 5
    assert len(result.random_sets) == 5
    assert all(PLANTED_UNIT not in units and len(units) == 1 for units in result.random_sets)
    assert max(result.random_drops) <= result.drop
    assert result.percentile == 100.0
    assert result.z_score is None
    assert result.to_dict()["layer"] == "relu1"
    repeat = measure_ablation(model, dataset, layer="relu1", units=[PLANTED_UNIT], random_sets=5)
    assert repeat.random_sets == result.random_sets


def test_measure_ablation_mean_mode_profiles_means_itself():
    set_seed(0)
    model = build_model(TINY_CNN).eval()
    result = measure_ablation(
        model, tiny_shapes(40), layer="relu2", units=[0, 1], mode="mean", random_sets=3
    )
    assert result.mode == "mean"
    assert len(result.random_drops) == 3


def test_layer_width_reads_channels():
    model = build_model(TINY_CNN)
    assert layer_width(model, "conv2", torch.zeros(1, 1, 12, 12)) == 6


def test_ablating_a_pass_through_layer_never_modifies_the_input():
    spec = {
        "input_shape": [4],
        "num_classes": 2,
        "layers": [
            {"name": "drop", "type": "dropout", "p": 0.5},
            {"name": "fc_out", "type": "linear", "out_features": 2},
        ],
    }
    model = build_model(spec).eval()
    inputs = torch.ones(3, 4)
    with torch.inference_mode(), ablate_units(model, "drop", [0, 2]):
        model(inputs)
    assert torch.equal(inputs, torch.ones(3, 4))
