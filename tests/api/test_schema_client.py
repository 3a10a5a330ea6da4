"""A client written against the published schema alone (operation ids, path templates and
the URLs in responses; nothing from the project's Python) builds a chain of records, starts
an experiment, polls the run to completion on a real worker, and reads the outcome."""

import json
import time
import urllib.error
import urllib.request

import pytest
from rest_framework.authtoken.models import Token

from tests.analysis.workers import celery_worker, require_redis, unique_queue

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

RUN_TIMEOUT = 240
SPEC = {
    "input_shape": [1, 12, 12],
    "num_classes": 4,
    "layers": [
        {"name": "conv1", "type": "conv2d", "out_channels": 6, "kernel_size": 3, "padding": 1},
        {"name": "relu1", "type": "relu"},
        {"name": "pool1", "type": "maxpool2d", "kernel_size": 2},
        {"name": "conv2", "type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1},
        {"name": "relu2", "type": "relu"},
        {"name": "pool2", "type": "maxpool2d", "kernel_size": 2},
        {"name": "flatten", "type": "flatten"},
        {"name": "fc1", "type": "linear", "out_features": 16},
        {"name": "relu3", "type": "relu"},
        {"name": "fc_out", "type": "linear", "out_features": 4},
    ],
}


class SchemaClient:
    """Calls operations by their OpenAPI operationId."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url, self.token = base_url, token
        schema = self.request("GET", "/api/schema/?format=json")
        self.operations = {
            operation["operationId"]: (method.upper(), path)
            for path, methods in schema["paths"].items()
            for method, operation in methods.items()
        }

    def request(self, method: str, url: str, body: dict | None = None):
        url = url if url.startswith("http") else self.base_url + url
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Token {self.token}")
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            raise AssertionError(f"{method} {url}: {error.code} {error.read()[:500]}") from None

    def call(self, operation_id: str, body: dict | None = None, **path_params):
        method, path = self.operations[operation_id]
        return self.request(method, path.format(**path_params), body)


@pytest.fixture
def worker_settings(settings, tmp_path):
    require_redis()
    settings.ANALYSIS_QUEUE = unique_queue()
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings


def test_a_schema_only_client_runs_an_experiment_end_to_end(
    live_server, worker_settings, tmp_path, researcher_user
):
    token = Token.objects.create(user=researcher_user).key
    api = SchemaClient(live_server.url, token)
    person = api.call(
        "researchers_create", {"pseudonym": "P9", "role": "ml_engineer", "seniority": "senior"}
    )
    interview = api.call(
        "interviews_create",
        {"researcher": person["id"], "conducted_on": "2026-04-01",
         "transcript": "Curves should get more room."},
    )  # fmt: skip
    theme = api.call("themes_create", {"name": "Capacity"})
    quote = api.call(
        "highlights_create",
        {"interview": interview["id"], "start": 0, "end": 6, "quote": "Curves",
         "themes": [theme["id"]]},
    )  # fmt: skip
    model = api.call(
        "models_create", {"name": "tiny-shapes", "kind": "builtin", "architecture_spec": SPEC}
    )
    finding = api.call(
        "findings_create",
        {"subject_model": model["id"], "title": "Circle units", "layer_name": "conv2",
         "unit_indices": [1, 2], "concept": "circle"},
    )  # fmt: skip
    insight = api.call(
        "insights_create",
        {"title": "Widen conv2", "statement": "Circle units crowd conv2.",
         "findings": [{"finding": finding["id"]}], "highlights": [{"highlight": quote["id"]}]},
    )  # fmt: skip
    change = api.call(
        "changes_create",
        {"insight": insight["id"], "target_model": model["id"], "operation": "widen_layer",
         "parameters": {"layer": "conv2", "units": 2}},
    )  # fmt: skip
    with celery_worker(
        queue=worker_settings.ANALYSIS_QUEUE,
        log_path=tmp_path / "worker.log",
        media_root=worker_settings.MEDIA_ROOT,
        concurrency=2,
    ):
        accepted = api.call(
            "changes_run_experiment_create",
            {"config": {"dataset": {"name": "shapes", "n": 80}, "train": {"epochs": 1},
                        "seeds": 3}},
            id=change["id"],
        )  # fmt: skip
        run = _poll(api, accepted["url"], tmp_path)
    assert run["status"] == "succeeded", run["error"]
    assert run["progress_percent"] == 100
    assert set(run["figures"]) == set(run["result"]["figures"])
    outcome = api.call("outcomes_retrieve", id=run["outcome"])
    assert outcome["analysis_run"] == run["id"]
    assert len(outcome["variant_values"]) == 3
    summary = api.call("insights_retrieve", id=insight["id"])
    assert summary["changes"][0]["latest_outcome"]["id"] == outcome["id"]
    assert summary["changes"][0]["status"] == "evaluated"


def _poll(api: SchemaClient, url: str, tmp_path) -> dict:
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        run = api.request("GET", url)
        if run["status"] in ("succeeded", "failed", "cancelled"):
            return run
        time.sleep(0.5)
    raise AssertionError((tmp_path / "worker.log").read_text()[-3000:])
