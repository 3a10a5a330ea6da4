"""Declarative model specs: validation, shape inference and parameter counting.

A spec is a plain JSON-able dict describing a feed-forward CNN or MLP. This module must stay
free of torch: the web process imports it to validate specs submitted through forms.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

LAYER_TYPES = (
    "conv2d",
    "maxpool2d",
    "avgpool2d",
    "linear",
    "relu",
    "tanh",
    "gelu",
    "batchnorm",
    "dropout",
    "flatten",
)
ACTIVATION_TYPES = ("relu", "tanh", "gelu")
POOL_TYPES = ("maxpool2d", "avgpool2d")
UNIT_TYPES = ("conv2d", "linear")
# Layers whose output width equals their input width; findings on them map to those units.
WIDTH_INHERITING_TYPES = (*ACTIVATION_TYPES, *POOL_TYPES, "batchnorm", "dropout")

OPTIMIZERS = ("sgd", "adam", "adamw")
# Numeric hyperparameter -> (lowest, highest), inclusive; whole numbers when the bounds are
# ints. Runs hold a worker for their whole length: these caps keep one model or request from
# holding it for days. The run settings (run_settings.BOUNDS["train.*"]) use the same numbers.
HYPERPARAMETER_BOUNDS: dict[str, tuple[int | float, int | float]] = {
    "learning_rate": (1e-6, 10.0),
    "weight_decay": (0.0, 1.0),
    "epochs": (1, 100),
    "batch_size": (1, 8192),
}
DEFAULT_HYPERPARAMETERS: dict[str, Any] = {
    "learning_rate": 0.01,
    "optimizer": "adam",
    "epochs": 2,
    "batch_size": 64,
    "weight_decay": 0.0,
}

_LAYER_FIELDS: dict[str, dict[str, bool]] = {
    # field -> required?
    "conv2d": {"out_channels": True, "kernel_size": True, "stride": False, "padding": False},
    "maxpool2d": {"kernel_size": True, "stride": False},
    "avgpool2d": {"kernel_size": True, "stride": False},
    "linear": {"out_features": True},
    "relu": {},
    "tanh": {},
    "gelu": {},
    "batchnorm": {},
    "dropout": {"p": False},
    "flatten": {},
}


class SpecError(ValueError):
    """A spec (or its hyperparameters) is invalid; the message names the offending layer."""


class SpecFieldError(SpecError):
    """A spec was refused with its problems keyed by field: `field_errors` {key: [messages]}
    (the transformer family's dotted paths such as "blocks.1.n_heads"; "spec" for a problem
    that no one field holds). str() joins them as "key: message; ..." for callers that log."""

    def __init__(self, field_errors: Mapping[str, str | list[str]]) -> None:
        self.field_errors: dict[str, list[str]] = {
            key: [messages] if isinstance(messages, str) else list(messages)
            for key, messages in field_errors.items()
        }
        super().__init__(
            "; ".join(f"{key}: {' '.join(messages)}" for key, messages in self.field_errors.items())
        )

    def __reduce__(self):
        # Rebuilt from the dict, not from the joined message, when pickled (e.g. by a worker).
        return (type(self), (self.field_errors,))


@dataclass(frozen=True)
class LayerShape:
    """Inferred facts about one layer: output shape (C, H, W) or (F,), and parameter count."""

    name: str
    type: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    parameters: int

    @property
    def width(self) -> int:
        """Channels of a [C, H, W] output, features of a [F] output."""
        return self.output_shape[0]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _positive_int(layer: dict, field: str, default: int | None = None, minimum: int = 1) -> int:
    value = layer.get(field, default)
    if not _is_int(value) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise SpecError(f"layer {layer['name']!r}: {field} must be {kind}, got {value!r}")
    return value


def _check_layer_fields(layer: Any, index: int, seen: set[str]) -> None:
    if not isinstance(layer, dict):
        raise SpecError(f"layer #{index}: must be an object, got {type(layer).__name__}")
    name = layer.get("name")
    if not isinstance(name, str) or not name.isidentifier():
        raise SpecError(f"layer #{index}: name must be a non-empty identifier, got {name!r}")
    if name in seen:
        raise SpecError(f"layer {name!r}: duplicate layer name")
    seen.add(name)
    layer_type = layer.get("type")
    if layer_type not in _LAYER_FIELDS:
        raise SpecError(
            f"layer {name!r}: unknown type {layer_type!r}; expected one of {', '.join(LAYER_TYPES)}"
        )
    allowed = _LAYER_FIELDS[layer_type]
    unknown = sorted(set(layer) - set(allowed) - {"name", "type"})
    if unknown:
        raise SpecError(f"layer {name!r}: unknown field(s) {', '.join(unknown)} for {layer_type}")
    missing = [field for field, required in allowed.items() if required and field not in layer]
    if missing:
        raise SpecError(f"layer {name!r}: missing field(s) {', '.join(missing)}")


def _require_spatial(layer: dict, shape: tuple[int, ...]) -> None:
    if len(shape) != 3:
        raise SpecError(
            f"layer {layer['name']!r}: {layer['type']} needs a [C, H, W] input, "
            f"got a flat input of {shape[0]} features"
        )


def _sliding_output(layer: dict, size: int, kernel: int, stride: int, padding: int) -> int:
    if kernel > size + 2 * padding:
        raise SpecError(
            f"layer {layer['name']!r}: kernel_size {kernel} is larger than its input "
            f"({size} + 2*padding {padding})"
        )
    return (size + 2 * padding - kernel) // stride + 1


def _infer_conv(layer: dict, shape: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
    _require_spatial(layer, shape)
    channels, height, width = shape
    out_channels = _positive_int(layer, "out_channels")
    kernel = _positive_int(layer, "kernel_size")
    stride = _positive_int(layer, "stride", default=1)
    padding = _positive_int(layer, "padding", default=0, minimum=0)
    out_h = _sliding_output(layer, height, kernel, stride, padding)
    out_w = _sliding_output(layer, width, kernel, stride, padding)
    params = out_channels * channels * kernel * kernel + out_channels
    return (out_channels, out_h, out_w), params


def _infer_pool(layer: dict, shape: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
    _require_spatial(layer, shape)
    channels, height, width = shape
    kernel = _positive_int(layer, "kernel_size")
    stride = _positive_int(layer, "stride", default=kernel)
    out_h = _sliding_output(layer, height, kernel, stride, 0)
    out_w = _sliding_output(layer, width, kernel, stride, 0)
    return (channels, out_h, out_w), 0


def _infer_linear(layer: dict, shape: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
    if len(shape) != 1:
        raise SpecError(
            f"layer {layer['name']!r}: linear needs a flat input, got shape {list(shape)}; "
            "insert a flatten layer first"
        )
    out_features = _positive_int(layer, "out_features")
    return (out_features,), shape[0] * out_features + out_features


def _infer_flatten(layer: dict, shape: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
    _require_spatial(layer, shape)
    return (math.prod(shape),), 0


def _infer_dropout(layer: dict, shape: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
    p = layer.get("p", 0.5)
    if not _is_number(p) or not 0 <= p < 1:
        raise SpecError(f"layer {layer['name']!r}: p must be a number in [0, 1), got {p!r}")
    return shape, 0


def _infer_layer(layer: dict, shape: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
    layer_type = layer["type"]
    if layer_type == "conv2d":
        return _infer_conv(layer, shape)
    if layer_type in POOL_TYPES:
        return _infer_pool(layer, shape)
    if layer_type == "linear":
        return _infer_linear(layer, shape)
    if layer_type == "flatten":
        return _infer_flatten(layer, shape)
    if layer_type == "dropout":
        return _infer_dropout(layer, shape)
    if layer_type == "batchnorm":
        return shape, 2 * shape[0]
    return shape, 0


def _check_header(spec: Any) -> tuple[tuple[int, ...], int, list]:
    if not isinstance(spec, dict):
        raise SpecError(f"spec must be an object, got {type(spec).__name__}")
    unknown = sorted(set(spec) - {"input_shape", "num_classes", "layers", "hyperparameters"})
    if unknown:
        raise SpecError(f"spec: unknown field(s) {', '.join(unknown)}")
    input_shape = spec.get("input_shape")
    if (
        not isinstance(input_shape, list | tuple)
        or len(input_shape) not in (1, 3)
        or not all(_is_int(size) and size > 0 for size in input_shape)
    ):
        raise SpecError(
            f"input_shape must be [C, H, W] or [F] of positive integers, got {input_shape!r}"
        )
    num_classes = spec.get("num_classes")
    if not _is_int(num_classes) or num_classes < 2:
        raise SpecError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    layers = spec.get("layers")
    if not isinstance(layers, list) or not layers:
        raise SpecError("layers must be a non-empty list")
    return tuple(input_shape), num_classes, layers


def validate_spec(spec: dict) -> list[LayerShape]:
    """Validate a spec and infer every layer's shape.

    In: a spec dict. Out: one LayerShape per layer, in order, with input/output shapes
    ((C, H, W) or (F,)) and parameter counts. Raises SpecError naming the offending layer.
    """
    shape, num_classes, layers = _check_header(spec)
    seen: set[str] = set()
    shapes: list[LayerShape] = []
    for index, layer in enumerate(layers):
        _check_layer_fields(layer, index, seen)
        output_shape, params = _infer_layer(layer, shape)
        shapes.append(LayerShape(layer["name"], layer["type"], shape, output_shape, params))
        shape = output_shape
    last = shapes[-1]
    if len(shape) != 1 or shape[0] != num_classes:
        raise SpecError(
            f"layer {last.name!r}: the last layer must output num_classes={num_classes} "
            f"features, got shape {list(shape)}"
        )
    validate_hyperparameters(spec.get("hyperparameters", {}))
    return shapes


def validate_hyperparameters(hyperparameters: Any) -> dict[str, Any]:
    """Check hyperparameters and fill in defaults.

    In: a (possibly partial) dict. Out: a complete dict with DEFAULT_HYPERPARAMETERS' keys.
    Raises SpecError for unknown keys or out-of-range values.
    """
    if not isinstance(hyperparameters, dict):
        raise SpecError("hyperparameters must be an object")
    unknown = sorted(set(hyperparameters) - set(DEFAULT_HYPERPARAMETERS))
    if unknown:
        raise SpecError(f"hyperparameters: unknown field(s) {', '.join(unknown)}")
    merged = {**DEFAULT_HYPERPARAMETERS, **hyperparameters}
    for name, value in merged.items():
        problem = hyperparameter_problem(name, value)
        if problem:
            raise SpecError(f"hyperparameter {name!r}: {problem}, got {value!r}")
    return merged


def hyperparameter_problem(name: str, value: Any) -> str | None:
    """Return why `value` is not acceptable for hyperparameter `name`, or None if it is.
    The bounds are the run settings' (HYPERPARAMETER_BOUNDS), so a model's own spec cannot
    ask for more than a run may."""
    if name == "optimizer":
        return None if value in OPTIMIZERS else f"must be one of {', '.join(OPTIMIZERS)}"
    if name not in HYPERPARAMETER_BOUNDS:
        return f"unknown hyperparameter; expected one of {', '.join(DEFAULT_HYPERPARAMETERS)}"
    low, high = HYPERPARAMETER_BOUNDS[name]
    if isinstance(low, int):
        ok = _is_int(value) and low <= value <= high
        return None if ok else f"must be a whole number from {low} to {high}"
    ok = _is_number(value) and low <= value <= high
    return None if ok else f"must be a number from {low:g} to {high:g}"


def hyperparameters_of(spec: dict) -> dict[str, Any]:
    """Out: the spec's hyperparameters merged over DEFAULT_HYPERPARAMETERS (validated)."""
    return validate_hyperparameters(spec.get("hyperparameters", {}))


