"""Measured overhead of the engine against plain torch on the same work.

Each timing benchmark interleaves reference and subject in one process (alternating which
goes first), runs gc.collect() before every timed block, and reports medians. Torch runs on
one thread on the CPU here, so the verdict uses the process's CPU time: on a shared 2-core
machine another process steals wall-clock time from whichever block happens to be running,
while the CPU time a block needs stays put. The wall-clock ratio is reported beside it.
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
from analysis.engine.head_profiles import profile_transformer
from analysis.engine.runtime import configure_cpu_runtime
from analysis.engine.sequence_tasks import IGNORE_TARGET, InductionTask, SequenceBatch
from analysis.engine.training import TrainConfig, eval_mode, make_optimizer, train_model
from analysis.engine.transformer import build_transformer
from analysis.engine.transformer_ablation import ablate_transformer_units
from analysis.engine.transformer_training import SequenceTrainConfig, train_transformer

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


def _timed(function: Callable[[], Any]) -> tuple[float, float]:
    """Out: (process CPU seconds, wall-clock seconds) of one call."""
    gc.collect()
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    function()
    return time.process_time() - cpu_started, time.perf_counter() - wall_started


def _timed_pair(reference, subject, *, swap: bool) -> tuple[tuple, tuple]:
    if swap:
        subject_times = _timed(subject)
        return _timed(reference), subject_times
    reference_times = _timed(reference)
    return reference_times, _timed(subject)


def _ratio(reference: float, subject: float, higher_is_better: bool) -> float:
    return reference / subject if higher_is_better else subject / reference


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

    Out: {"name", "reference_s", "subject_s" (median CPU seconds), "ratio" (ratio of those
    medians, subject/reference or reference/subject when higher_is_better; decides "ok"),
    "ratio_of_pair_medians", "ratio_of_minimums" (CPU time), "wall_reference_s",
    "wall_subject_s", "wall_ratio" (the same medians on the wall clock), "clock", "target",
    "higher_is_better", "ok", "repeats"}.
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
    cpu = [(r[0], s[0]) for r, s in pairs]
    wall = [(r[1], s[1]) for r, s in pairs]
    reference_median = statistics.median(r for r, _ in cpu)
    subject_median = statistics.median(s for _, s in cpu)
    ratio = _ratio(reference_median, subject_median, higher_is_better)
    wall_reference, wall_subject = (statistics.median(times) for times in zip(*wall, strict=True))
    return {
        "name": name,
        "reference_s": round(reference_median, 6),
        "subject_s": round(subject_median, 6),
        "ratio": round(ratio, 4),
        "ratio_of_pair_medians": round(
            statistics.median(_ratio(r, s, higher_is_better) for r, s in cpu), 4
        ),
        "ratio_of_minimums": round(
            _ratio(min(r for r, _ in cpu), min(s for _, s in cpu), higher_is_better), 4
        ),
        "wall_reference_s": round(wall_reference, 6),
        "wall_subject_s": round(wall_subject, 6),
        "wall_ratio": round(_ratio(wall_reference, wall_subject, higher_is_better), 4),
        "clock": "process CPU time",
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

    The probe set (2,048 shapes quick, 8,192 full) is large enough for the streaming cost per
    batch to decide the ratio; what each call costs once (hooks, design matrix, folding the
    sums, assembling the profile) is measured apart on a 16-example probe and reported as
    `call_overhead_ms` (on the 400-example test split of a default profiling run it adds
    about that much to a ~40 ms pass).
    Out: compare_timings dict and call_overhead_ms; target ratio <= 1.05.
    """
    model, dataset = _bench_model_and_probe(2048 if quick else 8192)
    result = compare_timings(
        "profile_vs_forward",
        lambda: _bare_forward(model, dataset.inputs),
        lambda: profile_activations(model, dataset, layers=None, batch_size=PROBE_BATCH),
        repeats=15 if quick else 31,
        target=1.05,
    )
    small = dataset.subset(torch.arange(16), "call-overhead")
    once = compare_timings(
        "profile_call_overhead",
        lambda: _bare_forward(model, small.inputs),
        lambda: profile_activations(model, small, layers=None, batch_size=PROBE_BATCH),
        repeats=41,
        target=float("inf"),
    )
    return {
        **result,
        "probe_size": len(dataset),
        "layers": ["relu1", "relu2", "relu3"],
        "call_overhead_ms": round(1000 * (once["subject_s"] - once["reference_s"]), 3),
    }


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


