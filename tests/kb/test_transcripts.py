"""Transcript files: each format read into speaker turns, the interviewee's turns labelled
with their pseudonym, each refusal (on the page too, with nothing written)."""

import io
import zipfile

import docx
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from kb.models import Interview
from kb.services.codebook import highlight_create
from kb.transcripts import (
    Transcript,
    TranscriptFileRefused,
    Turn,
    transcript_from_upload,
)
from tests.factories import InterviewFactory, ResearcherFactory, ThemeFactory
from tests.helpers import nothing_written

TXT = """Interviewer: What do you need from the tool?
Alice Smith: Steps I can act on.
Not pretty pictures.

Interviewer: Anything else?
Alice Smith: Speed. It is 10:30 and I am still waiting.
"""
VTT = """WEBVTT

00:00:01.000 --> 00:00:03.000
<v Interviewer>What do you need?</v>

00:00:03.000 --> 00:00:05.000
<v Alice Smith>Steps I can <b>act</b> on,

00:00:05.000 --> 00:00:07.000
<v Alice Smith>not pictures.

00:00:07.000 --> 00:00:09.000
Interviewer: Thanks.
"""
SRT = """1
00:00:01,000 --> 00:00:03,000
Interviewer: What do you need?

2
00:00:03,000 --> 00:00:05,000
Alice Smith: Steps I can act on,

3
00:00:05,000 --> 00:00:07,000
not pictures.
"""


