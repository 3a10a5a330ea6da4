"""REFI-QDA codebooks and projects (kb.exchange, kb.services.exchange): round trips, the merge
by name, every refusal with nothing written, and what a project archive must never hold."""

import datetime
import io
import struct
import uuid
import zipfile

import pytest
from django.contrib.auth.models import Group
from lxml import etree

import kb.exchange as exchange_limits
from kb.exchange import ExchangeFileRefused, refi_qda, size_in_words
from kb.exchange.codebook_csv import codebook_csv_rows
from kb.exchange.refi_qda import (
    CODEBOOK_NS,
    PROJECT_NS,
    Code,
    Coding,
    Project,
    Selection,
    Source,
    User,
    qdc_read,
    qdc_write,
    qdpx_read,
    qdpx_write,
)
from kb.models import Highlight, Interview, Theme
from kb.roles import RESEARCHER
from kb.services import exchange
from kb.services.codebook import highlight_create, theme_create
from kb.services.interviews import interview_create
from kb.services.people import researcher_create
from tests.helpers import nothing_written

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]

KEPT_TEXT = "Alex: I want actionable steps. Bea: Pictures do not help me debug."
WITHHELD_TEXT = "Never share this sentence about the lab."


@pytest.fixture
def coder(researcher_user, django_user_model):
    user = django_user_model.objects.create_user(
        username="cora", password="pw-cora", email="cora.private@example.org",
        first_name="Cora", last_name="Realname",
    )  # fmt: skip
    user.groups.add(Group.objects.get(name=RESEARCHER))
    return user


@pytest.fixture
def project(researcher_user, coder):
    """Two interviewees: P-kept (consent to quotes) and P-none (no consent), both coded."""
    actor = researcher_user
    kept = researcher_create(
        actor=actor, pseudonym="P-kept", role="ml_engineer", seniority="senior",
        full_name="Kept Realname", affiliation="Kept Lab", contact_email="kept@example.org",
        consent_given=True, consent_date=datetime.date(2026, 1, 5), consent_scope="quotes",
    )  # fmt: skip
    withheld = researcher_create(
        actor=actor, pseudonym="P-none", role="ml_engineer", seniority="junior",
        full_name="Hidden Realname", affiliation="Hidden Lab", contact_email="hid@example.org",
    )  # fmt: skip
    action = theme_create(
        actor=actor, name="Actionability", description="Wants steps.", colour="#AA3300"
    )
    steps = theme_create(actor=actor, name="Next steps", parent=action, description="Concrete.")
    trust = theme_create(actor=actor, name="Trust")
    interview = interview_create(
        actor=actor, researcher=kept, conducted_on=datetime.date(2026, 2, 1),
        transcript=KEPT_TEXT, summary="Wants steps.",
    )  # fmt: skip
    first = highlight_create(
        actor=actor, interview=interview, start=8, end=30, quote=KEPT_TEXT[8:30],
        themes=[action, steps], note="Key quote.",
    )  # fmt: skip
    second = highlight_create(
        actor=actor, interview=interview, start=36, end=66, quote=KEPT_TEXT[36:66],
        themes=[trust], coder=coder,
    )  # fmt: skip
    other = interview_create(
        actor=actor, researcher=withheld, conducted_on=datetime.date(2026, 2, 2),
        transcript=WITHHELD_TEXT,
    )  # fmt: skip
    highlight_create(
        actor=actor, interview=other, start=0, end=19, quote=WITHHELD_TEXT[:19], themes=[trust]
    )
    return {
        "kept": kept, "withheld": withheld, "themes": [action, steps, trust],
        "interview": interview, "highlights": [first, second], "other": other,
    }  # fmt: skip


def segments(interviews) -> list[tuple]:
    """Each transcript highlight as (transcript, start, end, quote, themes, coder, note)."""
    return sorted(
        (h.interview.transcript, h.start, h.end, h.quote,
         tuple(sorted(t.name for t in h.themes.all())),
         h.coder.username if h.coder else None, h.note)
        for h in Highlight.objects.filter(interview__in=interviews).select_related(
            "interview", "coder"
        )
    )  # fmt: skip


def archive_texts(data: bytes) -> dict[str, str]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name).decode() for name in archive.namelist()}


# --- the codebook ----------------------------------------------------------------------------


