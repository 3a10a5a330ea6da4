"""The example service definitions, started for real so that they cannot rot: the Procfile's
lines and the systemd units' ExecStart lines run here as written (with the units' install
folder mapped to this checkout), on loopback ports, against the test database and Redis, with
production settings from deploy/insightkb.env.example. Each deployment must answer a page,
answer its API, and complete a small run requested through that API on its own worker."""

import json
import os
import re
import secrets
import shlex
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.authtoken.models import Token

from tests.analysis import workers
from tests.analysis.jobs import QUICK
from tests.analysis.workers import redis_available, unique_queue, wait_for
from tests.factories import BuiltinModelFactory
from tests.services import require_service

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

REPO = Path(settings.BASE_DIR)
PROCFILE = REPO / "Procfile"
UNITS = REPO / "deploy" / "systemd"
ENV_EXAMPLE = REPO / "deploy" / "insightkb.env.example"
# Where the units expect the checkout and the environment file.
INSTALL_DIR = "/srv/insightkb"
ENV_FILE = "/etc/insightkb/insightkb.env"
START_TIMEOUT = 90
RUN_TIMEOUT = 120


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as systemd's EnvironmentFile= reads them (comments and blanks skipped)."""
    lines = (line.strip() for line in path.read_text().splitlines())
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def deployment(tmp_path, researcher_user):
    """The example environment with this test's database, broker, folders and ports, a
    built-in model to profile and an API token."""
    require_service("Redis", redis_available(), "not answering on the configured broker URL")
    port = _free_port()
    env = {
        **os.environ,
        **read_env_file(ENV_EXAMPLE),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "SECRET_KEY": secrets.token_urlsafe(50),  # the example's placeholder is refused
        "DATABASE_URL": workers.test_database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CACHE_URL": "",
        "STORAGE_BACKEND": "filesystem",  # the bucket has its own test (test_storage_s3.py)
        "MEDIA_ROOT": str(tmp_path / "media"),
        "STATIC_ROOT": str(tmp_path / "static"),
        "ALLOWED_HOSTS": "127.0.0.1",
        "WEB_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "WORKER_CONCURRENCY": "1",
        "ANALYSIS_QUEUE": (queue := unique_queue()),
        "DYNO": f"worker.{queue}",  # the Procfile's worker name, as a PaaS would set it
    }
    return {
        "env": env,
        "url": f"http://127.0.0.1:{port}",
        "logs": tmp_path,
        "token": Token.objects.create(user=researcher_user).key,
        "model": BuiltinModelFactory().pk,
    }


# --- the definitions, read as their runners read them -------------------------------------


def procfile_commands() -> dict[str, str]:
    lines = (line for line in PROCFILE.read_text().splitlines() if line.strip())
    return dict(
        (name.strip(), command.strip())
        for name, command in (line.split(":", 1) for line in lines if not line.startswith("#"))
    )


def unit_service_settings(name: str) -> dict[str, list[str]]:
    """The [Service] section of a unit: each key with its values in order."""
    found: dict[str, list[str]] = {}
    section = None
    for line in (UNITS / name).read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def systemd_command(exec_start: str, env: dict[str, str], instance: str = "") -> list[str]:
    """An ExecStart line as systemd runs it: specifiers (%i, %H, %%), then ${NAME} as one word
    and $NAME split on whitespace, with the install folder mapped to this checkout."""
    line = exec_start.replace("%%", "\0").replace("%i", instance)
    line = line.replace("%H", socket.gethostname()).replace("\0", "%")
    line = line.replace(INSTALL_DIR, str(REPO))
    words: list[str] = []
    for word in shlex.split(line):
        if whole := re.fullmatch(r"\$(\w+)", word):
            words.extend(env.get(whole[1], "").split())
        else:
            words.append(re.sub(r"\$\{(\w+)\}", lambda match: env.get(match[1], ""), word))
    return words


# --- starting, asking, stopping -------------------------------------------------------------


