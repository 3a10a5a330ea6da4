"""Real Celery worker processes for integration tests, against this machine's Redis (or a
Redis of the test's own) and the test database (which the tests must commit to:
`django_db(transaction=True)`), and the faults they must survive: a Redis stopped, a whole
worker killed, the database cut off."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import connection

from tests.services import require_service

READY_MARKER = "ready."
START_TIMEOUT = 60


def redis_available() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=1).ping())
    except (redis.RedisError, ValueError):
        return False


def require_redis() -> None:
    """Skip locally, fail in CI (tests/services.py), when the broker's Redis does not answer."""
    __tracebackhide__ = True
    require_service("Redis", redis_available(), f"not answering at {settings.CELERY_BROKER_URL}")


def require_postgresql() -> None:
    __tracebackhide__ = True
    require_service("PostgreSQL", connection.vendor == "postgresql", "DATABASE_URL is not it")


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
def celery_worker(
    *,
    queue: str,
    log_path: Path,
    media_root: Path,
    concurrency: int = 1,
    broker_url: str | None = None,
):
    """Start `celery worker` on its own queue, named after it (so a worker started again on
    the same queue has the same node name); stop it (and its children) afterwards. The log is
    appended to, so a restarted worker's log follows its previous life's."""
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "CELERY_BROKER_URL": broker_url or settings.CELERY_BROKER_URL,
        "ANALYSIS_QUEUE": queue,
        "ANALYSIS_JOB_LEASE_SECONDS": str(settings.ANALYSIS_JOB_LEASE_SECONDS),
        "ANALYSIS_SWEEP_SECONDS": str(settings.ANALYSIS_SWEEP_SECONDS),
        "MEDIA_ROOT": str(media_root),
        "OMP_NUM_THREADS": "1",
    }
    command = [
        sys.executable, "-m", "celery", "-A", "kb", "worker", "-Q", queue, "-n", f"{queue}@%h",
        "--concurrency", str(concurrency), "--pool", "prefork", "--loglevel", "INFO",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    start = log_path.stat().st_size if log_path.exists() else 0
    with open(log_path, "a") as log:
        process = subprocess.Popen(
            command, env=env, cwd=settings.BASE_DIR, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        _wait_until_ready(process, log_path, start)
        yield process
    finally:
        process_group_stop(process)


def _wait_until_ready(process: subprocess.Popen, log_path: Path, start: int = 0) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if READY_MARKER in log_path.read_text()[start:]:
            return
        if process.poll() is not None:
            raise RuntimeError(f"worker exited early:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.2)
    raise RuntimeError(f"worker not ready in {START_TIMEOUT}s:\n{log_path.read_text()[-3000:]}")


def process_group_stop(process: subprocess.Popen) -> None:
    """Stop a process started in its own session, and its children: politely, then not."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def kill_whole_worker(process: subprocess.Popen) -> None:
    """SIGKILL the worker's main process and its pool processes at once (its session), as a
    lost machine or the kernel's OOM killer would: nothing gets to clean up."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """A redis-server of the test's own on a free port, without persistence, that the test
    can stop and start again (never this machine's shared Redis)."""

    def __init__(self, folder: Path) -> None:
        require_service("redis-server", shutil.which("redis-server") is not None, "not installed")
        self.port = free_port()
        self.folder = folder
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.folder),
        ]  # fmt: skip
        with open(self.folder / "redis.log", "a") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self.answers, timeout=10, describe=lambda: "redis-server did not answer")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def answers(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False


@contextmanager
def web_broker(url: str):
    """Make this process (the web side of the test) publish to `url`."""
    from kb.celery import app

    def publish_to(broker: str | None) -> None:
        # The write URL: the CELERY_BROKER_URL variable would win over broker_url.
        app.conf.broker_write_url = broker
        # Celery caches the connection pool and the producers on it; both are made again.
        app.close()
        app.amqp._producer_pool = None

    previous = app.conf.get("broker_write_url")
    publish_to(url)
    try:
        yield
    finally:
        publish_to(previous)


@contextmanager
def database_cut_off():
    """Cut every connection to the test database and refuse new ones, as a PostgreSQL
    restart would, until the block ends (the shared server itself is never restarted)."""
    import psycopg

    db = connection.settings_dict
    admin = psycopg.connect(
        host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], password=db["PASSWORD"],
        dbname="postgres", autocommit=True,
    )  # fmt: skip
    name = db["NAME"]
    try:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            [name],
        )
        yield
    finally:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        admin.close()
        connection.close()  # this test's own connection was cut too


def wait_for(predicate, *, timeout: float, interval: float = 0.2, describe=lambda: ""):
    """Poll until predicate() is truthy and return it; on timeout fail with describe()."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s: {describe()}")
