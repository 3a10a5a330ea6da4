"""Planning a study's round: guided first, then the controls at the guided candidate's cost."""

import json

import numpy as np
import pytest

from analysis.engine.changes import apply_change, widen_layer
from analysis.engine.specs import count_parameters
from analysis.engine.study_plans import (
    probe_layers,
    random_track_seed,
    rejected_candidates,
    study_base_spec,
    study_round_plan,
)
from analysis.engine.study_rules import guided_change, round_budget
from analysis.engine.study_settings import study_config_clean
from analysis.engine.study_tracks import random_track_change, uniform_track_change
from kb.demo import SHAPES_CNN_SPEC

SHAPES_CNN = SHAPES_CNN_SPEC
WIDTHS = {"relu1": 8, "relu2": 12, "relu3": 32}  # the shapes CNN's probed layers
CLASSES = ["line", "arc", "circle", "corner"]


def _profile(peaks: dict[str, list[float]], widths=WIDTHS) -> dict:
    """A stored profile of the shapes CNN: low curvature correlations except `peaks`."""
    rng = np.random.default_rng(0)
    layers = {}
    for name, width in widths.items():
        curvature = [0.05] * width
        curvature[: len(peaks.get(name, []))] = peaks.get(name, [])
        means = rng.uniform(0.1, 1.0, (4, width))
        layers[name] = {
            "n": 40, "mean": means.mean(axis=0).tolist(), "variance": [1.0] * width,
            "maximum": means.max(axis=0).tolist(), "fraction_inactive": [0.0] * width,
            "class_means": means.tolist(), "class_counts": [10] * 4,
            "correlations": {"curvature": curvature, "orientation": [0.0] * width},
        }  # fmt: skip
    return {"n_examples": 40, "class_names": CLASSES,
            "attribute_names": ["curvature", "orientation"], "layers": layers}  # fmt: skip


def _config(**settings) -> dict:
    raw = {"concept": "curvature", "seeds": 3, "train": {"epochs": 1, "learning_rate": 0.003}}
    return study_config_clean({**raw, **settings}, spec=SHAPES_CNN)


def _current(config, spec=SHAPES_CNN, profile=None) -> dict:
    return {track: {"spec": spec, "profile": profile if track == "guided" else None}
            for track in config["tracks"]}  # fmt: skip


def _replay(spec: dict, operation: str, parameters: dict) -> dict:
    steps = parameters["steps"] if operation == "manual" else [
        {"operation": operation, "parameters": parameters}
    ]  # fmt: skip
    for step in steps:
        spec = apply_change(spec, step["operation"], step["parameters"]).spec
    return spec


def test_probe_layers_are_the_activation_after_each_widenable_layer():
    assert probe_layers(SHAPES_CNN) == ["relu1", "relu2", "relu3"]
    # A layer with no activation after it is profiled itself.
    inserted = apply_change(SHAPES_CNN, "insert_layer", {
        "after": "relu2",
        "layer": {"name": "conv_added1", "type": "conv2d", "out_channels": 3, "kernel_size": 3,
                  "padding": 1},
    }).spec  # fmt: skip
    assert probe_layers(inserted) == ["relu1", "relu2", "conv_added1", "relu3"]
    plain = {"input_shape": [6], "num_classes": 3, "layers": [
        {"name": "fc1", "type": "linear", "out_features": 5},
        {"name": "fc_out", "type": "linear", "out_features": 3},
    ]}  # fmt: skip
    assert probe_layers(plain) == ["fc1"]


def test_random_track_seed_is_recorded_derivation_of_study_seed_and_round():
    seeds = [random_track_seed(0, index) for index in range(1, 11)]
    assert seeds == [random_track_seed(0, index) for index in range(1, 11)]
    assert len(set(seeds)) == 10
    assert all(0 <= seed <= 2**31 - 1 for seed in seeds)
    assert random_track_seed(1, 1) != random_track_seed(0, 1)
    expected = int(np.random.SeedSequence([5, 3]).generate_state(1)[0]) & (2**31 - 1)
    assert random_track_seed(5, 3) == expected


