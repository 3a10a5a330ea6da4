"""Typed, validated changes to specs and budget-matched random controls.

Torch-free: the web process validates proposed changes with this module.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from analysis.engine.specs import (
    DEFAULT_HYPERPARAMETERS,
    OPTIMIZERS,
    UNIT_TYPES,
    SpecError,
    copy_spec,
    count_parameters,
    find_layer,
    hyperparameter_problem,
    hyperparameters_of,
    layer_widths,
    unit_layers,
    validate_spec,
)
from analysis.engine.transformer_specs import is_transformer_spec

OPERATIONS = ("widen_layer", "insert_layer", "remove_layer", "set_hyperparameter", "manual")
APPLICABLE_OPERATIONS = OPERATIONS[:-1]

# Ranges a random set_hyperparameter control draws from. Log-uniform for rates so every
# order of magnitude is equally likely; choices for discrete settings.
CONTROL_HYPERPARAMETER_RANGES: dict[str, dict[str, Any]] = {
    "learning_rate": {"kind": "log_uniform", "low": 1e-4, "high": 1e-1},
    "weight_decay": {"kind": "log_uniform", "low": 1e-6, "high": 1e-2},
    "batch_size": {"kind": "choice", "values": [16, 32, 64, 128, 256]},
    "optimizer": {"kind": "choice", "values": list(OPTIMIZERS)},
    "epochs": {"kind": "int_uniform", "low": 1, "high": 5},
}


class ChangeError(ValueError):
    """A change cannot be validated or applied.

    `field_errors` maps parameter names to messages, for forms/serializers.
    """

    def __init__(self, message: str, field_errors: dict[str, str] | None = None):
        super().__init__(message)
        self.field_errors: dict[str, str] = field_errors or {"__all__": message}


@dataclass
class ChangeResult:
    """The outcome of applying one change: the new spec plus its parameter budget."""

    spec: dict
    params_before: int
    params_after: int
    params_added: int
    description: str
    touched_layer: str
    added_units: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Out: a JSON-able dict of all fields."""
        return asdict(self)


@dataclass
class RandomControl:
    """A budget-matched change drawn at random: under policy "same_operation" the guided
    change's kind at another location, under "any_operation" any operation at any place."""

    operation: str
    parameters: dict
    seed: int
    result: ChangeResult
    candidates: list[dict]
    policy: str = "same_operation"

    def to_dict(self) -> dict[str, Any]:
        """Out: a JSON-able dict of all fields."""
        return asdict(self)


def _result(spec: dict, new_spec: dict, description: str, touched: str, added=None):
    try:
        after = count_parameters(new_spec)
    except SpecError as error:
        raise ChangeError(f"the changed spec is invalid: {error}", {"spec": str(error)}) from error
    before = count_parameters(spec)
    return ChangeResult(
        spec=new_spec,
        params_before=before,
        params_after=after,
        params_added=after - before,
        description=description,
        touched_layer=touched,
        added_units=list(added or []),
    )


def _existing_layer(spec: dict, name: Any, field_name: str) -> tuple[int, dict]:
    try:
        return find_layer(spec, name)
    except SpecError as error:
        layers = ", ".join(layer["name"] for layer in spec.get("layers", []))
        message = f"no layer named {name!r}; the model's layers are {layers}"
        raise ChangeError(str(error), {field_name: message}) from error


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def widen_layer(spec: dict, *, layer: str, units: int) -> ChangeResult:
    """Add `units` units to a conv2d/linear layer (not the output layer).

    In: spec, layer name, units to add (> 0). Out: ChangeResult whose added_units are the new
    unit indices [old_width, old_width + units). Downstream layers adapt automatically because
    specs only state output widths.
    """
    validate_spec(spec)
    if not _is_positive_int(units):
        raise ChangeError(
            f"units must be a positive integer, got {units!r}",
            {"units": "must be a positive integer"},
        )
    index, target = _existing_layer(spec, layer, "layer")
    if layer not in unit_layers(spec):
        reason = "the output layer" if target["type"] in UNIT_TYPES else f"a {target['type']} layer"
        raise ChangeError(
            f"layer {layer!r} cannot be widened: it is {reason}",
            {"layer": f"cannot widen {reason}; choose a conv2d or hidden linear layer"},
        )
    width_field = "out_channels" if target["type"] == "conv2d" else "out_features"
    old_width = target[width_field]
    new_spec = copy_spec(spec)
    new_spec["layers"][index][width_field] = old_width + units
    description = f"widen {layer} from {old_width} to {old_width + units} units (+{units})"
    return _result(spec, new_spec, description, layer, range(old_width, old_width + units))


