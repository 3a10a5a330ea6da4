"""Typed, validated changes to transformer specs and their budget-matched random controls.

The transformer family's counterpart of changes.py: insert a block (attention only, or
attention and MLP) after block i, remove a block, add heads to a block's attention, widen a
block's MLP, set a hyperparameter. changes.apply_change / validate_change_parameters /
random_control_change / random_any_change dispatch here when the spec is a transformer, so
callers keep one entry point for both families. Errors are ChangeError keyed by parameter
("block", "heads", ...). Every result names the units it added (ChangeResult.touched_layer and
added_units: the new heads or neurons; `added` maps each new or grown layer to its new units),
so a mechanism check can find them. Torch-free: the web process validates changes with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analysis.engine.changes import (
    ANY_OPERATION,
    CONTROL_HYPERPARAMETER_RANGES,
    CONTROL_POLICIES,
    SAME_OPERATION,
    ChangeError,
    ChangeResult,
    RandomControl,
    _draw_hyperparameter,
    _solve_affine,
    _within,
)
from analysis.engine.specs import DEFAULT_HYPERPARAMETERS, copy_spec, hyperparameter_problem
from analysis.engine.transformer_specs import (
    FIELD_BOUNDS,
    MAX_BLOCKS,
    TransformerConfig,
    TransformerSpecError,
    count_transformer_parameters,
    transformer_hyperparameters,
    validate_transformer_spec,
)

TRANSFORMER_OPERATIONS = (
    "insert_block",
    "remove_block",
    "add_heads",
    "widen_mlp",
    "set_hyperparameter",
)
# Operations only a transformer has (set_hyperparameter belongs to both families).
TRANSFORMER_ONLY_OPERATIONS = TRANSFORMER_OPERATIONS[:-1]
# The spec hyperparameters a transformer's training reads (transformer_training counts steps,
# which are a run setting, so "epochs" would change nothing).
TRANSFORMER_HYPERPARAMETERS = tuple(name for name in DEFAULT_HYPERPARAMETERS if name != "epochs")
TRANSFORMER_ANY_CHANGE_POLICY = (
    "every budget-matched (operation, place) pair is equally likely: add heads to any block, "
    "widen any block's MLP, insert an attention-only block or an attention + MLP block (as "
    "many heads as block 0) at any place, or remove any block, each sized to change the "
    "parameter count by the budget within the tolerance"
)
# (required, optional) parameters per operation.
_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "insert_block": (("after", "n_heads"), ("d_mlp",)),
    "remove_block": (("block",), ()),
    "add_heads": (("block", "heads"), ()),
    "widen_mlp": (("block", "units"), ()),
    "set_hyperparameter": (("name", "value"), ()),
}


@dataclass
class TransformerChangeResult(ChangeResult):
    """A ChangeResult whose `added` maps each new or grown layer ("blocks.{i}.attn" heads,
    "blocks.{i}.mlp" neurons) to its new unit indices, in the changed model's numbering."""

    added: dict[str, list[int]] = field(default_factory=dict)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_positive_int(value: Any) -> bool:
    return _is_int(value) and value >= 1


def _config(spec: dict) -> TransformerConfig:
    try:
        return validate_transformer_spec(spec)
    except TransformerSpecError as error:
        raise ChangeError(f"the spec is invalid: {error}", {"spec": str(error)}) from error


def _block_index(config: TransformerConfig, block: Any, field_name: str = "block") -> int:
    last = config.n_layers - 1
    if not _is_int(block) or not 0 <= block <= last:
        message = f"must be a block index from 0 to {last}"
        raise ChangeError(f"no block {block!r}: {message}", {field_name: message})
    return block


def _count(value: Any, field_name: str, bound: str, already: int = 0) -> int:
    """Check a number of heads/neurons to add; `already` of them exist (the bound is on the
    total)."""
    high = FIELD_BOUNDS[bound][1] - already
    if not _is_positive_int(value) or value > high:
        message = f"must be a whole number from 1 to {high}"
        if already:
            message += f" (the block has {already}; at most {FIELD_BOUNDS[bound][1]} in all)"
        raise ChangeError(f"{field_name}: {message}, got {value!r:.40}", {field_name: message})
    return value


