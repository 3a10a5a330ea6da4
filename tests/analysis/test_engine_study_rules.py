"""The guided track's rules on hand-built profiles: they pick the layer the rule names."""

import json

import numpy as np
import pytest

from analysis.engine.changes import ChangeError, apply_change, insert_layer, widen_layer
from analysis.engine.profiles import ActivationProfile
from analysis.engine.specs import count_parameters
from analysis.engine.study_rules import (
    GUIDED_RULES,
    INSERT_AFTER_TIGHTEST_CLUSTERS,
    cluster_tightness,
    guided_change,
    round_budget,
    unit_layer_of,
)
from tests.analysis.engine_helpers import TINY_CNN

CLASSES = ["circle", "square", "triangle", "star"]
WIDTHS = {"relu1": 4, "relu2": 6, "relu3": 16}  # TINY_CNN's hidden layers after activation


def _layer(class_means: np.ndarray, curvature: list[float]) -> dict:
    """One profiled layer in stored (to_dict) form; class_means [K, U]."""
    width = class_means.shape[1]
    return {
        "n": 40, "mean": class_means.mean(axis=0).tolist(), "variance": [1.0] * width,
        "maximum": class_means.max(axis=0).tolist(), "fraction_inactive": [0.0] * width,
        "class_means": class_means.tolist(), "class_counts": [10] * len(CLASSES),
        "correlations": {"curvature": curvature},
    }  # fmt: skip


def _profile(curvature: dict[str, list[float]], class_means: dict[str, np.ndarray] | None = None):
    rng = np.random.default_rng(0)
    means = class_means or {}
    return {
        "n_examples": 40, "class_names": CLASSES, "attribute_names": ["curvature"],
        "layers": {
            name: _layer(means.get(name, rng.uniform(0.1, 1.0, (4, width))), curvature[name])
            for name, width in WIDTHS.items()
        },
    }  # fmt: skip


def _curvature(**peaks: list[float]) -> dict[str, list[float]]:
    """Low correlations everywhere, except the leading units named per layer."""
    base = {name: [0.05] * width for name, width in WIDTHS.items()}
    for name, values in peaks.items():
        base[name][: len(values)] = values
    return base


def _nearest_units(spec, layer, budget):
    costs = {k: widen_layer(spec, layer=layer, units=k).params_added for k in range(1, 60)}
    return min(costs, key=lambda k: (abs(costs[k] - budget), k))


def test_round_budget_is_a_fraction_of_the_parameters():
    assert round_budget(TINY_CNN) == round(0.1 * count_parameters(TINY_CNN))
    assert round_budget(TINY_CNN, 0.25) == round(0.25 * count_parameters(TINY_CNN))
    assert round_budget(TINY_CNN, 1e-9) == 1
    for bad in (0, -0.1, float("nan"), "0.1"):
        with pytest.raises(ValueError, match="fraction must be a positive number"):
            round_budget(TINY_CNN, bad)


def test_unit_layer_of_follows_activations_back_to_their_layer():
    assert [unit_layer_of(TINY_CNN, name) for name in ("conv1", "relu1", "pool1", "relu2")] == [
        "conv1", "conv1", "conv1", "conv2",
    ]  # fmt: skip
    # flatten and everything after the output layer carry no widenable layer's units
    assert unit_layer_of(TINY_CNN, "flatten") is None
    assert unit_layer_of(TINY_CNN, "fc_out") is None
    assert unit_layer_of(TINY_CNN, "relu3") == "fc1"


def test_widen_rule_picks_the_layer_with_the_most_selective_units():
    # Given a profile where relu2 (conv2's units) holds the best curvature unit, relu3 second
    profile = _profile(_curvature(relu1=[0.3], relu2=[0.2, 0.9], relu3=[0.6, 0.5]))
    budget = round_budget(TINY_CNN)
    # When the widen rule is asked
    choice = guided_change(TINY_CNN, profile, "curvature", budget=budget)
    # Then it widens conv2 by the units whose cost is nearest the budget
    units = _nearest_units(TINY_CNN, "conv2", budget)
    expected = widen_layer(TINY_CNN, layer="conv2", units=units)
    assert (choice.rule, choice.operation) == ("widen_most_selective", "widen_layer")
    assert choice.parameters == {"layer": "conv2", "units": units}
    assert choice.layer == "conv2"
    assert choice.params_added == expected.params_added
    assert choice.params_before == count_parameters(TINY_CNN)
    assert apply_change(TINY_CNN, choice.operation, choice.parameters).spec == expected.spec
    # and its inputs are the per-layer scores it compared (top 10%, at least one unit)
    scores = {row["profiled_layer"]: row["score"] for row in choice.inputs}
    assert scores == pytest.approx({"relu1": 0.3, "relu2": 0.9, "relu3": 0.55})
    assert [row["layer"] for row in choice.inputs] == ["conv1", "conv2", "fc1"]
    assert choice.reason == (
        "relu2 holds the most curvature-selective units (its top 1 score 0.90 on average vs "
        f"0.55 in relu3): widen conv2 by {units} unit{'s' if units > 1 else ''}, "
        f"{expected.params_added:+,} parameters of a {budget:,} budget"
    )
    assert choice.rule_text == GUIDED_RULES["widen_most_selective"]
    assert json.loads(json.dumps(choice.to_dict())) == choice.to_dict()


