"""Transcript files (.txt, .docx, .vtt, .srt) turned into an interview's transcript text.

The one place that reads them: the interview form and the API both call
`transcript_from_uploaded_file` (or `transcript_from_upload` on bytes already read) and get a
`Transcript` of speaker turns, or a `TranscriptFileRefused` (a Django ValidationError) whose
message says what is wrong with the file. Nothing here writes; refusing before any service
runs is what keeps a bad file from storing anything.

Speaker turns are read from "Name: text" lines (.txt; cue text of .vtt and .srt; .docx
paragraphs), WebVTT voice tags (`<v Name>`) and a bold name opening a .docx paragraph. The
text is written back as one paragraph per turn, "Name: what they said", which is how the
interview page shows a transcript.
"""

import io
import re
import zipfile
import zlib
from dataclasses import dataclass, replace
from pathlib import PurePath
from xml.etree.ElementTree import ParseError as XmlParseError

import docx
import webvtt
from django.conf import settings
from django.core.exceptions import ValidationError
from docx.opc.exceptions import PackageNotFoundError
from lxml.etree import XMLSyntaxError
from webvtt.errors import MalformedCaptionError, MalformedFileError

FORMATS = (".txt", ".docx", ".vtt", ".srt")
# A .docx is a zip; its parts may unpack to at most this many times the upload limit, so a
# small file that inflates to gigabytes (a zip bomb) is refused before python-docx reads it.
DOCX_MAX_INFLATION = 10
# A speaker label: starts with a letter, at most four words, no sentence punctuation, so
# "Note: ..." passes but "Then she said: ..." (five words) or "10:30" does not.
SPEAKER_LABEL = r"[^\W\d_][\w.'’-]*(?: [\w.'’-]+){0,3}"
SPEAKER_LINE = re.compile(rf"^\s*(?:-\s*)?(?P<speaker>{SPEAKER_LABEL})\s*:(?:\s+(?P<text>.*))?$")
SPEAKER_NAME = re.compile(rf"^{SPEAKER_LABEL}$")
# Control characters other than tab, line feed and carriage return: a sign of a binary file.
BINARY_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# No "<" inside a tag: a run of unclosed "<" is then passed over once, not rescanned from each.
CUE_TAG = re.compile(r"<[^<>]*>")


class TranscriptFileRefused(ValidationError):
    """The file cannot become a transcript; the message says why, in words for its uploader."""


@dataclass(frozen=True)
class Turn:
    """What one speaker said without interruption; `speaker` is "" when the file names none."""

    speaker: str
    text: str


@dataclass(frozen=True)
class Transcript:
    """A transcript's turns in order; `text` is what the interview stores."""

    turns: tuple[Turn, ...]

    @property
    def speakers(self) -> tuple[str, ...]:
        """Every named speaker once, in the order they first speak."""
        return tuple(dict.fromkeys(turn.speaker for turn in self.turns if turn.speaker))

    @property
    def text(self) -> str:
        return "\n\n".join(
            f"{turn.speaker}: {turn.text}" if turn.speaker else turn.text for turn in self.turns
        )

    def with_speaker_renamed(self, speaker: str, label: str) -> "Transcript":
        """The same turns with `speaker`'s labelled `label` (the interviewee's pseudonym, so
        their real name is never stored). Refused when no turn has that speaker; the message
        lists the speakers the file has."""
        if speaker not in self.speakers:
            found = ", ".join(self.speakers) or "none"
            raise TranscriptFileRefused(
                f"No speaker “{speaker}” in the file. Speakers found: {found}."
            )
        turns = [
            replace(turn, speaker=label) if turn.speaker == speaker else turn for turn in self.turns
        ]
        renamed = Transcript(_merged(turns))
        renamed.refuse_mentions_of(speaker)
        return renamed

    def refuse_mentions_of(self, name: str) -> None:
        """Refused when `name` is still a word (or words) of a speaker label or of the text,
        whatever its case: renaming the interviewee must leave no trace of their real name."""
        mention = re.compile(rf"(?<!\w){re.escape(name)}(?!\w)", re.IGNORECASE)
        for other in self.speakers:
            if mention.search(other):
                raise TranscriptFileRefused(
                    f"“{name}” still appears as the speaker “{other}”: name that speaker the "
                    "same way throughout the file, or name the speaker exactly."
                )
        if any(mention.search(turn.text) for turn in self.turns):
            raise TranscriptFileRefused(
                f"“{name}” still appears in the text: remove it or name the speaker exactly."
            )


