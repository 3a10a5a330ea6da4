"""Deterministic training and evaluation of spec-built models on in-memory datasets."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from analysis.engine.builder import build_model, select_device, set_seed
from analysis.engine.datasets import ArrayDataset
from analysis.engine.specs import hyperparameters_of

ProgressCallback = Callable[[float, str], None]
EVAL_BATCH_SIZE = 512
SGD_MOMENTUM = 0.9


@dataclass
class TrainConfig:
    """Training settings. `split_seed` fixes the train/test split across training seeds so
    that seeds vary only initialisation, data order and dropout."""

    epochs: int = 2
    batch_size: int = 64
    optimizer: str = "adam"
    learning_rate: float = 1e-2
    weight_decay: float = 0.0
    test_fraction: float = 0.2
    threads: int = 1
    split_seed: int = 0

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Out: the names of all config fields."""
        return tuple(item.name for item in fields(cls))

    @classmethod
    def from_spec(cls, spec: dict, **overrides: Any) -> TrainConfig:
        """Out: a config taking the spec's hyperparameters, then `overrides` on top."""
        return cls(**{**hyperparameters_of(spec), **overrides})


@dataclass
class TrainResult:
    """The trained model (left in eval mode) and what happened while training it."""

    model: nn.Module
    metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with torch using `count` intra-op threads, restoring the old count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put the model in eval mode for the block and restore its previous train/eval mode.

    The top-level module's flag stands for the whole model (as model.train()/eval() set it),
    so a model already in eval mode is left alone; that saves a walk over every submodule.
    """
    was_training = model.training
    if was_training:
        model.eval()
    try:
        yield model
    finally:
        if was_training:
            model.train()


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Out: the optimizer named in config (SGD uses momentum 0.9)."""
    params = model.parameters()
    lr, decay = config.learning_rate, config.weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=SGD_MOMENTUM, weight_decay=decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=decay)
    raise ValueError(f"unknown optimizer {config.optimizer!r}")


def _loss_and_correct(
    model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy and number correct, as device tensors (no host sync)."""
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    with eval_mode(model), torch.inference_mode():
        for start in range(0, len(labels), batch_size):
            batch_inputs = inputs[start : start + batch_size].to(device, non_blocking=True)
            batch_labels = labels[start : start + batch_size].to(device, non_blocking=True)
            logits = model(batch_inputs)  # [B, classes]
            loss_sum += F.cross_entropy(logits, batch_labels, reduction="sum").double()
            correct += (logits.argmax(dim=1) == batch_labels).sum()
    return loss_sum, correct


def evaluate(
    model: nn.Module, dataset: ArrayDataset, *, batch_size: int = EVAL_BATCH_SIZE
) -> dict[str, float]:
    """Accuracy and mean cross-entropy of the model on the dataset.

    In: model mapping [B, ...] to [B, classes] logits, dataset. Out: {"accuracy", "loss"}.
    Runs under inference_mode in eval mode; the model's previous mode is restored.
    """
    loss_sum, correct = _loss_and_correct(model, dataset.inputs, dataset.labels, batch_size)
    count = max(len(dataset), 1)
    return {"accuracy": correct.item() / count, "loss": loss_sum.item() / count}


def _train_one_epoch(model, optimizer, inputs, labels, batch_size, generator) -> torch.Tensor:
    """One pass over shuffled batches. Out: summed training loss as a device tensor."""
    model.train()
    order = torch.randperm(len(labels), generator=generator).to(inputs.device)
    loss_sum = torch.zeros((), device=inputs.device)
    for start in range(0, len(labels), batch_size):
        batch = order[start : start + batch_size]
        logits = model(inputs[batch])  # [B, classes]
        loss = F.cross_entropy(logits, labels[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(batch)
    return loss_sum


def _run_epochs(model, config, train, test, *, seed, on_progress) -> list[dict[str, float]]:
    device = next(model.parameters()).device
    train_x, train_y = train.inputs.to(device), train.labels.to(device)
    test_x, test_y = test.inputs.to(device), test.labels.to(device)
    optimizer = make_optimizer(model, config)
    generator = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(1, config.epochs + 1):
        train_loss = _train_one_epoch(
            model, optimizer, train_x, train_y, config.batch_size, generator
        )
        test_loss, correct = _loss_and_correct(model, test_x, test_y, EVAL_BATCH_SIZE)
        # One host sync per epoch: the only point where numbers leave the device.
        record = {
            "epoch": epoch,
            "train_loss": train_loss.item() / len(train_y),
            "test_loss": test_loss.item() / len(test_y),
            "test_accuracy": correct.item() / len(test_y),
        }
        history.append(record)
        if on_progress is not None:
            on_progress(
                epoch / config.epochs,
                f"epoch {epoch}/{config.epochs}: test accuracy {record['test_accuracy']:.4f}",
            )
    return history


def train_model(
    spec: dict,
    dataset: ArrayDataset,
    config: TrainConfig,
    *,
    seed: int,
    on_progress: ProgressCallback | None = None,
) -> TrainResult:
    """Build the spec, train it on the dataset's train split, evaluate on its test split.

    In: spec, dataset, config, seed (weights, data order, dropout). Out: TrainResult with
    metrics {"test_accuracy", "test_loss", "train_loss"} of the last epoch and per-epoch history.
    Bitwise reproducible on CPU for a seed. on_progress(fraction, message) is called per epoch.
    """
    device = select_device()
    train, test = dataset.split(config.test_fraction, seed=config.split_seed)
    started = time.perf_counter()
    with torch_threads(config.threads):
        set_seed(seed)
        model = build_model(spec).to(device)
        history = _run_epochs(model, config, train, test, seed=seed, on_progress=on_progress)
    model.eval()
    last = history[-1]
    metrics = {key: last[key] for key in ("test_accuracy", "test_loss", "train_loss")}
    seconds = time.perf_counter() - started
    return TrainResult(model, metrics, history, seconds, str(device))
