"""One entry for a subject model's spec, whatever its family: CNN/MLP or transformer.

The families keep their own modules (specs.py, transformer_specs.py); code that takes "a model
spec" (the model form, the API, the finding locator) asks here, so a transformer spec is
accepted wherever a CNN spec is and either family's problems come back keyed by field.
Torch-free, like both families' modules.
"""

from __future__ import annotations

from typing import Any

from analysis.engine.specs import (
    SpecError,
    SpecFieldError,
    count_parameters,
    layer_widths,
    validate_spec,
)
from analysis.engine.transformer_specs import (
    count_transformer_parameters,
    is_transformer_spec,
    transformer_unit_layers,
    validate_transformer_spec,
)

FAMILIES = ("cnn", "transformer")


def spec_family(spec: Any) -> str:
    """Out: "transformer" for a spec declaring that family, else "cnn" (CNN specs have no
    family field)."""
    return "transformer" if is_transformer_spec(spec) else "cnn"


def validate_model_spec(spec: Any) -> str:
    """Validate a spec of either family. Out: its family. Raises SpecFieldError: the
    transformer's problems keyed by field ("d_model", "blocks.0.n_heads", ...), a CNN spec's
    problem (whose message names the layer) under "spec"."""
    if spec_family(spec) == "transformer":
        validate_transformer_spec(spec)  # raises TransformerSpecError, a SpecFieldError
        return "transformer"
    try:
        validate_spec(spec)
    except SpecError as error:
        raise SpecFieldError({"spec": str(error)}) from error
    return "cnn"


def model_unit_layers(spec: dict) -> dict[str, int]:
    """Out: {layer: units} where findings can sit: the CNN's layer widths, or a transformer's
    "blocks.{i}.attn" (heads) and "blocks.{i}.mlp" (neurons)."""
    if spec_family(spec) == "transformer":
        return transformer_unit_layers(spec)
    return layer_widths(spec)


def count_model_parameters(spec: dict) -> int:
    """Out: the trainable parameters the built model will have, for either family."""
    if spec_family(spec) == "transformer":
        return count_transformer_parameters(spec)
    return count_parameters(spec)
