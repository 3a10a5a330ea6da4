"""Unit ablation: silence units through a temporary forward hook and measure the effect."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from scipy import stats as scipy_stats
from torch import nn

from analysis.engine.activations import profile_activations, resolve_modules
from analysis.engine.datasets import ArrayDataset
from analysis.engine.training import eval_mode, evaluate


def _fill_values(units: torch.Tensor, mode: str, means, output: torch.Tensor) -> torch.Tensor:
    """Out: per-unit replacement values [k] on the output's device and dtype."""
    if mode == "zero":
        return torch.zeros(len(units), dtype=output.dtype, device=output.device)
    values = torch.as_tensor(np.asarray(means, dtype=np.float64)[units.cpu().numpy()])
    return values.to(device=output.device, dtype=output.dtype)


def _replace_units(output: torch.Tensor, units: torch.Tensor, values: torch.Tensor, source):
    """Set units (dim 1) of output [B, U] or [B, U, H, W] to values [k] (constant over space)."""
    shape = (1, -1) + (1,) * (output.dim() - 2)
    aliases_input = isinstance(source, torch.Tensor) and (
        output.untyped_storage().data_ptr() == source.untyped_storage().data_ptr()
    )
    if aliases_input or (torch.is_grad_enabled() and output.requires_grad):
        # Out of place: autograd needs the original, and pass-through layers (dropout in eval,
        # flatten) return their input, which must not be modified.
        replaced = output.clone()
        replaced[:, units] = values.view(shape)
        return replaced
    # In place touches only the ablated units' slices, which keeps inference cheap.
    output[:, units] = values.view(shape)
    return output


@contextlib.contextmanager
def ablate_units(
    model: nn.Module,
    layer: str,
    units: Sequence[int],
    *,
    mode: str = "zero",
    means: Sequence[float] | np.ndarray | None = None,
) -> Iterator[nn.Module]:
    """Within the block, replace the named layer's `units` (channels for conv) in its output.

    mode "zero" sets them to 0; mode "mean" sets each to means[unit] (per-unit mean response,
    e.g. ActivationProfile mean; constant over space for conv). Parameters and buffers are
    never touched and the hook is removed on exit, so restoration is exact.
    """
    if mode not in ("zero", "mean"):
        raise ValueError(f"mode must be 'zero' or 'mean', got {mode!r}")
    if mode == "mean" and means is None:
        raise ValueError("mode 'mean' needs the per-unit means")
    module = resolve_modules(model, [layer])[layer]
    index = torch.as_tensor(list(units), dtype=torch.long)
    cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def hook(_module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        key = (output.device, output.dtype)
        if key not in cache:
            device_index = index.to(output.device)
            cache[key] = (device_index, _fill_values(index, mode, means, output))
        return _replace_units(output, *cache[key], inputs[0] if inputs else None)

    handle = module.register_forward_hook(hook)
    try:
        yield model
    finally:
        handle.remove()


@dataclass
class AblationResult:
    """Effect of ablating target units, against random unit sets of the same size."""

    layer: str
    units: list[int]
    mode: str
    baseline: dict[str, float]
    ablated: dict[str, float]
    drop: float
    random_sets: list[list[int]]
    random_drops: list[float]
    percentile: float
    z_score: float | None

    def to_dict(self) -> dict[str, Any]:
        """Out: a JSON-able dict of all fields."""
        return asdict(self)


def layer_width(model: nn.Module, layer: str, example: torch.Tensor) -> int:
    """In: one input batch [B, ...]. Out: the number of units (dim 1) of the layer's output."""
    widths: list[int] = []
    module = resolve_modules(model, [layer])[layer]
    handle = module.register_forward_hook(lambda _m, _i, output: widths.append(output.shape[1]))
    try:
        with eval_mode(model), torch.inference_mode():
            model(example)
    finally:
        handle.remove()
    return widths[0]


def _random_unit_sets(width: int, target: list[int], count: int, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    others = [unit for unit in range(width) if unit not in set(target)]
    pool = others if len(others) >= len(target) else list(range(width))
    return [
        sorted(rng.choice(pool, size=len(target), replace=False).tolist()) for _ in range(count)
    ]


def _ablated_metrics(model, dataset, layer, units, mode, means) -> dict[str, float]:
    with ablate_units(model, layer, units, mode=mode, means=means):
        return evaluate(model, dataset)


def measure_ablation(
    model: nn.Module,
    dataset: ArrayDataset,
    *,
    layer: str,
    units: Sequence[int],
    mode: str = "zero",
    random_sets: int = 10,
    seed: int = 0,
    means: Sequence[float] | np.ndarray | None = None,
) -> AblationResult:
    """Accuracy drop from ablating `units` of `layer`, vs equally many random units.

    In: model, evaluation dataset, layer, target unit indices, mode ("zero"/"mean"; mean mode
    profiles the layer on the dataset when `means` is not given), number of random sets, seed.
    Out: AblationResult with baseline/ablated {"accuracy", "loss"}, drop = baseline accuracy
    minus ablated accuracy, the random sets' drops (drawn from units other than the targets
    where the layer is wide enough), the target drop's percentile among them and its z-score
    (None when the random drops do not vary).
    """
    units = [int(unit) for unit in units]
    if mode == "mean" and means is None:
        means = profile_activations(model, dataset, layers=[layer]).layers[layer].mean
    baseline = evaluate(model, dataset)
    ablated = _ablated_metrics(model, dataset, layer, units, mode, means)
    drop = baseline["accuracy"] - ablated["accuracy"]
    width = layer_width(model, layer, dataset.inputs[:1].to(next(model.parameters()).device))
    sets = _random_unit_sets(width, units, random_sets, seed)
    random_drops = [
        baseline["accuracy"] - _ablated_metrics(model, dataset, layer, s, mode, means)["accuracy"]
        for s in sets
    ]
    spread = float(np.std(random_drops, ddof=1)) if len(random_drops) > 1 else 0.0
    z_score = (drop - float(np.mean(random_drops))) / spread if spread > 0 else None
    percentile = float(scipy_stats.percentileofscore(random_drops, drop)) if sets else 100.0
    return AblationResult(
        layer, units, mode, baseline, ablated, drop, sets, random_drops, percentile, z_score
    )
