"""Deterministic training and evaluation of transformers on the procedural sequence tasks.

A small step-based loop beside training.py: the CNN harness trains epochs over a fixed
ArrayDataset with one label per example, while sequence tasks draw fresh batches per step and
score several positions per sequence. Seeding, optimizers, thread and eval-mode handling are
training.py's own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from analysis.engine.builder import select_device, set_seed
from analysis.engine.sequence_tasks import (
    IGNORE_TARGET,
    InductionTask,
    ModularAdditionTask,
    SequenceBatch,
    training_sampler,
)
from analysis.engine.training import ProgressCallback, eval_mode, make_optimizer, torch_threads
from analysis.engine.transformer import Transformer, build_transformer

EVAL_BATCH_SIZE = 256


@dataclass
class SequenceTrainConfig:
    """Training settings for a sequence task: `steps` optimizer steps of `batch_size`
    sequences; `eval_seed` fixes the induction task's held-out sequences across seeds."""

    steps: int = 1000
    batch_size: int = 64
    optimizer: str = "adamw"
    learning_rate: float = 3e-3
    weight_decay: float = 0.0
    eval_size: int = 512
    eval_seed: int = 10_000
    threads: int = 1


@dataclass
class SequenceTrainResult:
    """The trained model (left in eval mode) and its held-out metrics."""

    model: Transformer
    metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"


def sequence_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """In: logits [B, P, V], targets [B, P] (IGNORE_TARGET skipped). Out: mean cross-entropy."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_TARGET)


def evaluate_sequences(
    model: Transformer, batch: SequenceBatch, *, batch_size: int = EVAL_BATCH_SIZE
) -> dict[str, float]:
    """Loss and accuracy of the model on the batch's scored predictions.

    Out: {"loss": mean cross-entropy, "accuracy": fraction argmax-correct, "scored": count}.
    Runs under inference_mode in eval mode; the previous mode is restored.
    """
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    with eval_mode(model), torch.inference_mode():
        for start in range(0, len(batch), batch_size):
            part = batch.slice(start, start + batch_size)
            scored = part.scored.to(device)
            logits = model(part.tokens.to(device))[scored]  # [S, V]
            targets = part.targets.to(device)[scored]  # [S]
            loss_sum += F.cross_entropy(logits, targets, reduction="sum").double()
            correct += (logits.argmax(dim=-1) == targets).sum()
    count = int(batch.scored.sum())
    return {
        "loss": loss_sum.item() / max(count, 1),
        "accuracy": correct.item() / max(count, 1),
        "scored": count,
    }


def held_out_batch(task: InductionTask | ModularAdditionTask, config: SequenceTrainConfig):
    """Out: the evaluation sequences: eval_size draws by eval_seed for the induction task, the
    test split for modular addition. The same for every training seed."""
    if isinstance(task, InductionTask):
        return task.sample(config.eval_size, torch.Generator().manual_seed(config.eval_seed))
    return task.split()[1]


def _train_steps(model, task, config, generator, on_progress) -> list[dict[str, Any]]:
    device = next(model.parameters()).device
    optimizer = make_optimizer(model, config)
    sample = training_sampler(task)
    history = []
    model.train()
    report_every = max(1, config.steps // 10)
    for step in range(1, config.steps + 1):
        batch = sample(config.batch_size, generator)
        logits = model(batch.tokens.to(device))  # [B, P, V]
        loss = sequence_loss(logits, batch.targets.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % report_every == 0 or step == config.steps:
            history.append({"step": step, "train_loss": loss.item()})
            if on_progress is not None:
                on_progress(step / config.steps, f"step {step}/{config.steps}: loss {loss:.4f}")
    return history


def train_transformer(
    spec: dict,
    task: InductionTask | ModularAdditionTask,
    config: SequenceTrainConfig,
    *,
    seed: int,
    on_progress: ProgressCallback | None = None,
) -> SequenceTrainResult:
    """Build the spec, train it on the task, evaluate it on the held-out sequences.

    In: transformer spec, task, config, seed (weights and training batches). Out: the result
    with metrics {"test_loss", "test_accuracy", "train_loss"}. Bitwise reproducible on CPU.
    """
    device = select_device()
    started = time.perf_counter()
    with torch_threads(config.threads):
        set_seed(seed)
        model = build_transformer(spec).to(device)
        generator = torch.Generator().manual_seed(seed)
        history = _train_steps(model, task, config, generator, on_progress)
        model.eval()
        held_out = evaluate_sequences(model, held_out_batch(task, config))
    metrics = {
        "test_loss": held_out["loss"],
        "test_accuracy": held_out["accuracy"],
        "train_loss": history[-1]["train_loss"],
    }
    seconds = time.perf_counter() - started
    return SequenceTrainResult(model, metrics, history, seconds, str(device))
