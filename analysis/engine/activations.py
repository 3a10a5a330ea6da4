"""Forward hooks and streaming per-unit activation statistics.

A unit's response to one example is its activation; for a conv channel it is the spatial mean
of the channel's feature map. Responses are folded into running float64 sums on the model's
device every few batches, so memory does not grow with the probe set.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from analysis.engine.datasets import ArrayDataset
from analysis.engine.profiles import (
    ActivationProfile,
    LayerProfile,
    as_profile,
    attribute_correlation,
    class_selectivity,
    cluster_units,
    concept_scores,
    localise_concept,
    selectivity_index,
    top_units,
)
from analysis.engine.training import eval_mode

HookCallback = Callable[[str, torch.Tensor], torch.Tensor | None]

# Responses of a few batches are gathered before they are folded into the running sums: one
# fold per probe set of the usual size instead of one per batch, in at most 1 MiB (float32),
# whatever the probe set's size.
RESPONSE_BUFFER_VALUES = 1 << 18

__all__ = [
    "ActivationProfile",
    "LayerProfile",
    "as_profile",
    "attribute_correlation",
    "class_selectivity",
    "cluster_units",
    "default_probe_layers",
    "concept_scores",
    "localise_concept",
    "profile_activations",
    "recording_hooks",
    "resolve_modules",
    "selectivity_index",
    "top_units",
]


def resolve_modules(model: nn.Module, layer_names: Sequence[str]) -> dict[str, nn.Module]:
    """Out: {name: submodule} for the named layers; KeyError listing what exists otherwise.

    Each name is looked up along its path (get_submodule): listing every module of the model
    cost ~0.5 ms per call on a two-block transformer, which profiling and ablation pay per
    call."""
    found, missing = {}, []
    for name in layer_names:
        try:
            found[name] = model.get_submodule(name) if name else None
        except AttributeError:
            found[name] = None
        if found[name] is None:
            missing.append(name)
    if missing:
        known = ", ".join(name for name, _ in model.named_modules() if name)
        raise KeyError(f"no layer(s) {', '.join(map(repr, missing))} in the model; known: {known}")
    return found


@contextlib.contextmanager
def recording_hooks(
    model: nn.Module, layer_names: Sequence[str], callback: HookCallback
) -> Iterator[None]:
    """Call callback(layer_name, output) after each named layer's forward within the block.

    A callback returning a tensor replaces the layer's output. Hooks are removed on exit,
    also when the forward pass raises.
    """
    handles = []
    try:
        for name, module in resolve_modules(model, layer_names).items():
            handles.append(
                module.register_forward_hook(
                    lambda _module, _inputs, output, name=name: callback(name, output)
                )
            )
        yield
    finally:
        for handle in handles:
            handle.remove()


class _StreamingUnitStats:
    """Running float64 sums over the units of all profiled layers, side by side.

    Concatenating the layers' responses lets one set of small ops serve every layer; linear
    sums (total, per class, attribute cross-products) come from one matmul with the rows'
    design matrix [1 + K + A, B].
    """

    def __init__(self) -> None:
        self.count = 0
        self.sums: dict[str, torch.Tensor] = {}

    def update(self, responses: torch.Tensor, design: torch.Tensor) -> None:
        """In: responses [B, U], design float64 [1 + K + A, B] (ones, one-hot classes, attrs)."""
        x = responses.double()
        batch = {
            "linear": design @ x,  # [1 + K + A, U]
            "squares": x.square().sum(dim=0),
            "inactive": (x <= 0).sum(dim=0),
        }
        if not self.sums:
            self.sums = {**batch, "maximum": x.amax(dim=0)}
        else:
            for key, value in batch.items():
                self.sums[key] += value
            torch.maximum(self.sums["maximum"], x.amax(dim=0), out=self.sums["maximum"])
        self.count += x.shape[0]

    def layer_profiles(
        self,
        widths: dict[str, int],
        class_counts: np.ndarray,
        attribute_sums: dict[str, tuple[float, float]],
    ) -> dict[str, LayerProfile]:
        """Out: {layer: LayerProfile}, layers occupying consecutive columns of the given
        widths. Every statistic is computed once over all columns (float64), then sliced."""
        sums = {key: value.cpu().numpy() for key, value in self.sums.items()}
        n, k = self.count, len(class_counts)
        linear, squares = sums["linear"], sums["squares"]
        mean = linear[0] / n
        variance = np.maximum(squares / n - mean * mean, 0.0)
        class_means = linear[1 : 1 + k] / np.maximum(class_counts, 1)[:, None]
        correlations = _pearson(n, linear[0], squares, attribute_sums, linear[1 + k :])
        profiles, offset = {}, 0
        for name, width in widths.items():
            columns = slice(offset, offset + width)
            offset += width
            profiles[name] = LayerProfile(
                name=name,
                n=n,
                mean=mean[columns],
                variance=variance[columns],
                maximum=sums["maximum"][columns],
                fraction_inactive=sums["inactive"][columns] / n,
                class_means=class_means[:, columns],
                class_counts=class_counts,
                correlations={
                    attribute: r[columns]
                    for attribute, r in zip(attribute_sums, correlations, strict=True)
                },
            )
        return profiles


def _pearson(n: int, sum_x, sum_x2, attribute_sums: dict, sum_xy) -> np.ndarray:
    """Out: Pearson r [A, U] of every unit with every attribute from running sums (nan where
    the unit or the attribute is constant). sum_xy: [A, U]; attribute_sums: {name: (sum y,
    sum y^2)} in the rows' order."""
    if not attribute_sums:
        return np.zeros((0, len(sum_x)))
    y_sums = np.array(list(attribute_sums.values()))  # [A, 2]
    sum_y, sum_y2 = y_sums[:, :1], y_sums[:, 1:]
    covariance = n * sum_xy - sum_x * sum_y
    spread = (n * sum_x2 - sum_x * sum_x) * (n * sum_y2 - sum_y * sum_y)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = covariance / np.sqrt(np.maximum(spread, 0.0))
    return np.where(spread > 0, np.clip(r, -1.0, 1.0), np.nan)


