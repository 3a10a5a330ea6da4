"""Benchmark `study`: a study on two worker processes against the same work back to back.

    python manage.py benchmark study [--quick]

A two-round, three-track, three-seed study of a small CNN runs on two Celery worker processes
(concurrency 1 each) with the broker and a database, from its request to its final report:
decisions, planning and records included. The reference is run_study_locally on the same
frozen design: the same trainings and profiles back to back in one process, with no database
or broker. study_vs_jobs = study wall time / (reference wall time / 2), 2 being the ideal
speed-up of two workers; the goal is at most 1.15. An untimed one-round study first warms the
workers up (engine loaded, dataset cached), as long-lived workers are.

A study has no barrier per round, only dependencies per track (analysis/study_rounds.py): a
track's next round is planned once its own round is decided (a control's, once the guided
candidate of that round is planned too), and round 1 once the base model's first-seed job has
profiled it, so other jobs fill the workers while a track waits. With equal jobs the floor is
therefore ceil(n/2) job-times against the ideal n/2 for n jobs, as long as some job is always
ready (here it is): n = 3 + 2 rounds x 3 tracks x 3 seeds = 21, so 11/10.5 = 1.048 (a barrier
per round made it 12/10.5 = 1.14). The result's "floor" reports it for the jobs the study
actually ran (a track that sits a round out has none), and "jobs_per_round" their count per
round. Jobs are not equal: a widened candidate trains longer than the base model, a base or
guided job at the first seed also profiles, and the study's last job often runs alone. On a
busy machine the two workers' jobs also run slower than the same jobs back to back; the
result's study_vs_own_jobs (the study's wall time against half its jobs' own summed wall time)
leaves that out and shows what the dependencies and the orchestration (claims, decisions,
plans, records, the final report) cost.

`benchmark study` runs the measurement in a child process (`python -m analysis.study_benchmark`)
whose DATABASE_URL names a scratch SQLite database, so it never writes to the real knowledge
base; with Redis down the child uses kombu's filesystem transport. Tests call
measure_study_vs_jobs on the test database.
"""

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings

from analysis.study_rounds import study_job_parse

NAME = "study_vs_jobs"
TARGET = 1.15
TRACKS = ["guided", "random", "uniform"]
CONCEPT = "circle"
READY_MARKER = "ready."
START_TIMEOUT = 90
STUDY_TIMEOUT = 900
CHILD_TIMEOUT = 1800


@dataclass(frozen=True)
class StudyBenchSize:
    """What the benchmark's study trains: `rounds` rounds of len(TRACKS) tracks over `seeds`
    seeds, each candidate on `samples` shapes images for `epochs` epochs; `repeats` timings
    of each side, interleaved."""

    samples: int
    epochs: int
    rounds: int = 2
    seeds: int = 3
    repeats: int = 1


SIZES = {
    "full": StudyBenchSize(samples=6000, epochs=3, repeats=3),
    "quick": StudyBenchSize(samples=3000, epochs=2),
}


def study_bench_settings(size: StudyBenchSize) -> dict:
    """The study's settings, as a page or the API would send them."""
    return {
        "dataset": {"name": "shapes", "n": size.samples},
        "train": {"epochs": size.epochs},
        "seeds": size.seeds,
        "rounds": size.rounds,
        "tracks": TRACKS,
        "concept": CONCEPT,
    }


# --- the measurement (in the child process, or a test) ------------------------------------


def measure_study_vs_jobs(*, size: StudyBenchSize, scratch: Path) -> dict:
    """Time the study on two worker processes, then the reference on the study's frozen
    design in this process; `size.repeats` times each, interleaved, after an untimed warm-up.

    Needs a database the workers can reach (this process's, committed to) and a broker.
    `scratch` holds the workers' logs and media. Out: the benchmark's result (median times).
    """
    from analysis.engine.studies import run_study_locally  # torch, loaded before any timing
    from analysis.management.commands.benchmark_worker_scaling import BENCH_SPEC
    from kb.services.subjects import subject_model_create

    queue = f"bench-study-{uuid.uuid4().hex[:8]}"
    model = subject_model_create(
        actor=None, name=f"bench-study-{queue}", kind="builtin", architecture_spec=BENCH_SPEC
    )
    study_s, reference_s, study = [], [], None
    with override_settings(ANALYSIS_QUEUE=queue), _workers(queue, scratch):
        _warm_up(model, size)
        for _ in range(size.repeats):
            seconds, study = _timed_study(model, size)
            study_s.append(seconds)
            started = time.perf_counter()
            run_study_locally(study.config, study.config["model"]["architecture_spec"])
            reference_s.append(time.perf_counter() - started)
    return _result(size, study_s, reference_s, study)


