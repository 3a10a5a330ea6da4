"""Stored files on an S3-compatible server (moto's, a real process on loopback): weights uploaded
through the API, read by a real worker for a profiling run that writes its figure to the bucket,
both served back through the permission-checked views, and nothing written under MEDIA_ROOT."""

import json
import socket
import subprocess
import sys
import time

import boto3
import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from rest_framework.test import APIClient

import kb.settings
from analysis.engine.builder import build_model, save_weights
from analysis.models import AnalysisRun
from tests.analysis.jobs import QUICK
from tests.analysis.workers import celery_worker, redis_available, unique_queue, wait_for
from tests.factories import SHAPES_SPEC
from tests.services import require_service

BUCKET = "insightkb-test"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def s3_endpoint(tmp_path):
    """moto's S3 server on a loopback port, stopped afterwards."""
    port = _free_port()
    with open(tmp_path / "moto.log", "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError((tmp_path / "moto.log").read_text()) from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def s3_storage(s3_endpoint, settings, monkeypatch, tmp_path):
    """Default storage is the bucket, configured the way a deployment does it: environment
    variables read by kb.settings (the worker started afterwards inherits them)."""
    require_service("Redis", redis_available(), "not answering on the configured broker URL")
    variables = {
        "STORAGE_BACKEND": "s3",
        "AWS_STORAGE_BUCKET_NAME": BUCKET,
        "AWS_S3_ENDPOINT_URL": s3_endpoint,
        "AWS_S3_REGION_NAME": "us-east-1",
        "AWS_ACCESS_KEY_ID": "insightkb-test",
        "AWS_SECRET_ACCESS_KEY": "insightkb-test-secret",
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    settings.STORAGES = {**settings.STORAGES, "default": kb.settings.stored_files_storage()}
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.ANALYSIS_QUEUE = unique_queue()
    bucket = boto3.resource(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="insightkb-test",
        aws_secret_access_key="insightkb-test-secret",
    ).Bucket(BUCKET)
    bucket.create()
    return bucket


def _weights(tmp_path) -> bytes:
    path = tmp_path / "shapes.safetensors"
    save_weights(build_model(SHAPES_SPEC), path)
    return path.read_bytes()


def _finished(pk: int) -> AnalysisRun | None:
    run = AnalysisRun.objects.get(pk=pk)
    return run if run.is_finished else None


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"STORAGE_BACKEND": "ftp"}, "STORAGE_BACKEND must be filesystem or s3, got 'ftp'"),
        ({"STORAGE_BACKEND": "s3"}, "AWS_STORAGE_BUCKET_NAME is required when STORAGE_BACKEND=s3"),
    ],
)
def test_a_misconfigured_storage_stops_start_up_naming_the_variable(
    monkeypatch, variables, message
):
    monkeypatch.delenv("AWS_STORAGE_BUCKET_NAME", raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ImproperlyConfigured) as excinfo:
        kb.settings.stored_files_storage()
    assert str(excinfo.value) == message


def test_the_bucket_is_private_and_never_overwritten(monkeypatch):
    monkeypatch.delenv("STORAGE_BACKEND", raising=False)
    assert kb.settings.stored_files_storage() == {
        "BACKEND": "django.core.files.storage.FileSystemStorage"
    }
    monkeypatch.setenv("STORAGE_BACKEND", "s3")
    monkeypatch.setenv("AWS_STORAGE_BUCKET_NAME", BUCKET)
    options = kb.settings.stored_files_storage()["OPTIONS"]
    assert (options["bucket_name"], options["default_acl"]) == (BUCKET, None)
    assert (options["querystring_auth"], options["file_overwrite"]) == (True, False)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_weights_and_figures_live_in_the_bucket_and_are_served_from_it(
    s3_storage, tmp_path, researcher_user, client
):
    content = _weights(tmp_path)
    api = APIClient()
    api.force_authenticate(researcher_user)
    # Given a model registered through the API with its weights, stored in the bucket,
    response = api.post(
        "/api/models/",
        {
            "name": "Shapes CNN on S3",
            "kind": "builtin",
            "architecture_spec": json.dumps(SHAPES_SPEC),
            "weights": SimpleUploadedFile("shapes.safetensors", content),
        },
        format="multipart",
    )
    assert response.status_code == 201, response.content
    model_id = response.json()["id"]
    log = tmp_path / "worker.log"
    # when a worker that shares only the bucket profiles it,
    with celery_worker(
        queue=django_settings.ANALYSIS_QUEUE, log_path=log, media_root=django_settings.MEDIA_ROOT
    ):
        response = api.post(f"/api/models/{model_id}/profile/", {"config": QUICK}, format="json")
        assert response.status_code == 202, response.content
        run = wait_for(
            lambda: _finished(response.json()["id"]),
            timeout=120,
            describe=lambda: log.read_text()[-3000:],
        )
    # then it read the uploaded weights and wrote its figure to the bucket,
    assert run.status == AnalysisRun.Status.SUCCEEDED, run.error
    assert run.result["model_metrics"]["source"] == "stored weights"
    figure = run.result["figures"]["selectivity"]
    assert figure == f"runs/{run.pk}/selectivity.png"
    keys = sorted(summary.key for summary in s3_storage.objects.all())
    assert keys == sorted(["weights/shapes.safetensors", figure])
    for key in keys:
        grants = s3_storage.Object(key).Acl().grants
        assert not [grant for grant in grants if grant["Grantee"].get("URI") == ALL_USERS]
    # both are served from it through the checked views,
    client.force_login(researcher_user)
    shown = client.get(reverse("run-figure", args=[run.pk, "selectivity"]))
    assert shown.status_code == 200
    assert shown["Content-Type"] == "image/png"
    assert b"".join(shown.streaming_content).startswith(PNG_SIGNATURE)
    downloaded = client.get(reverse("model-weights", args=[model_id]))
    assert downloaded.status_code == 200
    assert downloaded["Content-Length"] == str(len(content))
    assert b"".join(downloaded.streaming_content) == content
    # and nothing was written to the local media folder, by the web side or the worker.
    media = django_settings.MEDIA_ROOT
    assert not media.exists() or not any(media.rglob("*"))
