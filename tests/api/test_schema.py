"""The OpenAPI schema validates, and a fuzzer drives every operation with generated input:
no server error, and every response conforms to the schema."""

import json
from io import StringIO

import pytest
import schemathesis
from django.core.management import call_command
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from kb.wsgi import application

EXAMPLES_PER_OPERATION = 5  # 81 operations: some 400 generated requests in all


def test_the_schema_validates_without_warnings():
    out = StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    assert "openapi: 3.0.3" in out.getvalue()


@pytest.mark.django_db
def test_the_schema_and_docs_are_served(api):
    schema = api().get("/api/schema/", {"format": "json"})
    assert schema.status_code == 200
    operations = {
        (method.upper(), path)
        for path, methods in schema.json()["paths"].items()
        for method in methods
    }
    assert ("POST", "/api/changes/{id}/run-experiment/") in operations
    assert all(
        {"400", "401", "403", "404", "429"} <= set(operation["responses"])
        for methods in schema.json()["paths"].values()
        for operation in methods.values()
    )
    assert api().get("/api/docs/").status_code == 200


@pytest.fixture
def in_process_server(db, kb, settings):
    # Django's test client disconnects these handlers itself; a plain WSGI call does not,
    # and closing the connection mid-test would lose the test's transaction on PostgreSQL.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "100000/minute", "user": "100000/minute"},
    }
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


# Serving the schema needs no database (anonymous, no session), so it loads at collection.
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)


@pytest.mark.usefixtures("in_process_server")
@schema.parametrize()
@hypothesis_settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_fuzzed_requests_never_fail_the_server_or_the_schema(case, researcher_user):
    token, _ = Token.objects.get_or_create(user=researcher_user)
    case.call_and_validate(
        headers={"Authorization": f"Token {token.key}"},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )


def test_every_operation_says_what_it_does():
    out = StringIO()
    call_command("spectacular", "--format", "openapi-json", stdout=out)
    operations = {
        (method.upper(), path): operation.get("description", "")
        for path, methods in json.loads(out.getvalue())["paths"].items()
        for method, operation in methods.items()
    }
    assert all(operations.values()), [key for key, text in operations.items() if not text]
    # the generic viewsets' docstrings describe the code, not the endpoint
    assert not [key for key, text in operations.items() if "calls one service" in text]
    assert operations[("GET", "/api/findings/")].startswith("The findings your role may see")
    assert operations[("DELETE", "/api/themes/{id}/")].startswith("Delete the theme.")
    created = operations[("POST", "/api/invitations/")]
    assert created.startswith("Create a link; the answer holds the link itself")
    assert "Single-use links" in created
    assert operations[("POST", "/api/questions/{id}/move/")].startswith("Swap the question")