def test_guided_is_planned_from_the_profile_and_the_controls_spend_what_it_adds():
    # Given a profile in which conv2's units (relu2) hold the most curvature-selective units
    config = _config()
    profile = _profile({"relu2": [0.2, 0.9], "relu3": [0.5]})
    # When round 1 is planned
    planned = study_round_plan(config, 1, _current(config, profile=profile))
    assert list(planned) == ["guided", "random", "uniform"]
    base = study_base_spec(config, SHAPES_CNN)
    # Then the guided track widens conv2 within the round's budget
    budget = round_budget(base, 0.1)
    choice = guided_change(base, profile, "curvature", budget=budget)
    guided = planned["guided"]
    assert guided["plan"] == choice.to_dict()
    assert (guided["operation"], guided["change_parameters"]) == ("widen_layer", choice.parameters)
    assert choice.parameters["layer"] == "conv2"
    expected = widen_layer(base, layer="conv2", units=choice.parameters["units"])
    assert guided["spec"] == expected.spec
    assert guided["params_added"] == expected.params_added
    assert guided["parameters"] == count_parameters(expected.spec)
    assert guided["mechanism"] == {"layer": "conv2", "added_units": list(expected.added_units),
                                   "concept": "curvature"}  # fmt: skip
    # and the controls use the guided candidate's actual cost as their budget, within 5%
    added = guided["params_added"]
    seed = random_track_seed(0, 1)
    random_change = random_track_change(base, added, seed=seed, tolerance=0.05)
    uniform_change = uniform_track_change(base, added, tolerance=0.05)
    for track, change in (("random", random_change), ("uniform", uniform_change)):
        entry = planned[track]
        assert entry["plan"]["budget"] == added
        assert entry["plan"]["budget_source"] == "guided"
        assert entry["spec"] == change.spec
        assert entry["params_added"] == change.params_added
        assert abs(entry["params_added"] - added) <= 0.05 * added
        assert entry["parameters"] == count_parameters(entry["spec"])
        assert entry["mechanism"] is None
        assert _replay(base, entry["operation"], entry["change_parameters"]) == entry["spec"]
    assert planned["random"]["plan"]["seed"] == seed
    assert json.loads(json.dumps(planned, allow_nan=False)) == planned


def test_every_candidate_trains_with_the_study_training_settings():
    config = _config()
    planned = study_round_plan(config, 2, _current(config, profile=_profile({"relu3": [0.9]})))
    for entry in planned.values():
        assert entry["spec"]["hyperparameters"] == {
            **SHAPES_CNN["hyperparameters"], "epochs": 1, "learning_rate": 0.003,
        }  # fmt: skip


def test_planning_is_deterministic_and_the_random_draw_changes_with_the_round():
    config = _config(tracks=["guided", "random"])
    current = _current(config, profile=_profile({"relu1": [0.7]}))
    first = study_round_plan(config, 1, current)
    assert study_round_plan(config, 1, current) == first
    assert list(first) == ["guided", "random"]
    draws = {json.dumps(study_round_plan(config, index, current)["random"]["change_parameters"],
                        sort_keys=True) for index in range(1, 6)}  # fmt: skip
    assert len(draws) > 1


def test_a_guided_track_without_a_profile_sits_out_and_the_controls_size_their_own_budget():
    # Given no profile, at 20%, where no common widening factor meets the shapes CNN's budget
    config = _config(budget_fraction=0.2)
    planned = study_round_plan(config, 1, _current(config, profile=None))
    base = study_base_spec(config, SHAPES_CNN)
    own = round_budget(base, 0.2)
    # Then the guided track sits the round out with the reason keyed by field
    assert planned["guided"] == {
        "spec": None,
        "plan": {"error": "the guided track's current model has no profile",
                 "field_errors": {"profile": "profile the current model first (its first-seed "
                                  "job)"}, "budget": own},
        "parameters": count_parameters(base), "params_added": 0, "mechanism": None,
        "operation": "", "change_parameters": {},
    }  # fmt: skip
    # the random track spends its own round budget
    assert planned["random"]["plan"]["budget"] == own
    assert planned["random"]["plan"]["budget_source"] == "own"
    assert abs(planned["random"]["params_added"] - own) <= 0.05 * own
    # and the uniform track, which cannot meet that budget, sits out too, saying why
    uniform = planned["uniform"]
    assert uniform["spec"] is None
    assert uniform["plan"]["field_errors"] == {"budget": "no uniform widening fits this budget"}
    assert uniform["plan"]["error"].startswith(f"no common widening factor adds {own:+,}")
    assert (uniform["plan"]["budget"], uniform["plan"]["budget_source"]) == (own, "own")
    assert uniform["parameters"] == count_parameters(base)