def _measure_profile_memory(probe_sizes: list[int], script: str = _MEMORY_PROBE) -> list[int]:
    """Peak RSS growth of profiling each probe size, each in its own fresh process; the
    processes run side by side (one per core), since each reads only its own peak."""
    # glibc moves its mmap threshold up as large blocks are freed, after which freed tensors
    # stay in the heap and the peak RSS wanders by tens of MiB between identical runs. A fixed
    # threshold returns every tensor-sized block to the system when it is freed, so the peak
    # follows what is alive.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT),
           "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}  # fmt: skip
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(size)],
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
    per_example = 4 * (16 * 28 * 28 + 32 * 14 * 14 + 64)  # float32 relu1 + relu2 + relu3 maps
    return _peak_memory_result(
        "profile_peak_memory", sizes, _measure_profile_memory(sizes), "probes",
        {"full_activations_bytes": [size * per_example for size in sizes]},
    )  # fmt: skip


def _peak_memory_result(name: str, sizes, growth, unit: str, full: dict) -> dict[str, Any]:
    """Out: a memory benchmark's result: ok when the larger probe set's peak RSS grew by at
    most 8 MiB more than the smaller one's; `full` names what keeping everything would
    need."""
    slack = 8 * 1024 * 1024
    return {
        "name": name,
        "probe_sizes": sizes,
        "peak_growth_bytes": growth,
        **full,
        "slack_bytes": slack,
        "ok": growth[1] <= growth[0] + slack,
        "summary": ", ".join(
            f"{size} {unit}: +{grown / 2**20:.1f} MiB peak RSS"
            for size, grown in zip(sizes, growth, strict=True)
        ),
    }


# ---------------------------------------------------------------------------------------------
# Transformers
# ---------------------------------------------------------------------------------------------

# Two blocks of 4 heads and 256 MLP neurons over 64 positions of a 64-token vocabulary: every
# profiled score and statistic has work to do (heads, neurons, 64 token classes).
TRANSFORMER_BENCH_SPEC: dict[str, Any] = {
    "family": "transformer",
    "d_vocab": 64,
    "n_ctx": 64,
    "d_model": 64,
    "d_head": 16,
    "blocks": [{"n_heads": 4, "d_mlp": 256}, {"n_heads": 4, "d_mlp": 256}],
}
TRANSFORMER_BENCH_TASK = InductionTask(d_vocab=64, length=64, segment=16)
# The demo's two-layer model and task (kb.demo): what a change experiment trains.
TRANSFORMER_TRAIN_SPEC: dict[str, Any] = {
    "family": "transformer",
    "d_vocab": 32,
    "n_ctx": 32,
    "d_model": 32,
    "d_head": 16,
    "blocks": [{"n_heads": 2}, {"n_heads": 2}],
}
TRANSFORMER_TRAIN_TASK = InductionTask(d_vocab=32, length=32, segment=8)
SEQUENCE_BATCH = 64  # profile_transformer's default batch


def _attention_only(spec: dict) -> dict:
    return {**spec, "blocks": [{"n_heads": block["n_heads"]} for block in spec["blocks"]]}


def _transformer_and_probe(spec: dict, probe_size: int):
    """Out: (model in eval mode, probe sequences). The probe is drawn a batch at a time:
    drawing it at once compares every pair of positions of every sequence ([N, L, L]), a
    peak that would hide what profiling itself needs from the memory probe."""
    set_seed(0)
    model = build_transformer(spec).eval()
    generator = torch.Generator().manual_seed(0)
    parts = [
        TRANSFORMER_BENCH_TASK.sample(min(SEQUENCE_BATCH, probe_size - start), generator)
        for start in range(0, probe_size, SEQUENCE_BATCH)
    ]
    probe = SequenceBatch(
        torch.cat([part.tokens for part in parts]),
        torch.cat([part.targets for part in parts]),
        torch.cat([part.scored for part in parts]),
        {
            name: torch.cat([part.attributes[name] for part in parts])
            for name in parts[0].attributes
        },
    )
    return model, probe