def insert_layer(spec: dict, *, after: str, layer: dict) -> ChangeResult:
    """Insert the layer dict `layer` right after the layer named `after`.

    In: spec, an existing layer name, a layer dict with a new name. Out: ChangeResult
    (added_units is empty: the layer is new as a whole).
    """
    validate_spec(spec)
    index, _ = _existing_layer(spec, after, "after")
    if not isinstance(layer, dict):
        raise ChangeError("layer must be an object", {"layer": "must be an object"})
    name = layer.get("name")
    if any(existing["name"] == name for existing in spec["layers"]):
        raise ChangeError(f"layer {name!r} already exists", {"layer": f"name {name!r} is taken"})
    new_spec = copy_spec(spec)
    new_spec["layers"].insert(index + 1, copy_spec(layer))
    try:
        validate_spec(new_spec)
    except SpecError as error:
        raise ChangeError(f"cannot insert: {error}", {"layer": str(error)}) from error
    description = f"insert {layer.get('type')} layer {name} after {after}"
    return _result(spec, new_spec, description, name)


def remove_layer(spec: dict, *, layer: str) -> ChangeResult:
    """Remove the named layer. Out: ChangeResult; raises ChangeError if the rest is invalid."""
    validate_spec(spec)
    index, target = _existing_layer(spec, layer, "layer")
    new_spec = copy_spec(spec)
    del new_spec["layers"][index]
    if not new_spec["layers"]:
        raise ChangeError("cannot remove the only layer", {"layer": "cannot remove the only layer"})
    try:
        validate_spec(new_spec)
    except SpecError as error:
        raise ChangeError(
            f"removing {layer!r} leaves an invalid spec: {error}", {"layer": str(error)}
        ) from error
    return _result(spec, new_spec, f"remove {target['type']} layer {layer}", layer)


def set_hyperparameter(spec: dict, *, name: str, value: Any) -> ChangeResult:
    """Set one training hyperparameter. Out: ChangeResult with params_added 0, touched_layer ''."""
    validate_spec(spec)
    if name not in DEFAULT_HYPERPARAMETERS:
        raise ChangeError(
            f"unknown hyperparameter {name!r}",
            {"name": f"must be one of {', '.join(DEFAULT_HYPERPARAMETERS)}"},
        )
    problem = hyperparameter_problem(name, value)
    if problem:
        raise ChangeError(f"hyperparameter {name!r}: {problem}, got {value!r}", {"value": problem})
    old_value = hyperparameters_of(spec)[name]
    new_spec = copy_spec(spec)
    new_spec.setdefault("hyperparameters", {})[name] = value
    return _result(spec, new_spec, f"set {name} from {old_value!r} to {value!r}", "")


_NAME_FIELDS = {
    "widen_layer": ("layer",),
    "insert_layer": ("after",),
    "remove_layer": ("layer",),
    "set_hyperparameter": ("name",),
}
_EXPECTED_FIELDS = {
    "widen_layer": ("layer", "units"),
    "insert_layer": ("after", "layer"),
    "remove_layer": ("layer",),
    "set_hyperparameter": ("name", "value"),
    "manual": ("description",),
}


