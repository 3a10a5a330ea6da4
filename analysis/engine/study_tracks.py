"""The control tracks of a study: the random tweak and "just make it bigger", at equal budget.

- random: any operation at any place that adds the round's budget (changes.random_any_change),
  drawn from a seed the study records;
- uniform: every unit-holding layer widened by the same factor, so the model grows evenly by
  the round's budget.

Both answer with a JSON-able record stored with the round. Torch-free, like changes.py.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from typing import Any

from analysis.engine.changes import (
    ANY_CHANGE_POLICY,
    ChangeError,
    ChangeResult,
    random_any_change,
    widen_layer,
)
from analysis.engine.specs import copy_spec, count_parameters, layer_widths, unit_layers
from analysis.engine.transformer_changes import (
    TRANSFORMER_ANY_CHANGE_POLICY,
    add_heads,
    widen_mlp,
)
from analysis.engine.transformer_specs import (
    TransformerSpecError,
    count_transformer_parameters,
    is_transformer_spec,
    transformer_unit_layers,
)

DEFAULT_TOLERANCE = 0.05
# 2^layers roundings are tried per factor; past this many layers only "all down" and "all up".
MAX_ROUNDED_LAYERS = 8


@dataclass
class TrackChange:
    """A control track's change for one round; to_dict() is what a study stores.

    changes: the widen/insert/remove steps, each {"operation", "parameters"}, valid for
    apply_change in order; spec: the spec after all of them.
    """

    track: str
    policy: str
    changes: list[dict[str, Any]]
    spec: dict
    budget: int
    tolerance: float
    params_before: int
    params_added: int
    description: str
    seed: int | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)
    factor: float | None = None
    widths: dict[str, list[int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Out: a JSON-able dict of all fields."""
        return asdict(self)


def _check_budget(budget: Any, tolerance: Any) -> None:
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
        raise ChangeError(
            f"budget must be a positive integer, got {budget!r}",
            {"budget": "must be a positive integer"},
        )
    if not isinstance(tolerance, int | float) or not 0 <= tolerance < 1:
        raise ChangeError(
            f"tolerance must be a number in [0, 1), got {tolerance!r}",
            {"tolerance": "must be a number in [0, 1)"},
        )


def random_track_change(
    spec: dict,
    budget: int,
    *,
    seed: int,
    tolerance: float = DEFAULT_TOLERANCE,
    exclude: tuple[str, dict] | None = None,
) -> TrackChange:
    """The random track's change: any operation at any place adding `budget` parameters.

    In: the track's current spec, the round's budget, the seed the study records, the relative
    tolerance, and optionally an (operation, parameters) change of `spec` whose model is left
    out of the draw (changes.random_any_change's `exclude`). Out: TrackChange with the drawn
    change and every candidate it was drawn from. Deterministic from the seed. Raises
    ChangeError (field "budget") when nothing fits.
    """
    _check_budget(budget, tolerance)
    control = random_any_change(spec, budget, seed=seed, tolerance=tolerance, exclude=exclude)
    result, parameters = control.result, control.parameters
    width = parameters.get("layer", {}) if control.operation == "insert_layer" else {}
    size = width.get("out_channels", width.get("out_features"))
    description = (
        f"{result.description}{f' ({size} units)' if size else ''}, {result.params_added:+,} "
        f"parameters of a {budget:,} budget; drawn with seed {seed} from "
        f"{len(control.candidates)} candidates"
    )
    result = replace(result, description=description)
    policy = TRANSFORMER_ANY_CHANGE_POLICY if is_transformer_spec(spec) else ANY_CHANGE_POLICY
    return _track_change(
        "random", policy, [(control.operation, parameters)], spec,
        result, budget, tolerance, seed=seed, candidates=control.candidates,
    )  # fmt: skip


def _track_change(track, policy, steps, spec, result: ChangeResult, budget, tolerance, **extra):
    changes = [
        {"operation": operation, "parameters": parameters} for operation, parameters in steps
    ]
    return TrackChange(
        track=track, policy=policy, changes=changes, spec=result.spec, budget=budget,
        tolerance=tolerance, params_before=result.params_before,
        params_added=result.params_added, description=result.description, **extra,
    )  # fmt: skip


# --- uniform --------------------------------------------------------------------------------

UNIFORM_POLICY = (
    "every unit-holding layer is widened by the same factor f: each new width is w*f rounded "
    "down or up to a whole unit (never below w); of the widths that add the budget's "
    "parameters within the tolerance, those whose layers' growth factors are most nearly "
    "equal, then those nearest the budget"
)


def _widened(spec: dict, widths: dict[str, int]) -> dict:
    new_spec = copy_spec(spec)
    for layer in new_spec["layers"]:
        if layer["name"] in widths:
            layer["out_channels" if layer["type"] == "conv2d" else "out_features"] = widths[
                layer["name"]
            ]
    return new_spec