def max_upload_size() -> int:
    return settings.TRANSCRIPT_MAX_UPLOAD_SIZE


def transcript_from_uploaded_file(file) -> Transcript:
    """A Django UploadedFile as a transcript; its size is checked before it is read."""
    _refuse_too_large(file.size)
    return transcript_from_upload(file.name, file.read())


def transcript_from_upload(name: str, data: bytes) -> Transcript:
    """The file `name` holding `data` as a transcript, read by its extension; refused
    (`TranscriptFileRefused`) when too large, empty, not what its name says, or not UTF-8."""
    _refuse_too_large(len(data))
    extension = PurePath(name or "").suffix.lower()
    if extension not in FORMATS:
        raise TranscriptFileRefused(
            f"Upload a {', '.join(FORMATS[:-1])} or {FORMATS[-1]} file; “{name}” is none of these."
        )
    if not data.strip():
        raise TranscriptFileRefused("The file is empty.")
    readers = {".txt": _read_txt, ".docx": _read_docx, ".vtt": _read_vtt, ".srt": _read_srt}
    # A caption cue is a piece of a sentence; a line or a paragraph stands on its own line.
    joiner = " " if extension in (".vtt", ".srt") else "\n"
    transcript = Transcript(_merged(readers[extension](data), joiner))
    if not transcript.turns:
        raise TranscriptFileRefused("The file holds no transcript text.")
    _refuse_too_long(len(transcript.text))
    return transcript


def transcript_text_check(text: str) -> None:
    """Refused (`TranscriptFileRefused`) when `text`, a transcript that came as text rather
    than as an uploaded file (a source of an imported project), is one an upload would refuse:
    empty, holding binary data (control characters), or longer than the limit."""
    if not text.strip():
        raise TranscriptFileRefused("The transcript text is empty.")
    if BINARY_CHARACTERS.search(text):
        raise TranscriptFileRefused("The text holds binary data (control characters).")
    _refuse_too_long(len(text))


def _refuse_too_large(size: int) -> None:
    limit = max_upload_size()
    if size > limit:
        raise TranscriptFileRefused(
            f"The file is {_in_words(size)}; transcripts may be at most {_in_words(limit)}."
        )


def _refuse_too_long(length: int) -> None:
    """The stored text has the upload limit too, in characters: a .docx inflates when
    unpacked, so a file within the limit may hold far more text."""
    limit = max_upload_size()
    if length > limit:
        raise TranscriptFileRefused(
            f"The transcript text is {length:,} characters; transcripts may be at most "
            f"{limit:,} characters."
        )


def _in_words(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / 1024 / 1024:.1f} MiB"
    return f"{size / 1024:.1f} KiB" if size >= 1024 else f"{size} bytes"


def _decoded(data: bytes, kind: str) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise TranscriptFileRefused(
            f"The file is not UTF-8 text; save the {kind} as UTF-8 and upload it again."
        ) from None
    if BINARY_CHARACTERS.search(text):
        raise TranscriptFileRefused(f"The file holds binary data, not {kind} text.")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _labelled(line: str) -> Turn:
    """A line as a turn: "Name: text" names its speaker, any other line has none."""
    match = SPEAKER_LINE.match(line)
    if match:
        return Turn(match["speaker"].strip(), (match["text"] or "").strip())
    return Turn("", line.strip())