def _shape_errors(operation: str, parameters: Any) -> dict[str, str]:
    if not isinstance(parameters, dict):
        return {"__all__": "parameters must be an object"}
    expected = _EXPECTED_FIELDS[operation]
    errors = {key: "this field is required" for key in expected if key not in parameters}
    errors.update({key: "unexpected field" for key in parameters if key not in expected})
    for key in _NAME_FIELDS.get(operation, ()):
        if key not in errors and not (isinstance(parameters[key], str) and parameters[key]):
            errors[key] = "must be a non-empty name"
    value_checks = {
        "widen_layer": ("units", _is_positive_int, "must be a positive integer"),
        "insert_layer": ("layer", lambda v: isinstance(v, dict), "must be a layer object"),
        "manual": ("description", _is_text, "must be a non-empty text"),
    }
    key, is_valid, message = value_checks.get(operation, (None, None, None))
    if key and key not in errors and not is_valid(parameters[key]):
        errors[key] = message
    return errors


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def validate_change_parameters(operation: str, parameters: Any, spec: dict | None = None) -> dict:
    """Check a change request without applying it (also applies it when `spec` is given).

    In: operation name, parameters dict, optional spec. Out: the parameters dict unchanged.
    Raises ChangeError whose `field_errors` maps parameter names to messages. A transformer
    spec (or, without a spec, a transformer-only operation) is checked by transformer_changes.
    """
    transformer = is_transformer_spec(spec) or (spec is None and operation in _transformer_only())
    if transformer and operation != "manual":
        from analysis.engine.transformer_changes import validate_transformer_change

        return validate_transformer_change(operation, parameters, spec)
    _refuse_transformer_operation(operation)
    if operation not in OPERATIONS:
        raise ChangeError(
            f"unknown operation {operation!r}",
            {"operation": f"must be one of {', '.join(OPERATIONS)}"},
        )
    errors = _shape_errors(operation, parameters)
    if errors:
        raise ChangeError(_summarise(errors), errors)
    if spec is not None and operation != "manual":
        apply_change(spec, operation, parameters)
    return parameters


def _transformer_only() -> tuple[str, ...]:
    # Imported late: transformer_changes builds on this module's ChangeError and ChangeResult.
    from analysis.engine.transformer_changes import TRANSFORMER_ONLY_OPERATIONS

    return TRANSFORMER_ONLY_OPERATIONS


def _refuse_transformer_operation(operation: str) -> None:
    if operation in _transformer_only():
        message = f"{operation} applies to transformers; must be one of {', '.join(OPERATIONS)}"
        raise ChangeError(f"{operation} cannot change this model", {"operation": message})


def _summarise(errors: dict[str, str]) -> str:
    return "; ".join(f"{key}: {message}" for key, message in errors.items())


def apply_change(spec: dict, operation: str, parameters: dict) -> ChangeResult:
    """Apply a change by name. In: spec, operation, its parameters. Out: ChangeResult.

    Raises ChangeError for unknown or 'manual' operations and invalid parameters. Transformer
    specs go to transformer_changes.apply_transformer_change.
    """
    if is_transformer_spec(spec):
        from analysis.engine.transformer_changes import apply_transformer_change

        return apply_transformer_change(spec, operation, parameters)
    if operation == "manual":
        raise ChangeError(
            "a manual change is free-form and cannot be applied automatically",
            {"operation": "manual changes cannot be applied"},
        )
    _refuse_transformer_operation(operation)
    validate_change_parameters(operation, parameters)
    try:
        if operation == "widen_layer":
            return widen_layer(spec, layer=parameters["layer"], units=parameters["units"])
        if operation == "insert_layer":
            return insert_layer(spec, after=parameters["after"], layer=parameters["layer"])
        if operation == "remove_layer":
            return remove_layer(spec, layer=parameters["layer"])
        return set_hyperparameter(spec, name=parameters["name"], value=parameters["value"])
    except SpecError as error:
        raise ChangeError(f"the spec is invalid: {error}", {"spec": str(error)}) from error


# ---------------------------------------------------------------------------------------------
# Random controls
# ---------------------------------------------------------------------------------------------


def _within(added: int, budget: int, tolerance: float) -> bool:
    return abs(added - budget) <= tolerance * abs(budget)


def _best_integer_match(cost_of, guess: float, budget: int, tolerance: float):
    """Try integers around `guess`; return (k, result) of the closest within tolerance or None."""
    best = None
    centre = max(1, round(guess)) if math.isfinite(guess) else 1
    for k in sorted({max(1, centre + delta) for delta in (-1, 0, 1)}):
        try:
            result = cost_of(k)
        except ChangeError:
            continue
        gap = abs(result.params_added - budget)
        if _within(result.params_added, budget, tolerance) and (best is None or gap < best[2]):
            best = (k, result, gap)
    return None if best is None else best[:2]


