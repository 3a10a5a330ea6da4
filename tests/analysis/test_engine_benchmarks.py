"""The benchmark harness's bookkeeping (the real measurements run via the CLI)."""

import time

import tests.analysis.engine_helpers  # noqa: F401  (one torch thread)
from analysis.engine.benchmarks import (
    TRANSFORMER_BENCH_SPEC,
    TRANSFORMER_BENCH_TASK,
    TRANSFORMER_TRAIN_SPEC,
    TRANSFORMER_TRAIN_TASK,
    _plain_sequence_training,
    _transformer_and_probe,
    compare_timings,
)
from analysis.engine.transformer_training import SequenceTrainConfig, train_transformer


def test_compare_timings_reports_medians_and_verdict():
    calls = []
    result = compare_timings(
        "demo",
        lambda: calls.append("reference"),
        lambda: calls.append("subject"),
        repeats=4,
        target=10.0,
    )
    assert calls.count("reference") == calls.count("subject") == 5
    assert calls[2:4] == ["reference", "subject"] and calls[4:6] == ["subject", "reference"]
    assert set(result) == {
        "name", "reference_s", "subject_s", "ratio", "ratio_of_pair_medians",
        "ratio_of_minimums", "wall_reference_s", "wall_subject_s", "wall_ratio", "clock",
        "target", "higher_is_better", "ok", "repeats",
    }  # fmt: skip
    assert (result["name"], result["target"], result["repeats"]) == ("demo", 10.0, 4)
    assert result["higher_is_better"] is False
    assert result["ok"] is (result["ratio"] <= 10.0)


def _busy(cpu_seconds: float) -> None:
    started = time.process_time()
    while time.process_time() - started < cpu_seconds:
        pass


def test_compare_timings_judges_by_cpu_time_and_reports_the_wall_clock_beside_it():
    """A reference that waits without computing is cheap in CPU time but slow on the wall
    clock; time stolen by other processes looks the same, and must not count. (The wait is
    long enough that a busy host, which stretches the subject's wall time, keeps the wall
    ratio low.)"""
    result = compare_timings(
        "clocks",
        lambda: (_busy(0.005), time.sleep(0.25)),
        lambda: _busy(0.01),
        repeats=3,
        target=1.5,
    )
    assert result["clock"] == "process CPU time"
    assert result["ratio"] > 1.5 and result["ok"] is False
    assert result["wall_ratio"] < 0.6


def test_the_plain_transformer_loop_does_the_harness_work():
    """The plain loop the harness is timed against trains the same model on the same batches:
    it ends with the very accuracy train_transformer reports."""
    config = SequenceTrainConfig(
        steps=5, batch_size=8, optimizer="adamw", learning_rate=0.01, eval_size=32
    )
    plain = _plain_sequence_training(TRANSFORMER_TRAIN_SPEC, config, seed=3)
    harness = train_transformer(TRANSFORMER_TRAIN_SPEC, TRANSFORMER_TRAIN_TASK, config, seed=3)
    assert plain == harness.metrics["test_accuracy"]


def test_the_transformer_benchmark_probe_is_drawn_in_batches_of_whole_sequences():
    _model, probe = _transformer_and_probe(TRANSFORMER_BENCH_SPEC, 100)
    assert probe.tokens.shape == (100, TRANSFORMER_BENCH_TASK.length)
    assert set(probe.attributes) == {"position", "occurred_earlier", "earlier_offset"}
    assert int(probe.scored.sum()) == 100 * (TRANSFORMER_BENCH_TASK.segment - 1)
