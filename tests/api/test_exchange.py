"""The exchange endpoints (kb.api.exchange): who may export and import, what the files are,
and bad uploads answered 400 under their field with nothing written."""

import datetime
import io
import struct
import uuid
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from kb.exchange.refi_qda import Code, qdc_read, qdc_write, qdpx_read
from kb.models import Interview, Theme
from kb.services import exchange
from kb.services.codebook import highlight_create
from kb.services.interviews import interview_create
from kb.services.people import researcher_update
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "outsider", "viewer", "researcher", "staff"]
REFUSED = {"anonymous": 401, "outsider": 403}
EXPORTS = {
    # path -> (content type, may a viewer have it?)
    "/api/export/codebook.qdc": ("application/xml", True),
    "/api/export/codebook.csv": ("text/csv; charset=utf-8", True),
    "/api/export/project.qdpx": ("application/zip", False),
}


def expected(role: str, viewer_may: bool) -> int:
    if role in REFUSED:
        return REFUSED[role]
    return 200 if role != "viewer" or viewer_may else 403


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


def new_codebook() -> bytes:
    return qdc_write(
        (Code(str(uuid.uuid4()), "actionability"), Code(str(uuid.uuid4()), "Imported theme"))
    )


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("path", EXPORTS)
def test_exports_answer_each_role(api, kb, users, role, path):
    content_type, viewer_may = EXPORTS[path]

    response = api(users[role]).get(path)

    assert response.status_code == expected(role, viewer_may)
    if response.status_code == 200:
        assert response["Content-Type"] == content_type
        name = path.rsplit("/", 1)[1]
        assert response["Content-Disposition"] == f'attachment; filename="{name}"'


def test_the_codebook_export_is_the_codebook(api, kb, researcher_user):
    response = api(researcher_user).get("/api/export/codebook.qdc")
    assert [code.name for code in qdc_read(response.content)] == ["Actionability"]
    csv_response = api(researcher_user).get("/api/export/codebook.csv")
    assert csv_response.content.decode().splitlines() == [
        "tag,description,parent",
        "Actionability,,",
    ]


def test_the_project_export_holds_consenting_interviews_only(api, kb, researcher_user):
    """The kb fixture's P1 gave no consent: their interview stays out until they do."""
    before = qdpx_read(api(researcher_user).get("/api/export/project.qdpx").content)
    researcher_update(
        actor=researcher_user, researcher=kb["researcher"],
        data={"consent_given": True, "consent_date": datetime.date(2026, 1, 1),
              "consent_scope": "internal"},
    )  # fmt: skip

    after = qdpx_read(api(researcher_user).get("/api/export/project.qdpx").content)

    assert (before.sources, before.cases) == ((), ())
    assert [source.text for source in after.sources] == [kb["interview"].transcript]
    assert [case.name for case in after.cases] == ["P1"]
    assert [(s.start, s.end) for s in after.sources[0].selections] == [(8, 24)]


@pytest.mark.parametrize("role", ROLES)
def test_codebook_import_answers_each_role(api, kb, users, role):
    status = expected(role, viewer_may=False)
    client = api(users[role])
    if status != 200:
        with nothing_written():
            response = client.post(
                "/api/import/codebook/",
                {"file": upload("c.qdc", new_codebook())},
                format="multipart",
            )
        assert response.status_code == status
        return

    response = client.post(
        "/api/import/codebook/", {"file": upload("c.qdc", new_codebook())}, format="multipart"
    )

    assert response.status_code == 200
    assert response.json() == {"added": ["Imported theme"], "kept": ["Actionability"]}
    assert Theme.objects.filter(name="Imported theme").count() == 1


@pytest.fixture
def consenting_project(kb, researcher_user):
    """An archive of the kb's interview once P1 consented, then that interview deleted, so
    importing it adds it again."""
    researcher_update(
        actor=researcher_user, researcher=kb["researcher"],
        data={"consent_given": True, "consent_date": datetime.date(2026, 1, 1),
              "consent_scope": "quotes"},
    )  # fmt: skip
    interview = interview_create(
        actor=researcher_user, researcher=kb["researcher"],
        conducted_on=datetime.date(2026, 3, 1), transcript="Another talk about probes.",
    )  # fmt: skip
    highlight_create(
        actor=researcher_user, interview=interview, start=8, end=12, quote="talk",
        themes=[kb["theme"]],
    )  # fmt: skip
    data = exchange.project_export_qdpx()
    interview.delete()
    return data


@pytest.mark.parametrize("role", ROLES)
def test_project_import_answers_each_role(api, users, consenting_project, role):
    status = expected(role, viewer_may=False)
    client = api(users[role])
    body = {"file": upload("p.qdpx", consenting_project)}
    if status != 200:
        with nothing_written():
            assert (
                client.post("/api/import/project/", body, format="multipart").status_code == status
            )
        return

    response = client.post("/api/import/project/", body, format="multipart")

    assert response.status_code == 200
    assert response.json() == {
        "codebook": {"added": [], "kept": ["Actionability"]},
        "interviews_added": ["Interview with P1 on 2026-03-01"],
        "sources_already_present": ["Interview with P1 on 2026-02-01"],
        "highlights_added": 1,
        "selections_uncoded": 0,
    }
    imported = Interview.objects.get(conducted_on=datetime.date(2026, 3, 1))
    assert [(h.quote, h.coder.username) for h in imported.highlights.all()] == [("talk", "rita")]