def test_the_codebook_goes_out_as_qdc_and_reads_back_nested(project):
    data = exchange.codebook_export_qdc()
    root = etree.fromstring(data)
    assert root.tag == f"{{{CODEBOOK_NS}}}CodeBook"
    assert data == exchange.codebook_export_qdc()  # stable GUIDs: the same bytes every time

    codes = qdc_read(data)

    assert [(c.name, c.description, c.colour) for c in codes] == [
        ("Actionability", "Wants steps.", "#aa3300"),
        ("Trust", "", "#4f6d7a"),
    ]
    assert [(c.name, c.description) for c in codes[0].children] == [("Next steps", "Concrete.")]
    assert codes[0].guid == str(uuid.UUID(codes[0].guid))


def test_a_qdc_merges_by_name_and_reports_what_it_added(project, researcher_user):
    incoming = qdc_write(
        (
            Code(guid=str(uuid.uuid4()), name="ACTIONABILITY", description="ignored", children=(
                Code(guid=str(uuid.uuid4()), name="next steps"),
                Code(guid=str(uuid.uuid4()), name="Brand new", description="From MAXQDA."),
            )),
            Code(guid=str(uuid.uuid4()), name="Fresh root", colour="#abc"),
        )
    )  # fmt: skip

    report = exchange.codebook_import_qdc(actor=researcher_user, data=incoming)

    assert report.kept == ("Actionability", "Actionability / Next steps")
    assert report.added == ("Actionability / Brand new", "Fresh root")
    brand_new = Theme.objects.get(name="Brand new")
    assert (brand_new.parent.name, brand_new.description) == ("Actionability", "From MAXQDA.")
    assert Theme.objects.get(name="Fresh root").colour == "#aabbcc"
    assert Theme.objects.get(name="Actionability").description == "Wants steps."
    assert Theme.objects.count() == 5


def test_the_same_name_under_two_parents_of_the_file_makes_two_themes(researcher_user, db):
    incoming = qdc_write(
        tuple(
            Code(guid=str(uuid.uuid4()), name=name, children=(
                Code(guid=str(uuid.uuid4()), name="Other"),
            ))
            for name in ("Tools", "Methods")
        )
    )  # fmt: skip

    report = exchange.codebook_import_qdc(actor=researcher_user, data=incoming)

    assert report.added == ("Tools", "Tools / Other", "Methods", "Methods / Other")
    assert sorted(Theme.objects.filter(name="Other").values_list("parent__name", flat=True)) == [
        "Methods", "Tools",
    ]  # fmt: skip


def test_the_codebook_csv_has_paths_descriptions_and_parents(project):
    assert codebook_csv_rows(exchange.codebook_codes()) == [
        ["Actionability", "Wants steps.", ""],
        ["Actionability/Next steps", "Concrete.", "Actionability"],
        ["Trust", "", ""],
    ]
    assert exchange.codebook_export_csv().splitlines()[0] == "tag,description,parent"


# --- the project -----------------------------------------------------------------------------


def test_a_qdpx_round_trip_gives_identical_segments(project, researcher_user):
    data = exchange.project_export_qdpx()
    assert data == exchange.project_export_qdpx()
    before = segments([project["interview"]])
    Interview.objects.filter(pk=project["interview"].pk).delete()

    report = exchange.project_import_qdpx(actor=researcher_user, data=data)

    imported = Interview.objects.get(researcher=project["kept"])
    assert segments([imported]) == before
    assert (imported.conducted_on, imported.summary) == (datetime.date(2026, 2, 1), "Wants steps.")
    assert report.interviews_added == (str(imported),)
    assert report.codebook.added == ()
    assert report.codebook.kept == ("Actionability", "Actionability / Next steps", "Trust")
    assert (report.highlights_added, report.selections_uncoded) == (2, 0)
    assert report.sources_already_present == ()


def test_importing_the_same_project_again_skips_what_is_here(project, researcher_user):
    data = exchange.project_export_qdpx()

    report = exchange.project_import_qdpx(actor=researcher_user, data=data)

    assert report.sources_already_present == (str(project["interview"]),)
    assert (report.interviews_added, report.highlights_added) == ((), 0)
    assert Interview.objects.count() == 2


