"""`manage.py benchmark load`: a scratch PostgreSQL database, gunicorn with production settings,
two Celery workers and the load generator (kb/loadtest/), all as real processes. The figures
of a loaded test machine say nothing; the report's shape and its checks are asserted."""

import json
import os
import subprocess
import sys

import psycopg
import pytest
import redis
from django.conf import settings
from django.core.management import CommandError, call_command

from kb.loadtest.stack import DEFAULT_POSTGRES_URL, DEFAULT_REDIS_URL, redis_answers


def _postgres_answers() -> bool:
    try:
        psycopg.connect(DEFAULT_POSTGRES_URL, connect_timeout=2).close()
    except psycopg.OperationalError:
        return False
    return True


requires_postgres = pytest.mark.skipif(
    not _postgres_answers(), reason=f"the load benchmark needs PostgreSQL at {DEFAULT_POSTGRES_URL}"
)


@requires_postgres
@pytest.mark.integration
def test_quick_load_run_reports_every_request_and_finds_every_write_in_the_database():
    # The command's own process only orchestrates; the servers it starts run with DEBUG off.
    completed = subprocess.run(
        [sys.executable, "manage.py", "benchmark", "load", "--quick"],
        cwd=settings.BASE_DIR, env={**os.environ, "DEBUG": "true"}, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.strip().splitlines()
    summary = json.loads(lines[-1])

    assert list(summary)[:6] == ["benchmark", "requests", "rps", "errors_5xx", "lost_writes",
                                 "p95_ms"]  # fmt: skip
    assert (summary["benchmark"], summary["quick"], summary["clients"], summary["seconds"]) == (
        "load", True, 3, 5,
    )  # fmt: skip
    failures = ["errors_5xx", "lost_writes", "unexpected_status", "no_answer", "client_errors"]
    assert {name: summary[name] for name in failures} == dict.fromkeys(failures, 0)
    assert summary["ok"] is True and summary["unexpected"] == [] and summary["lost"] == []
    # Two API clients each start with one write of each kind, all found in the database.
    assert all(count >= 2 for count in summary["writes"].values()), summary["writes"]
    assert sum(summary["runs_by_status"].values()) >= 1 + summary["writes"]["run"]
    assert summary["requests"] == sum(e["requests"] for e in summary["endpoints"].values()) > 0
    assert set(summary["p95_ms"]) == set(summary["p50_ms"]) == set(summary["endpoints"])
    for figures in summary["endpoints"].values():
        assert figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"] <= figures["max_ms"]
        assert all(status in {"200", "201", "202", "302"} for status in figures["statuses"])
    assert summary["setup"]["web"] == "gunicorn, 3 sync workers"
    assert summary["setup"]["api_throttle_user"] == "1000000/minute"
    assert lines[0].startswith("load: 3 clients for 5 s on loopback;")
    assert "the figures measure the server, not the throttle" in lines[0]
    assert lines[1].split()[:2] == ["endpoint", "requests"]

    # Nothing is left behind: the scratch database is dropped, the run's queue forgotten.
    with psycopg.connect(DEFAULT_POSTGRES_URL) as connection:
        names = connection.execute(
            "SELECT count(*) FROM pg_database WHERE datname = %s",
            [summary["setup"]["database_name"]],
        ).fetchone()
    assert names == (0,)
    if summary["setup"]["broker"] == "redis" and redis_answers(DEFAULT_REDIS_URL):
        leftovers = redis.Redis.from_url(DEFAULT_REDIS_URL).keys(f"*{summary['setup']['queue']}*")
        assert leftovers == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["load", "--clients", "0"], "argument --clients: must be from 1 to 200, got 0"),
        (["load", "--seconds", "soon"], "argument --seconds: must be a whole number, got 'soon'"),
        (["engine", "--clients", "5"], "--clients applies to the load benchmark only."),
        (["load", "--postgres", "postgres://postgres@db.example.org/postgres"],
         "load benchmark could not run: PostgreSQL must be on loopback (127.0.0.1), not "
         "'db.example.org'."),
    ],
)  # fmt: skip
def test_benchmark_load_refuses_bad_flags_before_starting_anything(args, message):
    with pytest.raises(CommandError) as refused:
        call_command("benchmark", *args)
    assert str(refused.value).endswith(message)
