"""A property test over every write the API offers (each POST, PATCH and DELETE, the actions
included): requests generated from the published OpenAPI schema, ones that follow it and
ones that break it, sent as a researcher signed in with a token to a knowledge base that
holds one record of each kind. Ids in paths and bodies name those records, so requests
reach the services rather than stopping at "not found".

No answer may be a server error, and every 2xx answer must match its documented schema.
Deterministic: Hypothesis runs derandomised and without an example database, and each
request runs in a savepoint rolled back after it, so every request meets the same records.
"""

import json
import time
from collections import Counter

import pytest
import requests
import schemathesis
from django.core.cache import cache
from django.db import transaction
from django.test import Client
from hypothesis import HealthCheck, Phase, given, settings
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode

from analysis.services import run_cancel

pytestmark = pytest.mark.django_db

EXAMPLES = 24  # per operation and generation mode
MIN_REQUESTS = 2000
WRITE_METHODS = {"post", "patch", "put", "delete"}
# The record a path's collection holds, and the record a body field names by id.
PATH_RECORDS = {
    "researchers": "researcher", "surveys": "survey", "questions": "question",
    "invitations": "invitation", "interviews": "interview", "answers": "answer",
    "themes": "theme", "highlights": "highlight", "models": "model", "findings": "finding",
    "insights": "insight", "changes": "change", "outcomes": "outcome", "runs": "run",
}  # fmt: skip
ID_FIELDS = {
    "researcher": "researcher", "survey": "survey", "question": "question",
    "interview": "interview", "answer": "answer", "theme": "theme", "themes": "theme",
    "parent": "theme", "highlight": "highlight", "highlights": "highlight",
    "subject_model": "model", "target_model": "model", "finding": "finding",
    "findings": "finding", "insight": "insight", "change": "change", "evidence_runs": "run",
}  # fmt: skip
# A PATCH of a versioned record names the version it was made on (or answers 428, 409, 412).
VERSIONED_BODIES = {
    "PatchedInsightUpdateRequest": "insight", "PatchedFindingUpdateRequest": "finding",
    "PatchedChangeUpdateRequest": "change",
}  # fmt: skip
HYPOTHESIS = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def _point_ids_at(schema: dict, kb: dict) -> dict:
    """The schema, with every record id (a path's {id}, an id field in a request body, the
    items of a list of ids) allowed only the kb record's id, and request bodies closed to
    fields they do not list (the API refuses those), and a PATCH's `version` allowed only the
    record's version, so that valid requests stay valid."""
    for path, methods in schema["paths"].items():
        record = PATH_RECORDS.get(path.split("/")[2])
        for operation in methods.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] == "id" and record:
                    parameter["schema"] = {"type": "string", "enum": [str(kb[record].pk)]}
    for name, component in schema["components"]["schemas"].items():
        if not name.endswith("Request"):
            continue
        component["additionalProperties"] = False
        if name in VERSIONED_BODIES:
            record = kb[VERSIONED_BODIES[name]]
            version = type(record).objects.values_list("version", flat=True).get(pk=record.pk)
            component["properties"]["version"]["enum"] = [version]
        for field, spec in component.get("properties", {}).items():
            record = ID_FIELDS.get(field)
            target = spec.get("items", spec) if spec.get("type") == "array" else spec
            if record and target.get("type") == "integer":
                target["enum"] = [kb[record].pk]
    return schema


def _write_operations(client: Client, kb: dict):
    raw = json.loads(client.get("/api/schema/", {"format": "json"}).content)
    schema = schemathesis.openapi.from_dict(_point_ids_at(raw, kb))
    operations = [result.ok() for result in schema.get_all_operations()]
    return [operation for operation in operations if operation.method.lower() in WRITE_METHODS]


def _prepare(case, token: str) -> requests.PreparedRequest:
    """The request exactly as an HTTP client would send it."""
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    kwargs["headers"]["Authorization"] = f"Token {token}"
    kwargs.pop("cookies", None)
    return requests.Request(**kwargs).prepare()


def _send(client: Client, request: requests.PreparedRequest):
    skipped = ("content-type", "content-length")  # given to the client separately
    headers = {
        name: value for name, value in request.headers.items() if name.lower() not in skipped
    }
    body = request.body or b""
    with transaction.atomic():
        response = client.generic(
            request.method,
            request.path_url,
            data=body.encode() if isinstance(body, str) else body,
            content_type=request.headers.get("Content-Type", "application/octet-stream"),
            headers=headers,
        )
        transaction.set_rollback(True)
    return response


def _conformance_problem(case, request, response) -> str | None:
    """Why a 2xx answer does not match the schema, or None."""
    answer = schemathesis.Response(
        status_code=response.status_code,
        headers={name: [value] for name, value in response.headers.items()},
        content=response.content,
        request=request,
        elapsed=0.0,
        verify=True,
    )
    try:
        case.operation.validate_response(answer, case=case)
    except Exception as error:  # FailureGroup: any mismatch is reported, not raised
        return str(error)[:500]
    return None


class Fuzzer:
    """Sends generated requests and keeps what came back: a tally of status codes, and every
    answer that breaks the rules (a server error, a 2xx that does not match the schema)."""

    def __init__(self, client: Client, token: str) -> None:
        self.client, self.token = client, token
        self.statuses: Counter[int] = Counter()
        self.failures: list[tuple] = []

    def run(self, operation, mode: GenerationMode) -> None:
        @HYPOTHESIS
        @given(case=operation.as_strategy(generation_mode=mode))
        def send(case):
            self.check(case)

        send()

    def check(self, case) -> None:
        request = _prepare(case, self.token)
        label = (case.operation.label, request.body)
        try:
            response = _send(self.client, request)
        except Exception as error:  # the view raised: a server would have answered 500
            self.failures.append((*label, repr(error)[:300]))
            return
        self.statuses[response.status_code] += 1
        if response.status_code >= 500:
            self.failures.append((*label, response.content[:300]))
        elif response.status_code < 300:
            problem = _conformance_problem(case, request, response)
            if problem:
                self.failures.append((*label, problem))


@pytest.fixture
def client(researcher_user, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"  # a generated weights file must land nowhere real
    return Client(raise_request_exception=True)


def test_no_generated_write_gets_a_server_error(client, kb, researcher_user):
    run_cancel(actor=None, run=kb["run"])  # so that runs can be requested and retried
    fuzzer = Fuzzer(client, Token.objects.create(user=researcher_user).key)
    operations = _write_operations(client, kb)
    started = time.monotonic()
    for operation in operations:
        cache.clear()  # the per-user rate limit would answer 429 before long
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzzer.run(operation, mode)
    sent = sum(fuzzer.statuses.values()) + len(fuzzer.failures)
    print(f"{sent} requests to {len(operations)} operations in {time.monotonic() - started:.0f}s:"
          f" {dict(sorted(fuzzer.statuses.items()))}")  # fmt: skip
    assert not fuzzer.failures, "\n".join(map(repr, fuzzer.failures[:20]))
    assert len(operations) >= 46
    assert sent >= MIN_REQUESTS
    # Requests that get through to the services, not only ones refused at the door.
    assert sum(count for status, count in fuzzer.statuses.items() if status < 300) > sent / 10