def _merged(pieces, joiner: str = "\n") -> tuple[Turn, ...]:
    """Pieces joined into turns: a piece without a speaker continues the turn before it (a
    paragraph's next line, a caption split across cues), as does one by the same speaker."""
    # Each turn's pieces are collected and joined once: adding to a growing string would copy
    # it for every line, quadratic in a long turn.
    turns: list[tuple[str, list[str]]] = []
    for piece in pieces:
        if turns and (not piece.speaker or piece.speaker == turns[-1][0]):
            turns[-1][1].append(piece.text)
        elif piece.speaker or piece.text:
            turns.append((piece.speaker, [piece.text]))
    joined = ((speaker, joiner.join(texts)) for speaker, texts in turns)
    return tuple(Turn(speaker, _tidy(text)) for speaker, text in joined if text)


def _tidy(text: str) -> str:
    # A run of blank lines inside a turn becomes one: a paragraph break, as Markdown reads it.
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _read_txt(data: bytes) -> list[Turn]:
    return [_labelled(line) for line in _decoded(data, "transcript").split("\n")]


def _read_vtt(data: bytes) -> list[Turn]:
    text = _decoded(data, "WebVTT")
    if not text.lstrip().startswith("WEBVTT"):
        raise TranscriptFileRefused("The file is not WebVTT: it does not start with “WEBVTT”.")
    try:
        captions = list(webvtt.from_string(text))
    except (MalformedFileError, MalformedCaptionError) as error:
        raise TranscriptFileRefused(f"The WebVTT file is malformed: {error}.") from None
    return [_caption_turn(caption) for caption in captions]


def _read_srt(data: bytes) -> list[Turn]:
    text = _decoded(data, "SubRip")
    try:
        captions = list(webvtt.from_buffer(io.StringIO(text), format="srt"))
    except (MalformedFileError, MalformedCaptionError) as error:
        raise TranscriptFileRefused(f"The file is not valid SubRip (.srt): {error}.") from None
    return [_caption_turn(caption) for caption in captions]


def _caption_turn(caption) -> Turn:
    """A cue's speaker is its voice tag, else a "Name:" opening its text."""
    text = " ".join(CUE_TAG.sub("", caption.text).split())
    if caption.voice:
        return Turn(caption.voice.strip(), text)
    return _labelled(text)


def _read_docx(data: bytes) -> list[Turn]:
    refused = TranscriptFileRefused("The file is not a Word document (.docx).")
    if not data.startswith(b"PK\x03\x04"):
        raise refused
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(entry.file_size for entry in archive.infolist())
        if unpacked > DOCX_MAX_INFLATION * max_upload_size():
            raise TranscriptFileRefused("The Word document unpacks to too much data.")
        paragraphs = docx.Document(io.BytesIO(data)).paragraphs
    except (
        # What zipfile and python-docx raise on a damaged or unusual archive: corrupted
        # deflate data, an unsupported compression method, an encrypted entry, a truncated
        # member, a missing part, XML that does not parse.
        zipfile.BadZipFile,
        zlib.error,
        NotImplementedError,
        RuntimeError,
        EOFError,
        OSError,
        KeyError,
        ValueError,
        PackageNotFoundError,
        XMLSyntaxError,
        XmlParseError,
    ):
        raise refused from None
    return [turn for paragraph in paragraphs for turn in _paragraph_turns(paragraph)]


def _paragraph_turns(paragraph) -> list[Turn]:
    """A paragraph opening with a bold name ("**Alice** Hello", "**Alice:** Hello") is that
    speaker's; otherwise a "Name:" opening names one, as in a text file. Each line after a
    soft line break is read as a line of a text file, so a "Name:" there starts a turn."""
    first, *more = paragraph.text.split("\n")
    bold = []
    for run in paragraph.runs:
        if not run.bold:
            break
        bold.append(run.text)
    opening = "".join(bold)
    label = opening.strip()
    named = label.rstrip(":").strip()
    rest = first[len(opening) :].strip()
    if (
        "\n" not in opening
        and named
        and SPEAKER_NAME.match(named)
        and (rest or label.endswith(":"))
    ):
        turn = Turn(named, rest.removeprefix(":").strip())
    else:
        turn = _labelled(first)
    return [turn, *(_labelled(line) for line in more)]
