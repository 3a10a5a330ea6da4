"""Measure how a change experiment's wall time scales from one worker process to two.

Run by `manage.py benchmark engine` in a child process whose DATABASE_URL points at a
scratch SQLite database, so the benchmark never writes to the real knowledge base. It starts
and warms up its workers, prints READY, waits for a line on stdin (the parent uses the time
for untimed work that would otherwise disturb the timing), then prints one JSON line.
"""

import json
import statistics
import subprocess
import sys
import time
import uuid

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from analysis import services
from analysis.models import AnalysisRun
from kb.services.changes import change_create
from kb.services.insights import insight_create
from kb.services.subjects import subject_model_create

BENCH_SPEC = {
    "input_shape": [1, 16, 16],
    "num_classes": 4,
    "layers": [
        {"name": "conv1", "type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1},
        {"name": "relu1", "type": "relu"},
        {"name": "pool1", "type": "maxpool2d", "kernel_size": 2},
        {"name": "conv2", "type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1},
        {"name": "relu2", "type": "relu"},
        {"name": "pool2", "type": "maxpool2d", "kernel_size": 2},
        {"name": "flatten", "type": "flatten"},
        {"name": "fc1", "type": "linear", "out_features": 16},
        {"name": "relu3", "type": "relu"},
        {"name": "fc_out", "type": "linear", "out_features": 4},
    ],
    "hyperparameters": {"epochs": 2, "batch_size": 32},
}
SEEDS = 2
TARGET = 0.65
START_TIMEOUT = 60
RUN_TIMEOUT = 600
READY = "ready"


class Command(BaseCommand):
    help = "Internal: time a 2-seed experiment on one worker process and on two (JSON out)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--repeats", type=int, default=1)
        parser.add_argument("--samples", type=int, default=600)

    def handle(self, *args, **options) -> None:
        one, two = f"bench-one-{uuid.uuid4().hex[:8]}", f"bench-two-{uuid.uuid4().hex[:8]}"
        config = {"dataset": {"name": "shapes", "n": options["samples"]}, "seeds": SEEDS}
        # Worker A serves both queues and worker B only the second, so an experiment sent to
        # the first queue has one worker process and one sent to the second has two. They
        # start while the scratch database is built; they touch it only when jobs arrive.
        names = [f"a-{one}", f"b-{two}"]
        workers = [_start_worker([one, two], names[0]), _start_worker([two], names[1])]
        try:
            _create_scratch_tables()
            change = _bench_change()
            _wait_until_answering(names)
            _timed_run(change, two, config)  # warm both pools: imports, dataset cache
            _wait_for_go()
            timings = {one: [], two: []}
            for index in range(options["repeats"]):
                order = (one, two) if index % 2 == 0 else (two, one)
                for queue in order:
                    timings[queue].append(_timed_run(change, queue, config))
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(timeout=30)
        one_s, two_s = statistics.median(timings[one]), statistics.median(timings[two])
        ratio = two_s / one_s
        result = {
            "name": "two_workers_vs_one",
            "reference_s": round(one_s, 3),
            "subject_s": round(two_s, 3),
            "ratio": round(ratio, 4),
            "target": TARGET,
            "higher_is_better": False,
            "ok": ratio <= TARGET,
            "repeats": options["repeats"],
            "seeds": SEEDS,
            "jobs": 3 * SEEDS,
        }
        self.stdout.write(json.dumps(result))


def _wait_for_go() -> None:
    print(READY, flush=True)
    if not sys.stdin.readline():
        raise RuntimeError("the parent benchmark went away before timing started")


def _create_scratch_tables() -> None:
    """Tables straight from the models (no migration history): the scratch database lives
    for one benchmark, and replaying every migration would cost seconds of the budget."""
    from django.apps import apps

    settings.MIGRATION_MODULES = {app.label: None for app in apps.get_app_configs()}
    call_command("migrate", run_syncdb=True, verbosity=0)


def _bench_change():
    model = subject_model_create(
        actor=None, name=f"bench-{uuid.uuid4().hex[:8]}", kind="builtin",
        architecture_spec=BENCH_SPEC,
    )  # fmt: skip
    insight = insight_create(actor=None, title=f"bench {model.pk}", statement="benchmark")
    return change_create(
        actor=None, insight=insight, target_model=model, operation="widen_layer",
        parameters={"layer": "conv2", "units": 2},
    )  # fmt: skip


def _wait_until_answering(names: list[str]) -> None:
    """Both workers must be consuming before anything is timed, or the first one up takes
    every job of the warm-up."""
    from kb.celery import app

    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=0.5)
        answered = {name.split("@")[0] for reply in replies for name in reply}
        if answered >= set(names):
            return
    raise RuntimeError(f"benchmark workers did not start within {START_TIMEOUT}s")


def _start_worker(queues: list[str], name: str) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "celery", "-A", "kb", "worker", "-Q", ",".join(queues),
        "-n", f"{name}@%h", "--concurrency", "1", "--pool", "prefork",
        "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=settings.BASE_DIR, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    return process


def _timed_run(change, queue: str, config: dict) -> float:
    settings.ANALYSIS_QUEUE = queue
    started = time.perf_counter()
    run = services.experiment_request(actor=None, change=change, config=config, min_seeds=SEEDS)
    deadline = started + RUN_TIMEOUT
    while time.perf_counter() < deadline:
        run.refresh_from_db(fields=["status", "error"])
        if run.is_finished:
            break
        time.sleep(0.05)
    if run.status != AnalysisRun.Status.SUCCEEDED:
        raise RuntimeError(f"benchmark run {run.pk} ended {run.status}: {run.error}")
    return time.perf_counter() - started
