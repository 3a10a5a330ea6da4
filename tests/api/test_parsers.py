"""JSON bodies the parser refuses before any view sees them: nested too deep, numbers JSON
cannot hold (NaN, overflowing floats, integers of thousands of digits). Each answers 400
on every write endpoint, and nothing is written."""

import json

import pytest

from kb.api.parsers import MAX_JSON_DEPTH, json_depth_exceeds, json_loads
from tests.api.writes import WRITE_IDS, WRITES, resolve, send_json
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db


def nested(depth: int) -> str:
    """A JSON array nested `depth` levels deep."""
    return "[" * depth + "]" * depth


@pytest.fixture
def client(api, researcher_user):
    return api(researcher_user)


@pytest.mark.parametrize(("method", "path", "body"), WRITES, ids=WRITE_IDS)
def test_a_body_nested_a_thousand_levels_is_refused_everywhere(client, kb, method, path, body):
    fields = json.dumps(resolve(body or {}, kb))[1:-1]
    text = "{" + fields + (", " if fields else "") + f'"config": {nested(1000)}' + "}"
    with nothing_written():
        response = send_json(client, method, resolve(path, kb), text)
    assert response.status_code == 400, response.content
    assert response.json() == {
        "detail": f"JSON parse error - Nested deeper than {MAX_JSON_DEPTH} levels."
    }


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1, 100_000])
def test_nesting_is_counted_without_recursing(depth):
    text = nested(depth)
    if depth <= MAX_JSON_DEPTH:
        assert json_loads(text) == json.loads(text)
    else:
        with pytest.raises(ValueError, match=f"Nested deeper than {MAX_JSON_DEPTH} levels."):
            json_loads(text)


def test_depth_counts_objects_and_arrays_alike():
    value = {"a": [{"b": [1]}]}
    assert not json_depth_exceeds(value, 4)
    assert json_depth_exceeds(value, 3)


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("NaN", "NaN is not a number JSON allows."),
        ("-Infinity", "-Infinity is not a number JSON allows."),
        ("1e400", "1e400 is too large a number."),
        ("9" * 5000, "Exceeds the limit (4300 digits) for integer string conversion"),
    ],
)
def test_numbers_json_cannot_hold_are_refused(client, kb, number, message):
    text = f'{{"subject_model": {kb["model"].pk}, "title": "T", "layer_name": "conv2", ' \
           f'"confidence": {number}}}'  # fmt: skip
    with nothing_written():
        response = send_json(client, "post", "/api/findings/", text)
    assert response.status_code == 400, response.content
    assert response.json()["detail"].startswith(f"JSON parse error - {message}")


def test_large_but_finite_numbers_reach_the_serializer(client, kb):
    text = f'{{"subject_model": {kb["model"].pk}, "title": "T", "layer_name": "conv2", ' \
           f'"confidence": 1e300, "unit_indices": [{10**30}]}}'  # fmt: skip
    with nothing_written():
        response = send_json(client, "post", "/api/findings/", text)
    assert response.status_code == 400, response.content
    assert set(response.json()) == {"confidence", "unit_indices"}


def test_a_body_that_is_not_utf8_is_refused(client, kb):
    with nothing_written():
        response = client.post(
            "/api/themes/", data=b'{"name": "\xff"}', content_type="application/json"
        )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("JSON parse error")
