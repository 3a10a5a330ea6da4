"""Ablation of attention heads and MLP neurons through temporary hooks, against random sets.

A head is silenced at `blocks.{i}.attn.hook_z` (its output before W_O, [B, P, H, E]), a neuron
at `blocks.{i}.mlp.hook_post` ([B, P, M]): set to zero, or to its mean over the probe set
(per head a mean vector [E], per neuron a mean value). Parameters are never touched and the
hooks are removed on exit, so the model is restored bitwise. The effect is compared with
random sets of as many heads (neurons) of the same layer, as ablation.py does for CNN units.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from scipy import stats as scipy_stats

from analysis.engine.ablation import AblationResult, _random_unit_sets
from analysis.engine.activations import recording_hooks
from analysis.engine.sequence_tasks import SequenceBatch
from analysis.engine.training import eval_mode
from analysis.engine.transformer import Transformer
from analysis.engine.transformer_training import evaluate_sequences

KINDS = ("heads", "neurons")


def _hook_name(model: Transformer, block: int, kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if not 0 <= block < len(model.blocks):
        raise ValueError(f"block must be from 0 to {len(model.blocks) - 1}, got {block}")
    if kind == "neurons" and not model.blocks[block].has_mlp:
        raise ValueError(f"block {block} has no MLP")
    return f"blocks.{block}.attn.hook_z" if kind == "heads" else f"blocks.{block}.mlp.hook_post"


def unit_count(model: Transformer, block: int, kind: str) -> int:
    """Out: the number of heads (kind "heads") or MLP neurons ("neurons") of the block."""
    _hook_name(model, block, kind)
    config = model.config.blocks[block]
    return config.n_heads if kind == "heads" else config.d_mlp


def mean_unit_outputs(
    model: Transformer, probe: SequenceBatch, *, block: int, kind: str, batch_size: int = 64
) -> torch.Tensor:
    """Out: mean over sequences and positions of each head's z ([H, E]) or each neuron's
    activation ([M]), float64, streamed (one batch's outputs at a time)."""
    name = _hook_name(model, block, kind)
    total: list[torch.Tensor] = []
    rows = 0
    device = next(model.parameters()).device

    def add(_name: str, output: torch.Tensor) -> None:
        summed = output.double().sum(dim=(0, 1))  # [H, E] or [M]
        if total:
            total[0] += summed
        else:
            total.append(summed)

    with eval_mode(model), torch.inference_mode(), recording_hooks(model, [name], add):
        for start in range(0, len(probe), batch_size):
            tokens = probe.tokens[start : start + batch_size].to(device)
            model(tokens)
            rows += tokens.numel()
    return total[0] / rows


MAX_SLICE_RUNS = 4  # more runs of units than this: one index_fill_ instead


def _consecutive_runs(units: list[int]) -> list[tuple[int, int]]:
    """Out: the sorted distinct units as [start, stop) runs of consecutive numbers."""
    runs: list[tuple[int, int]] = []
    for unit in sorted(set(units)):
        if runs and runs[-1][1] == unit:
            runs[-1] = (runs[-1][0], unit + 1)
        else:
            runs.append((unit, unit + 1))
    return runs


@contextlib.contextmanager
def ablate_transformer_units(
    model: Transformer,
    *,
    block: int,
    kind: str,
    units: Sequence[int],
    mode: str = "zero",
    means: torch.Tensor | None = None,
) -> Iterator[Transformer]:
    """Within the block, replace heads ([B, P, H, E] at hook_z) or neurons ([B, P, M] at
    hook_post) of `block`: mode "zero" sets them to 0, mode "mean" to `means` (from
    mean_unit_outputs). The units are overwritten in place, as TransformerLens's ablation
    hooks do: hook_z's input is the fresh product of the pattern and the values, and
    hook_post's the fresh activation, read by nothing but the next product and by hooks
    registered on the same point (which see what is overwritten only if they run after
    this one). In place measured cheaper than a replaced copy of the whole output (no
    fresh block each batch); with gradients on, the copy is replaced instead, as autograd
    may hold the output. The hook is removed on exit."""
    if mode not in ("zero", "mean"):
        raise ValueError(f"mode must be 'zero' or 'mean', got {mode!r}")
    if mode == "mean" and means is None:
        raise ValueError("mode 'mean' needs the units' means (mean_unit_outputs)")
    name = _hook_name(model, block, kind)
    width = unit_count(model, block, kind)
    index = [int(unit) for unit in units]
    if any(not 0 <= unit < width for unit in index):
        raise ValueError(f"units must be from 0 to {width - 1}, got {index}")

    positions = torch.tensor(index, dtype=torch.long)
    # Runs of consecutive units are written as slices: measured ~10x cheaper than an
    # index_fill_ over the same units of a [64, 64, 4, 16] output (24 vs 210 us).
    runs = _consecutive_runs(index)
    if len(runs) > MAX_SLICE_RUNS:
        runs = None

    def replace(_name: str, output: torch.Tensor) -> torch.Tensor | None:
        if torch.is_grad_enabled() and output.requires_grad:
            # autograd may keep the output (ReLU does, for its backward): never overwrite it
            output = output.clone()
        values = 0 if mode == "zero" else means.to(output.device, output.dtype)
        if runs is not None:
            for start, stop in runs:
                output[:, :, start:stop] = 0 if mode == "zero" else values[start:stop]
        elif mode == "zero":
            output.index_fill_(2, positions.to(output.device), 0)
        else:
            output[:, :, index] = values[index]
        return output

    with recording_hooks(model, [name], replace):
        yield model


def measure_transformer_ablation(
    model: Transformer,
    probe: SequenceBatch,
    *,
    block: int,
    kind: str,
    units: Sequence[int],
    mode: str = "zero",
    random_sets: int = 10,
    seed: int = 0,
) -> AblationResult:
    """Accuracy drop on the probe's scored predictions from ablating `units` (heads or
    neurons) of `block`, against equally many random units of the same block.

    Out: AblationResult (layer "blocks.{i}.attn" or "blocks.{i}.mlp"), as measure_ablation's:
    baseline/ablated {"loss", "accuracy", "scored"}, drop, the random sets and their drops,
    percentile and z-score (None when the random drops do not vary).
    """
    units = [int(unit) for unit in units]
    means = mean_unit_outputs(model, probe, block=block, kind=kind) if mode == "mean" else None

    def ablated(chosen: list[int]) -> dict[str, float]:
        with ablate_transformer_units(
            model, block=block, kind=kind, units=chosen, mode=mode, means=means
        ):
            return evaluate_sequences(model, probe)

    baseline = evaluate_sequences(model, probe)
    target = ablated(units)
    drop = baseline["accuracy"] - target["accuracy"]
    sets = _random_unit_sets(unit_count(model, block, kind), units, random_sets, seed)
    random_drops = [baseline["accuracy"] - ablated(chosen)["accuracy"] for chosen in sets]
    spread = float(np.std(random_drops, ddof=1)) if len(random_drops) > 1 else 0.0
    z_score = (drop - float(np.mean(random_drops))) / spread if spread > 0 else None
    percentile = float(scipy_stats.percentileofscore(random_drops, drop)) if sets else 100.0
    layer = f"blocks.{block}.attn" if kind == "heads" else f"blocks.{block}.mlp"
    return AblationResult(
        layer, units, mode, baseline, target, drop, sets, random_drops, percentile, z_score
    )