def test_a_profile_of_another_model_sits_the_guided_track_out():
    config = _config()
    stale = _profile({"relu2": [0.9]}, widths={"relu1": 8, "relu9": 4})
    planned = study_round_plan(config, 1, _current(config, profile=stale))
    assert planned["guided"]["spec"] is None
    assert planned["guided"]["plan"]["field_errors"] == {
        "profile": "the profile does not belong to this spec"
    }
    assert planned["random"]["plan"]["budget_source"] == "own"


def test_a_multi_step_uniform_change_is_recorded_as_one_manual_change():
    config = _config(tracks=["guided", "uniform"], budget_fraction=0.5)
    planned = study_round_plan(config, 1, _current(config, profile=_profile({"relu3": [0.9]})))
    uniform = planned["uniform"]
    assert uniform["operation"] == "manual"
    steps = uniform["change_parameters"]["steps"]
    assert len(steps) > 1
    assert steps == uniform["plan"]["changes"]
    assert {step["operation"] for step in steps} == {"widen_layer"}
    base = study_base_spec(config, SHAPES_CNN)
    assert _replay(base, "manual", uniform["change_parameters"]) == uniform["spec"]


def test_the_insertion_rule_has_no_added_units_to_check():
    config = _config(rule="insert_after_tightest_clusters")
    planned = study_round_plan(config, 1, _current(config, profile=_profile({})))
    assert planned["guided"]["operation"] == "insert_layer"
    assert planned["guided"]["mechanism"] is None


@pytest.mark.parametrize("index", [0, -1, True, 1.0])
def test_rounds_count_from_one(index):
    config = _config()
    with pytest.raises(ValueError, match="rounds count from 1"):
        study_round_plan(config, index, _current(config))


def test_every_track_needs_its_current_model():
    config = _config()
    with pytest.raises(ValueError, match="no current model for track"):
        study_round_plan(config, 1, {"guided": {"spec": SHAPES_CNN, "profile": None}})


def _rejected_rows(round_index: int, planned: dict, tracks=("guided", "uniform")) -> list[dict]:
    """Round `round_index`'s candidates of `tracks`, decided and not kept."""
    return [{"index": round_index, "track": track, "spec": planned[track]["spec"],
             "plan": planned[track]["plan"], "kept": False, "sat_out": False}
            for track in tracks]  # fmt: skip


def test_rejected_candidates_are_those_since_the_current_model_and_skip_sat_out_rounds():
    row = {"track": "guided", "plan": {"layer": "conv2"}, "sat_out": False}
    rows = [
        {**row, "index": 1, "spec": {"a": 1}, "kept": False},
        {**row, "index": 2, "spec": {"a": 2}, "kept": True},
        {**row, "index": 3, "spec": {"a": 3}, "kept": False},
        {**row, "index": 4, "spec": {"a": 2}, "kept": False, "sat_out": True},
        {**row, "track": "random", "index": 3, "spec": {"a": 9}, "kept": False},
    ]
    assert rejected_candidates(rows, "guided") == [{"round": 3, "spec": {"a": 3}, "layer": "conv2"}]
    assert rejected_candidates(rows, "uniform") == []


def test_after_a_rejection_the_guided_rule_tries_the_next_layer_and_repeats_sit_out():
    # Given round 1's guided (widen conv2) and uniform candidates were tried and not kept
    config = _config()
    profile = _profile({"relu2": [0.2, 0.9], "relu3": [0.5]})
    first = study_round_plan(config, 1, _current(config, profile=profile))
    assert first["guided"]["change_parameters"]["layer"] == "conv2"
    rows = _rejected_rows(1, first)
    current = _current(config, profile=profile)
    for track in current:
        current[track]["rejected"] = rejected_candidates(rows, track)
    # When round 2 is planned from the same current models
    second = study_round_plan(config, 2, current)
    # Then the guided rule ranks the layers left: fc1 (relu3) is next
    assert second["guided"]["change_parameters"]["layer"] == "fc1"
    assert second["guided"]["spec"] != first["guided"]["spec"]
    # and a control that would train the very same candidate again sits the round out
    budget = second["guided"]["params_added"]
    uniform = uniform_track_change(study_base_spec(config, SHAPES_CNN), budget, tolerance=0.05)
    if uniform.spec == first["uniform"]["spec"]:
        assert second["uniform"]["spec"] is None and second["uniform"]["plan"]["repeat_of"] == 1
    else:
        assert second["uniform"]["spec"] == uniform.spec