def _result(spec: dict, new_spec: dict, description: str, touched: str, added=None):
    added = {layer: list(units) for layer, units in (added or {}).items()}
    try:
        after = count_transformer_parameters(new_spec)
    except TransformerSpecError as error:
        raise ChangeError(f"the changed spec is invalid: {error}", {"spec": str(error)}) from error
    before = count_transformer_parameters(spec)
    return TransformerChangeResult(
        spec=new_spec,
        params_before=before,
        params_after=after,
        params_added=after - before,
        description=description,
        touched_layer=touched,
        added_units=list(added.get(touched, [])),
        added=added,
    )


def _block_dict(n_heads: int, d_mlp: int | None) -> dict[str, int]:
    return {"n_heads": n_heads} if d_mlp is None else {"n_heads": n_heads, "d_mlp": d_mlp}


def insert_block(
    spec: dict, *, after: int, n_heads: int, d_mlp: int | None = None
) -> TransformerChangeResult:
    """Insert a new block right after block `after` (-1: before block 0).

    In: spec, the insertion point, the new block's heads and MLP width (None: attention
    only). Out: TransformerChangeResult; touched_layer is the new "blocks.{after+1}.attn",
    added_units all its heads, `added` also its MLP neurons. Later blocks move up by one.
    """
    config = _config(spec)
    if not _is_int(after) or not -1 <= after < config.n_layers:
        message = f"must be a block index from -1 (before block 0) to {config.n_layers - 1}"
        raise ChangeError(f"after: {message}, got {after!r:.40}", {"after": message})
    if config.n_layers >= MAX_BLOCKS:
        message = f"the model already has the most blocks allowed ({MAX_BLOCKS})"
        raise ChangeError(message, {"after": message})
    _count(n_heads, "n_heads", "n_heads")
    if d_mlp is not None:
        _count(d_mlp, "d_mlp", "d_mlp")
    index = after + 1
    new_spec = copy_spec(spec)
    new_spec["blocks"].insert(index, _block_dict(n_heads, d_mlp))
    added = {f"blocks.{index}.attn": range(n_heads)}
    kind = "attention-only block"
    if d_mlp is not None:
        added[f"blocks.{index}.mlp"] = range(d_mlp)
        kind = f"attention + MLP ({d_mlp} neurons) block"
    place = "before block 0" if after == -1 else f"after block {after}"
    description = f"insert an {kind} with {n_heads} heads {place}"
    return _result(spec, new_spec, description, f"blocks.{index}.attn", added)


def remove_block(spec: dict, *, block: int) -> TransformerChangeResult:
    """Remove block `block` (later blocks move down by one). Out: TransformerChangeResult
    with touched_layer "blocks.{block}" and nothing added; refuses to remove the only block."""
    config = _config(spec)
    block = _block_index(config, block)
    if config.n_layers == 1:
        message = "cannot remove the only block"
        raise ChangeError(message, {"block": message})
    new_spec = copy_spec(spec)
    del new_spec["blocks"][block]
    return _result(spec, new_spec, f"remove block {block}", f"blocks.{block}")


def add_heads(spec: dict, *, block: int, heads: int) -> TransformerChangeResult:
    """Add `heads` attention heads to block `block`. Out: TransformerChangeResult whose
    added_units are the new head indices [old, old + heads) of "blocks.{block}.attn"."""
    config = _config(spec)
    block = _block_index(config, block)
    old = config.blocks[block].n_heads
    _count(heads, "heads", "n_heads", already=old)
    new_spec = copy_spec(spec)
    new_spec["blocks"][block]["n_heads"] = old + heads
    layer = f"blocks.{block}.attn"
    description = f"add {heads} heads to block {block} ({old} to {old + heads})"
    return _result(spec, new_spec, description, layer, {layer: range(old, old + heads)})


def widen_mlp(spec: dict, *, block: int, units: int) -> TransformerChangeResult:
    """Add `units` neurons to block `block`'s MLP. Out: TransformerChangeResult whose
    added_units are the new neuron indices [old, old + units) of "blocks.{block}.mlp".
    Refuses a block without an MLP."""
    config = _config(spec)
    block = _block_index(config, block)
    old = config.blocks[block].d_mlp
    if old is None:
        message = f"block {block} has no MLP; choose a block with one or insert a block"
        raise ChangeError(message, {"block": message})
    _count(units, "units", "d_mlp", already=old)
    new_spec = copy_spec(spec)
    new_spec["blocks"][block]["d_mlp"] = old + units
    layer = f"blocks.{block}.mlp"
    description = f"widen block {block}'s MLP from {old} to {old + units} neurons (+{units})"
    return _result(spec, new_spec, description, layer, {layer: range(old, old + units)})


