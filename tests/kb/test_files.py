"""Stored files are private: a run's figures and a model's weights are streamed only to users
who may see the run or the model, and no URL serves the storage folder, not even in
development (DEBUG on, as `make run` starts the site)."""

import importlib

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import clear_url_caches, reverse

import kb.urls
from analysis.models import AnalysisRun
from tests.factories import BuiltinModelFactory

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
WEIGHTS = b"safetensors header and tensors"

# Who may fetch a stored file: anonymous visitors are sent to the login page, signed-in users
# without the permission are refused.
ROLES = [("anonymous", 302), ("outsider", 403), ("viewer", 200), ("researcher", 200)]


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@pytest.fixture
def development_urls(settings):
    """The URLconf loaded with DEBUG on, where a static() route once served MEDIA_ROOT."""
    debug = settings.DEBUG
    settings.DEBUG = True
    _reload_urls()
    yield
    settings.DEBUG = debug
    _reload_urls()


def _reload_urls() -> None:
    importlib.reload(kb.urls)
    clear_url_caches()


def _run_with_figure(name: str, filename: str, content: bytes) -> tuple[AnalysisRun, str]:
    """A finished profiling run whose result lists one figure, stored where the worker stores
    figures; returns the run and the figure's storage path."""
    run = AnalysisRun.objects.create(
        kind=AnalysisRun.Kind.PROFILE,
        subject_model=BuiltinModelFactory(),
        status=AnalysisRun.Status.SUCCEEDED,
    )
    path = default_storage.save(f"runs/{run.pk}/{filename}", ContentFile(content))
    run.result = {"figures": {name: path}}
    run.save(update_fields=["result"])
    return run, path


def _body(response) -> bytes:
    return b"".join(response.streaming_content)


@pytest.mark.parametrize(("role", "status"), ROLES)
def test_a_figure_is_served_only_to_roles_that_see_runs(as_role, development_urls, role, status):
    run, path = _run_with_figure("selectivity", "selectivity.png", PNG)
    client = as_role(role)

    response = client.get(reverse("run-figure", args=[run.pk, "selectivity"]))

    assert response.status_code == status
    if status == 302:
        assert response.url.startswith(reverse("login"))
    if status == 200:
        assert response["Content-Type"] == "image/png"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Cache-Control"] == "private, max-age=3600"
        assert _body(response) == PNG
    # Whatever the role, the file's storage URL serves nothing.
    assert client.get(default_storage.url(path)).status_code == 404


@pytest.mark.parametrize(("role", "status"), ROLES)
def test_weights_are_served_only_to_roles_that_see_models(as_role, development_urls, role, status):
    path = default_storage.save("weights/shapes.safetensors", ContentFile(WEIGHTS))
    model = BuiltinModelFactory(weights=path)
    client = as_role(role)

    response = client.get(reverse("model-weights", args=[model.pk]))

    assert response.status_code == status
    if status == 302:
        assert response.url.startswith(reverse("login"))
    if status == 200:
        assert response["Content-Type"] == "application/octet-stream"
        assert response["Content-Disposition"] == 'attachment; filename="shapes.safetensors"'
        assert response["X-Content-Type-Options"] == "nosniff"
        assert _body(response) == WEIGHTS
    assert client.get(default_storage.url(path)).status_code == 404


def test_only_the_figures_a_run_lists_are_served(as_role, development_urls):
    run, path = _run_with_figure("selectivity", "selectivity.png", PNG)
    # In the run's folder, but not in its result: no URL reaches it.
    unlisted = default_storage.save(f"runs/{run.pk}/secret.png", ContentFile(PNG))
    viewer = as_role("viewer")

    assert viewer.get(reverse("run-figure", args=[run.pk, "secret"])).status_code == 404
    assert viewer.get(default_storage.url(unlisted)).status_code == 404
    assert viewer.get(reverse("run-figure", args=[run.pk, "nope"])).status_code == 404
    assert viewer.get(reverse("run-figure", args=[run.pk + 1, "selectivity"])).status_code == 404
    assert viewer.get(f"/runs/{run.pk}/figures/..%2Fsecret.png/").status_code == 404
    # Listed, but gone from storage.
    default_storage.delete(path)
    assert viewer.get(reverse("run-figure", args=[run.pk, "selectivity"])).status_code == 404


def test_a_stored_figure_that_is_not_an_image_is_downloaded_never_shown(as_role):
    page = b"<script>alert(document.cookie)</script>"
    run, _ = _run_with_figure("notes", "notes.html", page)

    response = as_role("viewer").get(reverse("run-figure", args=[run.pk, "notes"]))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"] == 'attachment; filename="notes.html"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert _body(response) == page


def test_a_model_without_weights_has_none_to_download(as_role):
    model = BuiltinModelFactory()
    researcher = as_role("researcher")

    assert researcher.get(reverse("model-weights", args=[model.pk])).status_code == 404
    assert researcher.get(reverse("model-weights", args=[model.pk + 1])).status_code == 404


def test_pages_and_admin_link_weights_through_the_checked_download(as_role):
    path = default_storage.save("weights/shapes.safetensors", ContentFile(WEIGHTS))
    model = BuiltinModelFactory(weights=path)
    download = reverse("model-weights", args=[model.pk])
    page = as_role("researcher").get(reverse("model-detail", args=[model.pk]))
    assert f'href="{download}"' in page.content.decode()
    admin_page = as_role("staff").get(reverse("admin:kb_subjectmodel_change", args=[model.pk]))
    body = admin_page.content.decode()
    assert f'<a href="{download}">Download (safetensors)</a>' in body
    assert default_storage.url(path) not in body and 'name="weights"' not in body
