"""Real Celery worker processes for integration tests, against this machine's Redis and the
test database (which the tests must commit to: `django_db(transaction=True)`)."""

import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

READY_MARKER = "ready."
START_TIMEOUT = 60


def redis_available() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=1).ping())
    except (redis.RedisError, ValueError):
        return False


requires_redis = pytest.mark.skipif(
    not str(os.environ.get("CELERY_BROKER_URL", "redis://")).startswith("redis://"),
    reason="integration tests use a Redis broker",
)


def test_database_url() -> str:
    """The URL of the database this test is using, for the worker to use too."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def unique_queue() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


def child_pids(pid: int) -> list[int]:
    """Direct children of a process (the prefork pool's workers), from /proc."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


@contextmanager
def celery_worker(*, queue: str, log_path: Path, media_root: Path, concurrency: int = 1):
    """Start `celery worker` on its own queue; stop it (and its children) afterwards."""
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "ANALYSIS_QUEUE": queue,
        "ANALYSIS_JOB_LEASE_SECONDS": str(settings.ANALYSIS_JOB_LEASE_SECONDS),
        "MEDIA_ROOT": str(media_root),
        "OMP_NUM_THREADS": "1",
    }
    command = [
        sys.executable, "-m", "celery", "-A", "kb", "worker", "-Q", queue, "-n", f"{queue}@%h",
        "--concurrency", str(concurrency), "--pool", "prefork", "--loglevel", "INFO",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command, env=env, cwd=settings.BASE_DIR, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        _wait_until_ready(process, log_path)
        yield process
    finally:
        _stop(process)


def _wait_until_ready(process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if READY_MARKER in log_path.read_text():
            return
        if process.poll() is not None:
            raise RuntimeError(f"worker exited early:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.2)
    raise RuntimeError(f"worker not ready in {START_TIMEOUT}s:\n{log_path.read_text()[-3000:]}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def wait_for(predicate, *, timeout: float, interval: float = 0.2, describe=lambda: ""):
    """Poll until predicate() is truthy and return it; on timeout fail with describe()."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s: {describe()}")
