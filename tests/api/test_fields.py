"""The API's own serializer fields: JSON that a multipart form carries as text is read by the
same rules as a JSON body (depth, NaN, null), and unit indices are a bounded list of whole
numbers. Bad values answer 400 under the field's name, and nothing is written."""

import json

import pytest

from kb.api.fields import MAX_UNIT_INDEX, MAX_UNITS, MAX_VALUE_DEPTH
from kb.services.subjects import subject_model_create
from tests.factories import SHAPES_SPEC
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db

TOO_DEEP = f"Nested deeper than {MAX_VALUE_DEPTH} levels."


@pytest.fixture
def client(api, researcher_user):
    return api(researcher_user)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (nested(1000), TOO_DEEP),
        (nested(100_000), TOO_DEEP),
        (nested(MAX_VALUE_DEPTH + 1), TOO_DEEP),
        ('{"layers": NaN}', "NaN is not a number JSON allows."),
        ('{"layers": 1e400}', "1e400 is too large a number."),
        ("{not json", "Value must be valid JSON."),
        ("null", "This field may not be null."),
        ('{"name": "a\\u0000b"}', "Null characters are not allowed."),
    ],
)
def test_a_bad_json_form_field_is_refused_on_create(client, kb, text, message):
    form = {"name": "Uploaded", "kind": "builtin", "architecture_spec": text}
    with nothing_written():
        response = client.post("/api/models/", form, format="multipart")
    assert response.status_code == 400, response.content
    assert response.json() == {"architecture_spec": [message]}


@pytest.mark.parametrize(
    ("text", "message"),
    [("null", "This field may not be null."), (nested(1000), TOO_DEEP)],
)
@pytest.mark.parametrize("kind", ["external", "builtin"])
def test_a_bad_json_form_field_is_refused_on_update(client, kb, researcher_user, kind, text,
                                                     message):  # fmt: skip
    spec = SHAPES_SPEC if kind == "builtin" else {"note": "from a paper"}
    model = subject_model_create(
        actor=researcher_user, name="Another", kind=kind, architecture_spec=spec
    )
    with nothing_written():
        response = client.patch(
            f"/api/models/{model.pk}/", {"architecture_spec": text}, format="multipart"
        )
    assert response.status_code == 400, response.content
    assert response.json() == {"architecture_spec": [message]}
    model.refresh_from_db()
    assert model.architecture_spec == spec


def test_a_json_form_field_at_the_depth_limit_reaches_the_service(client, kb):
    form = {"name": "Uploaded", "kind": "external", "architecture_spec": nested(MAX_VALUE_DEPTH)}
    response = client.post("/api/models/", form, format="multipart")
    assert response.status_code == 201, response.content
    assert response.json()["architecture_spec"] == json.loads(nested(MAX_VALUE_DEPTH))


@pytest.mark.parametrize(
    ("indices", "message"),
    [
        (5, 'Expected a list of items but got type "int".'),
        ("1,2", 'Expected a list of items but got type "str".'),
        ({"0": 1}, 'Expected a list of items but got type "dict".'),
        (["a"], {0: ["A valid integer is required."]}),
        ([1.5], {0: ["A valid integer is required."]}),
        ([True], {0: ["A valid integer is required."]}),
        ([None], {0: ["This field may not be null."]}),
        ([[1]], {0: ["A valid integer is required."]}),
        ([1, -1], {1: ["Ensure this value is greater than or equal to 0."]}),
        ([10**30], {0: [f"Ensure this value is less than or equal to {MAX_UNIT_INDEX}."]}),
        ([2**63], {0: [f"Ensure this value is less than or equal to {MAX_UNIT_INDEX}."]}),
        (list(range(MAX_UNITS + 1)), f"Ensure this field has no more than {MAX_UNITS} elements."),
    ],
)
def test_bad_unit_indices_are_refused(client, kb, indices, message):
    body = {"subject_model": kb["model"].pk, "title": "T", "layer_name": "conv2",
            "unit_indices": indices}  # fmt: skip
    with nothing_written():
        created = client.post("/api/findings/", body, format="json")
        updated = client.patch(
            f"/api/findings/{kb['finding'].pk}/", {"unit_indices": indices}, format="json"
        )
    expected = {"unit_indices": message if isinstance(message, dict) else [message]}
    for response in (created, updated):
        assert response.status_code == 400, response.content
        assert response.json() == json.loads(json.dumps(expected))
    kb["finding"].refresh_from_db()
    assert kb["finding"].unit_indices == [1, 2]


@pytest.mark.parametrize(
    ("path", "field", "values"),
    [
        ("/api/questions/{question}/", "choices", [{}, {}]),
        ("/api/questions/{question}/", "choices", [["a"], "b"]),
        ("/api/questions/{question}/", "choices", "a,b"),
        ("/api/answers/{answer}/", "selected_choices", [{"a": 1}]),
        ("/api/answers/{answer}/", "selected_choices", 3),
    ],
)
def test_lists_of_text_hold_only_text(client, kb, path, field, values):
    url = path.format(question=kb["question"].pk, answer=kb["answer"].pk)
    with nothing_written():
        response = client.patch(url, {field: values}, format="json")
    assert response.status_code == 400, response.content
    assert list(response.json()) == [field]