def count_parameters(spec: dict) -> int:
    """Out: the number of trainable parameters the built model will have (analytic count)."""
    return sum(layer.parameters for layer in validate_spec(spec))


def layer_widths(spec: dict) -> dict[str, int]:
    """Out: {layer name: units} for layers that carry units.

    conv2d has out_channels units and linear out_features; activations, batchnorm, pooling
    and dropout inherit the width of their input so findings can be located on them.
    """
    return {
        layer.name: layer.width
        for layer in validate_spec(spec)
        if layer.type in UNIT_TYPES or layer.type in WIDTH_INHERITING_TYPES
    }


def output_layer_name(spec: dict) -> str:
    """Out: the name of the last conv2d/linear layer, which produces the class logits."""
    names = [layer["name"] for layer in spec["layers"] if layer.get("type") in UNIT_TYPES]
    if not names:
        raise SpecError("spec has no conv2d or linear layer")
    return names[-1]


def unit_layers(spec: dict) -> list[str]:
    """Out: names of layers whose width may be changed (conv2d/linear except the output layer)."""
    validate_spec(spec)
    output = output_layer_name(spec)
    return [
        layer["name"]
        for layer in spec["layers"]
        if layer["type"] in UNIT_TYPES and layer["name"] != output
    ]


def find_layer(spec: dict, name: str) -> tuple[int, dict]:
    """Out: (index, layer dict) of the layer called `name`; raises SpecError if absent."""
    for index, layer in enumerate(spec.get("layers", [])):
        if isinstance(layer, dict) and layer.get("name") == name:
            return index, layer
    raise SpecError(f"layer {name!r}: no such layer")


def copy_spec(spec: dict) -> dict:
    """Out: a deep copy, so callers can modify it without touching the original."""
    return copy.deepcopy(spec)