def _solve_affine(cost_of, budget: int, tolerance: float):
    """cost_of(k) adds params affinely in k; solve for the k matching the budget."""
    try:
        one, two = cost_of(1).params_added, cost_of(2).params_added
    except ChangeError:
        return None
    slope = two - one
    guess = (budget - (one - slope)) / slope if slope else 1.0
    return _best_integer_match(cost_of, guess, budget, tolerance)


def _widen_candidates(spec: dict, parameters: dict, budget: int, tolerance: float):
    options = []
    for name in unit_layers(spec):
        if name == parameters["layer"]:
            continue
        match = _solve_affine(
            lambda k, name=name: widen_layer(spec, layer=name, units=k), budget, tolerance
        )
        if match:
            options.append(({"layer": name, "units": match[0]}, match[1]))
    return options


def _width_field(layer_type: str) -> str | None:
    return {"conv2d": "out_channels", "linear": "out_features"}.get(layer_type)


def _insert_candidates(spec: dict, parameters: dict, budget: int, tolerance: float):
    template = parameters["layer"]
    width_field = _width_field(template.get("type"))
    options = []
    for existing in spec["layers"]:
        after = existing["name"]
        if after == parameters["after"]:
            continue

        def insert(k, after=after):
            layer = {**template, width_field: k} if width_field else dict(template)
            return insert_layer(spec, after=after, layer=layer)

        if width_field:
            match = _solve_affine(insert, budget, tolerance)
        else:
            match = _try_exact(insert, budget, tolerance)
        if match:
            layer = {**template, width_field: match[0]} if width_field else dict(template)
            options.append(({"after": after, "layer": layer}, match[1]))
    return options


def _try_exact(make, budget: int, tolerance: float):
    try:
        result = make(None)
    except ChangeError:
        return None
    return (None, result) if _within(result.params_added, budget, tolerance) else None


def _remove_candidates(spec: dict, parameters: dict, budget: int, tolerance: float):
    _, target = find_layer(spec, parameters["layer"])
    options = []
    for existing in spec["layers"]:
        if existing["name"] == target["name"] or existing["type"] != target["type"]:
            continue
        match = _try_exact(
            lambda _, name=existing["name"]: remove_layer(spec, layer=name), budget, tolerance
        )
        if match:
            options.append(({"layer": existing["name"]}, match[1]))
    return options


def _draw_hyperparameter(name: str, current: Any, rng: np.random.Generator) -> Any:
    spec_range = CONTROL_HYPERPARAMETER_RANGES[name]
    if spec_range["kind"] == "log_uniform":
        low, high = math.log(spec_range["low"]), math.log(spec_range["high"])
        return float(f"{math.exp(rng.uniform(low, high)):.3g}")
    if spec_range["kind"] == "int_uniform":
        values = [v for v in range(spec_range["low"], spec_range["high"] + 1) if v != current]
    else:
        values = [v for v in spec_range["values"] if v != current]
    return values[int(rng.integers(len(values)))]


def _hyperparameter_control(spec, parameters, seed, rng) -> RandomControl:
    names = [name for name in CONTROL_HYPERPARAMETER_RANGES if name != parameters["name"]]
    candidates = [{"name": name, "range": CONTROL_HYPERPARAMETER_RANGES[name]} for name in names]
    name = names[int(rng.integers(len(names)))]
    value = _draw_hyperparameter(name, hyperparameters_of(spec)[name], rng)
    chosen = {"name": name, "value": value}
    result = set_hyperparameter(spec, name=name, value=value)
    return RandomControl("set_hyperparameter", chosen, seed, result, candidates)


_CANDIDATE_FINDERS = {
    "widen_layer": _widen_candidates,
    "insert_layer": _insert_candidates,
    "remove_layer": _remove_candidates,
}