def test_the_archive_holds_consented_words_only_and_no_personal_data(project, researcher_user):
    named = "I am kept realname of Kept Lab (kept@example.org); Kept Lab's staff, Labrador too."
    interview_create(
        actor=researcher_user, researcher=project["kept"], conducted_on=datetime.date(2026, 3, 1),
        transcript=named, summary="Kept Realname, again.",
    )  # fmt: skip

    data = exchange.project_export_qdpx()

    texts = archive_texts(data)
    guids = [source.guid for source in qdpx_read(data).sources]
    assert sorted(texts) == sorted(["project.qde", *(f"sources/{guid}.txt" for guid in guids)])
    assert texts[f"sources/{guids[0]}.txt"] == KEPT_TEXT
    assert texts[f"sources/{guids[1]}.txt"] == (
        "I am █████████████ of ████████ (████████████████); ████████'s staff, Labrador too."
    )
    assert qdpx_read(data).sources[1].description == "█████████████, again."
    everything = "\n".join(texts.values())
    for secret in [
        WITHHELD_TEXT, WITHHELD_TEXT[:19], "P-none", "Hidden Realname", "Hidden Lab",
        "hid@example.org", "Kept Realname", "Kept Lab", "kept@example.org",
        "cora.private@example.org", "Realname",
    ]:  # fmt: skip
        assert secret not in everything, secret
    project_doc = etree.fromstring(texts["project.qde"].encode())
    ns = {"q": PROJECT_NS}
    assert project_doc.xpath("//q:Case/@name", namespaces=ns) == ["P-kept"]
    assert project_doc.xpath("//q:User/@name", namespaces=ns) == ["cora", "rita"]
    assert project_doc.xpath("//q:User/@id", namespaces=ns) == []


def test_a_foreign_project_with_inline_text_and_several_coders_per_selection(
    project, researcher_user, coder
):
    """Codings of one selection by two users become one highlight per coder; a selection
    with no coding is skipped; a source without a case goes to the chosen researcher."""
    code, users = (
        project["themes"][2],
        (User(str(uuid.uuid4()), "rita"), User(str(uuid.uuid4()), "cora")),
    )
    guid = exchange.stable_guid("theme", code.pk)
    text = "A brand new transcript, typed in another tool."
    source = Source(
        guid=str(uuid.uuid4()), name="Foreign", text=text,
        selections=(
            Selection(guid=str(uuid.uuid4()), start=2, end=11, codings=(
                Coding(str(uuid.uuid4()), guid, users[0].guid),
                Coding(str(uuid.uuid4()), guid, users[1].guid),
            )),
            Selection(guid=str(uuid.uuid4()), start=0, end=1, codings=()),
        ),
    )  # fmt: skip
    data = qdpx_write(
        Project(name="x", users=users, codes=(Code(guid, "trust"),), sources=(source,))
    )

    report = exchange.project_import_qdpx(
        actor=researcher_user, data=data, researcher=project["kept"]
    )

    imported = Interview.objects.get(transcript=text)
    assert imported.researcher == project["kept"]
    assert segments([imported]) == [
        (text, 2, 11, "brand new", ("Trust",), "cora", ""),
        (text, 2, 11, "brand new", ("Trust",), "rita", ""),
    ]
    assert (report.highlights_added, report.selections_uncoded) == (2, 1)
    assert report.codebook.kept == ("Trust",)


# --- refusals: a clear error, nothing written ------------------------------------------------