@contextmanager
def started(command: list[str], *, env: dict, log: Path):
    with open(log, "w") as output:
        process = subprocess.Popen(
            command, env=env, cwd=REPO, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        yield process
    finally:
        workers.process_group_stop(process)


def request(deployment: dict, path: str, body: dict | None = None) -> tuple[int, dict, bytes]:
    """One request as the TLS-terminating proxy in front of gunicorn would forward it."""
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "192.0.2.10"}
    if path.startswith("/api/"):
        headers["Authorization"] = f"Token {deployment['token']}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    call = urllib.request.Request(deployment["url"] + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(call, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _answering(deployment: dict, processes: dict[str, subprocess.Popen]) -> bool:
    for name, process in processes.items():
        log = (deployment["logs"] / f"{name}.log").read_text()
        assert process.poll() is None, f"the {name} process exited early:\n{log[-3000:]}"
    try:
        return request(deployment, "/login/")[0] == 200
    except OSError:
        return False


def run_release(commands: list[list[str]], env: dict) -> None:
    for command in commands:
        done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
        assert done.returncode == 0, f"{command}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"


def assert_serves_and_runs(deployment: dict, web: list[str], worker: list[str]) -> None:
    """Start web and worker, then: a page, the API, and a run requested through the API."""
    env, logs = deployment["env"], deployment["logs"]
    with ExitStack() as stack:
        processes = {
            name: stack.enter_context(started(command, env=env, log=logs / f"{name}.log"))
            for name, command in (("web", web), ("worker", worker))
        }
        wait_for(
            lambda: _answering(deployment, processes),
            timeout=START_TIMEOUT,
            interval=0.5,
            describe=lambda: (logs / "web.log").read_text()[-3000:],
        )
        status, headers, page = request(deployment, "/login/")
        assert b"Log in" in page
        # Production settings from the example file: HSTS on every HTTPS answer.
        assert headers["Strict-Transport-Security"].startswith("max-age=")
        status, _, body = request(deployment, "/api/")
        assert status == 200 and "runs" in json.loads(body)

        status, _, body = request(
            deployment, f"/api/models/{deployment['model']}/profile/", {"config": QUICK}
        )
        assert status == 202, body
        run_url = f"/api/runs/{json.loads(body)['id']}/"
        run = wait_for(
            lambda: _finished(request(deployment, run_url)[2]),
            timeout=RUN_TIMEOUT,
            interval=0.5,
            describe=lambda: (logs / "worker.log").read_text()[-3000:],
        )
    assert run["status"] == "succeeded", run["error"]
    # The worker stored its figure where the environment said.
    assert (Path(env["MEDIA_ROOT"]) / run["result"]["figures"]["selectivity"]).is_file()


def _finished(body: bytes) -> dict | None:
    run = json.loads(body)
    return run if run["status"] in {"succeeded", "failed", "cancelled"} else None


# --- one test per definition file -----------------------------------------------------------


def test_procfile_processes_serve_pages_and_run_analyses(deployment):
    commands = procfile_commands()
    assert set(commands) == {"release", "web", "worker"}

    def shell(name: str) -> list[str]:
        return ["/bin/sh", "-c", commands[name]]

    run_release([shell("release")], deployment["env"])
    assert_serves_and_runs(deployment, shell("web"), shell("worker"))


def test_systemd_units_serve_pages_and_run_analyses(deployment):
    env = deployment["env"]
    units = {
        name: unit_service_settings(f"insightkb-{name}.service")
        for name in ("release", "web", "worker@")
    }
    assert sorted(path.name for path in UNITS.iterdir()) == sorted(
        f"insightkb-{name}.service" for name in units
    )
    for service in units.values():
        assert service["WorkingDirectory"] == [INSTALL_DIR]
        assert service["EnvironmentFile"] == [ENV_FILE]

    run_release([systemd_command(line, env) for line in units["release"]["ExecStart"]], env)
    (web,) = units["web"]["ExecStart"]
    (worker,) = units["worker@"]["ExecStart"]
    worker_command = systemd_command(worker, env, instance="1")
    assert worker_command[:3] == ["/usr/bin/env", "OMP_NUM_THREADS=1", "MKL_NUM_THREADS=1"]
    assert f"worker1@{socket.gethostname()}" in worker_command
    assert_serves_and_runs(deployment, systemd_command(web, env), worker_command)