def _roundings(widths: dict[str, int], factor: Fraction) -> list[dict[str, int]]:
    """Out: the width maps within one unit of w*factor for every layer, none below w."""
    choices = []
    for width in widths.values():
        scaled = width * factor
        low, high = math.floor(scaled), math.ceil(scaled)
        choices.append(sorted({max(width, low), max(width, high)}))
    if len(widths) > MAX_ROUNDED_LAYERS:
        combos = [
            tuple(options[0] for options in choices),
            tuple(options[-1] for options in choices),
        ]
    else:
        combos = list(itertools.product(*choices))
    return [dict(zip(widths, combo, strict=True)) for combo in combos]


def _growth_spread(widths: dict[str, int], new_widths: dict[str, int]) -> Fraction:
    """Out: how unequal the layers' growth factors are, max(n/w) - min(n/w); 0 when every
    layer grew by exactly the same factor."""
    growth = [Fraction(new_widths[name], width) for name, width in widths.items()]
    return max(growth) - min(growth)


def _uniform_options(spec: dict, widths: dict[str, int], upper: float):
    """Yield (factor, new widths, params added) for factors between the points where some
    layer's w*f crosses a whole number, until even rounding every layer down costs too much."""
    before = count_parameters(spec)
    step, seen = 1, set()
    while True:
        points = sorted({Fraction(n, w) for w in widths.values() for n in range(w, w * step + 1)})
        for low, high in itertools.pairwise(points):
            factor = (low + high) / 2
            if factor <= 1 or factor in seen:
                continue
            seen.add(factor)
            floors = {name: max(w, math.floor(w * factor)) for name, w in widths.items()}
            if count_parameters(_widened(spec, floors)) - before > upper:
                return
            for option in _roundings(widths, factor):
                if option != widths:
                    yield factor, option, count_parameters(_widened(spec, option)) - before
        step += 1


def uniform_track_change(
    spec: dict, budget: int, *, tolerance: float = DEFAULT_TOLERANCE
) -> TrackChange:
    """The uniform track's change: every unit-holding layer widened by the same factor.

    In: the track's current spec, the round's budget, the relative tolerance. Out: TrackChange
    whose `changes` are widen_layer steps (one per layer that grew, in spec order), `widths`
    {layer: [before, after]} and `factor` the common factor (UNIFORM_POLICY). The width maps
    within the tolerance whose growth factors n/w are most nearly equal
    win, then the nearest the budget, then the smallest factor. Raises ChangeError (field
    "budget") when no common factor adds the budget within the tolerance.
    """
    _check_budget(budget, tolerance)
    if is_transformer_spec(spec):
        return transformer_uniform_track_change(spec, budget, tolerance=tolerance)
    widths = {name: layer_widths(spec)[name] for name in unit_layers(spec)}
    if not widths:
        raise ChangeError(
            "the model has no unit-holding layer to widen", {"budget": "nothing to widen"}
        )
    options = _uniform_options(spec, widths, budget * (1 + tolerance))
    factor, new_widths = _most_even_within_budget(
        options, widths, budget, tolerance,
        what="common widening factor", units="whole units of these layers",
        field_error="no uniform widening fits this budget",
    )  # fmt: skip
    return _uniform_result(spec, widths, factor, new_widths, budget, tolerance)


def _most_even_within_budget(options, widths, budget, tolerance, *, what, units, field_error):
    """The uniform tracks' choice among (factor, new widths, params added) options: within the
    tolerance, the most even growth, then the nearest the budget (options come smallest factor
    first, so ties keep the smallest). Out: (factor, new widths). Raises ChangeError (field
    "budget") naming the nearest sizes when none fits."""
    best, below, above = None, None, None
    for factor, option, added in options:
        gap = abs(added - budget)
        key = (_growth_spread(widths, option), gap)
        if gap <= tolerance * budget and (best is None or key < best[0]):
            best = (key, factor, option)
        below = max(below or added, added) if added < budget else below
        above = min(above or added, added) if added > budget else above
    if best is None:
        nearest = " and ".join(f"{value:+,}" for value in (below, above) if value is not None)
        raise ChangeError(
            f"no {what} adds {budget:+,} parameters within {tolerance:.0%}: "
            f"{units} step past the budget (nearest: {nearest or 'none'})",
            {"budget": field_error},
        )
    return best[1], best[2]


def _uniform_result(spec, widths, factor, new_widths, budget, tolerance) -> TrackChange:
    steps, current = [], spec
    for name, width in widths.items():
        if new_widths[name] > width:
            parameters = {"layer": name, "units": new_widths[name] - width}
            current = widen_layer(current, **parameters).spec
            steps.append(("widen_layer", parameters))
    grown = ", ".join(f"{name} {widths[name]}->{new_widths[name]}" for name in widths)
    added = count_parameters(current) - count_parameters(spec)
    description = (
        f"widen every unit-holding layer by x{float(factor):.4g} ({grown}), {added:+,} parameters"
    )
    before = count_parameters(spec)
    result = ChangeResult(current, before, before + added, added, description, "")
    return _track_change(
        "uniform", UNIFORM_POLICY, steps, spec, result, budget, tolerance,
        factor=round(float(factor), 6),
        widths={name: [widths[name], new_widths[name]] for name in widths},
    )  # fmt: skip


