"""A model registered through the API with its weights: multipart/form-data with a safetensors
file, checked and hashed before anything is stored; anything else is refused and writes
nothing."""

import hashlib
import json
import pickle
import struct

import pytest
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile

from kb.models import SubjectModel
from kb.services.subjects import subject_model_create
from tests.factories import SHAPES_SPEC
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def safetensors_bytes() -> bytes:
    """A minimal valid safetensors file: one float32 tensor of two values."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    return struct.pack("<Q", len(header)) + header + struct.pack("<2f", 0.5, -1.0)


def _form(weights: bytes, name: str = "shapes.safetensors", **fields) -> dict:
    return {
        "name": "Uploaded shapes CNN",
        "kind": "builtin",
        "architecture_spec": json.dumps(SHAPES_SPEC),
        "weights": SimpleUploadedFile(name, weights, "application/octet-stream"),
        **fields,
    }


def _stored_files(media) -> list:
    return sorted(path.name for path in media.rglob("*") if path.is_file())


def test_a_model_is_registered_with_its_weights(api, researcher_user, _media):
    content = safetensors_bytes()
    response = api(researcher_user).post("/api/models/", _form(content), format="multipart")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["weights_sha256"] == hashlib.sha256(content).hexdigest()
    assert body["architecture_spec"] == SHAPES_SPEC
    assert "weights" not in body
    model = SubjectModel.objects.get(pk=body["id"])
    assert model.weights.read() == content
    assert _stored_files(_media) == ["shapes.safetensors"]


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (pickle.dumps({"conv1.weight": [1.0]}), "Not a safetensors file"),
        (struct.pack("<Q", 5) + b"[1,2]", "Not a safetensors file (bad header)"),
        (b"\x01\x02", "empty or truncated"),
        (b"", "empty"),
    ],
)
def test_anything_but_safetensors_is_refused_and_nothing_is_stored(
    api, researcher_user, _media, weights, message
):
    with nothing_written():
        response = api(researcher_user).post("/api/models/", _form(weights), format="multipart")
    assert response.status_code == 400
    assert message in response.json()["weights"][0]
    assert _stored_files(_media) == []


def test_a_body_over_the_weights_limit_is_refused_before_it_is_read(
    api, researcher_user, settings, _media
):
    settings.WEIGHTS_MAX_UPLOAD_SIZE = 1024
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    big = safetensors_bytes() + bytes(4096)
    with nothing_written():
        response = api(researcher_user).post("/api/models/", _form(big), format="multipart")
    assert response.status_code == 413
    assert _stored_files(_media) == []


def test_the_service_refuses_weights_over_the_limit(researcher_user, settings):
    settings.WEIGHTS_MAX_UPLOAD_SIZE = 1024
    oversized = ContentFile(safetensors_bytes() + bytes(2048), name="big.safetensors")
    with nothing_written(), pytest.raises(ValidationError) as refusal:
        subject_model_create(
            actor=researcher_user, name="Big", kind="builtin", architecture_spec=SHAPES_SPEC,
            weights=oversized,
        )  # fmt: skip
    assert "larger than 1024 bytes" in refusal.value.message_dict["weights"][0]


def test_a_spec_that_is_not_json_gets_a_field_error(api, researcher_user):
    form = _form(safetensors_bytes(), architecture_spec="{layers: [")
    with nothing_written():
        response = api(researcher_user).post("/api/models/", form, format="multipart")
    assert response.status_code == 400
    assert "architecture_spec" in response.json()


def test_weights_cannot_be_replaced_afterwards(api, researcher_user):
    created = api(researcher_user).post(
        "/api/models/", _form(safetensors_bytes()), format="multipart"
    )
    url, digest = created.json()["url"], created.json()["weights_sha256"]
    other = safetensors_bytes().replace(struct.pack("<f", 0.5), struct.pack("<f", 2.0))
    with nothing_written():
        replaced = api(researcher_user).patch(
            url, _form(other, name="other.safetensors"), format="multipart"
        )
    assert replaced.status_code == 400
    assert "register a new model" in replaced.json()["weights"][0]
    assert api(researcher_user).get(url).json()["weights_sha256"] == digest


def test_a_viewer_cannot_register_a_model(api, viewer_user, _media):
    with nothing_written():
        response = api(viewer_user).post(
            "/api/models/", _form(safetensors_bytes()), format="multipart"
        )
    assert response.status_code == 403
    assert _stored_files(_media) == []


def test_only_a_create_may_send_a_body_the_size_of_weights(api, researcher_user, settings):
    created = api(researcher_user).post(
        "/api/models/", _form(safetensors_bytes()), format="multipart"
    )
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    with nothing_written():
        response = api(researcher_user).patch(
            created.json()["url"], {"family": "x" * 4096}, format="multipart"
        )
    assert response.status_code == 413


def test_too_many_form_fields_get_a_json_error(api, researcher_user, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 5
    form = {**_form(safetensors_bytes()), **{f"extra{i}": "x" for i in range(10)}}
    with nothing_written():
        response = api(researcher_user).post("/api/models/", form, format="multipart")
    assert response.status_code == 400
    assert "DATA_UPLOAD_MAX_NUMBER_FIELDS" in response.json()["detail"]
