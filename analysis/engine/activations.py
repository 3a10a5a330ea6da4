"""Forward hooks and streaming per-unit activation statistics.

A unit's response to one example is its activation; for a conv channel it is the spatial mean
of the channel's feature map. Statistics are accumulated batch by batch in float64 on the
model's device, so memory does not grow with the probe set.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
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
    "unit_responses",
]


def resolve_modules(model: nn.Module, layer_names: Sequence[str]) -> dict[str, nn.Module]:
    """Out: {name: submodule} for the named layers; KeyError listing what exists otherwise."""
    modules = dict(model.named_modules())
    missing = [name for name in layer_names if name not in modules or not name]
    if missing:
        known = ", ".join(name for name in modules if name)
        raise KeyError(f"no layer(s) {', '.join(map(repr, missing))} in the model; known: {known}")
    return {name: modules[name] for name in layer_names}


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


def unit_responses(output: torch.Tensor) -> torch.Tensor:
    """In: a layer output [B, U] or [B, U, H, W]. Out: responses [B, U] (spatial mean for conv)."""
    if output.dim() == 4:
        return output.mean(dim=(2, 3))
    if output.dim() == 2:
        return output
    raise ValueError(f"cannot profile a layer output of shape {list(output.shape)}")


class _StreamingUnitStats:
    """Running float64 sums over the units of all profiled layers, side by side.

    Concatenating the layers' responses lets one set of small ops per batch serve every
    layer; linear sums (total, per class, attribute cross-products) come from one matmul with
    the batch's design matrix [1 + K + A, B].
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

    def host_sums(self) -> dict[str, np.ndarray]:
        """Out: the running sums as float64 numpy arrays (one device-to-host copy each)."""
        return {key: value.cpu().numpy() for key, value in self.sums.items()}

    def layer_profile(
        self,
        name: str,
        host_sums: dict[str, np.ndarray],
        columns: slice,
        class_counts: np.ndarray,
        attribute_sums: dict,
    ) -> LayerProfile:
        """Out: the LayerProfile of the layer occupying `columns` of host_sums (float64)."""
        n, k = self.count, len(class_counts)
        sums = {key: value[..., columns] for key, value in host_sums.items()}
        linear, squares = sums["linear"], sums["squares"]
        mean = linear[0] / n
        correlations = {
            attribute: _pearson(n, linear[0], squares, sum_y, sum_y2, linear[1 + k + index])
            for index, (attribute, (sum_y, sum_y2)) in enumerate(attribute_sums.items())
        }
        return LayerProfile(
            name=name,
            n=n,
            mean=mean,
            variance=np.maximum(squares / n - mean * mean, 0.0),
            maximum=sums["maximum"],
            fraction_inactive=sums["inactive"] / n,
            class_means=linear[1 : 1 + k] / np.maximum(class_counts, 1)[:, None],
            class_counts=class_counts,
            correlations=correlations,
        )


def _pearson(n: int, sum_x, sum_x2, sum_y: float, sum_y2: float, sum_xy) -> np.ndarray:
    covariance = n * sum_xy - sum_x * sum_y
    spread = (n * sum_x2 - sum_x * sum_x) * (n * sum_y2 - sum_y * sum_y)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = covariance / np.sqrt(np.maximum(spread, 0.0))
    return np.where(spread > 0, np.clip(r, -1.0, 1.0), np.nan)


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


def _design_matrix(probe: _ProbeSet, device: torch.device) -> torch.Tensor:
    """Out: float64 [1 + K + A, N]: a row of ones, one-hot class rows, attribute rows."""
    n = len(probe.inputs)
    rows = [torch.ones(1, n, dtype=torch.float64)]
    if probe.labels is not None:
        rows.append(F.one_hot(probe.labels.cpu(), len(probe.class_names)).T.double())
    rows.extend(value.cpu().double().reshape(1, n) for value in probe.attributes.values())
    return torch.cat(rows).to(device)


def _summaries(probe: _ProbeSet) -> tuple[np.ndarray, dict[str, tuple[float, float]]]:
    """Out: class counts [K] and per-attribute (sum y, sum y^2), which no layer changes."""
    counts = (
        np.bincount(probe.labels.cpu().numpy(), minlength=len(probe.class_names))
        if probe.labels is not None
        else np.zeros(0, dtype=np.int64)
    )
    sums = {}
    for name, value in probe.attributes.items():
        y = value.cpu().double()
        sums[name] = (float(y.sum()), float(y.square().sum()))
    return counts, sums


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
    if len(probe.inputs) == 0:
        raise ValueError("cannot profile an empty probe set")
    layer_names = list(layers) if layers is not None else default_probe_layers(model)
    stats = _StreamingUnitStats()
    device = next(model.parameters()).device
    design = _design_matrix(probe, device)
    pending: dict[str, torch.Tensor] = {}

    def record(name: str, output: torch.Tensor) -> None:
        pending[name] = unit_responses(output)

    with eval_mode(model), torch.inference_mode(), recording_hooks(model, layer_names, record):
        for start in range(0, len(probe.inputs), batch_size):
            model(probe.inputs[start : start + batch_size].to(device, non_blocking=True))
            responses = [pending[name] for name in layer_names]
            stats.update(torch.cat(responses, dim=1), design[:, start : start + batch_size])
    widths = [response.shape[1] for response in responses]
    return _assemble_profile(stats, probe, layer_names, widths)


def _assemble_profile(stats, probe: _ProbeSet, layer_names, widths) -> ActivationProfile:
    counts, attribute_sums = _summaries(probe)
    offsets = np.concatenate([[0], np.cumsum(widths)])
    host_sums = stats.host_sums()
    profiles = {
        name: stats.layer_profile(
            name, host_sums, slice(offsets[i], offsets[i + 1]), counts, attribute_sums
        )
        for i, name in enumerate(layer_names)
    }
    return ActivationProfile(profiles, probe.class_names, list(probe.attributes), len(probe.inputs))