def random_control_change(
    spec: dict, operation: str, parameters: dict, *, seed: int, tolerance: float = 0.05
) -> RandomControl:
    """Draw a control change of the same kind and parameter budget at a different location.

    In: the spec, the guided change (operation, parameters), a seed, the relative tolerance on
    params_added. Out: RandomControl with the chosen parameters, its ChangeResult and all
    eligible candidates. The location is drawn uniformly with numpy default_rng(seed).
    Raises ChangeError when no eligible location exists. Transformer specs go to
    transformer_changes.transformer_random_control.
    """
    if is_transformer_spec(spec):
        from analysis.engine.transformer_changes import transformer_random_control

        return transformer_random_control(
            spec, operation, parameters, seed=seed, tolerance=tolerance
        )
    guided = apply_change(spec, operation, parameters)
    rng = np.random.default_rng(seed)
    if operation == "set_hyperparameter":
        return _hyperparameter_control(spec, parameters, seed, rng)
    options = _CANDIDATE_FINDERS[operation](spec, parameters, guided.params_added, tolerance)
    if not options:
        raise ChangeError(
            f"no budget-matched control exists for {operation}: no other location changes the "
            f"parameter count by {guided.params_added:+d} within {tolerance:.0%}",
            {"operation": "no budget-matched random control exists for this change"},
        )
    candidates = [{**chosen, "params_added": result.params_added} for chosen, result in options]
    chosen, result = options[int(rng.integers(len(options)))]
    return RandomControl(operation, chosen, seed, result, candidates)


# "Any operation at any place": the budget-matched random tweak a guided change is compared
# against. set_hyperparameter is left out: it costs no parameters, so it never spends a budget.
ANY_CHANGE_OPERATIONS = ("widen_layer", "insert_layer", "remove_layer")
ANY_CHANGE_POLICY = (
    "every budget-matched (operation, place) pair is equally likely: widen any unit-holding "
    "layer, insert a conv2d (3x3, padding 1) or linear layer after any layer, or remove any "
    "layer, each sized to add the budget's parameters within the tolerance"
)


def _free_name(spec: dict, stem: str) -> str:
    taken = {layer["name"] for layer in spec["layers"]}
    return next(f"{stem}{n}" for n in range(1, len(taken) + 2) if f"{stem}{n}" not in taken)


def insert_templates(spec: dict) -> list[dict]:
    """Out: the unit-holding layers a budget-sized insertion may add, width still open: a 3x3
    conv2d that keeps the spatial size (placed where the input is [C, H, W]) and a linear layer
    (placed where it is flat), each with a name the spec does not use yet."""
    return [
        {"name": _free_name(spec, "conv_added"), "type": "conv2d", "kernel_size": 3, "padding": 1},
        {"name": _free_name(spec, "fc_added"), "type": "linear"},
    ]


def _any_remove_candidates(spec: dict, budget: int, tolerance: float):
    options = []
    for existing in spec["layers"]:
        match = _try_exact(
            lambda _, name=existing["name"]: remove_layer(spec, layer=name), budget, tolerance
        )
        if match:
            options.append(({"layer": existing["name"]}, match[1]))
    return options


def _any_change_options(spec: dict, budget: int, tolerance: float) -> list[tuple[str, dict, Any]]:
    options = [
        ("widen_layer", chosen, result)
        for chosen, result in _widen_candidates(spec, {"layer": None}, budget, tolerance)
    ]
    for template in insert_templates(spec):
        found = _insert_candidates(spec, {"after": None, "layer": template}, budget, tolerance)
        options += [("insert_layer", chosen, result) for chosen, result in found]
    options += [
        ("remove_layer", chosen, result)
        for chosen, result in _any_remove_candidates(spec, budget, tolerance)
    ]
    return options