def zip_of(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def qde(body: str, ns: str = PROJECT_NS) -> bytes:
    return f'<?xml version="1.0"?><Project xmlns="{ns}" name="x">{body}</Project>'.encode()


CODE_GUID, SOURCE_GUID, SELECTION_GUID = (str(uuid.uuid4()) for _ in range(3))
CODEBOOK = (
    f'<CodeBook><Codes><Code guid="{CODE_GUID}" name="Trust" isCodable="true"/></Codes></CodeBook>'
)


def source_with(selection: str, path: str = "") -> str:
    where = f'plainTextPath="{path}"' if path else ""
    content = "" if path else "<PlainTextContent>Short text.</PlainTextContent>"
    return (
        f'<Sources><TextSource guid="{SOURCE_GUID}" name="S" {where}>{content}{selection}'
        "</TextSource></Sources>"
    )


def coded(start: int, end: int, code: str = CODE_GUID) -> str:
    return (
        f'<PlainTextSelection guid="{SELECTION_GUID}" startPosition="{start}" '
        f'endPosition="{end}"><Coding guid="{uuid.uuid4()}"><CodeRef targetGUID="{code}"/>'
        "</Coding></PlainTextSelection>"
    )


CODEBOOK_REFUSALS = {
    "not XML": (b"tag,description\nTrust,", "The codebook is not well-formed XML"),
    "wrong namespace": (
        b'<CodeBook xmlns="urn:QDA-XML:project:1.0"><Codes/></CodeBook>',
        "This is not a REFI-QDA codebook (.qdc): expected <CodeBook> in namespace "
        "“urn:QDA-XML:codebook:1.0”, found <CodeBook> in namespace “urn:QDA-XML:project:1.0”.",
    ),
    "entities": (
        f'<!DOCTYPE x [<!ENTITY a "Trust">]><CodeBook xmlns="{CODEBOOK_NS}"><Codes>'
        f'<Code guid="{CODE_GUID}" name="&a;" isCodable="true"/></Codes></CodeBook>'.encode(),
        "The codebook declares a DTD; REFI-QDA files have none.",
    ),
    "bad GUID": (
        f'<CodeBook xmlns="{CODEBOOK_NS}"><Codes><Code guid="42" name="T" isCodable="true"/>'
        "</Codes></CodeBook>".encode(),
        "Code “T”: “42” is not a GUID.",
    ),
    "name too long": (
        qdc_write((Code(CODE_GUID, "x" * 121),)),
        "Code “" + "x" * 121 + "”: Ensure this value has at most 120 characters (it has 121).",
    ),
}


@pytest.mark.parametrize("case", CODEBOOK_REFUSALS, ids=list(CODEBOOK_REFUSALS))
def test_a_bad_codebook_is_refused_with_nothing_written(case, project, researcher_user):
    data, message = CODEBOOK_REFUSALS[case]
    with nothing_written(), pytest.raises(ExchangeFileRefused) as refused:
        exchange.codebook_import_qdc(actor=researcher_user, data=data)
    assert refused.value.messages[0].startswith(message)


def test_a_codebook_too_deep_for_the_codebook_is_refused_whole(project, researcher_user):
    with nothing_written(), pytest.raises(ExchangeFileRefused) as refused:
        exchange.codebook_import_qdc(actor=researcher_user, data=qdc_write((deep_chain(10),)))
    assert refused.value.messages == ["Code “Level 10”: Themes nest at most 8 deep."]


PROJECT_REFUSALS = {
    "not a zip": (b"PK but not really", "the file is not a zip archive"),
    "no project.qde": (zip_of({"other.xml": b"<x/>"}), "The archive has no “project.qde”."),
    "not XML": (zip_of({"project.qde": b"<Project"}), "The project.qde is not well-formed XML"),
    "wrong namespace": (
        zip_of({"project.qde": qde("", ns=CODEBOOK_NS)}),
        "This is not a REFI-QDA project (project.qde): expected <Project>",
    ),
    "unknown code": (
        zip_of({"project.qde": qde(CODEBOOK + source_with(coded(0, 5, str(uuid.uuid4()))))}),
        f"Selection {SELECTION_GUID} in source “S” is coded with",
    ),
    "outside the text": (
        zip_of({"project.qde": qde(CODEBOOK + source_with(coded(3, 12)))}),
        f"Selection {SELECTION_GUID} in source “S”: characters 3-12 are outside the text "
        "(11 characters)",
    ),
    "empty selection": (
        zip_of({"project.qde": qde(CODEBOOK + source_with(coded(4, 4)))}),
        "characters 4-4 are outside the text",
    ),
    "text outside the archive": (
        zip_of({"project.qde": qde(CODEBOOK + source_with("", path="file:///etc/passwd"))}),
        "Source “S”: its text is outside the archive (“file:///etc/passwd”)",
    ),
    "path climbing out": (
        zip_of({"project.qde": qde(CODEBOOK + source_with("", path="internal://../x.txt"))}),
        "Source “S”: “internal://../x.txt” is not a file of the archive's sources.",
    ),
    "missing source file": (
        zip_of({"project.qde": qde(CODEBOOK + source_with("", path="internal://a.txt"))}),
        "The archive has no “sources/a.txt”.",
    ),
    "no interviewee": (
        zip_of({"project.qde": qde(CODEBOOK + source_with(coded(0, 5)))}),
        "Source “S”: no case; choose the researcher its interviews belong to.",
    ),
}


@pytest.mark.parametrize("case", PROJECT_REFUSALS, ids=list(PROJECT_REFUSALS))
def test_a_bad_project_is_refused_with_nothing_written(case, project, researcher_user):
    data, message = PROJECT_REFUSALS[case]
    with nothing_written(), pytest.raises(ExchangeFileRefused) as refused:
        exchange.project_import_qdpx(actor=researcher_user, data=data)
    assert message in refused.value.messages[0]


def test_a_project_for_someone_without_consent_is_refused(project, researcher_user):
    data = zip_of({"project.qde": qde(CODEBOOK + source_with(coded(0, 5)))})
    with nothing_written(), pytest.raises(ExchangeFileRefused) as refused:
        exchange.project_import_qdpx(
            actor=researcher_user, data=data, researcher=project["withheld"]
        )
    assert refused.value.messages == [
        "Source “S”: P-none was anonymised or has not consented to keeping their words, so "
        "no interview of theirs is imported."
    ]


def test_a_coder_without_an_account_is_refused_after_the_codebook_would_merge(
    project, researcher_user
):
    user = User(str(uuid.uuid4()), "nobody-here")
    source = Source(
        guid=SOURCE_GUID, name="S", text="Short text.",
        selections=(
            Selection(SELECTION_GUID, 0, 5, (Coding(str(uuid.uuid4()), CODE_GUID, user.guid),)),
        ),
    )  # fmt: skip
    data = qdpx_write(
        Project(name="x", users=(user,), codes=(Code(CODE_GUID, "New code"),), sources=(source,))
    )
    with nothing_written(), pytest.raises(ExchangeFileRefused) as refused:
        exchange.project_import_qdpx(actor=researcher_user, data=data, researcher=project["kept"])
    assert refused.value.messages == [
        "Coder “nobody-here” has no account here; add a user with that username first, so "
        "their coding stays theirs."
    ]


def deep_chain(levels: int) -> Code:
    code = Code(str(uuid.uuid4()), f"Level {levels}")
    for level in range(levels - 1, 0, -1):
        code = Code(str(uuid.uuid4()), f"Level {level}", children=(code,))
    return code


def test_a_refusal_after_the_first_writes_leaves_nothing_either(project, researcher_user):
    """Levels 1-9 of the file's codebook are written before level 10 is refused."""
    source = Source(guid=SOURCE_GUID, name="S", text="Short text.")
    data = qdpx_write(Project(name="x", codes=(deep_chain(10),), sources=(source,)))
    with nothing_written(), pytest.raises(ExchangeFileRefused) as refused:
        exchange.project_import_qdpx(actor=researcher_user, data=data, researcher=project["kept"])
    assert refused.value.messages == ["Code “Level 10”: Themes nest at most 8 deep."]


def test_too_large_and_zip_bombs_are_refused_before_reading(project, researcher_user, settings):
    settings.EXCHANGE_MAX_UPLOAD_SIZE = 2000
    bomb = zip_of({"project.qde": qde(""), "sources/big.txt": b"a" * 10_001})
    assert len(bomb) < 2000
    with nothing_written():
        with pytest.raises(ExchangeFileRefused) as refused:
            exchange.project_import_qdpx(actor=researcher_user, data=bomb)
        unpacked = sum(info.file_size for info in zipfile.ZipFile(io.BytesIO(bomb)).infolist())
        assert refused.value.messages == [
            f"The archive unpacks to {size_in_words(unpacked)}; at most 9.8 KiB is read."
        ]
        with pytest.raises(ExchangeFileRefused) as refused:
            exchange.codebook_import_qdc(actor=researcher_user, data=b" " * 2001)
        assert refused.value.messages == ["The file is 2.0 KiB; it may be at most 2.0 KiB."]


def test_the_project_export_costs_the_same_queries_for_more_rows(
    project, researcher_user, django_assert_num_queries
):
    # interviews (with researchers), highlights (with coders), their themes, the codebook
    with django_assert_num_queries(4):
        exchange.project_for_export()
    interview = interview_create(
        actor=researcher_user, researcher=project["kept"], conducted_on=datetime.date(2026, 3, 1),
        transcript=KEPT_TEXT,
    )  # fmt: skip
    for start in (0, 10, 20):
        highlight_create(
            actor=researcher_user, interview=interview, start=start, end=start + 5,
            quote=KEPT_TEXT[start : start + 5], themes=project["themes"],
        )  # fmt: skip

    with django_assert_num_queries(4):
        assert len(exchange.project_for_export().sources) == 2


def test_the_upload_limit_is_a_setting(settings):
    settings.EXCHANGE_MAX_UPLOAD_SIZE = 4096
    assert exchange_limits.max_upload_size() == 4096
    assert exchange_limits.max_unpacked_size() == 5 * 4096
    with pytest.raises(ExchangeFileRefused) as refused:
        qdc_read(b" " * 4097)
    assert refused.value.messages == ["The file is 4.0 KiB; it may be at most 4.0 KiB."]


# --- damaged archives, unfit text, too many rows ---------------------------------------------


def damaged(method: int) -> bytes:
    """A .qdpx whose project.qde is stored with `method` and its compressed data overwritten
    with 0xff bytes (sizes and CRC unchanged): the decompressor itself fails. An LZMA member
    keeps its 9-byte header (version, properties), so the failure is in the stream."""
    data = bytearray(zip_of_with({"project.qde": qde(CODEBOOK) * 20}, method))
    assert data[:4] == b"PK\x03\x04"
    compressed = struct.unpack("<I", data[18:22])[0]
    name_length, extra_length = struct.unpack("<HH", data[26:30])
    start, header = 30 + name_length + extra_length, 9 if method == zipfile.ZIP_LZMA else 0
    data[start + header : start + compressed] = b"\xff" * (compressed - header)
    return bytes(data)


def zip_of_with(entries: dict[str, bytes], method: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("method", "error"),
    [
        (zipfile.ZIP_DEFLATED, "Error -3 while decompressing data: invalid block type"),
        (zipfile.ZIP_LZMA, "Corrupt input data"),
        (zipfile.ZIP_BZIP2, "Invalid data stream"),
    ],
    ids=["deflate", "lzma", "bzip2"],
)
def test_a_damaged_member_is_refused_with_nothing_written(method, error, project, researcher_user):
    with nothing_written(), pytest.raises(ExchangeFileRefused) as refused:
        exchange.project_import_qdpx(actor=researcher_user, data=damaged(method))
    assert refused.value.messages == [f"“project.qde” cannot be unpacked: {error}."]


def project_with_text(text: bytes) -> bytes:
    """A project of one source, S of P-kept, whose text file holds `text`."""
    body = (
        CODEBOOK
        + f'<Cases><Case guid="{uuid.uuid4()}" name="P-kept">'
        + f'<SourceRef targetGUID="{SOURCE_GUID}"/></Case></Cases>'
        + source_with("", path="internal://s.txt")
    )
    return zip_of({"project.qde": qde(body), "sources/s.txt": text})


BINARY = "Source “S”: The text holds binary data (control characters)."


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"Alex: hello\x00 world", BINARY),
        (b"Alex: a bell \x07 rings", BINARY),
        (b"Alex: form \x0c feed", BINARY),
        (b" \n\n ", "Source “S”: The transcript text is empty."),
        (b"x" * 1025, "Source “S”: The transcript text is 1,025 characters; transcripts may be at "
         "most 1,024 characters."),
    ],
    ids=["NUL", "bell", "form feed", "empty", "too long"],
)  # fmt: skip
def test_a_source_an_upload_would_refuse_is_refused_with_nothing_written(
    text, message, project, researcher_user, settings
):
    """The transcript rules of kb.transcripts hold for imported sources too."""
    settings.TRANSCRIPT_MAX_UPLOAD_SIZE = 1024
    with nothing_written(), pytest.raises(ExchangeFileRefused) as refused:
        exchange.project_import_qdpx(actor=researcher_user, data=project_with_text(text))
    assert refused.value.messages == [message]


