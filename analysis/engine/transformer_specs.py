"""Declarative transformer specs: validation with errors keyed by field, and parameter counts.

A transformer spec is a plain JSON-able dict, the transformer family beside the CNN/MLP specs
of analysis.engine.specs:

    {"family": "transformer", "d_vocab": 32, "n_ctx": 32, "d_model": 32, "d_head": 16,
     "blocks": [{"n_heads": 2}, {"n_heads": 2, "d_mlp": 64}],
     "act_fn": "relu", "normalization": null, "causal": true, "hyperparameters": {...}}

Each block is a multi-head self-attention layer with an optional MLP (`d_mlp` absent or null:
attention only); blocks may differ in heads and MLP width, so changes such as "add heads to a
layer" or "insert a block" are edits of the list. Modules are named as TransformerLens names
them (`blocks.{i}.attn`, `blocks.{i}.mlp`), so a finding's layer and unit indices (heads or
neurons) map onto modules. Like specs.py this module imports no torch: the web process
validates transformer specs with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from analysis.engine.specs import (
    SpecFieldError,
    hyperparameter_problem,
    validate_hyperparameters,
)

FAMILY = "transformer"
ACT_FNS = ("relu", "gelu")
NORMALIZATIONS = (None, "ln")
# Field -> (lowest, highest), inclusive. A run holds a worker for its whole length: these caps
# keep one spec from asking for a model no CPU worker can train.
FIELD_BOUNDS: dict[str, tuple[int, int]] = {
    "d_vocab": (2, 65_536),
    "n_ctx": (1, 4096),
    "d_model": (1, 4096),
    "d_head": (1, 1024),
    "n_heads": (1, 64),
    "d_mlp": (1, 16_384),
}
MAX_BLOCKS = 48
TOP_FIELDS = ("family", "d_vocab", "n_ctx", "d_model", "d_head", "blocks", "act_fn",
              "normalization", "causal", "hyperparameters")  # fmt: skip
BLOCK_FIELDS = ("n_heads", "d_mlp")

Errors = dict[str, list[str]]


class TransformerSpecError(SpecFieldError):
    """A transformer spec was refused. `field_errors`: {key: [messages]}, keyed by the field's
    dotted path ("d_model", "blocks.1.n_heads", "hyperparameters.learning_rate", "spec" when
    the spec is not an object)."""


@dataclass(frozen=True)
class BlockConfig:
    """One block: n_heads attention heads of the spec's d_head; an MLP of d_mlp neurons or
    none (attention only)."""

    n_heads: int
    d_mlp: int | None


@dataclass(frozen=True)
class TransformerConfig:
    """A validated transformer spec, with defaults filled in."""

    d_vocab: int
    n_ctx: int
    d_model: int
    d_head: int
    blocks: tuple[BlockConfig, ...]
    act_fn: str = "relu"
    normalization: str | None = None
    causal: bool = True

    @property
    def n_layers(self) -> int:
        """Out: the number of blocks."""
        return len(self.blocks)

    @property
    def uniform(self) -> bool:
        """Out: True when every block has the same heads and MLP width (TransformerLens's
        HookedTransformer can only hold such a model)."""
        return len(set(self.blocks)) <= 1


def is_transformer_spec(spec: Any) -> bool:
    """Out: True when the spec declares the transformer family."""
    return isinstance(spec, dict) and spec.get("family") == FAMILY


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bounded(errors: Errors, key: str, field: str, value: Any) -> int | None:
    low, high = FIELD_BOUNDS[field]
    if not _is_int(value) or not low <= value <= high:
        errors.setdefault(key, []).append(
            f"must be a whole number from {low} to {high}, got {value!r:.40}."
        )
        return None
    return value


def _clean_block(errors: Errors, index: int, raw: Any) -> BlockConfig | None:
    prefix = f"blocks.{index}"
    if not isinstance(raw, dict):
        errors[prefix] = ['must be an object such as {"n_heads": 2}.']
        return None
    for key in sorted(set(raw) - set(BLOCK_FIELDS), key=str):
        errors[f"{prefix}.{key}"] = [f"unknown field. Expected one of {', '.join(BLOCK_FIELDS)}."]
    if "n_heads" not in raw:
        errors[f"{prefix}.n_heads"] = ["is required."]
        return None
    n_heads = _bounded(errors, f"{prefix}.n_heads", "n_heads", raw["n_heads"])
    d_mlp = raw.get("d_mlp")
    if d_mlp is not None:
        d_mlp = _bounded(errors, f"{prefix}.d_mlp", "d_mlp", d_mlp)
    return BlockConfig(n_heads, d_mlp) if n_heads is not None else None


def _clean_blocks(errors: Errors, raw: Any) -> tuple[BlockConfig, ...]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_BLOCKS:
        errors["blocks"] = [f"must be a list of 1 to {MAX_BLOCKS} block objects."]
        return ()
    blocks = [_clean_block(errors, index, block) for index, block in enumerate(raw)]
    return tuple(block for block in blocks if block is not None)


def _clean_choices(errors: Errors, spec: dict) -> dict[str, Any]:
    act_fn = spec.get("act_fn", "relu")
    if act_fn not in ACT_FNS:
        errors["act_fn"] = [f"must be one of {', '.join(ACT_FNS)}, got {act_fn!r:.40}."]
    normalization = spec.get("normalization")
    if normalization not in NORMALIZATIONS:
        errors["normalization"] = [f"must be null or 'ln', got {normalization!r:.40}."]
    causal = spec.get("causal", True)
    if not isinstance(causal, bool):
        errors["causal"] = [f"must be true or false, got {causal!r:.40}."]
    return {"act_fn": act_fn, "normalization": normalization, "causal": causal}


def _clean_hyperparameters(errors: Errors, raw: Any) -> None:
    if not isinstance(raw, dict):
        errors["hyperparameters"] = ["must be an object."]
        return
    for name, value in raw.items():
        problem = hyperparameter_problem(name, value)
        if problem:
            errors[f"hyperparameters.{name}"] = [f"{problem}, got {value!r:.40}."]


def validate_transformer_spec(spec: Any) -> TransformerConfig:
    """Validate a transformer spec.

    In: a spec dict. Out: its TransformerConfig. Raises TransformerSpecError holding every
    problem found, keyed by field (see the class docstring).
    """
    if not isinstance(spec, dict):
        raise TransformerSpecError({"spec": f"must be an object, got {type(spec).__name__}."})
    errors: Errors = {}
    for key in sorted(set(spec) - set(TOP_FIELDS), key=str):
        errors[key] = [f"unknown field. Expected one of {', '.join(TOP_FIELDS)}."]
    if spec.get("family") != FAMILY:
        errors["family"] = [f"must be {FAMILY!r}, got {spec.get('family')!r:.40}."]
    sizes = {
        field: _bounded(errors, field, field, spec.get(field))
        for field in ("d_vocab", "n_ctx", "d_model", "d_head")
    }
    blocks = _clean_blocks(errors, spec.get("blocks"))
    choices = _clean_choices(errors, spec)
    _clean_hyperparameters(errors, spec.get("hyperparameters", {}))
    if errors:
        raise TransformerSpecError(errors)
    config = TransformerConfig(**sizes, blocks=blocks, **choices)
    _refuse_too_large(config)
    return config


# Each field within its bounds can still add up to a model no worker holds: about 5e10
# parameters, or attention patterns of 64 heads x 4096^2 positions per example.
MAX_PARAMETERS = 50_000_000
MAX_ATTENTION_ENTRIES = 2**24  # heads x n_ctx^2 of one block, per example


def _refuse_too_large(config: TransformerConfig) -> None:
    errors: Errors = {}
    parameters = _parameter_count(config)
    if parameters > MAX_PARAMETERS:
        errors["spec"] = [f"has {parameters:,} parameters; at most {MAX_PARAMETERS:,}."]
    for index, block in enumerate(config.blocks):
        if block.n_heads * config.n_ctx**2 > MAX_ATTENTION_ENTRIES:
            errors[f"blocks.{index}.n_heads"] = [
                f"{block.n_heads} heads over n_ctx {config.n_ctx} make attention patterns of "
                f"{block.n_heads * config.n_ctx**2:,} entries per example; at most "
                f"{MAX_ATTENTION_ENTRIES:,}."
            ]
    if errors:
        raise TransformerSpecError(errors)


def transformer_hyperparameters(spec: dict) -> dict[str, Any]:
    """Out: the spec's hyperparameters merged over the defaults (validated)."""
    validate_transformer_spec(spec)
    return validate_hyperparameters(spec.get("hyperparameters", {}))