def random_any_change(
    spec: dict,
    budget: int,
    *,
    seed: int,
    tolerance: float = 0.05,
    exclude: tuple[str, dict] | None = None,
) -> RandomControl:
    """Draw any operation at any place that adds `budget` parameters (within `tolerance`).

    In: the spec, the parameters to add (a positive integer), a seed, the relative tolerance.
    Out: RandomControl whose `operation` is the drawn operation and whose `candidates` list
    every eligible {"operation", "parameters", "params_added"} in spec order; the draw is
    uniform over them (ANY_CHANGE_POLICY) with numpy default_rng(seed). Raises ChangeError
    (field "budget") when no change of any kind fits the budget. `exclude`: an (operation,
    parameters) pair left out, the guided change a control must not repeat. Transformer specs
    go to transformer_changes.transformer_random_any_change.
    """
    if is_transformer_spec(spec):
        from analysis.engine.transformer_changes import transformer_random_any_change

        return transformer_random_any_change(
            spec, budget, seed=seed, tolerance=tolerance, exclude=exclude
        )
    validate_spec(spec)
    if not _is_positive_int(budget):
        raise ChangeError(
            f"budget must be a positive integer, got {budget!r}",
            {"budget": "must be a positive integer"},
        )
    options = [
        option
        for option in _any_change_options(spec, budget, tolerance)
        if exclude is None or option[:2] != exclude
    ]
    if not options:
        raise ChangeError(
            f"no change adds {budget:+d} parameters within {tolerance:.0%}: no widening, "
            "insertion or removal anywhere in the model costs that much",
            {"budget": "no change of any kind fits this budget"},
        )
    candidates = [
        {"operation": operation, "parameters": chosen, "params_added": result.params_added}
        for operation, chosen, result in options
    ]
    operation, chosen, result = options[int(np.random.default_rng(seed).integers(len(options)))]
    return RandomControl(operation, chosen, seed, result, candidates, "any_operation")


SAME_OPERATION, ANY_OPERATION = "same_operation", "any_operation"
CONTROL_POLICIES = (SAME_OPERATION, ANY_OPERATION)


def random_control_for(
    spec: dict,
    operation: str,
    parameters: dict,
    *,
    seed: int,
    policy: str = SAME_OPERATION,
    tolerance: float = 0.05,
) -> RandomControl:
    """The random control of a guided change under `policy`, for either family.

    "same_operation": random_control_change; "any_operation": any operation at any place
    that adds the guided change's parameters (random_any_change, the guided change itself
    left out). A guided change that adds no parameters (set_hyperparameter) gets a random
    other hyperparameter under either policy. Out: RandomControl recording the policy.
    Raises ChangeError ("policy" for an unknown policy, or for a CNN change that removes
    parameters, which no insertion or widening can match).
    """
    if policy not in CONTROL_POLICIES:
        message = f"must be one of {', '.join(CONTROL_POLICIES)}"
        raise ChangeError(f"unknown control policy {policy!r}", {"policy": message})
    if is_transformer_spec(spec):
        from analysis.engine.transformer_changes import transformer_control_for

        return transformer_control_for(
            spec, operation, parameters, seed=seed, policy=policy, tolerance=tolerance
        )
    if policy == SAME_OPERATION:
        return random_control_change(spec, operation, parameters, seed=seed, tolerance=tolerance)
    guided = apply_change(spec, operation, parameters)
    if operation == "set_hyperparameter":
        control = _hyperparameter_control(spec, parameters, seed, np.random.default_rng(seed))
        control.policy = ANY_OPERATION
        return control
    if guided.params_added <= 0:
        message = "the any-operation control needs a change that adds parameters"
        raise ChangeError(f"{message}; this one adds {guided.params_added}", {"policy": message})
    return random_any_change(
        spec, guided.params_added, seed=seed, tolerance=tolerance, exclude=(operation, parameters)
    )


def change_location(operation: str, parameters: dict) -> str:
    """Out: where a change acts (layer name, insertion point or hyperparameter name)."""
    if operation == "insert_layer":
        return f"after {parameters['after']}"
    if operation == "set_hyperparameter":
        return f"hyperparameter {parameters['name']}"
    return str(parameters.get("layer", ""))


__all__ = [
    "ANY_CHANGE_OPERATIONS",
    "ANY_CHANGE_POLICY",
    "ANY_OPERATION",
    "APPLICABLE_OPERATIONS",
    "CONTROL_POLICIES",
    "CONTROL_HYPERPARAMETER_RANGES",
    "OPERATIONS",
    "ChangeError",
    "ChangeResult",
    "RandomControl",
    "SAME_OPERATION",
    "apply_change",
    "change_location",
    "insert_layer",
    "insert_templates",
    "layer_widths",
    "random_any_change",
    "random_control_for",
    "random_control_change",
    "remove_layer",
    "set_hyperparameter",
    "validate_change_parameters",
    "widen_layer",
]
