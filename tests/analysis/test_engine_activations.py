"""Hooks, streaming activation statistics and the scores derived from them."""

import json

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats

from analysis.engine import activations
from analysis.engine.activations import (
    ActivationProfile,
    attribute_correlation,
    class_selectivity,
    cluster_units,
    default_probe_layers,
    localise_concept,
    profile_activations,
    recording_hooks,
    top_units,
)
from analysis.engine.builder import build_model, set_seed
from tests.analysis.engine_helpers import (
    PLANTED_CLASS,
    PLANTED_UNIT,
    PLANTED_WIDTH,
    TINY_CNN,
    planted_model_and_data,
    tiny_shapes,
)


def _all_hooks_removed(model):
    return all(not module._forward_hooks for module in model.modules())


def _full_responses(model, inputs, layer):
    captured = []
    with torch.no_grad(), recording_hooks(model, [layer], lambda _n, out: captured.append(out)):
        model(inputs)
    output = captured[0].double()
    return output.mean(dim=(2, 3)) if output.dim() == 4 else output


def test_hooks_record_outputs_and_are_removed():
    model = build_model(TINY_CNN).eval()
    seen = []
    with recording_hooks(model, ["relu1", "fc1"], lambda name, out: seen.append((name, out.shape))):
        model(torch.zeros(2, 1, 12, 12))
    assert seen == [("relu1", (2, 4, 12, 12)), ("fc1", (2, 16))]
    assert _all_hooks_removed(model)


def test_hooks_are_removed_when_the_forward_raises():
    model = build_model(TINY_CNN).eval()
    with pytest.raises(RuntimeError), recording_hooks(model, ["conv1", "fc1"], lambda n, o: None):
        model(torch.zeros(2, 3, 12, 12))  # wrong channel count
    assert _all_hooks_removed(model)


def test_unknown_layer_is_a_key_error_and_leaves_no_hooks():
    model = build_model(TINY_CNN)
    with pytest.raises(KeyError, match="nope"), recording_hooks(model, ["conv1", "nope"], print):
        pass
    assert _all_hooks_removed(model)


@pytest.mark.parametrize("buffer_values", [1 << 18, 100])
@pytest.mark.parametrize("layer", ["conv1", "relu2", "fc1"])
def test_streaming_statistics_equal_full_tensor_statistics(layer, buffer_values, monkeypatch):
    # Given a random model and probe set profiled in uneven batches of 7, its responses folded
    # into the running sums once at the end or every batch or two
    monkeypatch.setattr(activations, "RESPONSE_BUFFER_VALUES", buffer_values)
    set_seed(0)
    model = build_model(TINY_CNN).eval()
    dataset = tiny_shapes(45)
    profile = profile_activations(model, dataset, layers=[layer], batch_size=7).layers[layer]
    # When the same statistics are computed from the whole activation tensor at once
    full = _full_responses(model, dataset.inputs, layer).numpy()
    labels = dataset.labels.numpy()
    curvature = dataset.attributes["curvature"].double().numpy()
    # Then they agree within 1e-6
    np.testing.assert_allclose(profile.mean, full.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(profile.variance, full.var(axis=0), atol=1e-6)
    np.testing.assert_allclose(profile.maximum, full.max(axis=0), atol=1e-6)
    np.testing.assert_allclose(profile.fraction_inactive, (full <= 0).mean(axis=0), atol=1e-6)
    for label in range(4):
        expected = full[labels == label].mean(axis=0)
        np.testing.assert_allclose(profile.class_means[label], expected, atol=1e-6)
    for unit in range(full.shape[1]):
        if full[:, unit].std() > 0:
            r = scipy_stats.pearsonr(full[:, unit], curvature).statistic
            assert abs(profile.correlations["curvature"][unit] - r) < 1e-6


def test_several_layers_keep_their_own_columns_and_a_repeated_name_counts_once():
    set_seed(0)
    model = build_model(TINY_CNN).eval()
    dataset = tiny_shapes(20)
    together = profile_activations(model, dataset, layers=["relu1", "fc1", "relu1"], batch_size=6)
    assert list(together.layers) == ["relu1", "fc1"]
    for layer in ["relu1", "fc1"]:
        alone = profile_activations(model, dataset, layers=[layer], batch_size=6).layers[layer]
        np.testing.assert_allclose(together.layers[layer].mean, alone.mean, atol=1e-12)
        np.testing.assert_allclose(
            together.layers[layer].correlations["curvature"],
            alone.correlations["curvature"],
            atol=1e-12,
        )


def test_profiling_restores_training_mode_and_removes_hooks():
    model = build_model(TINY_CNN).train()
    profile_activations(model, tiny_shapes(10), layers=["relu1"])
    assert model.training
    assert _all_hooks_removed(model)


def test_default_probe_layers_are_the_activations():
    assert default_probe_layers(build_model(TINY_CNN)) == ["relu1", "relu2", "relu3"]


def test_selectivity_finds_the_planted_unit():
    # Given a model whose fc1 unit 3 responds only to class 2
    model, dataset = planted_model_and_data()
    profile = profile_activations(model, dataset, layers=["fc1", "relu1"])
    # When selectivity is computed
    selectivity = class_selectivity(profile, "relu1")
    # Then the planted unit is the most selective for class 2, near the maximum of 1
    assert selectivity.shape == (PLANTED_WIDTH, 4)
    assert int(np.argmax(selectivity[:, PLANTED_CLASS])) == PLANTED_UNIT
    assert selectivity[PLANTED_UNIT, PLANTED_CLASS] > 0.95
    assert top_units(profile, "c", 1)[0][:2] in {("fc1", PLANTED_UNIT), ("relu1", PLANTED_UNIT)}
    assert abs(attribute_correlation(profile, "fc1", "code")[PLANTED_UNIT]) > 0.99


def test_localise_concept_ranks_layers_best_first():
    model, dataset = planted_model_and_data()
    profile = profile_activations(model, dataset, layers=["relu1", "fc_out"])
    ranking = localise_concept(profile, "c")
    assert [row["layer"] for row in ranking][0] in {"relu1", "fc_out"}
    assert ranking[0]["score"] >= ranking[1]["score"]
    assert {row["layer"] for row in ranking} == {"relu1", "fc_out"}


def test_cluster_units_groups_the_planted_unit_apart():
    model, dataset = planted_model_and_data()
    profile = profile_activations(model, dataset, layers=["relu1"])
    clusters = cluster_units(profile, "relu1", 5)
    assert sorted(sorted(c) for c in clusters) == [[0, 1], [2, 4], [PLANTED_UNIT], [5, 6], [7]]


def test_profile_round_trips_through_json():
    model, dataset = planted_model_and_data()
    profile = profile_activations(model, dataset, layers=["relu1"])
    data = json.loads(json.dumps(profile.to_dict()))
    restored = ActivationProfile.from_dict(data)
    assert restored.class_names == ["a", "b", "c", "d"]
    np.testing.assert_allclose(
        class_selectivity(restored, "relu1"), class_selectivity(profile, "relu1"), atol=1e-4
    )
    assert top_units(data, "c", 1)[0][1] == PLANTED_UNIT


def test_raw_inputs_with_labels_can_be_profiled():
    model, dataset = planted_model_and_data()
    profile = profile_activations(
        model, dataset.inputs, layers=["relu1"], concept_labels=dataset.labels
    )
    assert profile.class_names == ["0", "1", "2", "3"]
    assert profile.attribute_names == []
    assert profile.n_examples == len(dataset)