def test_widen_rule_reads_a_profile_object_and_a_class_concept():
    # Given class means where fc1's units (relu3) respond to "star" only
    means = np.full((4, 16), 0.5)
    means[3, :4] = 5.0
    profile = ActivationProfile.from_dict(_profile(_curvature(), {"relu3": means}))
    choice = guided_change(TINY_CNN, profile, "star", budget=300)
    assert choice.parameters["layer"] == "fc1"
    assert choice.inputs[2]["top_units"] == 2


def test_widen_rule_breaks_ties_towards_the_earlier_layer():
    profile = _profile(_curvature(relu1=[0.8], relu2=[0.8], relu3=[0.8, 0.8]))
    assert guided_change(TINY_CNN, profile, "curvature", budget=200).parameters["layer"] == "conv1"


def test_widen_rule_always_adds_at_least_one_unit():
    profile = _profile(_curvature(relu2=[0.9]))
    choice = guided_change(TINY_CNN, profile, "curvature", budget=1)
    assert choice.parameters == {"layer": "conv2", "units": 1}
    assert choice.params_added == widen_layer(TINY_CNN, layer="conv2", units=1).params_added


def _clustered(width: int, rng) -> np.ndarray:
    """Class means [4, width] whose units fall into two exact response patterns (scaled)."""
    patterns = np.array([[1.0, 0.2, 0.1, 0.1], [0.1, 0.1, 0.3, 1.0]]).T  # [4, 2]
    return patterns[:, np.arange(width) % 2] * rng.uniform(0.5, 2.0, width)


def test_cluster_rule_inserts_a_linear_layer_after_the_tightest_layer():
    # Given relu3's units in two exact response patterns and random patterns elsewhere
    rng = np.random.default_rng(1)
    profile = _profile(_curvature(relu2=[0.9]), {"relu3": _clustered(16, rng)})
    budget = 400
    # When the clustering rule is asked
    choice = guided_change(
        TINY_CNN, profile, "curvature", budget=budget, rule=INSERT_AFTER_TIGHTEST_CLUSTERS
    )
    # Then it inserts a linear layer after relu3, sized nearest the budget
    costs = {
        k: insert_layer(
            TINY_CNN,
            after="relu3",
            layer={"name": "fc_added1", "type": "linear", "out_features": k},
        ).params_added
        for k in range(1, 80)
    }
    width = min(costs, key=lambda k: (abs(costs[k] - budget), k))
    assert choice.operation == "insert_layer"
    assert choice.parameters == {
        "after": "relu3", "layer": {"name": "fc_added1", "type": "linear", "out_features": width},
    }  # fmt: skip
    assert choice.params_added == costs[width]
    silhouettes = {row["profiled_layer"]: row["silhouette"] for row in choice.inputs}
    assert silhouettes["relu3"] == pytest.approx(1.0)
    assert max(silhouettes["relu1"], silhouettes["relu2"]) < 1.0
    assert choice.reason.startswith(
        "relu3's units cluster most tightly into 2 groups (silhouette 1.00"
    )
    assert json.loads(json.dumps(choice.to_dict())) == choice.to_dict()


def test_cluster_rule_inserts_a_conv_where_the_input_is_spatial():
    rng = np.random.default_rng(2)
    profile = _profile(_curvature(), {"relu2": _clustered(6, rng)})
    choice = guided_change(
        TINY_CNN, profile, "curvature", budget=500, rule=INSERT_AFTER_TIGHTEST_CLUSTERS
    )
    layer = choice.parameters["layer"]
    assert choice.parameters["after"] == "relu2"
    assert {key: layer[key] for key in ("name", "type", "kernel_size", "padding")} == {
        "name": "conv_added1", "type": "conv2d", "kernel_size": 3, "padding": 1,
    }  # fmt: skip
    assert (
        apply_change(TINY_CNN, "insert_layer", choice.parameters).params_added
        == choice.params_added
    )