def _bare_sequence_forward(model, tokens: torch.Tensor) -> None:
    with eval_mode(model), torch.inference_mode():
        for start in range(0, len(tokens), SEQUENCE_BATCH):
            model(tokens[start : start + SEQUENCE_BATCH])


def _profile_ratio(name: str, spec: dict, probe_size: int, repeats: int) -> dict[str, Any]:
    model, probe = _transformer_and_probe(spec, probe_size)
    return compare_timings(
        name,
        lambda: _bare_sequence_forward(model, probe.tokens),
        lambda: profile_transformer(model, probe, batch_size=SEQUENCE_BATCH),
        repeats=repeats,
        target=1.10,
    )


def bench_transformer_profile_vs_forward(quick: bool = True) -> dict[str, Any]:
    """Head scores and MLP neuron statistics of every block (profile_transformer) vs a bare
    forward pass over the same probe sequences, on TRANSFORMER_BENCH_SPEC. Target <= 1.10.

    The same model without its MLPs is measured too and reported as
    `attention_only_ratio`: there the per-head scores weigh most against a forward pass that
    is mostly attention. On the CPU each pattern and MLP output is folded by one compiled
    pass (analysis.engine.profile_kernels). A profile also pays ~1.5 ms once (hooks, the
    statistics at the end): ~2% of a 256-sequence probe's forward pass here, so the quick
    run profiles 512 sequences (256 measured 1.08-1.15, median 1.10, on 2026-12-01).
    Out: compare_timings dict plus "probe_size", "attention_only_ratio",
    "attention_only_reference_s", "attention_only_subject_s".
    """
    probe_size, repeats = (512, 9) if quick else (2048, 21)
    result = _profile_ratio(
        "transformer_profile_vs_forward", TRANSFORMER_BENCH_SPEC, probe_size, repeats
    )
    attention = _profile_ratio(  # for information: fewer repeats in the quick suite
        "transformer_profile_attention_only",
        _attention_only(TRANSFORMER_BENCH_SPEC),
        probe_size,
        5 if quick else repeats,
    )
    return {
        **result,
        "probe_size": probe_size,
        "attention_only_ratio": attention["ratio"],
        "attention_only_reference_s": attention["reference_s"],
        "attention_only_subject_s": attention["subject_s"],
    }


def bench_transformer_ablation_vs_forward(quick: bool = True) -> dict[str, Any]:
    """Forward with 2 of block 0's 4 heads zero-ablated (at hook_z, the hook registered and
    removed per call) vs a bare forward; pairs interleaved batch by batch as for the CNN
    ablation benchmark. Target <= 1.02."""
    model, probe = _transformer_and_probe(TRANSFORMER_BENCH_SPEC, 512 if quick else 2048)
    batches = list(probe.tokens.split(SEQUENCE_BATCH))
    positions = {"reference": 0, "subject": 0}

    def next_batch(role: str) -> torch.Tensor:
        positions[role] += 1
        return batches[positions[role] % len(batches)]

    def ablated() -> None:
        batch = next_batch("subject")
        with ablate_transformer_units(model, block=0, kind="heads", units=[0, 1]):
            _bare_sequence_forward(model, batch)

    result = compare_timings(
        "transformer_ablation_vs_forward",
        lambda: _bare_sequence_forward(model, next_batch("reference")),
        ablated,
        repeats=61 if quick else 201,
        target=1.02,
    )
    return {**result, "probe_size": len(probe), "batch_size": SEQUENCE_BATCH}


