"""Venvs of the third-party tools that tests drive as real clients (Taguette, TransformerLens).

Their pins clash with ours or they bring dozens of packages, so each lives in a venv of its own,
built from the package registry on first use and kept outside the checkout (a clean clone in CI
then reuses it): `$KB_TOOL_VENVS`, else `~/.cache/insight-kb/tool-venvs`. A lock keeps parallel
test workers from building one twice; a marker names the requirement it was built for.
"""

import fcntl
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from tests.services import require_service

BUILD_TIMEOUT_S = 900


def tool_venvs_dir() -> Path:
    configured = os.environ.get("KB_TOOL_VENVS")
    return Path(configured) if configured else Path.home() / ".cache" / "insight-kb" / "tool-venvs"


def _site_packages(venv: Path) -> Path:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return venv / "lib" / version / "site-packages"


def _build(venv: Path, requirement: str, share_our_packages: bool) -> str:
    """Build the venv afresh; out: "" or why it could not be built."""
    shutil.rmtree(venv, ignore_errors=True)
    base = shutil.which("python3.11") or sys.executable
    try:
        subprocess.run(
            [base, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120
        )
        if share_our_packages:
            _share_our_packages(venv)
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", requirement],
            check=True,
            capture_output=True,
            timeout=BUILD_TIMEOUT_S,
        )
    except subprocess.CalledProcessError as error:
        return f"{requirement}: {error.stderr.decode(errors='replace').strip()[-500:]}"
    except (OSError, subprocess.SubprocessError) as error:
        return f"{requirement}: {error}"
    (venv / ".built").write_text(requirement)
    return ""


def _share_our_packages(venv: Path) -> None:
    """Let the venv import this project's packages (torch above all) instead of downloading
    them again; rewritten on each use, since the project's venv moves with the checkout."""
    ours = sysconfig.get_paths()["purelib"]
    (_site_packages(venv) / "kb-venv.pth").write_text(f"{ours}\n")


def tool_python(name: str, requirement: str, *, share_our_packages: bool = False) -> Path:
    """The python of the tool venv `name` holding `requirement`, built on first use. Skips the
    test (fails it in CI) when the venv cannot be built."""
    venv = tool_venvs_dir() / name
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = venv / ".built"
        built = marker.exists() and marker.read_text() == requirement
        problem = "" if built else _build(venv, requirement, share_our_packages)
        if not problem and share_our_packages:
            _share_our_packages(venv)
    require_service(f"a venv with {requirement}", not problem, problem)
    return venv / "bin" / "python"