def test_cluster_tightness_is_the_silhouette_of_the_clustering():
    rng = np.random.default_rng(3)
    profile = _profile(_curvature(), {"relu3": _clustered(16, rng)})
    assert cluster_tightness(profile, "relu3", 2) == pytest.approx(1.0)
    with pytest.raises(ChangeError) as error:
        cluster_tightness(profile, "relu1", 9)
    assert "n_clusters" in error.value.field_errors


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"concept": "colour"}, "concept"),
        ({"rule": "guess"}, "rule"),
        ({"budget": 0}, "budget"),
        ({"budget": True}, "budget"),
    ],
)
def test_guided_change_refusals(kwargs, field):
    arguments = {"concept": "curvature", "budget": 100, **kwargs}
    concept = arguments.pop("concept")
    with pytest.raises(ChangeError) as error:
        guided_change(TINY_CNN, _profile(_curvature()), concept, **arguments)
    assert list(error.value.field_errors) == [field]


def test_guided_change_refuses_a_profile_of_another_model():
    profile = _profile(_curvature())
    profile["layers"]["relu9"] = profile["layers"].pop("relu3")
    with pytest.raises(ChangeError, match=r"layers the spec lacks \(relu9\)") as error:
        guided_change(TINY_CNN, profile, "curvature", budget=100)
    assert list(error.value.field_errors) == ["profile"]


def test_guided_change_needs_a_profiled_hidden_layer():
    profile = _profile(_curvature())
    profile["layers"] = {"fc_out": _layer(np.ones((4, 4)), [0.1] * 4)}
    with pytest.raises(ChangeError, match="no profiled layer carries") as error:
        guided_change(TINY_CNN, profile, "curvature", budget=100)
    assert list(error.value.field_errors) == ["profile"]


@pytest.mark.parametrize("n_clusters", [1, 0, 2.0, True])
def test_cluster_rule_needs_at_least_two_clusters(n_clusters):
    with pytest.raises(ChangeError, match="n_clusters must be an integer >= 2") as error:
        guided_change(TINY_CNN, _profile(_curvature()), "curvature", budget=100,
                      rule=INSERT_AFTER_TIGHTEST_CLUSTERS, n_clusters=n_clusters)  # fmt: skip
    assert list(error.value.field_errors) == ["n_clusters"]


def test_cluster_rule_needs_more_units_than_clusters():
    with pytest.raises(ChangeError, match="more than 16 units") as error:
        guided_change(TINY_CNN, _profile(_curvature()), "curvature", budget=100,
                      rule=INSERT_AFTER_TIGHTEST_CLUSTERS, n_clusters=16)  # fmt: skip
    assert list(error.value.field_errors) == ["n_clusters"]


def test_guided_rules_read_a_profile_the_engine_stored():
    # Given a stored (JSON) profile of a seeded TINY_CNN on tiny shapes
    from analysis.engine.activations import profile_activations
    from analysis.engine.builder import build_model, set_seed
    from analysis.engine.profiles import localise_concept
    from tests.analysis.engine_helpers import tiny_shapes

    set_seed(0)
    data = tiny_shapes(64)
    stored = json.loads(
        json.dumps(profile_activations(build_model(TINY_CNN), data, layers=None).to_dict())
    )
    concept = data.class_names[0]
    # When both rules read it
    widen = guided_change(TINY_CNN, stored, concept, budget=round_budget(TINY_CNN))
    insert = guided_change(
        TINY_CNN,
        stored,
        concept,
        budget=round_budget(TINY_CNN),
        rule=INSERT_AFTER_TIGHTEST_CLUSTERS,
    )
    # Then the widen rule widens the layer behind localise_concept's best hidden layer
    hidden = [row for row in localise_concept(stored, concept) if row["layer"] != "fc_out"]
    assert widen.parameters["layer"] == unit_layer_of(TINY_CNN, hidden[0]["layer"])
    best = max(insert.inputs, key=lambda row: row["silhouette"])["profiled_layer"]
    assert insert.parameters["after"] == best
    for choice in (widen, insert):
        assert apply_change(TINY_CNN, choice.operation, choice.parameters).params_added == (
            choice.params_added
        )
