"""The API benchmark suite (`manage.py benchmark api [--quick]`).

Runs `benchmark_api_child` in a child process whose DATABASE_URL points at a scratch SQLite
file, so the 10,000 insights and 50,000 findings it builds never touch the real database.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError


def run_all(quick: bool) -> list[dict]:
    """Results as the benchmark command expects them: ratio rows and summary rows."""
    with tempfile.TemporaryDirectory(prefix="kb-api-bench-") as scratch:
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{Path(scratch) / 'bench.sqlite3'}",
            "MEDIA_ROOT": str(Path(scratch) / "media"),
            "DEBUG": "true",
            # The benchmark sends hundreds of requests a second as one user.
            "API_THROTTLE_USER": "1000000/minute",
        }
        command = [sys.executable, "manage.py", "benchmark_api_child"]
        if quick:
            command.append("--quick")
        completed = subprocess.run(
            command, cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=900
        )
        if completed.returncode != 0:
            raise CommandError(f"API benchmark failed:\n{completed.stderr[-3000:]}")
        return json.loads(completed.stdout.strip().splitlines()[-1])
