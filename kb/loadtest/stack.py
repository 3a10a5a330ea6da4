"""The site under load, on loopback only: a scratch PostgreSQL database, gunicorn and Celery
workers, run with production settings and torn down afterwards (database dropped, broker
queue forgotten, scratch folder removed).

Settings given to every process: DEBUG off, a random SECRET_KEY, ALLOWED_HOSTS=127.0.0.1,
SECURE_SSL_REDIRECT off (plain HTTP on loopback, where a TLS-terminating proxy would stand),
static files collected into the scratch folder (whitenoise's manifest storage), a scratch
MEDIA_ROOT, and the API's per-user throttle raised (LOAD_THROTTLE) so that the figures measure
the server rather than the throttle.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from kb.loadtest.clients import Site

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
# Database 12: a Redis database number that no test uses.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/12"
DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres"
LOAD_THROTTLE = "1000000/minute"
START_TIMEOUT_S = 180
STOP_TIMEOUT_S = 30
WORKER_READY = "ready."


@dataclass(frozen=True)
class StackOptions:
    web_workers: int = 3
    celery_workers: int = 2
    postgres_url: str = DEFAULT_POSTGRES_URL
    redis_url: str = DEFAULT_REDIS_URL


def require_loopback(url: str, what: str) -> None:
    """Refuse a server that is not on this machine: the benchmark stays on loopback."""
    host = urllib.parse.urlsplit(url).hostname
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"{what} must be on loopback (127.0.0.1), not {host or url!r}.")


def redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except (redis.RedisError, ValueError):
        return False


def _with_database(url: str, name: str) -> str:
    return urllib.parse.urlsplit(url)._replace(path=f"/{name}").geturl()


@contextlib.contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """Create an empty database on the server, yield its URL, drop it afterwards (closing
    any connection left to it)."""
    name = f"kb_load_{os.getpid()}_{secrets.token_hex(3)}"
    maintenance = _with_database(server_url, "postgres")
    with psycopg.connect(maintenance, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _with_database(server_url, name)
    finally:
        with psycopg.connect(maintenance, autocommit=True) as connection:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            connection.execute(drop.format(sql.Identifier(name)))


def forget_queue(redis_url: str, queue: str) -> None:
    """Delete the run's queue from Redis, with its binding and any message a killed worker
    left unacknowledged, so nothing of it is ever delivered again."""
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"*{queue}*"))
    if keys:
        client.delete(*keys)
    for tag, raw in client.hscan_iter("unacked"):
        with contextlib.suppress(ValueError, IndexError, TypeError):
            if json.loads(raw)[2] == queue:  # kombu keeps [message, exchange, routing key]
                client.hdel("unacked", tag)
                client.zrem("unacked_index", tag)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Stack:
    """The started processes of one load run and what the clients need to reach them."""

    base_dir: Path
    scratch: Path
    env: dict[str, str]
    options: StackOptions
    broker: str
    queue: str
    site: Site | None = None
    timings_s: dict[str, float] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def database_url(self) -> str:
        return self.env["DATABASE_URL"]

    @property
    def database_name(self) -> str:
        return urllib.parse.urlsplit(self.database_url).path.lstrip("/")

    def start(self) -> None:
        """Start the workers, collect static files and prepare the database side by side,
        then gunicorn; return once the site answers and every worker is ready."""
        started = time.monotonic()

        def done(step: str) -> None:
            self.timings_s[step] = round(time.monotonic() - started, 1)

        for index in range(self.options.celery_workers):
            self._spawn(f"celery-{index}", self._celery_command(index))
        self._spawn("collectstatic", [sys.executable, "manage.py", "collectstatic",
                                      "--noinput", "-v0"])  # fmt: skip
        site_file = self.scratch / "site.json"
        self._spawn("prepare", [sys.executable, "-m", "kb.loadtest.prepare", str(site_file)])
        self._finish("collectstatic")
        done("collectstatic")
        port = _free_port()
        self._spawn("gunicorn", self._gunicorn_command(port))
        self._finish("prepare")
        done("database")
        base_url = f"http://127.0.0.1:{port}"
        self.site = Site(base_url=base_url, **json.loads(site_file.read_text()))
        self._wait_until(lambda: _answers(f"{base_url}/login/"), "gunicorn")
        done("gunicorn")
        for index in range(self.options.celery_workers):
            name = f"celery-{index}"
            self._wait_until(lambda name=name: WORKER_READY in self.log(name), name)
        done("workers")

    def stop(self) -> None:
        """Stop every process (TERM, then KILL after STOP_TIMEOUT_S); safe to call twice.
        A worker's warm shutdown finishes its current small run and hands back the rest."""
        running = [p for p in self.processes.values() if p.poll() is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def log(self, name: str, tail: int = 0) -> str:
        text = (self.scratch / f"{name}.log").read_text(errors="replace")
        return text[-tail:] if tail else text

    def _spawn(self, name: str, command: list[str]) -> None:
        with open(self.scratch / f"{name}.log", "w") as log:
            self.processes[name] = subprocess.Popen(
                command, cwd=self.base_dir, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def _finish(self, name: str) -> None:
        try:
            code = self.processes[name].wait(timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            code = "timed out"
        if code != 0:
            raise RuntimeError(f"{name} failed ({code}):\n{self.log(name, 3000)}")

    def _wait_until(self, ready, name: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready():
            if self.processes[name].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start:\n{self.log(name, 3000)}")
            time.sleep(0.2)

    def _celery_command(self, index: int) -> list[str]:
        return [
            sys.executable, "-m", "celery", "-A", "kb", "worker", "-Q", self.queue,
            "-n", f"load{index}-{self.queue}@%h", "--concurrency", "1", "--pool", "prefork",
            "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip

    def _gunicorn_command(self, port: int) -> list[str]:
        # Sync workers: one request at a time each, the simplest production set-up. --preload
        # imports Django once, before forking, instead of once per worker.
        return [
            sys.executable, "-m", "gunicorn", "kb.wsgi:application", "--preload",
            "--bind", f"127.0.0.1:{port}", "--workers", str(self.options.web_workers),
            "--timeout", "60", "--graceful-timeout", "10", "--log-level", "warning",
        ]  # fmt: skip


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _environment(scratch: Path, database_url: str, broker_url: str,
                 queue: str, cache_url: str) -> dict[str, str]:  # fmt: skip
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "kb.settings",
        "DATABASE_URL": database_url,
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        # Not the checkout's staticfiles/, which `make run` fills with other storage.
        "STATIC_ROOT": str(scratch / "static"),
        "MEDIA_ROOT": str(scratch / "media"),
        "API_THROTTLE_USER": LOAD_THROTTLE,
        "CELERY_BROKER_URL": broker_url,
        "CELERY_FILESYSTEM_DIR": str(scratch / "broker"),
        "ANALYSIS_QUEUE": queue,
        # Several web processes share the throttle's counts through Redis, as in production.
        "CACHE_URL": cache_url,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


@contextlib.contextmanager
def load_stack(options: StackOptions, *, base_dir: Path) -> Iterator[Stack]:
    """Start the whole site for one load run; stop it and remove every trace afterwards.
    Uses Redis at options.redis_url when it answers, else kombu's filesystem transport."""
    require_loopback(options.postgres_url, "PostgreSQL")
    require_loopback(options.redis_url, "Redis")
    queue = f"load-{secrets.token_hex(4)}"
    use_redis = redis_answers(options.redis_url)
    # The database is dropped last, once every process using it has stopped.
    with scratch_database(options.postgres_url) as database_url, contextlib.ExitStack() as cleanup:
        scratch = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="kb-load-")))
        for folder in ("broker/processed", "broker/control", "media"):
            (scratch / folder).mkdir(parents=True)
        broker_url = options.redis_url if use_redis else "filesystem://"
        env = _environment(scratch, database_url, broker_url, queue,
                           options.redis_url if use_redis else "")  # fmt: skip
        stack = Stack(base_dir, scratch, env, options, "redis" if use_redis else "filesystem",
                      queue)  # fmt: skip
        if use_redis:
            cleanup.callback(forget_queue, options.redis_url, queue)
        cleanup.callback(stack.stop)
        stack.start()
        yield stack
