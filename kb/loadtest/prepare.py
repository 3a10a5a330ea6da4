"""Set up the scratch database of a load benchmark, in a child process whose settings point at
it: migrate, add the demo content, give the load user an API token, start one small run (so
run pages have one to show from the first second), and write what the clients need as JSON.

    python -m kb.loadtest.prepare OUT.json
"""

import json
import os
import sys
from pathlib import Path

import django

from analysis.engine.run_settings import BOUNDS, DATASET_BOUNDS

# Every client acts as this demo user: the API clients with its token, the page clients
# through the login form. Its role may read transcripts and start runs.
LOAD_USER = "demo-researcher"


def tiny_profile_config() -> dict:
    """The smallest profiling run the run settings allow: the fewest shapes, one epoch, the
    top unit only. Requesting it is quick; running it is the workers' job."""
    return {
        "dataset": {"name": "shapes", "n": DATASET_BOUNDS["shapes"]["n"][0]},
        "train": {"epochs": BOUNDS["train.epochs"][0]},
        "top_k": BOUNDS["top_k"][0],
    }


def prepare() -> dict:
    """The fields of `kb.loadtest.clients.Site`, less `base_url`."""
    # Imported here: models can only be imported once django.setup() has run.
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    from analysis.models import AnalysisRun
    from analysis.services import profile_request
    from kb.demo import DEMO_USERS, seed_demo
    from kb.models import (
        ArchitectureChange,
        Finding,
        Highlight,
        Insight,
        Interview,
        SubjectModel,
        Theme,
    )

    call_command("migrate", interactive=False, verbosity=0)
    seed_demo()
    user = get_user_model().objects.get(username=LOAD_USER)
    shapes = SubjectModel.objects.get(name="Shapes CNN")
    profile_request(actor=user, subject_model=shapes, config=tiny_profile_config())

    def ids(model) -> list[int]:
        return list(model.objects.order_by("pk").values_list("pk", flat=True))

    return {
        "token": Token.objects.get_or_create(user=user)[0].key,
        "username": LOAD_USER,
        "password": next(password for name, password, *_ in DEMO_USERS if name == LOAD_USER),
        "insights": ids(Insight),
        "findings": ids(Finding),
        "changes": ids(ArchitectureChange),
        "interviews": ids(Interview),
        "runs": ids(AnalysisRun),
        "themes": ids(Theme),
        # The demo's own highlights: spans whose quote matches the transcript exactly.
        "passages": list(Highlight.objects.values("interview", "start", "end", "quote")),
        "finding_model": shapes.pk,
        "profile_model": shapes.pk,
        "profile_config": tiny_profile_config(),
    }


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kb.settings")
    django.setup()
    Path(sys.argv[1]).write_text(json.dumps(prepare()))


if __name__ == "__main__":
    main()
