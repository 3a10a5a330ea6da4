"""Measured overhead of the engine against plain torch on the same work.

Each timing benchmark interleaves reference and subject in one process (alternating which
goes first), runs gc.collect() before every timed block, and reports medians. The verdict
uses the median of per-pair ratios: on shared machines the speed drifts between seconds,
and comparing neighbouring runs cancels that drift.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from analysis.engine.ablation import ablate_units
from analysis.engine.activations import profile_activations
from analysis.engine.builder import build_model, set_seed
from analysis.engine.datasets import make_shapes_dataset
from analysis.engine.training import TrainConfig, eval_mode, make_optimizer, train_model

BENCH_SPEC: dict[str, Any] = {
    "input_shape": [1, 28, 28],
    "num_classes": 4,
    "layers": [
        {"name": "conv1", "type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1},
        {"name": "relu1", "type": "relu"},
        {"name": "pool1", "type": "maxpool2d", "kernel_size": 2},
        {"name": "conv2", "type": "conv2d", "out_channels": 32, "kernel_size": 3, "padding": 1},
        {"name": "relu2", "type": "relu"},
        {"name": "pool2", "type": "maxpool2d", "kernel_size": 2},
        {"name": "flatten", "type": "flatten"},
        {"name": "fc1", "type": "linear", "out_features": 64},
        {"name": "relu3", "type": "relu"},
        {"name": "fc_out", "type": "linear", "out_features": 4},
    ],
}
PROBE_BATCH = 256
REPO_ROOT = Path(__file__).resolve().parents[2]


def _timed(function: Callable[[], Any]) -> float:
    gc.collect()
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def _timed_pair(reference, subject, *, swap: bool) -> tuple[float, float]:
    if swap:
        subject_s = _timed(subject)
        return _timed(reference), subject_s
    reference_s = _timed(reference)
    return reference_s, _timed(subject)


def compare_timings(
    name: str,
    reference: Callable[[], Any],
    subject: Callable[[], Any],
    *,
    repeats: int,
    target: float,
    higher_is_better: bool = False,
) -> dict[str, Any]:
    """Time reference and subject alternately `repeats` times each (after one warm-up each).

    Out: {"name", "reference_s", "subject_s" (medians), "ratio" (ratio of the medians,
    subject/reference or reference/subject when higher_is_better; decides "ok"),
    "ratio_of_pair_medians", "ratio_of_minimums", "target", "higher_is_better", "ok",
    "repeats"}.
    """
    reference()
    subject()
    # Freezing the long-lived heap (torch, scipy, ...) keeps each gc.collect() to the objects
    # the benchmark itself creates; a full collection otherwise costs ~0.1 s here.
    gc.collect()
    gc.freeze()
    try:
        pairs = [_timed_pair(reference, subject, swap=index % 2 == 1) for index in range(repeats)]
    finally:
        gc.unfreeze()
    reference_median = statistics.median(r for r, _ in pairs)
    subject_median = statistics.median(s for _, s in pairs)
    # The verdict is the ratio of the two medians ("median of repeats"); the median of
    # per-pair ratios and the ratio of the fastest runs are reported beside it, because on a
    # shared machine drift between seconds moves all three by a few percent.
    ratio = (
        reference_median / subject_median if higher_is_better else subject_median / reference_median
    )
    pair_ratios = [(r / s) if higher_is_better else (s / r) for r, s in pairs]
    fastest_reference, fastest_subject = min(r for r, _ in pairs), min(s for _, s in pairs)
    return {
        "name": name,
        "reference_s": round(reference_median, 6),
        "subject_s": round(subject_median, 6),
        "ratio": round(ratio, 4),
        "ratio_of_pair_medians": round(statistics.median(pair_ratios), 4),
        "ratio_of_minimums": round(
            fastest_reference / fastest_subject
            if higher_is_better
            else fastest_subject / fastest_reference,
            4,
        ),
        "target": target,
        "higher_is_better": higher_is_better,
        "ok": ratio >= target if higher_is_better else ratio <= target,
        "repeats": repeats,
    }


def _bench_model_and_probe(probe_size: int):
    set_seed(0)
    model = build_model(BENCH_SPEC).eval()
    dataset = make_shapes_dataset(probe_size, seed=0)
    return model, dataset


def _bare_forward(model, inputs: torch.Tensor) -> None:
    with eval_mode(model), torch.inference_mode():
        for start in range(0, len(inputs), PROBE_BATCH):
            model(inputs[start : start + PROBE_BATCH])


def bench_profile_vs_forward(quick: bool = True) -> dict[str, Any]:
    """Streaming profile of the activation layers vs a bare forward pass over the probe set.

    Out: compare_timings dict; target ratio <= 1.05.
    """
    model, dataset = _bench_model_and_probe(768 if quick else 4096)
    result = compare_timings(
        "profile_vs_forward",
        lambda: _bare_forward(model, dataset.inputs),
        lambda: profile_activations(model, dataset, layers=None, batch_size=PROBE_BATCH),
        repeats=11 if quick else 31,
        target=1.05,
    )
    return {**result, "probe_size": len(dataset), "layers": ["relu1", "relu2", "relu3"]}


def bench_ablation_vs_forward(quick: bool = True) -> dict[str, Any]:
    """Forward with 8 of relu2's 32 channels zero-ablated vs a bare forward. Target <= 1.02.

    Pairs are interleaved batch by batch (both members of a pair run the same batch, the
    subject including the hook's registration and removal), because a hook that writes a
    few channels costs far less than the drift between whole passes on a shared machine.
    """
    model, dataset = _bench_model_and_probe(768 if quick else 4096)
    batches = list(dataset.inputs.split(PROBE_BATCH))
    positions = {"reference": 0, "subject": 0}

    def next_batch(role: str) -> torch.Tensor:
        positions[role] += 1
        return batches[positions[role] % len(batches)]

    def ablated() -> None:
        batch = next_batch("subject")
        with ablate_units(model, "relu2", list(range(8))):
            _bare_forward(model, batch)

    result = compare_timings(
        "ablation_vs_forward",
        lambda: _bare_forward(model, next_batch("reference")),
        ablated,
        repeats=21 if quick else 120,
        target=1.02,
    )
    return {**result, "probe_size": len(dataset), "batch_size": PROBE_BATCH}


def _plain_training(spec: dict, dataset, config: TrainConfig, seed: int) -> float:
    """A minimal hand-written loop doing the harness's work: train, evaluate every epoch."""
    train, test = dataset.split(config.test_fraction, seed=config.split_seed)
    set_seed(seed)
    model = build_model(spec)
    optimizer = make_optimizer(model, config)
    generator = torch.Generator().manual_seed(seed)
    accuracy = 0.0
    for _ in range(config.epochs):
        model.train()
        order = torch.randperm(len(train), generator=generator)
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            loss = F.cross_entropy(model(train.inputs[batch]), train.labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.inference_mode():
            logits = torch.cat([model(chunk) for chunk in test.inputs.split(512)])
            accuracy = (logits.argmax(1) == test.labels).float().mean().item()
    return accuracy


def bench_plain_vs_harness(quick: bool = True) -> dict[str, Any]:
    """Plain torch training loop time / train_model time, same model, data and seed.

    Both train and evaluate on the test split every epoch. Target ratio >= 0.95.
    """
    dataset = make_shapes_dataset(640 if quick else 3000, seed=0)
    config = TrainConfig(epochs=1, batch_size=64, learning_rate=1e-3)
    result = compare_timings(
        "plain_vs_harness",
        lambda: _plain_training(BENCH_SPEC, dataset, config, seed=0),
        lambda: train_model(BENCH_SPEC, dataset, config, seed=0),
        repeats=9 if quick else 31,
        target=0.95,
        higher_is_better=True,
    )
    return {**result, "examples": len(dataset), "epochs": config.epochs}


_MEMORY_PROBE = """
import json, resource, sys, torch
torch.set_num_threads(1)
from analysis.engine.benchmarks import _bench_model_and_probe, PROBE_BATCH
from analysis.engine.activations import profile_activations
model, dataset = _bench_model_and_probe(int(sys.argv[1]))
# Warm up with one batch so allocator pools and lazy imports are in the baseline.
profile_activations(model, dataset.inputs[:PROBE_BATCH], layers=None, batch_size=PROBE_BATCH)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
profile_activations(model, dataset, layers=None, batch_size=PROBE_BATCH)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_growth_bytes": (after - before) * 1024}))
"""


def _measure_profile_memory(probe_sizes: list[int]) -> list[int]:
    """Peak RSS growth of profiling each probe size, each in its own fresh process; the
    processes run side by side (one per core), since each reads only its own peak."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _MEMORY_PROBE, str(size)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )  # fmt: skip
        for size in probe_sizes
    ]
    growth = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=300)
        if process.returncode != 0:
            raise RuntimeError(f"memory probe failed: {stderr[-2000:]}")
        growth.append(json.loads(stdout.strip().splitlines()[-1])["peak_growth_bytes"])
    return growth


def bench_profile_peak_memory(quick: bool = True) -> dict[str, Any]:
    """Peak resident memory growth of profiling for two probe sizes, each in a fresh process.

    Torch's CPU allocations are invisible to tracemalloc, so each run measures the process's
    peak RSS (ru_maxrss) after a one-batch warm-up and again after profiling the whole probe
    set; the growth is what profiling needed beyond one batch. Streaming means the growth must
    not scale with the probe size: ok when the larger set grows by at most 8 MiB more than the
    smaller (full activations for the larger set would need `full_activations_bytes`). Besides
    the probe set itself, profiling holds only a float64 design matrix of 1 + classes +
    attributes values per example (56 bytes for shapes, vs 3136 bytes of image).
    """
    sizes = [1024, 4096] if quick else [2048, 16384]
    growth = _measure_profile_memory(sizes)
    per_example = 4 * (16 * 28 * 28 + 32 * 14 * 14 + 64)  # float32 relu1 + relu2 + relu3 maps
    slack = 8 * 1024 * 1024
    return {
        "name": "profile_peak_memory",
        "probe_sizes": sizes,
        "peak_growth_bytes": growth,
        "full_activations_bytes": [size * per_example for size in sizes],
        "slack_bytes": slack,
        "ok": growth[1] <= growth[0] + slack,
        "summary": ", ".join(
            f"{size} probes: +{grown / 2**20:.1f} MiB peak RSS"
            for size, grown in zip(sizes, growth, strict=True)
        ),
    }


def run_all(quick: bool = True) -> list[dict[str, Any]]:
    """Out: the results of every benchmark, in a fixed order."""
    torch.set_num_threads(1)
    return [
        bench_profile_vs_forward(quick),
        bench_ablation_vs_forward(quick),
        bench_plain_vs_harness(quick),
        bench_profile_peak_memory(quick),
    ]
