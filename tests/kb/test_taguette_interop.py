"""Taguette, a real qualitative tool, as the other side of the exchange: its own code reads our
codebook CSV and writes the .qdc our importer reads.

Taguette's pins clash with ours, so it lives in a venv of its own (tests/tool_venvs.py), built
once from the package registry (about 20 s here) and reused. Without a venv the test skips
(fails in CI, where KB_REQUIRE_SERVICES=1). One script run does both directions, once per suite.
"""

import json
import subprocess
from pathlib import Path

import pytest

from kb.exchange.codebook_csv import codebook_csv_rows
from kb.models import Theme
from kb.services import exchange
from kb.services.codebook import theme_create
from tests.tool_venvs import tool_python

pytestmark = pytest.mark.django_db

TAGUETTE_VERSION = "1.5.2"
# Runs inside Taguette's venv: its codebook_xml writes a .qdc of the tags it is given, and its
# list_tags reads our CSV. Tags are what Taguette keeps of a code: a path and a description.
SCRIPT = """
import json, sys
from taguette.export import codebook_xml
from taguette.import_codebook import list_tags

spec = json.load(sys.stdin)

class Tag:
    def __init__(self, path, description):
        self.path, self.description = path, description

with open(spec["csv"], "rb") as ours:
    listed = list_tags(ours)
codebook_xml([Tag(**tag) for tag in listed + spec["extra"]], spec["qdc"])
json.dump({"listed": listed}, sys.stdout)
"""


@pytest.fixture(scope="session")
def taguette_python() -> Path:
    return tool_python("taguette", f"taguette=={TAGUETTE_VERSION}")


def test_taguette_reads_our_csv_and_we_read_its_qdc(taguette_python, researcher_user, tmp_path):
    actor = researcher_user
    actionability = theme_create(actor=actor, name="Actionability", description="Wants steps.")
    steps = theme_create(
        actor=actor, name="Next steps", parent=actionability,
        description='Concrete, "doable" steps,\nover two lines.',
    )  # fmt: skip
    theme_create(actor=actor, name="Other", parent=steps, description="")
    theme_create(actor=actor, name="Erklärbarkeit & Vertrauen", description="Ünïcode.")
    theme_create(actor=actor, name="Other", description="A root namesake.")
    csv_path, qdc_path = tmp_path / "codebook.csv", tmp_path / "taguette.qdc"
    csv_path.write_text(exchange.codebook_export_csv(), encoding="utf-8")
    extra = {"path": "Only in Taguette", "description": ""}
    spec = {"csv": str(csv_path), "qdc": str(qdc_path), "extra": [extra]}

    done = subprocess.run(
        [taguette_python, "-c", SCRIPT], input=json.dumps(spec), capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)["listed"]
    rows = codebook_csv_rows(exchange.codebook_codes())
    # (b) every theme, its description and its parent (the path before the last "/").
    assert listed == [{"path": path, "description": description} for path, description, _ in rows]
    assert [path.rpartition("/")[0] for path, _, _ in rows] == [parent for _, _, parent in rows]
    assert len(listed) == Theme.objects.count() == 5
    # (a) Taguette's .qdc: every code found, matched to its theme by name or path.
    before = Theme.objects.count()
    report = exchange.codebook_import_qdc(actor=actor, data=qdc_path.read_bytes())
    assert report.kept == (
        "Actionability", "Actionability / Next steps", "Actionability / Next steps / Other",
        "Erklärbarkeit & Vertrauen", "Other",
    )  # fmt: skip
    assert report.added == (extra["path"],)
    assert Theme.objects.count() == before + 1