BAD_UPLOADS = {
    "no file": ("/api/import/codebook/", {}, {"file": ["No file was submitted."]}),
    "not XML": (
        "/api/import/codebook/",
        {"file": upload("c.qdc", b"tag\nTrust\n")},
        {
            "file": [
                "The codebook is not well-formed XML: Start tag expected, '<' not found, "
                "line 1, column 1."
            ]
        },
    ),  # fmt: skip
    "a project as a codebook": (
        "/api/import/codebook/",
        {"file": upload("c.qdc", b"PK\x03\x04")},
        {
            "file": [
                "The codebook is not well-formed XML: Start tag expected, '<' not found, "
                "line 1, column 1."
            ]
        },
    ),  # fmt: skip
    "unknown field": (
        "/api/import/codebook/",
        {"file": upload("c.qdc", new_codebook()), "merge": "no"},
        {"merge": ["Unknown or read-only field."]},
    ),
    "not a zip": (
        "/api/import/project/",
        {"file": upload("p.qdpx", b"<Project/>")},
        {"file": ["This is not a REFI-QDA project (.qdpx): the file is not a zip archive."]},
    ),
    "unknown researcher": (
        "/api/import/project/",
        {"file": upload("p.qdpx", b"PK"), "researcher": "999999"},
        {"researcher": ['Invalid pk "999999" - object does not exist.']},
    ),
    "no interviewee": (
        "/api/import/project/",
        {
            "file": upload(
                "p.qdpx",
                exchange.refi_qda.qdpx_write(
                    exchange.refi_qda.Project(
                        name="x",
                        sources=(
                            exchange.refi_qda.Source(
                                guid="6f1b2c3d-0000-4000-8000-000000000001", name="S", text="Text."
                            ),
                        ),
                    )
                ),
            ),
        },
        {"file": ["Source “S”: no case; choose the researcher its interviews belong to."]},
    ),  # fmt: skip
}


@pytest.mark.parametrize("case", BAD_UPLOADS, ids=list(BAD_UPLOADS))
def test_bad_uploads_answer_400_under_their_field(api, kb, researcher_user, case):
    path, body, errors = BAD_UPLOADS[case]
    with nothing_written():
        response = api(researcher_user).post(path, body, format="multipart")
    assert response.status_code == 400
    assert response.json() == errors


@pytest.mark.parametrize("path", ["/api/import/codebook/", "/api/import/project/"])
def test_a_json_body_is_unsupported(api, kb, researcher_user, path):
    with nothing_written():
        response = api(researcher_user).post(path, {"file": "x"}, format="json")
    assert response.status_code == 415


def test_a_body_over_the_limit_is_refused_before_it_is_read(api, kb, researcher_user, settings):
    settings.EXCHANGE_MAX_UPLOAD_SIZE = 1024
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    big = io.BytesIO()
    with zipfile.ZipFile(big, "w") as archive:
        archive.writestr("project.qde", b"x" * 4096)
    with nothing_written():
        response = api(researcher_user).post(
            "/api/import/project/", {"file": upload("p.qdpx", big.getvalue())}, format="multipart"
        )
    assert response.status_code == 413


def damaged_deflate() -> bytes:
    """A .qdpx whose project.qde's deflate data is overwritten (sizes and CRC unchanged)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("project.qde", b"<Project/>" * 50)
    data = bytearray(buffer.getvalue())
    compressed = struct.unpack("<I", data[18:22])[0]
    start = 30 + sum(struct.unpack("<HH", data[26:30]))
    data[start : start + compressed] = b"\xff" * compressed
    return bytes(data)


def with_source_text(text: bytes) -> bytes:
    guid = "6f1b2c3d-0000-4000-8000-000000000002"
    project = (
        '<?xml version="1.0"?><Project xmlns="urn:QDA-XML:project:1.0" name="x"><Sources>'
        f'<TextSource guid="{guid}" name="S" plainTextPath="internal://s.txt"/></Sources>'
        "</Project>"
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("project.qde", project.encode())
        archive.writestr("sources/s.txt", text)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "errors"),
    [
        (
            damaged_deflate(),
            ["“project.qde” cannot be unpacked: Error -3 while decompressing data: invalid "
             "block type."],
        ),
        (
            with_source_text(b"P1: a NUL \x00 here."),
            ["Source “S”: The text holds binary data (control characters)."],
        ),
    ],
    ids=["damaged deflate", "NUL in a source"],
)  # fmt: skip
def test_a_damaged_archive_or_binary_source_answers_400(
    api, kb, researcher_user, consenting_project, data, errors
):
    with nothing_written():
        response = api(researcher_user).post(
            "/api/import/project/",
            {"file": upload("p.qdpx", data), "researcher": kb["researcher"].pk},
            format="multipart",
        )
    assert (response.status_code, response.json()) == (400, {"file": errors})
