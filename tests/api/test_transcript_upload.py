"""POST /api/interviews/{id}/transcript/: a transcript file replaces the transcript, speaker
turns kept and the interviewee labelled with their pseudonym; refusals answer 400 under the
field at fault and write nothing."""

import io
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from kb.services.codebook import highlight_create
from tests.factories import InterviewFactory, ResearcherFactory, ThemeFactory
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db

VTT = b"""WEBVTT

00:00:01.000 --> 00:00:03.000
<v Interviewer>What do you need?

00:00:03.000 --> 00:00:05.000
<v Alice Smith>Actionable steps, not pictures.
"""


def _docx_of_unknown_compression() -> bytes:
    """A zip whose one entry names compression method 99, which zipfile cannot read."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", b"<w:document/>")
    data = bytearray(buffer.getvalue())
    central = data.rindex(b"PK\x01\x02")
    data[8:10] = data[central + 10 : central + 12] = (99).to_bytes(2, "little")
    return bytes(data)


@pytest.fixture
def interview(researcher_user):
    """An interview of P7 whose "Actionable steps" is highlighted."""
    interview = InterviewFactory(
        researcher=ResearcherFactory(pseudonym="P7"), transcript="Actionable steps, please."
    )
    highlight_create(
        actor=researcher_user, interview=interview, start=0, end=16, quote="Actionable steps",
        themes=[ThemeFactory()],
    )  # fmt: skip
    return interview


def _post(client, interview, name: str, data: bytes, **fields):
    upload = SimpleUploadedFile(name, data)
    return client.post(
        f"/api/interviews/{interview.pk}/transcript/",
        {"transcript_file": upload, **fields},
        format="multipart",
    )


def test_a_file_replaces_the_transcript_with_the_interviewee_pseudonymised(
    api, researcher_user, interview
):
    response = _post(
        api(researcher_user), interview, "call.vtt", VTT, interviewee_speaker="Alice Smith"
    )
    assert response.status_code == 200
    expected = "Interviewer: What do you need?\n\nP7: Actionable steps, not pictures."
    assert response.json()["transcript"] == expected
    interview.refresh_from_db()
    assert interview.transcript == expected
    assert interview.highlights.get().start == expected.index("Actionable steps")


@pytest.mark.parametrize(
    ("name", "data", "fields", "errors"),
    [
        ("call.docx", b"WEBVTT", {},
         {"transcript_file": ["The file is not a Word document (.docx)."]}),
        ("call.docx", _docx_of_unknown_compression(), {},
         {"transcript_file": ["The file is not a Word document (.docx)."]}),
        ("call.vtt", VTT, {"interviewee_speaker": "Bob"},
         {"interviewee_speaker": ["No speaker “Bob” in the file. Speakers found: Interviewer, "
                                  "Alice Smith."]}),
        ("call.vtt", VTT + b"\n00:00:05.000 --> 00:00:07.000\n<v Interviewer>Bye alice smith\n",
         {"interviewee_speaker": "Alice Smith"},
         {"interviewee_speaker": ["“Alice Smith” still appears in the text: remove it or name "
                                  "the speaker exactly."]}),
        ("call.txt", b"Bob: something else entirely", {},
         {"transcript": ["This edit removes 1 highlighted passage"]}),
    ],
    ids=[
        "not what its name says", "unknown compression", "unknown speaker",
        "real name left in the text", "removes a highlight",
    ],
)  # fmt: skip
def test_a_refused_upload_answers_400_under_its_field_and_writes_nothing(
    api, researcher_user, interview, name, data, fields, errors
):
    with nothing_written():
        response = _post(api(researcher_user), interview, name, data, **fields)
    assert response.status_code == 400
    body = response.json()
    assert list(body) == list(errors)
    field, (message,) = next(iter(errors.items()))
    assert body[field][0].startswith(message)


def test_a_file_over_the_size_setting_is_refused(api, researcher_user, interview, settings):
    settings.TRANSCRIPT_MAX_UPLOAD_SIZE = 100
    with nothing_written():
        response = _post(api(researcher_user), interview, "call.vtt", VTT)
    assert response.status_code == 400
    assert response.json() == {
        "transcript_file": [f"The file is {len(VTT)} bytes; transcripts may be at most 100 bytes."]
    }


def test_a_viewer_may_not_upload_a_transcript(api, viewer_user, interview):
    with nothing_written():
        response = _post(api(viewer_user), interview, "call.vtt", VTT)
    assert response.status_code == 403