def set_transformer_hyperparameter(spec: dict, *, name: str, value: Any) -> ChangeResult:
    """Set one training hyperparameter. Out: TransformerChangeResult with params_added 0 and
    touched_layer ''. "epochs" is refused: a transformer trains for the run's steps."""
    _config(spec)
    if name not in TRANSFORMER_HYPERPARAMETERS:
        message = f"must be one of {', '.join(TRANSFORMER_HYPERPARAMETERS)}"
        if name == "epochs":
            message = f"a transformer trains for the run's steps, not epochs; {message}"
        raise ChangeError(f"hyperparameter {name!r} cannot be set", {"name": message})
    problem = hyperparameter_problem(name, value)
    if problem:
        raise ChangeError(f"hyperparameter {name!r}: {problem}, got {value!r}", {"value": problem})
    old_value = transformer_hyperparameters(spec)[name]
    new_spec = copy_spec(spec)
    new_spec.setdefault("hyperparameters", {})[name] = value
    return _result(spec, new_spec, f"set {name} from {old_value!r} to {value!r}", "")


# ---------------------------------------------------------------------------------------------
# Validation and the entry point
# ---------------------------------------------------------------------------------------------


def _value_problem(key: str, value: Any) -> str | None:
    if key == "after":
        return None if _is_int(value) and value >= -1 else "must be a whole number >= -1"
    if key == "block":
        return None if _is_int(value) and value >= 0 else "must be a whole number >= 0"
    if key in ("n_heads", "heads", "units"):
        return None if _is_positive_int(value) else "must be a positive integer"
    if key == "d_mlp":
        return None if value is None or _is_positive_int(value) else "must be null or >= 1"
    if key == "name":
        return None if isinstance(value, str) and value else "must be a non-empty name"
    return None


def _shape_errors(operation: str, parameters: Any) -> dict[str, str]:
    if not isinstance(parameters, dict):
        return {"__all__": "parameters must be an object"}
    required, optional = _FIELDS[operation]
    errors = {key: "this field is required" for key in required if key not in parameters}
    errors.update({key: "unexpected field" for key in parameters if key not in required + optional})
    for key, value in parameters.items():
        problem = None if key in errors else _value_problem(key, value)
        if problem:
            errors[key] = problem
    return errors


def validate_transformer_change(operation: str, parameters: Any, spec: dict | None = None) -> dict:
    """Check a transformer change request (and apply it when `spec` is given).

    In: operation, parameters, optional transformer spec. Out: the parameters unchanged.
    Raises ChangeError whose field_errors map parameter names to messages.
    """
    if operation not in TRANSFORMER_OPERATIONS:
        message = f"must be one of {', '.join(TRANSFORMER_OPERATIONS)} for a transformer"
        raise ChangeError(f"unknown transformer operation {operation!r}", {"operation": message})
    errors = _shape_errors(operation, parameters)
    if errors:
        raise ChangeError("; ".join(f"{key}: {text}" for key, text in errors.items()), errors)
    if spec is not None:
        apply_transformer_change(spec, operation, parameters)
    return parameters


def apply_transformer_change(spec: dict, operation: str, parameters: dict) -> ChangeResult:
    """Apply a transformer change by name. Out: TransformerChangeResult. Raises ChangeError."""
    validate_transformer_change(operation, parameters)
    if operation == "insert_block":
        return insert_block(
            spec,
            after=parameters["after"],
            n_heads=parameters["n_heads"],
            d_mlp=parameters.get("d_mlp"),
        )
    if operation == "remove_block":
        return remove_block(spec, block=parameters["block"])
    if operation == "add_heads":
        return add_heads(spec, block=parameters["block"], heads=parameters["heads"])
    if operation == "widen_mlp":
        return widen_mlp(spec, block=parameters["block"], units=parameters["units"])
    return set_transformer_hyperparameter(spec, name=parameters["name"], value=parameters["value"])


# ---------------------------------------------------------------------------------------------
# Random controls
# ---------------------------------------------------------------------------------------------

Option = tuple[str, dict, ChangeResult]


def _solved(operation: str, make, key: str, fixed: dict, budget: int, tolerance: float):
    """One option whose size `key` is solved so `make(k)` adds the budget; [] if none fits."""
    match = _solve_affine(make, budget, tolerance)
    return [(operation, {**fixed, key: match[0]}, match[1])] if match else []


