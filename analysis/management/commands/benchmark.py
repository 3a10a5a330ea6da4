"""Benchmarks.

    python manage.py benchmark engine [--quick]
    python manage.py benchmark api [--quick]
    python manage.py benchmark study [--quick]
    python manage.py benchmark load [--quick] [--clients N] [--seconds S] [--web-workers N]

engine, api and study measure ratios against a reference in the same run; they print a
table, then one line of JSON: {"benchmark": "engine", "ratios": {...}, ...}. study times a
guided-search study on two worker processes against the same trainings back to back
(analysis/study_benchmark.py).

load (`make loadtest`) starts, on loopback only, a scratch PostgreSQL database, gunicorn and
two Celery workers with production settings, sends a realistic mix of requests from N
concurrent clients for S seconds (kb/loadtest/), and prints a table per endpoint, then one
line of JSON: {"benchmark": "load", "requests": ..., "rps": ..., "errors_5xx": 0,
"lost_writes": 0, "p95_ms": {...}, ...}. It exits non-zero when a request failed (5xx, an
unexpected status, no answer) or an acknowledged write is not in the database.
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
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
        transformer_memory = engine.bench_transformer_profile_peak_memory(quick)
        scaling = worker_scaling()
    return [*engine.run_timings(quick), memory, transformer_memory, scaling]


def api_benchmarks(*, quick: bool) -> list[dict]:
    from kb.api.benchmarks import run_all

    return run_all(quick=quick)


def study_benchmarks(*, quick: bool) -> list[dict]:
    from analysis.study_benchmark import study_benchmarks as measure

    return measure(quick=quick)


BENCHMARKS = {"engine": engine_benchmarks, "api": api_benchmarks, "study": study_benchmarks}
# Load runs: full and --quick sizes, and the bounds a flag may ask for.
# The untimed warm-up lets each gunicorn worker load its code and connect before timing.
LOAD_SIZES = {
    False: {"clients": 20, "seconds": 60, "warmup_seconds": 5},
    True: {"clients": 3, "seconds": 5, "warmup_seconds": 1},
}
LOAD_FLAG_BOUNDS = {"clients": (1, 200), "seconds": (1, 3600), "web_workers": (1, 16)}
LOAD_ONLY_FLAGS = ("clients", "seconds", "web_workers", "postgres", "redis")


def _bounded(name: str) -> Callable[[str], int]:
    low, high = LOAD_FLAG_BOUNDS[name]

    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {raw!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {value}")
        return value

    return parse


def load_benchmark(*, quick: bool, clients: int, seconds: int, warmup_seconds: int,
                   web_workers: int, postgres: str, redis: str) -> tuple[dict, str]:  # fmt: skip
    """Run the load benchmark; returns its summary and, when something failed, the tail of
    gunicorn's log (the server side of any 5xx)."""
    from kb.loadtest.clients import endpoint_figures, group_figures, run_clients
    from kb.loadtest.stack import LOAD_THROTTLE, StackOptions, load_stack
    from kb.loadtest.writes import lost_writes, run_statuses

    options = StackOptions(web_workers=web_workers, postgres_url=postgres, redis_url=redis)
    with load_stack(options, base_dir=settings.BASE_DIR) as stack:
        result = run_clients(
            stack.site, clients=clients, seconds=seconds, warmup_seconds=warmup_seconds
        )
        stopping = time.monotonic()
        stack.stop()  # nothing is writing any more when the database is read back
        stack.timings_s["stop"] = round(time.monotonic() - stopping, 1)
        lost = lost_writes(stack.database_url, result.recorder.writes)
        runs = run_statuses(stack.database_url)
        server_log = stack.log("gunicorn", 4000)
    endpoints = endpoint_figures(result)
    requests = sum(figures["requests"] for figures in endpoints.values())
    failures = dict(result.recorder.failures)
    written = Counter(write.kind for write in result.recorder.writes)
    summary = {
        "benchmark": "load",
        "requests": requests,
        "rps": round(requests / result.elapsed_s, 1),
        "errors_5xx": failures["errors_5xx"],
        "lost_writes": len(lost),
        **{f"p{q}_ms": {name: f[f"p{q}_ms"] for name, f in endpoints.items()}
           for q in (95, 50, 99)},
        "unexpected_status": failures["unexpected_status"],
        "no_answer": failures["no_answer"],
        "client_errors": failures["client_errors"],
        "ok": not any(failures.values()) and not lost,
        "quick": quick,
        "clients": clients,
        "seconds": seconds,
        "warmup_seconds": warmup_seconds,
        "elapsed_s": round(result.elapsed_s, 2),
        "timings_s": stack.timings_s,
        "writes": {kind: written[kind] for kind in ("highlight", "finding", "run")},
        "runs_by_status": runs,
        "groups": group_figures(result),
        "endpoints": endpoints,
        "unexpected": result.recorder.unexpected,
        "lost": [vars(write) for write in lost[:20]],
        "setup": {
            "web": f"gunicorn, {web_workers} sync workers",
            "celery_workers": options.celery_workers,
            "celery_concurrency": 1,
            "broker": stack.broker,
            "database": "PostgreSQL (scratch database, dropped afterwards)",
            "database_name": stack.database_name,
            "queue": stack.queue,
            "api_throttle_user": LOAD_THROTTLE,
        },
    }  # fmt: skip
    return summary, "" if summary["ok"] else server_log


