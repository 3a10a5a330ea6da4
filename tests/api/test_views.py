"""The base viewsets' own rule on input: a write that reads no body (a delete, anonymise,
withdraw, copy, cancel, retry) refuses one that carries anything, rather than ignore it."""

import pytest

from analysis.services import run_cancel
from kb.api.mixins import UNKNOWN_FIELD
from tests.api.writes import WRITES, resolve, send
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db

BODYLESS = [(method, path) for method, path, body in WRITES if body is None]


@pytest.fixture
def client(api, researcher_user):
    return api(researcher_user)


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"reason": "typo"}, {"reason": [UNKNOWN_FIELD]}),
        ([1], {"non_field_errors": ["This action takes no body."]}),
        ("now", {"non_field_errors": ["This action takes no body."]}),
    ],
)
@pytest.mark.parametrize(("method", "path"), BODYLESS, ids=[" ".join(w) for w in BODYLESS])
def test_a_body_sent_to_an_action_that_reads_none_is_refused(client, kb, method, path, body,
                                                             errors):  # fmt: skip
    with nothing_written():
        response = send(client, method, resolve(path, kb), body)
    assert response.status_code == 400, response.content
    assert response.json() == errors


@pytest.mark.parametrize("body", ["", "{}"])
def test_an_empty_body_is_no_body(client, kb, body):
    run_cancel(actor=None, run=kb["run"])
    response = client.post(
        f"/api/runs/{kb['run'].pk}/retry/", data=body, content_type="application/json"
    )
    assert response.status_code == 202, response.content


def test_a_method_the_endpoint_lacks_answers_405_whatever_its_body(client, kb):
    response = client.put(f"/api/themes/{kb['theme'].pk}/", {"name": "New"})
    assert response.status_code == 405