def _warm_up(model, size: StudyBenchSize) -> None:
    """Untimed: a one-round study, so that each worker's pool process has loaded the engine and
    built the dataset (cached per process), as long-lived workers have; and the dataset built
    here, for the reference. What is timed is then the study itself, on both sides."""
    from analysis.engine.experiments import dataset_for
    from analysis.engine.study_settings import experiment_settings_of

    _, warm = _timed_study(model, replace(size, rounds=1))
    dataset_for(experiment_settings_of(warm.config))


def _timed_study(model, size: StudyBenchSize):
    """Request the study and wait until it finished. Out: (seconds, the study)."""
    from analysis.models import AnalysisRun
    from analysis.studies import study_request

    started = time.perf_counter()
    study = study_request(actor=None, model=model, settings=study_bench_settings(size))
    deadline = started + STUDY_TIMEOUT
    while time.perf_counter() < deadline:
        study.refresh_from_db(fields=["status", "error"])
        if study.is_finished:
            break
        time.sleep(0.05)
    if study.status != AnalysisRun.Status.SUCCEEDED:
        raise RuntimeError(f"benchmark study {study.pk} ended {study.status}: {study.error}")
    return time.perf_counter() - started, study


def study_floor(jobs: int, *, workers: int) -> float:
    """The least study_vs_jobs can be with `jobs` equal jobs and no overhead, when a job is
    always ready for a free worker: ceil(jobs / workers) job-times against jobs / workers."""
    return math.ceil(jobs / workers) / (jobs / workers) if jobs else 0.0


def _jobs_per_round(study) -> dict[str, int]:
    """{round index as text (a JSON key): the study's jobs in that round}, in round order."""
    counts = Counter(study_job_parse(key)[0] for key in study.jobs.values_list("key", flat=True))
    return {str(index): counts[index] for index in sorted(counts)}


def _result(size: StudyBenchSize, study_s: list[float], reference_s: list[float], study) -> dict:
    jobs_per_round = _jobs_per_round(study)
    study_median, jobs_median = statistics.median(study_s), statistics.median(reference_s)
    ideal = jobs_median / 2
    ratio = study_median / ideal
    # seconds to the microsecond, as compare_timings: the tiniest studies' jobs take ~0.04 s,
    # where milliseconds would shift the ratio recomputed from them by over 1%
    return {
        "name": NAME,
        "reference_s": round(ideal, 6),
        "subject_s": round(study_median, 6),
        "ratio": round(ratio, 4),
        "target": TARGET,
        "higher_is_better": False,
        "ok": ratio <= TARGET,
        "jobs_back_to_back_s": round(jobs_median, 6),
        "study_runs_s": [round(seconds, 6) for seconds in study_s],
        "jobs_runs_s": [round(seconds, 6) for seconds in reference_s],
        "jobs": study.jobs.count(),
        "jobs_per_round": jobs_per_round,
        "floor": round(study_floor(sum(jobs_per_round.values()), workers=2), 4),
        # The jobs' own wall time on the workers, summed (last study): above the reference,
        # the jobs themselves ran slower there (a busy machine). The last study's wall time
        # against half of it is what the dependencies between rounds and the study's own
        # work between jobs cost, whatever the machine's load ("floor" with equal jobs and
        # no overhead).
        "worker_jobs_s": round(_job_seconds(study), 6),
        "study_vs_own_jobs": round(study_s[-1] / (_job_seconds(study) / 2), 4),
        "load_average": [round(load, 2) for load in os.getloadavg()],
        "workers": 2,
        **asdict(size),
        "tracks": TRACKS,
    }