def test_a_source_an_upload_would_take_is_imported(project, researcher_user, settings):
    settings.TRANSCRIPT_MAX_UPLOAD_SIZE = 1024
    opening = "Alex:\ttabs and\r\nlines "
    text = opening + "x" * (1024 - len(opening))
    report = exchange.project_import_qdpx(
        actor=researcher_user, data=project_with_text(text.encode())
    )
    imported = Interview.objects.exclude(pk=project["interview"].pk).get(researcher=project["kept"])
    assert report.interviews_added == (str(imported),)
    assert imported.transcript == text


def many_sources(sources: int, selections: int) -> bytes:
    body = "".join(
        f'<TextSource guid="{uuid.uuid4()}" name="S{number}"><PlainTextContent>Short text.'
        "</PlainTextContent>"
        + "".join(
            f'<PlainTextSelection guid="{uuid.uuid4()}" startPosition="0" endPosition="5">'
            f'<Coding guid="{uuid.uuid4()}"><CodeRef targetGUID="{CODE_GUID}"/></Coding>'
            "</PlainTextSelection>"
            for _ in range(selections)
        )
        + "</TextSource>"
        for number in range(sources)
    )
    return zip_of({"project.qde": qde(CODEBOOK + f"<Sources>{body}</Sources>")})


def test_more_sources_or_selections_than_one_import_writes_are_refused(
    project, researcher_user, monkeypatch
):
    monkeypatch.setattr(refi_qda, "MAX_SOURCES", 2)
    monkeypatch.setattr(refi_qda, "MAX_SELECTIONS", 4)
    kept = project["kept"]
    with nothing_written():
        with pytest.raises(ExchangeFileRefused) as refused:
            exchange.project_import_qdpx(
                actor=researcher_user, data=many_sources(3, 0), researcher=kept
            )
        assert refused.value.messages == [
            "The project has 3 sources; one import reads at most 2. Split it into several projects."
        ]
        with pytest.raises(ExchangeFileRefused) as refused:
            exchange.project_import_qdpx(
                actor=researcher_user, data=many_sources(1, 5), researcher=kept
            )
        assert refused.value.messages == [
            "The project has 5 selections; one import reads at most 4. Split it into "
            "several projects."
        ]
    report = exchange.project_import_qdpx(
        actor=researcher_user, data=many_sources(2, 2), researcher=kept
    )
    assert (len(report.interviews_added), report.highlights_added) == (1, 2)
    assert report.sources_already_present == ("S1",)