def block_parameter_count(config: TransformerConfig, block: BlockConfig) -> int:
    """Out: trainable parameters of one block (attention, optional MLP, optional LayerNorms)."""
    d, heads, d_head = config.d_model, block.n_heads, config.d_head
    attention = 4 * heads * d * d_head + 3 * heads * d_head + d  # W_Q/K/V/O, b_Q/K/V, b_O
    mlp = 0 if block.d_mlp is None else 2 * d * block.d_mlp + block.d_mlp + d
    norms = 0 if config.normalization is None else 2 * d * (1 if block.d_mlp is None else 2)
    return attention + mlp + norms


def count_transformer_parameters(spec: dict) -> int:
    """Out: the trainable parameters the built transformer will have (analytic count)."""
    return _parameter_count(validate_transformer_spec(spec))


def _parameter_count(config: TransformerConfig) -> int:
    d, vocab = config.d_model, config.d_vocab
    embeddings = vocab * d + config.n_ctx * d
    unembed = d * vocab + vocab
    final_norm = 0 if config.normalization is None else 2 * d
    blocks = sum(block_parameter_count(config, block) for block in config.blocks)
    return embeddings + blocks + final_norm + unembed


def transformer_unit_layers(spec: dict) -> dict[str, int]:
    """Out: {layer: units} where a finding can sit: "blocks.{i}.attn" with its heads as units,
    "blocks.{i}.mlp" with its neurons (only for blocks that have an MLP)."""
    config = validate_transformer_spec(spec)
    layers: dict[str, int] = {}
    for index, block in enumerate(config.blocks):
        layers[f"blocks.{index}.attn"] = block.n_heads
        if block.d_mlp is not None:
            layers[f"blocks.{index}.mlp"] = block.d_mlp
    return layers