# --- uniform, for transformers ---------------------------------------------------------------

TRANSFORMER_UNIFORM_POLICY = (
    "every block grows by the same factor f: each attention layer's heads and each MLP's "
    "neurons become n*f rounded down or up to a whole head or neuron (never below n); of the "
    "sizes that add the budget's parameters within the tolerance, those whose layers' growth "
    "factors are most nearly equal, then those nearest the budget (heads are coarse: in a "
    "model of few heads the nearest equal growth may widen only the MLPs, or add the same "
    "whole number of heads everywhere)"
)


def _transformer_grown(spec: dict, sizes: dict[str, int]) -> dict:
    """The spec with each "blocks.{i}.attn" holding sizes[layer] heads and each
    "blocks.{i}.mlp" sizes[layer] neurons."""
    new_spec = copy_spec(spec)
    for layer, size in sizes.items():
        _, block, part = layer.split(".")
        new_spec["blocks"][int(block)]["n_heads" if part == "attn" else "d_mlp"] = size
    return new_spec


def _transformer_cost(spec: dict, sizes: dict[str, int], before: int) -> int | None:
    """Parameters the sizes add, or None for a model past the spec's bounds (too many heads)."""
    try:
        return count_transformer_parameters(_transformer_grown(spec, sizes)) - before
    except TransformerSpecError:
        return None


def _transformer_uniform_options(spec: dict, widths: dict[str, int], upper: float):
    """Yield (factor, new sizes, params added) as _uniform_options does for CNNs, over the
    attention layers' heads and the MLPs' neurons."""
    before = count_transformer_parameters(spec)
    step, seen = 1, set()
    while True:
        points = sorted({Fraction(n, w) for w in widths.values() for n in range(w, w * step + 1)})
        for low, high in itertools.pairwise(points):
            factor = (low + high) / 2
            if factor <= 1 or factor in seen:
                continue
            seen.add(factor)
            floors = {name: max(w, math.floor(w * factor)) for name, w in widths.items()}
            floor_cost = _transformer_cost(spec, floors, before)
            if floor_cost is None or floor_cost > upper:
                return
            for option in _roundings(widths, factor):
                added = _transformer_cost(spec, option, before)
                if option != widths and added is not None:
                    yield factor, option, added
        step += 1


def transformer_uniform_track_change(
    spec: dict, budget: int, *, tolerance: float = DEFAULT_TOLERANCE
) -> TrackChange:
    """The uniform track's change for a transformer (TRANSFORMER_UNIFORM_POLICY): heads added
    to every attention layer and neurons to every MLP by one common factor.

    In: the track's current transformer spec, the round's budget, the relative tolerance.
    Out: TrackChange whose `changes` are add_heads / widen_mlp steps in block order, `widths`
    {layer: [before, after]} ("blocks.{i}.attn" in heads, "blocks.{i}.mlp" in neurons) and
    `factor` the common factor. Raises ChangeError (field "budget") when no common factor
    adds the budget within the tolerance (whole heads may step past it).
    """
    _check_budget(budget, tolerance)
    widths = transformer_unit_layers(spec)
    options = _transformer_uniform_options(spec, widths, budget * (1 + tolerance))
    factor, new_sizes = _most_even_within_budget(
        options, widths, budget, tolerance,
        what="common growth factor", units="whole heads and neurons",
        field_error="no uniform growth fits this budget",
    )  # fmt: skip
    return _transformer_uniform_result(spec, widths, factor, new_sizes, budget, tolerance)


def _transformer_uniform_result(spec, widths, factor, new_sizes, budget, tolerance):
    steps, current = [], spec
    for layer, size in widths.items():
        if new_sizes[layer] <= size:
            continue
        block, grown = int(layer.split(".")[1]), new_sizes[layer] - size
        if layer.endswith(".attn"):
            parameters = {"block": block, "heads": grown}
            current = add_heads(current, **parameters).spec
            steps.append(("add_heads", parameters))
        else:
            parameters = {"block": block, "units": grown}
            current = widen_mlp(current, **parameters).spec
            steps.append(("widen_mlp", parameters))
    grown_words = ", ".join(f"{layer} {widths[layer]}->{new_sizes[layer]}" for layer in widths)
    before = count_transformer_parameters(spec)
    added = count_transformer_parameters(current) - before
    description = (
        f"grow every block by x{float(factor):.4g} (heads and MLP neurons: {grown_words}), "
        f"{added:+,} parameters"
    )
    result = ChangeResult(current, before, before + added, added, description, "")
    return _track_change(
        "uniform", TRANSFORMER_UNIFORM_POLICY, steps, spec, result, budget, tolerance,
        factor=round(float(factor), 6),
        widths={layer: [widths[layer], new_sizes[layer]] for layer in widths},
    )  # fmt: skip


__all__ = [
    "DEFAULT_TOLERANCE",
    "TRANSFORMER_UNIFORM_POLICY",
    "UNIFORM_POLICY",
    "TrackChange",
    "random_track_change",
    "transformer_uniform_track_change",
    "uniform_track_change",
]