def _exact(operation: str, parameters: dict, budget: int, tolerance: float, spec: dict):
    try:
        result = apply_transformer_change(spec, operation, parameters)
    except ChangeError:
        return []
    fits = _within(result.params_added, budget, tolerance)
    return [(operation, parameters, result)] if fits else []


def _add_heads_options(spec, config, budget, tolerance, skip=None) -> list[Option]:
    options = []
    for block in range(config.n_layers):
        if block != skip:
            make = lambda k, b=block: add_heads(spec, block=b, heads=k)  # noqa: E731
            options += _solved("add_heads", make, "heads", {"block": block}, budget, tolerance)
    return options


def _widen_mlp_options(spec, config, budget, tolerance, skip=None) -> list[Option]:
    options = []
    for block, shape in enumerate(config.blocks):
        if block != skip and shape.d_mlp is not None:
            make = lambda k, b=block: widen_mlp(spec, block=b, units=k)  # noqa: E731
            options += _solved("widen_mlp", make, "units", {"block": block}, budget, tolerance)
    return options


def _remove_options(spec, config, budget, tolerance, skip=None) -> list[Option]:
    return [
        option
        for block in range(config.n_layers)
        if block != skip
        for option in _exact("remove_block", {"block": block}, budget, tolerance, spec)
    ]


def _insert_any_options(spec, config, budget, tolerance) -> list[Option]:
    heads = config.blocks[0].n_heads
    options = []
    for after in range(-1, config.n_layers):
        make = lambda k, a=after: insert_block(spec, after=a, n_heads=k)  # noqa: E731
        options += _solved("insert_block", make, "n_heads", {"after": after}, budget, tolerance)
        make = lambda k, a=after: insert_block(spec, after=a, n_heads=heads, d_mlp=k)  # noqa: E731
        fixed = {"after": after, "n_heads": heads}
        options += _solved("insert_block", make, "d_mlp", fixed, budget, tolerance)
    return options


def _same_operation_options(spec, config, operation, parameters, budget, tolerance):
    if operation == "insert_block":
        block = {key: parameters[key] for key in ("n_heads", "d_mlp") if key in parameters}
        return [
            option
            for after in range(-1, config.n_layers)
            if after != parameters["after"]
            for option in _exact("insert_block", {"after": after, **block}, budget, tolerance, spec)
        ]
    finder = {
        "add_heads": _add_heads_options,
        "widen_mlp": _widen_mlp_options,
        "remove_block": _remove_options,
    }[operation]
    return finder(spec, config, budget, tolerance, skip=parameters["block"])


def _other_models(options: list[Option], guided_spec: dict) -> list[Option]:
    """Out: the options whose changed model differs from the guided change's (inserting or
    removing a block next to an equal one builds the very same model)."""
    return [option for option in options if option[2].spec != guided_spec]


def _hyperparameter_control(spec: dict, exclude: str | None, seed: int, policy: str):
    rng = np.random.default_rng(seed)
    names = [
        name
        for name in CONTROL_HYPERPARAMETER_RANGES
        if name != exclude and name in TRANSFORMER_HYPERPARAMETERS
    ]
    candidates = [{"name": name, "range": CONTROL_HYPERPARAMETER_RANGES[name]} for name in names]
    name = names[int(rng.integers(len(names)))]
    value = _draw_hyperparameter(name, transformer_hyperparameters(spec)[name], rng)
    chosen = {"name": name, "value": value}
    result = set_transformer_hyperparameter(spec, name=name, value=value)
    return RandomControl("set_hyperparameter", chosen, seed, result, candidates, policy)


def _draw(options: list[Option], seed: int, policy: str, same: bool) -> RandomControl:
    if same:
        candidates = [
            {**chosen, "params_added": added.params_added} for _, chosen, added in options
        ]
    else:
        candidates = [
            {"operation": operation, "parameters": chosen, "params_added": result.params_added}
            for operation, chosen, result in options
        ]
    operation, chosen, result = options[int(np.random.default_rng(seed).integers(len(options)))]
    return RandomControl(operation, chosen, seed, result, candidates, policy)


