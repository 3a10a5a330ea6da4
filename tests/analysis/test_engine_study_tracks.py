"""The control tracks: any-operation random changes and uniform widening, at equal budget.

Also covers changes.random_any_change, the "any operation at any place" policy (issue 13)
that the random track uses.
"""

import itertools
import json
import subprocess
import sys
from fractions import Fraction

import pytest

from analysis.engine.changes import ChangeError, apply_change, random_any_change
from analysis.engine.specs import count_parameters, layer_widths, unit_layers
from analysis.engine.study_rules import round_budget
from analysis.engine.study_tracks import random_track_change, uniform_track_change
from kb.demo import SHAPES_CNN_SPEC
from tests.analysis.engine_helpers import TINY_CNN, spec_copy

# The demo's shapes CNN, as seed_demo registers it.
SHAPES_CNN = SHAPES_CNN_SPEC
WIDE_MLP = {
    "input_shape": [20],
    "num_classes": 3,
    "layers": [
        {"name": "fc1", "type": "linear", "out_features": 24},
        {"name": "relu1", "type": "relu"},
        {"name": "fc2", "type": "linear", "out_features": 40},
        {"name": "relu2", "type": "relu"},
        {"name": "fc_out", "type": "linear", "out_features": 3},
    ],
}
# (spec, budget fraction) pairs where every track can meet the budget within 5%.
RANDOM_CASES = [
    (TINY_CNN, 0.1),
    (TINY_CNN, 0.3),
    (SHAPES_CNN, 0.1),
    (WIDE_MLP, 0.05),
    (WIDE_MLP, 0.2),
]
# Whole units make some budgets unreachable by one common factor (e.g. SHAPES_CNN at 20%).
UNIFORM_CASES = list(
    itertools.product([TINY_CNN, SHAPES_CNN, WIDE_MLP], [0.05, 0.1, 0.2, 0.3, 0.5])
)


def _replay(spec: dict, changes: list[dict]) -> dict:
    for change in changes:
        spec = apply_change(spec, change["operation"], change["parameters"]).spec
    return spec


@pytest.mark.parametrize(("spec", "fraction"), RANDOM_CASES)
def test_random_track_stays_within_five_percent_of_the_budget(spec, fraction):
    budget = round_budget(spec, fraction)
    drawn = [random_track_change(spec, budget, seed=seed) for seed in range(6)]
    # Every candidate it could draw, and so every seed's draw, is within 5% of the budget
    for candidate in drawn[0].candidates:
        result = apply_change(spec, candidate["operation"], candidate["parameters"])
        assert result.params_added == candidate["params_added"]
        assert abs(result.params_added - budget) <= 0.05 * budget
    for change in drawn:
        assert abs(change.params_added - budget) <= 0.05 * budget
        assert change.spec == _replay(spec, change.changes)
        assert count_parameters(change.spec) - count_parameters(spec) == change.params_added
        assert {"operation": change.changes[0]["operation"],
                "parameters": change.changes[0]["parameters"],
                "params_added": change.params_added} in change.candidates  # fmt: skip


def test_random_track_is_deterministic_from_the_seed_and_varies_across_seeds():
    budget = round_budget(SHAPES_CNN)
    first = random_track_change(SHAPES_CNN, budget, seed=11)
    again = random_track_change(spec_copy(SHAPES_CNN), budget, seed=11)
    assert first.to_dict() == again.to_dict()
    assert first.seed == 11
    assert first.description.endswith(
        f", {first.params_added:+,} parameters of a {budget:,} budget; drawn with seed 11 from "
        f"{len(first.candidates)} candidates"
    )
    drawn = {
        json.dumps(random_track_change(SHAPES_CNN, budget, seed=seed).changes) for seed in range(12)
    }
    assert len(drawn) > 1
    assert json.loads(json.dumps(first.to_dict())) == first.to_dict()


def test_random_any_change_covers_every_operation_kind_that_fits():
    # Removing pool1 makes everything after it bigger: a removal can spend a budget too
    spec = spec_copy(SHAPES_CNN)
    removal = apply_change(spec, "remove_layer", {"layer": "pool2"})
    control = random_any_change(spec, removal.params_added, seed=0)
    operations = {candidate["operation"] for candidate in control.candidates}
    assert "remove_layer" in operations
    assert {"layer": "pool2"} in [
        c["parameters"] for c in control.candidates if c["operation"] == "remove_layer"
    ]
    kinds = {
        random_any_change(SHAPES_CNN, round_budget(SHAPES_CNN), seed=seed).operation
        for seed in range(20)
    }
    assert kinds == {"widen_layer", "insert_layer"}