def _docx(*paragraphs: tuple[str, str]) -> bytes:
    """A Word document, one paragraph per (bold opening, rest)."""
    document = docx.Document()
    for bold, rest in paragraphs:
        paragraph = document.add_paragraph()
        if bold:
            paragraph.add_run(bold).bold = True
        paragraph.add_run(rest)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def _damaged(data: bytes, member: str, damage) -> bytes:
    """The zip `data` with `damage(bytes, local header offset, central header offset)` done
    to `member`'s entry."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        entry = archive.getinfo(member)
    local = entry.header_offset
    # The central directory entry: its signature, then 42 bytes of fields, then the name.
    central = data.index(b"PK\x01\x02", local)
    while data[central + 46 : central + 46 + len(member)] != member.encode():
        central = data.index(b"PK\x01\x02", central + 4)
    damaged = bytearray(data)
    damage(damaged, local, central)
    return bytes(damaged)


def _zip(name: str, content: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, content)
    return buffer.getvalue()


# --- reading each format ------------------------------------------------------------------


def test_a_text_file_keeps_its_speaker_turns_and_their_lines():
    transcript = transcript_from_upload("talk.txt", TXT.encode())
    assert transcript.speakers == ("Interviewer", "Alice Smith")
    assert transcript.text == (
        "Interviewer: What do you need from the tool?\n\n"
        "Alice Smith: Steps I can act on.\nNot pretty pictures.\n\n"
        "Interviewer: Anything else?\n\n"
        "Alice Smith: Speed. It is 10:30 and I am still waiting."
    )


def test_a_text_file_without_speakers_is_kept_as_written():
    transcript = transcript_from_upload("notes.TXT", "\ufeffFirst part.\r\n\r\nSecond.".encode())
    assert transcript.speakers == ()
    assert transcript.text == "First part.\n\nSecond."


def test_a_word_document_takes_bold_names_and_name_prefixes_as_speakers():
    data = _docx(
        ("Interviewer:", " What do you need?"),
        ("Alice Smith", ": Steps I can act on."),
        ("", "Not pictures."),
        ("", "Interviewer: Thanks."),
        ("Bold words that are a sentence, not a name", " and more."),
    )
    transcript = transcript_from_upload("talk.docx", data)
    assert transcript.turns == (
        Turn("Interviewer", "What do you need?"),
        Turn("Alice Smith", "Steps I can act on.\nNot pictures."),
        Turn("Interviewer", "Thanks.\nBold words that are a sentence, not a name and more."),
    )


def test_a_soft_line_break_in_a_word_paragraph_starts_a_line_that_may_name_a_speaker():
    data = _docx(("", "Interviewer: Hi\nAlice Smith: it was fine\nand then more"))
    transcript = transcript_from_upload("talk.docx", data)
    assert transcript.turns == (
        Turn("Interviewer", "Hi"),
        Turn("Alice Smith", "it was fine\nand then more"),
    )
    assert "Alice" not in transcript.with_speaker_renamed("Alice Smith", "P7").text


def test_one_long_turn_is_read_in_linear_time():
    # 100,000 lines of one turn: adding each line to the growing turn took minutes.
    data = ("Alice: start\n" + "and then more\n" * 100_000).encode()
    (turn,) = transcript_from_upload("talk.txt", data).turns
    assert turn.speaker == "Alice"
    assert len(turn.text) == len("start") + len("\nand then more") * 100_000


def test_a_cue_of_unclosed_tag_openings_is_read_in_linear_time():
    # Each unclosed "<" made the tag pattern rescan the rest of the cue: quadratic.
    data = f"WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nAlice: {'<' * 40_000} hi\n".encode()
    assert transcript_from_upload("call.vtt", data).turns == (Turn("Alice", "<" * 40_000 + " hi"),)


def test_webvtt_voices_and_name_prefixes_are_speakers_and_split_cues_join():
    transcript = transcript_from_upload("call.vtt", VTT.encode())
    assert transcript.turns == (
        Turn("Interviewer", "What do you need?"),
        Turn("Alice Smith", "Steps I can act on, not pictures."),
        Turn("Interviewer", "Thanks."),
    )


def test_subrip_cues_name_speakers_and_unnamed_cues_continue_the_turn():
    transcript = transcript_from_upload("call.srt", SRT.encode())
    assert transcript.turns == (
        Turn("Interviewer", "What do you need?"),
        Turn("Alice Smith", "Steps I can act on, not pictures."),
    )


def test_the_interviewee_is_labelled_with_the_pseudonym_only():
    transcript = transcript_from_upload("talk.txt", TXT.encode())
    renamed = transcript.with_speaker_renamed("Alice Smith", "P7")
    assert renamed.speakers == ("Interviewer", "P7")
    assert "Alice" not in renamed.text
    assert renamed.text.startswith("Interviewer: What do you need from the tool?\n\nP7: Steps")


MENTIONS = {
    "in the text": (
        (Turn("Interviewer", "Thanks, alice smith."), Turn("Alice Smith", "Bye.")),
        "“Alice Smith” still appears in the text: remove it or name the speaker exactly.",
    ),
    "as another speaker": (
        (Turn("ALICE SMITH", "Hi."), Turn("Alice Smith", "Bye.")),
        "“Alice Smith” still appears as the speaker “ALICE SMITH”: name that speaker the same "
        "way throughout the file, or name the speaker exactly.",
    ),
}


@pytest.mark.parametrize(("turns", "message"), MENTIONS.values(), ids=MENTIONS.keys())
def test_renaming_is_refused_while_the_real_name_still_appears(turns, message):
    with pytest.raises(TranscriptFileRefused) as refused:
        Transcript(turns).with_speaker_renamed("Alice Smith", "P7")
    assert refused.value.messages == [message]


def test_a_name_inside_another_word_is_not_a_mention():
    transcript = Transcript((Turn("Al", "Also fine."), Turn("Interviewer", "Thanks, Alan.")))
    assert transcript.with_speaker_renamed("Al", "P7").speakers == ("P7", "Interviewer")


def test_naming_a_speaker_the_file_lacks_lists_those_it_has():
    transcript = Transcript((Turn("Interviewer", "Hi"), Turn("Alice", "Hello")))
    with pytest.raises(TranscriptFileRefused) as refused:
        transcript.with_speaker_renamed("Bob", "P7")
    assert refused.value.messages == [
        "No speaker “Bob” in the file. Speakers found: Interviewer, Alice."
    ]


# --- refusals -----------------------------------------------------------------------------

NOT_DOCX = "The file is not a Word document (.docx)."
DOCX = _docx(("Interviewer:", " What do you need?"), ("", "Alice: " + "Steps. " * 200))


def _corrupted_deflate(data: bytearray, local: int, central: int) -> None:
    start = local + 30 + int.from_bytes(data[local + 26 : local + 28], "little")
    data[start + 20 : start + 120] = b"\xff" * 100


def _unknown_compression(data: bytearray, local: int, central: int) -> None:
    data[local + 8 : local + 10] = data[central + 10 : central + 12] = (99).to_bytes(2, "little")


def _encrypted(data: bytearray, local: int, central: int) -> None:
    data[local + 6] |= 1
    data[central + 8] |= 1


REFUSED = {
    "docx not a zip": ("talk.docx", b"Interviewer: hello", NOT_DOCX),
    "zip not a docx": ("talk.docx", _zip("notes.txt", b"hi"), NOT_DOCX),
    "docx corrupted deflate data": (
        "talk.docx",
        _damaged(DOCX, "word/document.xml", _corrupted_deflate),
        NOT_DOCX,
    ),
    "docx unknown compression": (
        "talk.docx",
        _damaged(DOCX, "word/document.xml", _unknown_compression),
        NOT_DOCX,
    ),
    "docx encrypted entry": (
        "talk.docx",
        _damaged(DOCX, "word/document.xml", _encrypted),
        NOT_DOCX,
    ),
    "docx truncated": ("talk.docx", DOCX[: len(DOCX) // 2], NOT_DOCX),
    "binary text": (
        "talk.txt",
        b"\x00\x01\x02PNG",
        "The file holds binary data, not transcript text.",
    ),
    "not utf-8": (
        "talk.txt",
        "Grüße".encode("latin-1"),
        "The file is not UTF-8 text; save the transcript as UTF-8 and upload it again.",
    ),
    "vtt without header": (
        "call.vtt",
        b"00:00:01.000 --> 00:00:02.000\nHi\n",
        "The file is not WebVTT: it does not start with “WEBVTT”.",
    ),
    "srt without cues": (
        "call.srt",
        b"just some words\n",
        "The file is not valid SubRip (.srt): Invalid format.",
    ),
    "empty": ("talk.txt", b" \n\n", "The file is empty."),
    "captions without text": ("call.vtt", b"WEBVTT\n", "The file holds no transcript text."),
    "other format": (
        "talk.pdf",
        b"%PDF-1.7",
        "Upload a .txt, .docx, .vtt or .srt file; “talk.pdf” is none of these.",
    ),
}


@pytest.mark.parametrize(("name", "data", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_a_file_that_is_not_what_it_says_is_refused_with_why(name, data, message):
    with pytest.raises(TranscriptFileRefused) as refused:
        transcript_from_upload(name, data)
    assert refused.value.messages == [message]


def test_a_file_over_the_size_setting_is_refused_before_it_is_read(settings):
    settings.TRANSCRIPT_MAX_UPLOAD_SIZE = 2048
    with pytest.raises(TranscriptFileRefused) as refused:
        transcript_from_upload("talk.docx", b"x" * 3072)
    assert refused.value.messages == ["The file is 3.0 KiB; transcripts may be at most 2.0 KiB."]


def test_a_word_document_that_unpacks_to_far_more_than_the_limit_is_refused(settings):
    settings.TRANSCRIPT_MAX_UPLOAD_SIZE = 10_000
    bomb = _zip("word/document.xml", b" " * 300_000)
    with pytest.raises(TranscriptFileRefused) as refused:
        transcript_from_upload("talk.docx", bomb)
    assert refused.value.messages == ["The Word document unpacks to too much data."]


def test_a_word_document_whose_text_is_over_the_size_setting_is_refused(settings):
    # 140,006 characters of text in a file of about 40 KB that unpacks to about 970 KB
    # (python-docx's template alone is 830 KB): within the size and inflation limits, yet
    # more text than the setting allows.
    settings.TRANSCRIPT_MAX_UPLOAD_SIZE = 120_000
    data = _docx(("", "Alice: " + " ".join(["Steps I can act on."] * 7_000)))
    with pytest.raises(TranscriptFileRefused) as refused:
        transcript_from_upload("talk.docx", data)
    assert refused.value.messages == [
        "The transcript text is 140,006 characters; transcripts may be at most 120,000 characters."
    ]


# --- the interview form -------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fast_passwords(fast_passwords):
    # The signed-in researcher is created for each page test.
    pass


def _upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data)


@pytest.mark.django_db
def test_recording_an_interview_from_a_file_labels_the_interviewee_by_pseudonym(client_r):
    person = ResearcherFactory(pseudonym="P7", full_name="Alice Smith")
    data = {
        "researcher": person.pk,
        "conducted_on": "2026-03-01",
        "status": "draft",
        "transcript": "typed text, replaced by the file",
        "transcript_file": _upload("call.vtt", VTT.encode()),
        "interviewee_speaker": "Alice Smith",
    }
    response = client_r.post(reverse("interview-create"), data)
    assert response.status_code == 302
    interview = Interview.objects.get()
    assert interview.transcript == (
        "Interviewer: What do you need?\n\nP7: Steps I can act on, not pictures.\n\n"
        "Interviewer: Thanks."
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("upload", "speaker", "field", "message"),
    [
        (("talk.docx", b"not a zip"), "", "transcript_file", REFUSED["docx not a zip"][2]),
        (("talk.txt", TXT.encode()), "Bob", "interviewee_speaker",
         "No speaker “Bob” in the file. Speakers found: Interviewer, Alice Smith."),
        (None, "Alice Smith", "interviewee_speaker", "Name the interviewee along with a file."),
    ],
    ids=["bad file", "unknown speaker", "speaker without file"],
)  # fmt: skip
def test_the_form_refuses_a_bad_upload_under_its_field_and_writes_nothing(
    client_r, upload, speaker, field, message
):
    person = ResearcherFactory()
    data = {"researcher": person.pk, "conducted_on": "2026-03-01", "status": "draft"}
    if upload:
        data["transcript_file"] = _upload(*upload)
    data["interviewee_speaker"] = speaker
    with nothing_written():
        response = client_r.post(reverse("interview-create"), data)
    assert response.status_code == 200
    assert response.context["form"].errors == {field: [message]}


@pytest.mark.django_db
def test_a_file_that_removes_a_highlighted_passage_is_refused_on_edit(client_r, researcher_user):
    interview = InterviewFactory(transcript="Alice: Steps I can act on.")
    highlight_create(
        actor=researcher_user, interview=interview, start=7, end=12, quote="Steps",
        themes=[ThemeFactory()],
    )  # fmt: skip
    data = {
        "researcher": interview.researcher_id,
        "conducted_on": "2026-02-01",
        "status": "draft",
        "transcript": interview.transcript,
    }
    url = reverse("interview-update", args=[interview.pk])
    with nothing_written():
        refused = client_r.post(url, {**data, "transcript_file": _upload("t.txt", b"Bob: No.")})
    assert list(refused.context["form"].errors) == ["transcript"]
    kept = _upload("t.txt", b"Interviewer: Hi.\nAlice: Steps I can act on.")
    assert client_r.post(url, {**data, "transcript_file": kept}).status_code == 302
    interview.refresh_from_db()
    assert interview.transcript == "Interviewer: Hi.\n\nAlice: Steps I can act on."
    assert interview.highlights.get().start == interview.transcript.index("Steps")