# --- masking and re-importing our own export -------------------------------------------------


def test_a_highlight_note_is_masked_like_the_text(project, researcher_user):
    highlight_create(
        actor=researcher_user, interview=project["interview"], start=0, end=4,
        quote=KEPT_TEXT[:4], themes=project["themes"][2:],
        note="Ask Kept Realname (kept@example.org) of Kept Lab; a lab note.",
    )  # fmt: skip

    data = exchange.project_export_qdpx()

    notes = [s.description for s in qdpx_read(data).sources[0].selections]
    assert notes == [
        "Ask █████████████ (████████████████) of ████████; a lab note.",
        "Key quote.",
        "",
    ]
    everything = "\n".join(archive_texts(data).values())
    for secret in ["Kept Realname", "kept@example.org", "Kept Lab"]:
        assert secret not in everything, secret


def test_our_own_export_imports_again_without_duplicates(project, researcher_user):
    """The export masks names, so its text differs from what is stored: the import compares
    with the masked text too."""
    named = interview_create(
        actor=researcher_user, researcher=project["kept"], conducted_on=datetime.date(2026, 3, 1),
        transcript="Kept Realname of Kept Lab: I want steps.", summary="Named.",
    )  # fmt: skip
    data = exchange.project_export_qdpx()
    present = tuple(sorted([str(project["interview"]), str(named)]))

    with nothing_written():
        first = exchange.project_import_qdpx(actor=researcher_user, data=data)
        second = exchange.project_import_qdpx(actor=researcher_user, data=data)

    for report in (first, second):
        assert tuple(sorted(report.sources_already_present)) == present
        assert (report.interviews_added, report.highlights_added) == ((), 0)
    assert Interview.objects.count() == 3


def test_an_export_imported_elsewhere_then_again_adds_each_interview_once(project, researcher_user):
    named = interview_create(
        actor=researcher_user, researcher=project["kept"], conducted_on=datetime.date(2026, 3, 1),
        transcript="Kept Realname of Kept Lab: I want steps.",
    )  # fmt: skip
    data = exchange.project_export_qdpx()
    Interview.objects.filter(pk__in=[project["interview"].pk, named.pk]).delete()

    first = exchange.project_import_qdpx(actor=researcher_user, data=data)
    second = exchange.project_import_qdpx(actor=researcher_user, data=data)

    assert len(first.interviews_added) == 2
    assert sorted(second.sources_already_present) == sorted(first.interviews_added)
    assert second.interviews_added == ()
    assert sorted(
        Interview.objects.filter(researcher=project["kept"]).values_list("transcript", flat=True)
    ) == [KEPT_TEXT, "█████████████ of ████████: I want steps."]