def transformer_random_control(
    spec: dict, operation: str, parameters: dict, *, seed: int, tolerance: float = 0.05
) -> RandomControl:
    """The same operation at another place, with the guided change's parameter budget.

    In: transformer spec, the guided change, a seed, the relative tolerance on params_added.
    Out: RandomControl (policy "same_operation") drawn uniformly over the candidates with
    numpy default_rng(seed): add_heads/widen_mlp at another block (count solved for the
    budget), the same block inserted at another place, another block of similar size
    removed, another hyperparameter; never a place that builds the guided change's model.
    Raises ChangeError when no other place fits.
    """
    guided = apply_transformer_change(spec, operation, parameters)
    if operation == "set_hyperparameter":
        return _hyperparameter_control(spec, parameters["name"], seed, SAME_OPERATION)
    config = _config(spec)
    budget = guided.params_added
    options = _same_operation_options(spec, config, operation, parameters, budget, tolerance)
    options = _other_models(options, guided.spec)
    if not options:
        raise ChangeError(
            f"no budget-matched control exists for {operation}: no other place changes the "
            f"parameter count by {budget:+d} within {tolerance:.0%}",
            {"operation": "no budget-matched random control exists for this change"},
        )
    return _draw(options, seed, SAME_OPERATION, same=True)


def transformer_random_any_change(
    spec: dict,
    budget: int,
    *,
    seed: int,
    tolerance: float = 0.05,
    exclude: tuple[str, dict] | None = None,
) -> RandomControl:
    """Any operation at any place that changes the parameter count by `budget` (within
    `tolerance`; TRANSFORMER_ANY_CHANGE_POLICY).

    In: transformer spec, a non-zero whole budget (negative: only removals can match), a
    seed. Out: RandomControl (policy "any_operation") whose candidates list every eligible
    {"operation", "parameters", "params_added"}; uniform draw with default_rng(seed).
    `exclude`: an (operation, parameters) pair whose model is left out (the guided change: a
    control must not build the same model, as removing either of two equal neighbours does).
    Raises ChangeError (field "budget") when nothing fits.
    """
    config = _config(spec)
    if not _is_int(budget) or budget == 0:
        message = "must be a non-zero whole number"
        raise ChangeError(f"budget {message}, got {budget!r}", {"budget": message})
    options = (
        _add_heads_options(spec, config, budget, tolerance)
        + _widen_mlp_options(spec, config, budget, tolerance)
        + _insert_any_options(spec, config, budget, tolerance)
        + _remove_options(spec, config, budget, tolerance)
    )
    if exclude is not None:
        options = _other_models(options, apply_transformer_change(spec, *exclude).spec)
    if not options:
        raise ChangeError(
            f"no change adds {budget:+d} parameters within {tolerance:.0%}",
            {"budget": "no change of any kind fits this budget"},
        )
    return _draw(options, seed, ANY_OPERATION, same=False)


def transformer_control_for(
    spec: dict,
    operation: str,
    parameters: dict,
    *,
    seed: int,
    policy: str = SAME_OPERATION,
    tolerance: float = 0.05,
) -> RandomControl:
    """The random control of a guided transformer change under `policy` (CONTROL_POLICIES).

    "any_operation" spends the guided change's budget on any operation at any place; a
    guided change that costs no parameters (set_hyperparameter) gets a random other
    hyperparameter under either policy. Raises ChangeError (field "policy" for an unknown
    policy).
    """
    if policy not in CONTROL_POLICIES:
        message = f"must be one of {', '.join(CONTROL_POLICIES)}"
        raise ChangeError(f"unknown control policy {policy!r}", {"policy": message})
    if policy == SAME_OPERATION:
        return transformer_random_control(
            spec, operation, parameters, seed=seed, tolerance=tolerance
        )
    guided = apply_transformer_change(spec, operation, parameters)
    if guided.params_added == 0:
        exclude = parameters["name"] if operation == "set_hyperparameter" else None
        return _hyperparameter_control(spec, exclude, seed, ANY_OPERATION)
    return transformer_random_any_change(
        spec,
        guided.params_added,
        seed=seed,
        tolerance=tolerance,
        exclude=(operation, {key: value for key, value in parameters.items() if value is not None}),
    )


__all__ = [
    "ANY_OPERATION",
    "CONTROL_POLICIES",
    "SAME_OPERATION",
    "TRANSFORMER_ANY_CHANGE_POLICY",
    "TRANSFORMER_HYPERPARAMETERS",
    "TRANSFORMER_ONLY_OPERATIONS",
    "TRANSFORMER_OPERATIONS",
    "TransformerChangeResult",
    "add_heads",
    "apply_transformer_change",
    "insert_block",
    "remove_block",
    "set_transformer_hyperparameter",
    "transformer_control_for",
    "transformer_random_any_change",
    "transformer_random_control",
    "validate_transformer_change",
    "widen_mlp",
]
