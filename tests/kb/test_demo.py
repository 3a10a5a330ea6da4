"""seed_demo: a coherent demo, and running it twice changes nothing."""

from io import StringIO

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import call_command

from kb.models import Finding, Highlight, Insight, Outcome, SubjectModel

pytestmark = pytest.mark.django_db


def _counts() -> dict[str, int]:
    counts = {
        model._meta.label: model.objects.count()
        for app in ("kb", "analysis")
        for model in apps.get_app_config(app).get_models()
    }
    counts["users"] = get_user_model().objects.count()
    return counts


def test_seed_demo_twice_gives_the_same_counts():
    call_command("seed_demo", stdout=StringIO())
    first = _counts()
    call_command("seed_demo", stdout=StringIO())
    assert _counts() == first
    assert first["kb.Interview"] == 3
    assert first["kb.Event"] > 0


def test_seed_demo_tells_the_story():
    call_command("seed_demo", stdout=StringIO())
    curves = Finding.objects.get(title="Curve detectors in mixed3b")
    assert curves.subject_model == SubjectModel.objects.get(name="InceptionV1")
    assert curves.unit_indices == [379, 406, 385, 343, 342, 388, 340, 330, 349, 324]
    assert Finding.objects.get(layer_name="mixed4a").concept == "3D geometry"
    actionable = Highlight.objects.filter(
        themes__name="Wants actionable steps for improving the model"
    )
    assert actionable.count() == 3
    guided = Insight.objects.get(title="Add units where curvature and 3D geometry live")
    assert set(guided.findings.all()) == set(
        Finding.objects.filter(subject_model__name="InceptionV1")
    )
    assert Outcome.objects.get(change__insight=guided).verdict == "inconclusive"
    counter = Insight.objects.get(title="Untargeted tweaks beat the guided change")
    assert Outcome.objects.get(change__insight=counter).verdict == "improved"
    users = get_user_model().objects
    assert users.get(username="demo-viewer").groups.get().name == "viewer"
    assert users.get(username="demo-researcher").groups.get().name == "researcher"
    assert users.get(username="demo-admin").is_superuser