def test_random_any_change_inserts_layers_that_fit_where_they_go():
    control = random_any_change(SHAPES_CNN, round_budget(SHAPES_CNN), seed=0)
    inserts = [c["parameters"] for c in control.candidates if c["operation"] == "insert_layer"]
    by_type = {(p["after"], p["layer"]["type"]) for p in inserts}
    # conv2d where the input is [C, H, W], linear only after the flatten, never after the output
    assert all(kind == "conv2d" for after, kind in by_type if after in ("conv1", "relu1", "pool1"))
    assert all(kind == "linear" for after, kind in by_type if after in ("fc1", "relu3"))
    assert not any(after == "fc_out" for after, _ in by_type)


@pytest.mark.parametrize("budget", [1, 5])
def test_random_track_refuses_a_budget_too_small_for_any_change(budget):
    with pytest.raises(
        ChangeError, match=rf"no change adds \+{budget} parameters within 5%"
    ) as error:
        random_track_change(TINY_CNN, budget, seed=0)
    assert list(error.value.field_errors) == ["budget"]


@pytest.mark.parametrize(("budget", "tolerance"), [(0, 0.05), (-10, 0.05), (2.5, 0.05), (100, 1.5)])
def test_track_changes_refuse_bad_budgets(budget, tolerance):
    for make in (
        lambda: random_track_change(TINY_CNN, budget, seed=0, tolerance=tolerance),
        lambda: uniform_track_change(TINY_CNN, budget, tolerance=tolerance),
    ):
        with pytest.raises(ChangeError) as error:
            make()
        assert list(error.value.field_errors) == ["budget" if tolerance < 1 else "tolerance"]


def _brute_force_uniform(spec: dict, budget: int, tolerance: float):
    """The best (growth spread, gap to the budget) within the tolerance over all width maps
    one common factor f > 1 allows: |n - w*f| < 1 for every layer, i.e.
    max(1, (n-1)/w) < min((n+1)/w), n >= w; None when none is within the tolerance."""
    widths = {name: layer_widths(spec)[name] for name in unit_layers(spec)}
    before, best = count_parameters(spec), None
    ranges = [range(w, w + max(3, w // 2)) for w in widths.values()]
    for combo in itertools.product(*ranges):
        lows = [Fraction(n - 1, w) for n, w in zip(combo, widths.values(), strict=True)]
        highs = [Fraction(n + 1, w) for n, w in zip(combo, widths.values(), strict=True)]
        if combo == tuple(widths.values()) or max([Fraction(1), *lows]) >= min(highs):
            continue
        grown = spec_copy(spec)
        for layer in grown["layers"]:
            if layer["name"] in widths:
                key = "out_channels" if layer["type"] == "conv2d" else "out_features"
                layer[key] = combo[list(widths).index(layer["name"])]
        gap = abs(count_parameters(grown) - before - budget)
        growth = [Fraction(n, w) for n, w in zip(combo, widths.values(), strict=True)]
        key = (max(growth) - min(growth), gap)
        if gap <= tolerance * budget and (best is None or key < best):
            best = key
    return best


@pytest.mark.parametrize(("spec", "fraction"), UNIFORM_CASES)
def test_uniform_track_widens_every_layer_by_one_factor_within_five_percent(spec, fraction):
    budget = round_budget(spec, fraction)
    best = _brute_force_uniform(spec, budget, 0.05)
    if best is None:
        # Then no factor fits, and the track says so instead of missing the budget
        with pytest.raises(ChangeError, match="no common widening factor adds"):
            uniform_track_change(spec, budget)
        return
    change = uniform_track_change(spec, budget)
    assert abs(change.params_added - budget) <= 0.05 * budget
    growth = [Fraction(after, before) for before, after in change.widths.values()]
    assert (max(growth) - min(growth), abs(change.params_added - budget)) == best
    assert change.spec == _replay(spec, change.changes)
    assert set(change.widths) == set(unit_layers(spec))
    for before, after in change.widths.values():
        assert after >= before
        assert abs(after - before * change.factor) < 1
    assert [c["parameters"]["layer"] for c in change.changes] == [
        name for name, (before, after) in change.widths.items() if after > before
    ]
    assert change.track == "uniform"
    assert json.loads(json.dumps(change.to_dict())) == change.to_dict()


def test_uniform_track_says_why_no_factor_fits():
    # TINY_CNN's units cost 64 (conv1), 293 (conv2) and 101 (fc1) parameters: +188 falls
    # between +165 (conv1 and fc1 one unit each) and +202 (fc1 two units)
    with pytest.raises(ChangeError) as error:
        uniform_track_change(TINY_CNN, 188)
    assert str(error.value) == (
        "no common widening factor adds +188 parameters within 5%: whole units of these layers "
        "step past the budget (nearest: +165 and +202)"
    )
    assert list(error.value.field_errors) == ["budget"]
    assert _brute_force_uniform(TINY_CNN, 188, 0.05) is None


def test_study_modules_do_not_import_torch_or_django():
    code = (
        "import sys, analysis.engine.study_rules, analysis.engine.study_tracks, "
        "analysis.engine.study_stats; print('torch' in sys.modules, 'django' in sys.modules)"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert output.stdout.strip() == "False False"
