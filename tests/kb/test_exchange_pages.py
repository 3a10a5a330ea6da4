"""The exchange page (kb.views.exchange): export links by role, the import form, its report,
and refusals shown next to the field with nothing written."""

import io
import struct
import uuid
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from kb.exchange.refi_qda import Code, qdc_write
from kb.models import Theme
from kb.services.codebook import theme_create
from tests.helpers import nothing_written

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]

QDPX_LINK = 'href="/api/export/project.qdpx"'
QDC_LINK = 'href="/api/export/codebook.qdc"'


@pytest.fixture
def signed_in(researcher_user, viewer_user, staff_user, outsider_user):
    users = {
        "researcher": researcher_user, "viewer": viewer_user, "staff": staff_user,
        "outsider": outsider_user,
    }  # fmt: skip

    def client(role: str | None) -> Client:
        browser = Client()
        if role is not None:
            browser.force_login(users[role])
        return browser

    return client


@pytest.fixture
def codebook(researcher_user):
    return theme_create(actor=researcher_user, name="Actionability")


def qdc(*names: str) -> SimpleUploadedFile:
    data = qdc_write(tuple(Code(str(uuid.uuid4()), name) for name in names))
    return SimpleUploadedFile("codebook.qdc", data)


@pytest.mark.parametrize(
    ("role", "status", "form", "project_link"),
    [
        ("researcher", 200, True, True),
        ("staff", 200, True, True),
        ("viewer", 200, False, False),
        ("outsider", 403, False, False),
    ],
)
def test_the_page_offers_what_the_role_may_do(
    signed_in, codebook, role, status, form, project_link
):
    response = signed_in(role).get("/exchange/")
    assert response.status_code == status
    if status == 200:
        page = response.content.decode()
        assert QDC_LINK in page
        assert (QDPX_LINK in page) is project_link
        assert ('enctype="multipart/form-data"' in page) is form


def test_anonymous_visitors_sign_in_first(signed_in):
    response = signed_in(None).get("/exchange/")
    assert (response.status_code, response["Location"]) == (302, "/login/?next=/exchange/")


def test_the_theme_list_links_to_the_exchange_page(signed_in, codebook):
    assert 'href="/exchange/"' in signed_in("viewer").get("/themes/").content.decode()


def test_importing_a_codebook_shows_what_it_added_and_kept(signed_in, codebook):
    response = signed_in("researcher").post(
        "/exchange/", {"file": qdc("ACTIONABILITY", "Imported")}
    )

    assert response.status_code == 200
    page = response.content.decode()
    assert '<ul class="added"><li>Imported</li></ul>' in page
    assert '<ul class="kept"><li>Actionability</li></ul>' in page
    assert sorted(Theme.objects.values_list("name", flat=True)) == ["Actionability", "Imported"]


def test_a_viewer_cannot_import(signed_in, codebook):
    with nothing_written():
        response = signed_in("viewer").post("/exchange/", {"file": qdc("Imported")})
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("upload", "message"),
    [
        (
            SimpleUploadedFile("notes.txt", b"Trust"),
            "Upload a .qdc or .qdpx file; “notes.txt” is neither.",
        ),
        (SimpleUploadedFile("c.qdc", b"not xml"), "The codebook is not well-formed XML"),
        (SimpleUploadedFile("p.qdpx", b"not a zip"), "the file is not a zip archive."),
    ],
    ids=["extension", "not XML", "not a zip"],
)
def test_a_refused_file_is_shown_with_nothing_written(signed_in, codebook, upload, message):
    with nothing_written():
        response = signed_in("researcher").post("/exchange/", {"file": upload})
    assert response.status_code == 400
    assert message in response.content.decode()


def damaged_project() -> bytes:
    """A .qdpx whose project.qde's deflate data is overwritten (sizes and CRC unchanged)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("project.qde", b"<Project/>" * 50)
    data = bytearray(buffer.getvalue())
    compressed = struct.unpack("<I", data[18:22])[0]
    start = 30 + sum(struct.unpack("<HH", data[26:30]))
    data[start : start + compressed] = b"\xff" * compressed
    return bytes(data)


def test_a_damaged_archive_is_shown_with_nothing_written(signed_in, codebook):
    upload = SimpleUploadedFile("p.qdpx", damaged_project())
    with nothing_written():
        response = signed_in("researcher").post("/exchange/", {"file": upload})
    assert response.status_code == 400
    assert (
        "“project.qde” cannot be unpacked: Error -3 while decompressing data: invalid block "
        "type." in response.content.decode()
    )


def test_a_body_declared_over_the_limit_is_refused_before_it_is_read(signed_in, codebook, settings):
    settings.EXCHANGE_MAX_UPLOAD_SIZE = 1024
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    client = signed_in("researcher")
    body = b"x" * 3000
    with nothing_written():
        response = client.post(
            "/exchange/", body, content_type="multipart/form-data; boundary=nothing-read"
        )
    assert response.status_code == 400
    page = response.content.decode()
    assert "The upload is 2.9 KiB; a file may be at most 1.0 KiB." in page
    assert 'enctype="multipart/form-data"' in page  # the form is there to try again
    # Within the limit, the same page reads the file (and refuses what it holds).
    small = SimpleUploadedFile("c.qdc", b"not xml")
    assert client.post("/exchange/", {"file": small}).status_code == 400
    assert "The upload is" not in client.post("/exchange/", {"file": small}).content.decode()