def _job_seconds(study) -> float:
    times = study.jobs.values_list("started_at", "finished_at")
    return sum((finished - started).total_seconds() for started, finished in times)


# --- the two workers ------------------------------------------------------------------------


def _database_url() -> str:
    """This process's database as a URL, for the workers to use too."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


@contextmanager
def _workers(queue: str, scratch: Path):
    """Two worker processes (one pool process each) on `queue`, ready when this yields."""
    env = {
        **os.environ, "DATABASE_URL": _database_url(), "ANALYSIS_QUEUE": queue,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL, "MEDIA_ROOT": str(scratch / "media"),
        "OMP_NUM_THREADS": "1",
    }  # fmt: skip
    logs = [scratch / f"worker-{name}.log" for name in ("a", "b")]
    processes = []
    try:
        for log_path in logs:
            command = [
                sys.executable, "-m", "celery", "-A", "kb", "worker", "-Q", queue,
                "-n", f"{log_path.stem}-{queue}@%h", "--concurrency", "1", "--pool", "prefork",
                "--loglevel", "INFO", "--without-gossip", "--without-mingle",
                "--without-heartbeat",
            ]  # fmt: skip
            with open(log_path, "w") as log:
                processes.append(subprocess.Popen(
                    command, cwd=settings.BASE_DIR, env=env, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True,
                ))  # fmt: skip
        for process, log_path in zip(processes, logs, strict=True):
            _wait_until_ready(process, log_path)
        yield
    finally:
        for process in processes:
            _stop(process)


def _wait_until_ready(process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if READY_MARKER in log_path.read_text():
            return
        if process.poll() is not None:
            raise RuntimeError(f"a benchmark worker exited:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.2)
    raise RuntimeError(f"a benchmark worker did not start in {START_TIMEOUT}s")


def _stop(process: subprocess.Popen) -> None:
    """Stop a worker and its pool process (its own session): politely, then not."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, 15)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.wait(timeout=10)


# --- `manage.py benchmark study`: the child process on a scratch database --------------------


def study_benchmarks(*, quick: bool) -> list[dict]:
    """Run the measurement in a child process on a scratch SQLite database; out: its result,
    as `manage.py benchmark` lists results."""
    with tempfile.TemporaryDirectory(prefix="kb-bench-study-") as folder:
        scratch = Path(folder)
        env = {**os.environ, "DATABASE_URL": f"sqlite:///{scratch / 'bench.sqlite3'}",
               "MEDIA_ROOT": str(scratch / "media"), "OMP_NUM_THREADS": "1"}  # fmt: skip
        if not _redis_answers(settings.CELERY_BROKER_URL):
            broker = scratch / "broker"
            (broker / "processed").mkdir(parents=True)
            (broker / "control").mkdir()
            env.update(CELERY_BROKER_URL="filesystem://", CELERY_FILESYSTEM_DIR=str(broker))
        command = [sys.executable, "-m", "analysis.study_benchmark", "quick" if quick else "full",
                   str(scratch)]  # fmt: skip
        child = subprocess.run(command, cwd=settings.BASE_DIR, env=env, capture_output=True,
                               text=True, timeout=CHILD_TIMEOUT)  # fmt: skip
        if child.returncode != 0:
            logs = "".join(path.read_text()[-1500:] for path in scratch.glob("worker-*.log"))
            raise CommandError(f"study benchmark failed:\n{child.stderr[-3000:]}\n{logs}")
    return [json.loads(child.stdout.strip().splitlines()[-1])]


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except (redis.RedisError, ValueError):
        return False


def _child(size_name: str, scratch: Path) -> None:
    from analysis.management.commands.benchmark_worker_scaling import _create_scratch_tables

    _create_scratch_tables()
    result = measure_study_vs_jobs(size=SIZES[size_name], scratch=scratch)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kb.settings")
    django.setup()
    _child(sys.argv[1], Path(sys.argv[2]))
