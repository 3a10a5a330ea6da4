"""Benchmarks, measured as ratios against a reference in the same run.

    python manage.py benchmark engine [--quick]

Prints a table, then one line of JSON: {"benchmark": "engine", "ratios": {...}, ...}.
"""

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from analysis.management.commands.benchmark_worker_scaling import READY


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except (redis.RedisError, ValueError):
        return False


@contextlib.contextmanager
def worker_scaling_child(*, quick: bool) -> Iterator[Callable[[], dict]]:
    """Start `benchmark_worker_scaling` in a child process on a scratch SQLite database, with
    Redis when it answers and kombu's filesystem transport otherwise. The child starts its
    workers and warms them up straight away; the function this yields tells it to start
    timing and returns its result, so the caller can do untimed work in the meantime."""
    with tempfile.TemporaryDirectory(prefix="kb-bench-") as scratch:
        env = {**os.environ, "DATABASE_URL": f"sqlite:///{Path(scratch) / 'bench.sqlite3'}",
               "MEDIA_ROOT": str(Path(scratch) / "media"), "OMP_NUM_THREADS": "1"}  # fmt: skip
        if not _redis_answers(settings.CELERY_BROKER_URL):
            broker = Path(scratch) / "broker"
            (broker / "processed").mkdir(parents=True)
            (broker / "control").mkdir()
            env.update(CELERY_BROKER_URL="filesystem://", CELERY_FILESYSTEM_DIR=str(broker))
        command = [
            sys.executable, "manage.py", "benchmark_worker_scaling",
            "--repeats", "1" if quick else "3", "--samples", "3000" if quick else "6000",
        ]  # fmt: skip
        with open(Path(scratch) / "stderr.log", "w+") as stderr:
            child = subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=stderr)  # fmt: skip
            try:
                yield lambda: _worker_scaling_result(child, stderr)
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait()


def _worker_scaling_result(child: subprocess.Popen, stderr) -> dict:
    """Wait for the child's READY line, let it time its runs, return its JSON result."""
    ready = child.stdout.readline().strip()
    if ready == READY:
        child.stdin.write("go\n")
        child.stdin.flush()
    stdout, _ = child.communicate(timeout=900)
    if ready != READY or child.returncode != 0:
        stderr.seek(0)
        raise CommandError(f"worker scaling benchmark failed:\n{stderr.read()[-3000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


def engine_benchmarks(*, quick: bool) -> list[dict]:
    with worker_scaling_child(quick=quick) as worker_scaling:
        # Importing torch and running the memory probes (which read only their own peak RSS)
        # overlap the child's worker start-up and warm-up; nothing is timed until both end.
        from analysis.engine import benchmarks as engine

        memory = engine.bench_profile_peak_memory(quick)
        scaling = worker_scaling()
    return [*engine.run_timings(quick), memory, scaling]


def api_benchmarks(*, quick: bool) -> list[dict]:
    from kb.api.benchmarks import run_all

    return run_all(quick=quick)


BENCHMARKS = {"engine": engine_benchmarks, "api": api_benchmarks}


class Command(BaseCommand):
    help = "Run a benchmark suite (engine) and print its ratios."

    def add_arguments(self, parser) -> None:
        parser.add_argument("suite", choices=sorted(BENCHMARKS))
        parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")

    def handle(self, *args, suite: str, quick: bool, **options) -> None:
        results = BENCHMARKS[suite](quick=quick)
        self._table(results)
        summary = {
            "benchmark": suite,
            "quick": quick,
            "ratios": {r["name"]: r["ratio"] for r in results if "ratio" in r},
            "targets": {r["name"]: r["target"] for r in results if "target" in r},
            "ok": all(r["ok"] for r in results),
            **{r["name"]: r["value"] for r in results if "value" in r},
            "results": results,
        }
        self.stdout.write(json.dumps(summary))

    def _table(self, results: list[dict]) -> None:
        self.stdout.write(f"{'benchmark':<24} {'reference s':>12} {'subject s':>10} "
                          f"{'ratio':>7} {'target':>8}  ok")  # fmt: skip
        for result in results:
            verdict = "yes" if result["ok"] else "NO"
            if "ratio" not in result:
                self.stdout.write(f"{result['name']:<24} {result['summary']}  {verdict}")
                continue
            comparison = ">=" if result.get("higher_is_better") else "<="
            extra = (
                f"  (once per call: {result['call_overhead_ms']:.2f} ms)"
                if "call_overhead_ms" in result
                else ""
            )
            self.stdout.write(
                f"{result['name']:<24} {result['reference_s']:>12.4f} "
                f"{result['subject_s']:>10.4f} {result['ratio']:>7.3f} "
                f"{comparison + str(result['target']):>8}  {verdict}{extra}"
            )