def _plain_sequence_training(spec: dict, config: SequenceTrainConfig, seed: int) -> float:
    """A minimal hand-written loop doing train_transformer's work: fresh induction batches,
    AdamW steps, then loss and accuracy on the held-out sequences' scored predictions."""
    task = TRANSFORMER_TRAIN_TASK
    set_seed(seed)
    model = build_transformer(spec)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(config.steps):
        batch = task.sample(config.batch_size, generator)
        logits = model(batch.tokens)  # [B, P, V]
        loss = F.cross_entropy(
            logits.flatten(0, 1), batch.targets.flatten(), ignore_index=IGNORE_TARGET
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    held_out = task.sample(config.eval_size, torch.Generator().manual_seed(config.eval_seed))
    with torch.inference_mode():
        logits = model(held_out.tokens)[held_out.scored]  # [S, V]
        targets = held_out.targets[held_out.scored]
        F.cross_entropy(logits, targets)
        return (logits.argmax(dim=-1) == targets).sum().item() / len(targets)


def bench_transformer_plain_vs_harness(quick: bool = True) -> dict[str, Any]:
    """Plain torch training loop time / train_transformer time: the demo's two-layer model on
    its induction task, same steps, batches, optimizer and seed, both ending with the
    held-out evaluation. Target ratio >= 0.95."""
    config = SequenceTrainConfig(
        steps=40 if quick else 300, batch_size=64, optimizer="adamw", learning_rate=0.01,
        eval_size=256,
    )  # fmt: skip
    result = compare_timings(
        "transformer_plain_vs_harness",
        lambda: _plain_sequence_training(TRANSFORMER_TRAIN_SPEC, config, seed=0),
        lambda: train_transformer(TRANSFORMER_TRAIN_SPEC, TRANSFORMER_TRAIN_TASK, config, seed=0),
        repeats=11 if quick else 21,  # 7 quick ones ranged 0.947-1.013 here
        target=0.95,
        higher_is_better=True,
    )
    return {**result, "steps": config.steps, "batch_size": config.batch_size}


_TRANSFORMER_MEMORY_PROBE = """
import json, resource, sys, torch
torch.set_num_threads(1)
from analysis.engine.benchmarks import SEQUENCE_BATCH, TRANSFORMER_BENCH_SPEC
from analysis.engine.benchmarks import _transformer_and_probe
from analysis.engine.head_profiles import profile_transformer
model, probe = _transformer_and_probe(TRANSFORMER_BENCH_SPEC, int(sys.argv[1]))
# Warm up with one batch so allocator pools and lazy imports are in the baseline.
profile_transformer(model, probe.slice(0, SEQUENCE_BATCH), batch_size=SEQUENCE_BATCH)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
profile_transformer(model, probe, batch_size=SEQUENCE_BATCH)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_growth_bytes": (after - before) * 1024}))
"""


def bench_transformer_profile_peak_memory(quick: bool = True) -> dict[str, Any]:
    """Peak resident memory growth of profile_transformer for two probe sizes, each in a
    fresh process, measured as bench_profile_peak_memory measures the CNN profile. Ok when
    the larger probe set grows by at most 8 MiB more than the smaller one; keeping the
    attention patterns would need `full_patterns_bytes` (heads x L x L float32 per block and
    sequence)."""
    sizes = [512, 2048] if quick else [1024, 8192]
    growth = _measure_profile_memory(sizes, _TRANSFORMER_MEMORY_PROBE)
    spec, length = TRANSFORMER_BENCH_SPEC, TRANSFORMER_BENCH_TASK.length
    per_sequence = 4 * sum(block["n_heads"] for block in spec["blocks"]) * length**2
    return _peak_memory_result(
        "transformer_profile_peak_memory", sizes, growth, "sequences",
        {"full_patterns_bytes": [size * per_sequence for size in sizes]},
    )  # fmt: skip


def run_transformer_timings(quick: bool = True) -> list[dict[str, Any]]:
    """Out: the transformer comparisons, in a fixed order (run_timings sets the process up)."""
    return [
        bench_transformer_profile_vs_forward(quick),
        bench_transformer_ablation_vs_forward(quick),
        bench_transformer_plain_vs_harness(quick),
    ]


def run_timings(quick: bool = True) -> list[dict[str, Any]]:
    """Out: the timed comparisons, in a fixed order. Run them on an otherwise idle process
    tree: they are ratios of CPU time, but a busy sibling still shares the caches. The
    process is set up as a worker's is (one thread, freed tensors kept in the heap)."""
    configure_cpu_runtime(threads=1)
    return [
        bench_profile_vs_forward(quick),
        bench_ablation_vs_forward(quick),
        bench_plain_vs_harness(quick),
        *run_transformer_timings(quick),
    ]


def run_all(quick: bool = True) -> list[dict[str, Any]]:
    """Out: the results of every in-process benchmark and the memory probes, in order."""
    return [
        *run_timings(quick),
        bench_profile_peak_memory(quick),
        bench_transformer_profile_peak_memory(quick),
    ]