def test_a_rule_with_every_layer_rejected_sits_out_and_a_repeated_uniform_candidate_too():
    config = _config()
    profile = _profile({"relu2": [0.2, 0.9], "relu3": [0.5]})
    current = _current(config, profile=profile)
    rows = []
    for index in (1, 2, 3):
        planned = study_round_plan(config, index, current)
        rows += _rejected_rows(index, planned, tracks=("guided",))
        current["guided"]["rejected"] = rejected_candidates(rows, "guided")
    # conv1, conv2 and fc1 were each tried once; the rule has nothing new
    assert sorted(row["plan"]["layer"] for row in rows) == ["conv1", "conv2", "fc1"]
    planned = study_round_plan(config, 4, current)
    assert planned["guided"]["spec"] is None
    assert "tried from this model and not kept" in planned["guided"]["plan"]["error"]
    # With the guided track out, the uniform track sizes its own budget; the same candidate
    # rejected once is not trained again.
    uniform = planned["uniform"]
    current["uniform"]["rejected"] = rejected_candidates(
        [{"index": 4, "track": "uniform", "spec": uniform["spec"], "plan": uniform["plan"],
          "kept": False, "sat_out": False}], "uniform",
    )  # fmt: skip
    again = study_round_plan(config, 5, current)["uniform"]
    assert again["spec"] is None and again["plan"]["repeat_of"] == 4


def test_after_a_rejected_insertion_the_cluster_rule_inserts_after_another_layer():
    config = _config(rule="insert_after_tightest_clusters")
    profile = _profile({"relu2": [0.2, 0.9], "relu3": [0.5]})
    first = study_round_plan(config, 1, _current(config, profile=profile))
    current = _current(config, profile=profile)
    current["guided"]["rejected"] = rejected_candidates(
        _rejected_rows(1, first, ("guided",)), "guided"
    )
    second = study_round_plan(config, 2, current)
    assert second["guided"]["spec"] is not None
    assert second["guided"]["plan"]["layer"] != first["guided"]["plan"]["layer"]
    assert (
        second["guided"]["change_parameters"]["after"]
        != first["guided"]["change_parameters"]["after"]
    )


def test_a_repeated_guided_candidate_sits_out_but_the_controls_keep_its_budget():
    config = _config()
    profile = _profile({"relu2": [0.2, 0.9], "relu3": [0.5]})
    first = study_round_plan(config, 1, _current(config, profile=profile))
    current = _current(config, profile=profile)
    rows = _rejected_rows(1, first, ("guided",))
    # The rule's every other layer was tried too, so only a repeat of round 1 is left.
    rows[0]["plan"] = {**rows[0]["plan"], "layer": None}
    current["guided"]["rejected"] = rejected_candidates(rows, "guided")
    second = study_round_plan(config, 2, current)
    assert second["guided"]["spec"] is None and second["guided"]["plan"]["repeat_of"] == 1
    for track in ("random", "uniform"):
        assert second[track]["plan"]["budget"] == first["guided"]["params_added"]


def test_the_random_track_draws_again_instead_of_repeating_a_rejected_candidate():
    config = _config()
    profile = _profile({"relu2": [0.2, 0.9], "relu3": [0.5]})
    current = _current(config, profile=profile)
    planned = study_round_plan(config, 2, current)
    # Given round 2's very draw was tried in round 1 from the same model and not kept
    current["random"]["rejected"] = rejected_candidates(
        [{"index": 1, "track": "random", "spec": planned["random"]["spec"],
          "plan": planned["random"]["plan"], "kept": False, "sat_out": False}], "random",
    )  # fmt: skip
    again = study_round_plan(config, 2, current)["random"]
    assert again["spec"] is not None and again["spec"] != planned["random"]["spec"]
    assert again["plan"]["redraws"] >= 1
    assert abs(again["params_added"] - again["plan"]["budget"]) <= 0.05 * again["plan"]["budget"]
