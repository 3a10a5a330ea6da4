"""The API links a run's figures to the permission-checked figure view, never to storage."""

from urllib.parse import urlsplit

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import resolve, reverse

from analysis.models import AnalysisRun
from tests.factories import BuiltinModelFactory

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


@pytest.fixture
def run(settings, tmp_path) -> AnalysisRun:
    """A finished profiling run with one figure in storage."""
    settings.MEDIA_ROOT = tmp_path
    run = AnalysisRun.objects.create(
        kind=AnalysisRun.Kind.PROFILE,
        subject_model=BuiltinModelFactory(),
        status=AnalysisRun.Status.SUCCEEDED,
    )
    path = default_storage.save(f"runs/{run.pk}/selectivity.png", ContentFile(PNG))
    run.result = {"figures": {"selectivity": path}}
    run.save(update_fields=["result"])
    return run


def test_figure_urls_lead_to_the_checked_view(api, client, run, viewer_user):
    figure_url = f"http://testserver/runs/{run.pk}/figures/selectivity/"

    detail = api(viewer_user).get(f"/api/runs/{run.pk}/").json()
    listed = api(viewer_user).get("/api/runs/").json()["results"]

    assert detail["figures"] == {"selectivity": figure_url}
    assert [row["figures"] for row in listed] == [{"selectivity": figure_url}]
    path = urlsplit(figure_url).path
    assert resolve(path).url_name == "run-figure"
    assert client.get(path).status_code == 302
    client.force_login(viewer_user)
    response = client.get(path)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"


def test_a_figure_name_the_view_cannot_serve_is_left_out(api, run, viewer_user):
    run.result["figures"]["not a slug"] = run.result["figures"]["selectivity"]
    run.save(update_fields=["result"])

    body = api(viewer_user).get(f"/api/runs/{run.pk}/").json()

    assert body["figures"] == {
        "selectivity": "http://testserver" + reverse("run-figure", args=[run.pk, "selectivity"])
    }