class Command(BaseCommand):
    help = "Run a benchmark suite (engine, api, study, load) and print its figures."

    def add_arguments(self, parser) -> None:
        from kb.loadtest.stack import DEFAULT_POSTGRES_URL, DEFAULT_REDIS_URL

        parser.add_argument("suite", choices=sorted([*BENCHMARKS, "load"]))
        parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
        load = parser.add_argument_group("load")
        load.add_argument(
            "--clients",
            type=_bounded("clients"),
            help="concurrent clients (default 20; 3 with --quick)",
        )
        load.add_argument(
            "--seconds",
            type=_bounded("seconds"),
            help="how long the load lasts (default 60; 5 with --quick)",
        )
        load.add_argument(
            "--web-workers",
            type=_bounded("web_workers"),
            help="gunicorn worker processes (default 3)",
        )
        load.add_argument("--postgres", help=f"PostgreSQL server (default {DEFAULT_POSTGRES_URL})")
        load.add_argument("--redis", help=f"Redis for the broker (default {DEFAULT_REDIS_URL})")

    def handle(self, *args, suite: str, quick: bool, **options) -> None:
        if suite == "load":
            self._load(quick=quick, **{name: options[name] for name in LOAD_ONLY_FLAGS})
            return
        given = [f"--{name.replace('_', '-')}" for name in LOAD_ONLY_FLAGS if options[name]]
        if given:
            raise CommandError(f"{', '.join(given)} applies to the load benchmark only.")
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

    def _load(self, *, quick: bool, clients, seconds, web_workers, postgres, redis) -> None:
        from kb.loadtest.stack import DEFAULT_POSTGRES_URL, DEFAULT_REDIS_URL

        sizes = LOAD_SIZES[quick]
        try:
            summary, server_log = load_benchmark(
                quick=quick, clients=clients or sizes["clients"],
                seconds=seconds or sizes["seconds"], warmup_seconds=sizes["warmup_seconds"],
                web_workers=web_workers or 3,
                postgres=postgres or DEFAULT_POSTGRES_URL, redis=redis or DEFAULT_REDIS_URL,
            )  # fmt: skip
        except (ValueError, RuntimeError, OSError) as error:
            raise CommandError(f"load benchmark could not run: {error}") from None
        self._load_table(summary)
        self.stdout.write(json.dumps(summary))
        if not summary["ok"]:
            if server_log:
                self.stderr.write(f"gunicorn's log ends:\n{server_log}")
            raise CommandError(
                f"load benchmark failed: {summary['errors_5xx']} server errors, "
                f"{summary['unexpected_status']} unexpected statuses, {summary['no_answer']} "
                f"requests without an answer, {summary['client_errors']} client errors, "
                f"{summary['lost_writes']} lost writes; first: "
                f"{(summary['unexpected'] or summary['lost'] or ['-'])[0]}"
            )

    def _load_table(self, summary: dict) -> None:
        setup = summary["setup"]
        self.stdout.write(
            f"load: {summary['clients']} clients for {summary['seconds']} s on loopback; "
            f"{setup['web']}, {setup['celery_workers']} Celery workers (concurrency 1, "
            f"{setup['broker']} broker), {setup['database']}. The API user throttle is raised "
            f"to {setup['api_throttle_user']}: the figures measure the server, not the throttle."
        )
        self.stdout.write(f"{'endpoint':<34} {'requests':>8} {'rps':>7} {'p50 ms':>8} "
                          f"{'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}  statuses")  # fmt: skip
        for name, figures in [*summary["endpoints"].items(), *summary["groups"].items()]:
            statuses = " ".join(f"{s}:{n}" for s, n in figures.get("statuses", {}).items())
            self.stdout.write(
                f"{name:<34} {figures['requests']:>8} {figures['rps']:>7.1f} "
                f"{figures['p50_ms']:>8.1f} {figures['p95_ms']:>8.1f} {figures['p99_ms']:>8.1f} "
                f"{figures['max_ms']:>8.1f}  {statuses}"
            )
        self.stdout.write(
            f"{summary['requests']} requests, {summary['rps']} per second; server errors (5xx): "
            f"{summary['errors_5xx']}, unexpected statuses: {summary['unexpected_status']}, "
            f"no answer: {summary['no_answer']}; writes acknowledged: {summary['writes']}, "
            f"lost: {summary['lost_writes']}; runs by status afterwards: "
            f"{summary['runs_by_status']}; set-up (s since start) and stop: {summary['timings_s']}."
        )