class _ResponseBuffer:
    """The profiled layers' unit sums over the latest batches: one [rows, U] block per layer.

    The hooks write into the blocks in place (made at the first batch), so a profiled batch
    allocates nothing for its responses. A conv channel's spatial sum written to a contiguous
    block measured cheaper than its mean written to a strided one or allocated anew; the
    means come from one scaling per fold. A block holds whole batches, up to
    RESPONSE_BUFFER_VALUES values (at least one batch).
    """

    def __init__(self, names: list[str], n_examples: int, batch_size: int) -> None:
        self.names, self.batch_size = names, batch_size
        self.capacity = n_examples  # rows per block
        self.blocks: dict[str, torch.Tensor] = {}
        self.positions: dict[str, int] = {}  # spatial positions summed per unit (1 if dense)
        self.scale: torch.Tensor | None = None  # 1 / positions per column, float64
        self.rows = 0  # rows filled by completed batches since the last fold

    @property
    def widths(self) -> dict[str, int]:
        return {name: self.blocks[name].shape[1] for name in self.names}

    @property
    def values_device(self) -> torch.device:
        return self.blocks[self.names[0]].device

    def record(self, name: str, output: torch.Tensor) -> None:
        """Hook callback: write the layer's unit sums for the current batch."""
        block = self.blocks.get(name)
        if block is None:
            block = self._allocate(name, output)
        rows = block[self.rows : self.rows + output.shape[0]]
        if output.dim() == 4:
            torch.sum(output, (2, 3), out=rows)
        else:
            rows.copy_(output)

    def batch_done(self, batch_rows: int) -> bool:
        """Count a finished batch in. Out: True when another batch would not fit."""
        if missing := [name for name in self.names if name not in self.blocks]:
            raise RuntimeError(f"layer(s) {', '.join(missing)} did not run in the forward pass")
        self.rows += batch_rows
        return self.rows + self.batch_size > self.capacity

    def take_means(self) -> torch.Tensor:
        """Out: mean responses of the rows gathered since the last take, all layers side by
        side [rows, U_total], float64. The blocks are then empty again."""
        if self.scale is None:
            columns = [1.0 / self.positions[name] for name, width in self.widths.items()
                       for _ in range(width)]  # fmt: skip
            self.scale = torch.tensor(columns, dtype=torch.float64, device=self.values_device)
        sums = torch.cat([self.blocks[name][: self.rows] for name in self.names], dim=1)
        self.rows = 0
        return sums.double().mul_(self.scale)

    def _allocate(self, name: str, output: torch.Tensor) -> torch.Tensor:
        if output.dim() not in (2, 4):
            raise ValueError(f"cannot profile a layer output of shape {list(output.shape)}")
        width = output.shape[1]
        batches = max(1, RESPONSE_BUFFER_VALUES // (self.batch_size * width))
        self.capacity = min(self.capacity, batches * self.batch_size)
        self.positions[name] = output[0, 0].numel()
        self.blocks[name] = output.new_empty(self.capacity, width)
        return self.blocks[name]


@dataclass
class _ProbeSet:
    inputs: torch.Tensor
    labels: torch.Tensor | None
    class_names: list[str]
    attributes: dict[str, torch.Tensor]


def _probe_set(dataset_or_inputs, concept_labels, attributes, class_names) -> _ProbeSet:
    if isinstance(dataset_or_inputs, ArrayDataset):
        dataset = dataset_or_inputs
        labels = dataset.labels if concept_labels is None else concept_labels
        names = class_names or dataset.class_names
        attrs = dataset.attributes if attributes is None else attributes
        return _ProbeSet(dataset.inputs, labels, list(names), dict(attrs))
    labels = concept_labels
    if labels is not None and not class_names:
        class_names = [str(index) for index in range(int(labels.max()) + 1)]
    return _ProbeSet(dataset_or_inputs, labels, list(class_names or []), dict(attributes or {}))


ACTIVATION_MODULES = (nn.ReLU, nn.Tanh, nn.GELU)


def default_probe_layers(model: nn.Module) -> list[str]:
    """Out: the layers profiled when none are named: the top-level activation layers.

    Post-activation responses are where unit selectivity is usually read (and where the
    selectivity index is bounded); models without activations fall back to all top-level
    conv/linear layers.
    """
    children = list(model.named_children())
    activations = [name for name, module in children if isinstance(module, ACTIVATION_MODULES)]
    units = [name for name, module in children if isinstance(module, nn.Conv2d | nn.Linear)]
    return activations or units


def _design_matrix(
    probe: _ProbeSet, device: torch.device
) -> tuple[torch.Tensor, np.ndarray, dict[str, tuple[float, float]]]:
    """Out: float64 [1 + K + A, N] on the device (a row of ones, one-hot class rows, attribute
    rows), the class counts [K] and each attribute's (sum y, sum y^2), which no layer
    changes. Built with numpy: a few cheap host ops instead of a dozen torch dispatches."""
    n, k = len(probe.inputs), len(probe.class_names) if probe.labels is not None else 0
    design = np.empty((1 + k + len(probe.attributes), n))
    design[0] = 1.0
    if k:
        labels = probe.labels.cpu().numpy()
        if labels.min() < 0 or labels.max() >= k:
            raise ValueError(f"class labels must be from 0 to {k - 1} ({k} class names)")
        design[1 : 1 + k] = labels == np.arange(k)[:, None]
    for row, value in enumerate(probe.attributes.values(), start=1 + k):
        design[row] = value.cpu().numpy()
    sums, squares = design.sum(axis=1), np.square(design).sum(axis=1)
    attribute_sums = {
        name: (sums[row], squares[row]) for row, name in enumerate(probe.attributes, start=1 + k)
    }
    counts = sums[1 : 1 + k].astype(np.int64)
    return torch.from_numpy(design).to(device), counts, attribute_sums


def profile_activations(
    model: nn.Module,
    dataset_or_inputs: ArrayDataset | torch.Tensor,
    *,
    layers: Sequence[str] | None,
    batch_size: int = 256,
    concept_labels: torch.Tensor | None = None,
    attributes: dict[str, torch.Tensor] | None = None,
    class_names: Sequence[str] | None = None,
) -> ActivationProfile:
    """Stream per-unit statistics of the named layers over a probe set.

    In: model; an ArrayDataset (its labels, class names and attributes are used unless given)
    or inputs [N, ...]; layers to profile (None: default_probe_layers, the activations);
    optional class labels [N] and attributes {name: [N]}. Out: ActivationProfile with, per
    layer and unit, mean, variance, maximum, fraction inactive, per-class means and Pearson r
    with each attribute. Runs in eval mode under inference_mode; the mode is restored.
    """
    probe = _probe_set(dataset_or_inputs, concept_labels, attributes, class_names)
    n = len(probe.inputs)
    if n == 0:
        raise ValueError("cannot profile an empty probe set")
    names = list(dict.fromkeys(layers if layers is not None else default_probe_layers(model)))
    device = next(model.parameters()).device
    design, counts, attribute_sums = _design_matrix(probe, device)
    stats = _StreamingUnitStats()
    buffer = _ResponseBuffer(names, n, batch_size)
    with (
        eval_mode(model),
        torch.inference_mode(),
        recording_hooks(model, names, buffer.record),
    ):
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            model(probe.inputs[start:stop].to(device, non_blocking=True))
            if buffer.batch_done(stop - start) or stop == n:
                rows = buffer.rows
                stats.update(buffer.take_means(), design[:, stop - rows : stop])
    return ActivationProfile(
        stats.layer_profiles(buffer.widths, counts, attribute_sums),
        probe.class_names,
        list(probe.attributes),
        n,
    )
