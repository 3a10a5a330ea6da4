"""REFI-QDA codebooks (.qdc) and projects (.qdpx), written from plain values and read back.

The standard (QDA-XML 1.0, Codebook.xsd and Project.xsd) in the parts used here:

    <CodeBook xmlns="urn:QDA-XML:codebook:1.0" origin=...>      a .qdc file
      <Codes><Code guid name isCodable color><Description/><Code .../></Code></Codes>
    </CodeBook>

    a .qdpx file: a zip holding project.qde and sources/<file>
    <Project xmlns="urn:QDA-XML:project:1.0" name origin>
      <Users><User guid name/></Users>
      <CodeBook><Codes>... as above, NoteRef allowed after Description ...</Codes></CodeBook>
      <Cases><Case guid name><SourceRef targetGUID/></Case></Cases>
      <Sources>
        <TextSource guid name plainTextPath="internal://<file>" creationDateTime>
          <Description/>   (or <PlainTextContent> instead of plainTextPath)
          <PlainTextSelection guid name startPosition endPosition creatingUser creationDateTime>
            <Description/>
            <Coding guid creatingUser><CodeRef targetGUID/></Coding>
          </PlainTextSelection>
        </TextSource>
      </Sources>
    </Project>

Positions count characters (code points) of the source's plain text, end exclusive.

Reading treats the file as hostile: no DTD, no entities, no network, lxml's default limits on
depth and text size; a zip is opened only at the entries the project names, each entry's
declared size is checked before it is read and reading stops at that size. Every reference
(a coding's code, a selection's user, a case's source) must name a GUID the file defines.
"""

import datetime
import io
import lzma
import re
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import PurePosixPath

from lxml import etree

from kb.exchange import (
    MAX_SELECTIONS,
    MAX_SOURCES,
    ExchangeFileRefused,
    max_unpacked_size,
    refuse_too_large,
    size_in_words,
)

CODEBOOK_NS = "urn:QDA-XML:codebook:1.0"
PROJECT_NS = "urn:QDA-XML:project:1.0"
PROJECT_ENTRY = "project.qde"
SOURCES_DIR = "sources/"
INTERNAL = "internal://"
ORIGIN = "Insight KB"
# Stable GUIDs: the same record gets the same GUID in every export (uuid5 of kind and key).
GUID_NAMESPACE = uuid.UUID("7c1d9a52-3f0e-5b8a-9d41-2e6f0b7a1c35")
GUID = re.compile(
    r"^\{?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\}?$"
)
RGB = re.compile(r"^#([0-9a-fA-F]{6}|[0-9a-fA-F]{3})$")
# Deeper than any codebook needs, shallow enough that reading it never recurses far.
MAX_CODE_DEPTH = 32
# Zip entries get this timestamp so the same project gives the same bytes.
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Code:
    """A code and the codes nested in it; `colour` is #rrggbb or None."""

    guid: str
    name: str
    description: str = ""
    colour: str | None = None
    children: tuple["Code", ...] = ()


@dataclass(frozen=True)
class User:
    guid: str
    name: str


@dataclass(frozen=True)
class Coding:
    """One code applied to a selection, by `user_guid` (None: the file names nobody)."""

    guid: str
    code_guid: str
    user_guid: str | None = None


@dataclass(frozen=True)
class Selection:
    """The characters [start, end) of its source, with the codes applied to them."""

    guid: str
    start: int
    end: int
    codings: tuple[Coding, ...]
    description: str = ""
    user_guid: str | None = None
    created: datetime.datetime | None = None


@dataclass(frozen=True)
class Source:
    """A text source: `text` is its plain text, which selections' positions count in."""

    guid: str
    name: str
    text: str
    selections: tuple[Selection, ...] = ()
    description: str = ""
    created: datetime.datetime | None = None


@dataclass(frozen=True)
class Case:
    """A case (here: an interviewee, by pseudonym) and the sources that belong to it."""

    guid: str
    name: str
    source_guids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Project:
    name: str
    users: tuple[User, ...] = ()
    codes: tuple[Code, ...] = ()
    cases: tuple[Case, ...] = ()
    sources: tuple[Source, ...] = ()


def stable_guid(kind: str, key) -> str:
    """The GUID of record `key` of `kind` ("theme", "interview" ...), the same in every export."""
    return str(uuid.uuid5(GUID_NAMESPACE, f"{kind}:{key}"))


# --- writing ---------------------------------------------------------------------------------


def _element(parent, ns: str, tag: str, **attributes):
    values = {name: value for name, value in attributes.items() if value is not None}
    return etree.SubElement(parent, f"{{{ns}}}{tag}", values)


def _text_element(parent, ns: str, tag: str, text: str):
    element = _element(parent, ns, tag)
    element.text = text
    return element


def _write_codes(parent, ns: str, codes: tuple[Code, ...]) -> None:
    holder = _element(parent, ns, "Codes")
    pending = [(holder, code) for code in codes]
    while pending:
        into, code = pending.pop(0)
        element = _element(
            into, ns, "Code", guid=code.guid, name=code.name, isCodable="true", color=code.colour
        )
        if code.description:
            _text_element(element, ns, "Description", code.description)
        pending[:0] = [(element, child) for child in code.children]


def _serialised(root) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _timestamp(moment: datetime.datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def qdc_write(codes: tuple[Code, ...]) -> bytes:
    """The codebook as a .qdc document (UTF-8 XML), codes nested as in `codes`."""
    root = etree.Element(
        f"{{{CODEBOOK_NS}}}CodeBook", {"origin": ORIGIN}, nsmap={None: CODEBOOK_NS}
    )
    _write_codes(root, CODEBOOK_NS, codes)
    return _serialised(root)


def _source_file(source: Source) -> str:
    return f"{source.guid}.txt"


def project_qde_write(project: Project) -> bytes:
    """project.qde: the project document; each source's text lives in its own file."""
    ns = PROJECT_NS
    root = etree.Element(
        f"{{{ns}}}Project", {"name": project.name, "origin": ORIGIN}, nsmap={None: ns}
    )
    if project.users:
        users = _element(root, ns, "Users")
        for user in project.users:
            _element(users, ns, "User", guid=user.guid, name=user.name)
    if project.codes:
        _write_codes(_element(root, ns, "CodeBook"), ns, project.codes)
    if project.cases:
        cases = _element(root, ns, "Cases")
        for case in project.cases:
            element = _element(cases, ns, "Case", guid=case.guid, name=case.name)
            for source_guid in case.source_guids:
                _element(element, ns, "SourceRef", targetGUID=source_guid)
    if project.sources:
        sources = _element(root, ns, "Sources")
        for source in project.sources:
            _write_source(sources, source)
    return _serialised(root)


def _write_source(parent, source: Source) -> None:
    ns = PROJECT_NS
    element = _element(
        parent, ns, "TextSource", guid=source.guid, name=source.name,
        plainTextPath=INTERNAL + _source_file(source), creationDateTime=_timestamp(source.created),
    )  # fmt: skip
    if source.description:
        _text_element(element, ns, "Description", source.description)
    for selection in source.selections:
        selected = _element(
            element, ns, "PlainTextSelection", guid=selection.guid,
            name=_selection_name(source.text[selection.start : selection.end]),
            startPosition=str(selection.start), endPosition=str(selection.end),
            creatingUser=selection.user_guid, creationDateTime=_timestamp(selection.created),
        )  # fmt: skip
        if selection.description:
            _text_element(selected, ns, "Description", selection.description)
        for coding in selection.codings:
            coded = _element(
                selected, ns, "Coding", guid=coding.guid, creatingUser=coding.user_guid
            )
            _element(coded, ns, "CodeRef", targetGUID=coding.code_guid)


def _selection_name(quote: str) -> str:
    quote = " ".join(quote.split())
    return quote if len(quote) <= 60 else quote[:57] + "..."


def qdpx_write(project: Project) -> bytes:
    """The project as a .qdpx archive: project.qde, then sources/<guid>.txt (UTF-8) per
    source. The same project gives the same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        _write_entry(archive, PROJECT_ENTRY, project_qde_write(project))
        for source in project.sources:
            _write_entry(archive, SOURCES_DIR + _source_file(source), source.text.encode())
    return buffer.getvalue()


def _write_entry(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=ZIP_TIMESTAMP)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


# --- reading ---------------------------------------------------------------------------------


def _parsed(data: bytes, what: str):
    """The root element of XML `data`; refused if it is not XML or declares a DTD."""
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False,
        dtd_validation=False, remove_comments=True, remove_pis=True,
    )  # fmt: skip
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as error:
        raise ExchangeFileRefused(f"The {what} is not well-formed XML: {error.msg}.") from None
    if root.getroottree().docinfo.doctype:
        raise ExchangeFileRefused(f"The {what} declares a DTD; REFI-QDA files have none.")
    return root


def _require_root(root, ns: str, tag: str, what: str) -> None:
    if root.tag != f"{{{ns}}}{tag}":
        found = etree.QName(root)
        where = f" in namespace “{found.namespace}”" if found.namespace else " with no namespace"
        raise ExchangeFileRefused(
            f"This is not a REFI-QDA {what}: expected <{tag}> in namespace “{ns}”, found "
            f"<{found.localname}>{where}."
        )


def _guid(value: str | None, where: str) -> str:
    match = GUID.match(value or "")
    if not match:
        raise ExchangeFileRefused(f"{where}: “{value or ''}” is not a GUID.")
    return match.group(1).lower()


def _optional_guid(value: str | None, where: str) -> str | None:
    return None if value is None else _guid(value, where)


def _colour(value: str | None, where: str) -> str | None:
    if value is None:
        return None
    if not RGB.match(value):
        raise ExchangeFileRefused(f"{where}: “{value}” is not a colour such as #4f6d7a.")
    digits = value[1:]
    if len(digits) == 3:
        digits = "".join(digit * 2 for digit in digits)
    return "#" + digits.lower()


def _child_text(element, ns: str, tag: str) -> str:
    child = element.find(f"{{{ns}}}{tag}")
    return (child.text or "") if child is not None else ""


def _read_codes(parent, ns: str, depth: int = 1) -> tuple[Code, ...]:
    codes = []
    for element in parent.iterfind(f"{{{ns}}}Code"):
        name = (element.get("name") or "").strip()
        where = f"Code “{name}”" if name else "A code"
        guid = _guid(element.get("guid"), where)
        if not name:
            raise ExchangeFileRefused(f"Code {guid} has no name.")
        if depth > MAX_CODE_DEPTH:
            raise ExchangeFileRefused(f"{where} is nested more than {MAX_CODE_DEPTH} deep.")
        codes.append(
            Code(
                guid=guid, name=name, description=_child_text(element, ns, "Description").strip(),
                colour=_colour(element.get("color"), where),
                children=_read_codes(element, ns, depth + 1),
            )
        )  # fmt: skip
    return tuple(codes)


def codes_flattened(codes: tuple[Code, ...]) -> list[tuple[Code, Code | None]]:
    """Every code with its parent (None at the top), in document order: each code, then the
    codes nested in it."""
    pending: list[tuple[Code, Code | None]] = [(code, None) for code in reversed(codes)]
    flat = []
    while pending:
        code, parent = pending.pop()
        flat.append((code, parent))
        pending.extend((child, code) for child in reversed(code.children))
    return flat


def _refuse_duplicate_guids(kind: str, guids: list[str]) -> None:
    seen: set[str] = set()
    for guid in guids:
        if guid in seen:
            raise ExchangeFileRefused(f"Two {kind} have the GUID {guid}.")
        seen.add(guid)


def qdc_read(data: bytes) -> tuple[Code, ...]:
    """The codes of a .qdc document, nested as in the file."""
    refuse_too_large(len(data))
    root = _parsed(data, "codebook")
    _require_root(root, CODEBOOK_NS, "CodeBook", "codebook (.qdc)")
    holder = root.find(f"{{{CODEBOOK_NS}}}Codes")
    codes = _read_codes(holder, CODEBOOK_NS) if holder is not None else ()
    _refuse_duplicate_guids("codes", [code.guid for code, _ in codes_flattened(codes)])
    return codes


class _Archive:
    """A .qdpx zip, read only at the entries asked for, within a budget of unpacked bytes."""

    def __init__(self, data: bytes) -> None:
        try:
            self.zip = zipfile.ZipFile(io.BytesIO(data))
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError):
            raise ExchangeFileRefused(
                "This is not a REFI-QDA project (.qdpx): the file is not a zip archive."
            ) from None
        self.budget = max_unpacked_size()
        declared = sum(info.file_size for info in self.zip.infolist())
        if declared > self.budget:
            raise ExchangeFileRefused(
                f"The archive unpacks to {size_in_words(declared)}; at most "
                f"{size_in_words(self.budget)} is read."
            )

    def read(self, name: str) -> bytes:
        try:
            info = self.zip.getinfo(name)
        except KeyError:
            raise ExchangeFileRefused(f"The archive has no “{name}”.") from None
        if info.file_size > self.budget:
            raise ExchangeFileRefused(f"“{name}” unpacks to more than the archive may hold.")
        try:
            with self.zip.open(info) as entry:
                # Never more than declared (and budgeted), whatever the compressed data holds.
                data = entry.read(info.file_size + 1)
        except (
            # A damaged member: bad deflate, lzma or bzip2 data (bz2 raises OSError), a
            # truncated one, an unsupported method, an encrypted entry, a CRC mismatch.
            zipfile.BadZipFile, zlib.error, lzma.LZMAError, RuntimeError, NotImplementedError,
            OSError, EOFError, ValueError,
        ) as error:  # fmt: skip
            raise ExchangeFileRefused(f"“{name}” cannot be unpacked: {error}.") from None
        if len(data) > info.file_size:
            raise ExchangeFileRefused(f"“{name}” holds more than its declared size.")
        self.budget -= len(data)
        return data


def qdpx_read(data: bytes) -> Project:
    """The project in a .qdpx archive: users, codes, cases and text sources with their coded
    selections. Refused (ExchangeFileRefused) when the file is not such an archive, holds
    something unreadable, or refers to a GUID it does not define."""
    refuse_too_large(len(data))
    archive = _Archive(data)
    root = _parsed(archive.read(PROJECT_ENTRY), PROJECT_ENTRY)
    _require_root(root, PROJECT_NS, "Project", "project (project.qde)")
    ns = PROJECT_NS
    users = tuple(
        User(guid=_guid(element.get("guid"), "A user"), name=(element.get("name") or "").strip())
        for element in root.iterfind(f"{{{ns}}}Users/{{{ns}}}User")
    )
    holder = root.find(f"{{{ns}}}CodeBook/{{{ns}}}Codes")
    codes = _read_codes(holder, ns) if holder is not None else ()
    _refuse_too_many(root)
    sources = tuple(
        _read_source(element, archive)
        for element in root.iterfind(f"{{{ns}}}Sources/{{{ns}}}TextSource")
    )
    cases = tuple(_read_case(element) for element in root.iterfind(f"{{{ns}}}Cases/{{{ns}}}Case"))
    project = Project(
        name=root.get("name") or "", users=users, codes=codes, cases=cases, sources=sources
    )
    _refuse_unknown_references(project)
    return project


def _refuse_too_many(root) -> None:
    """Refused when the project holds more sources or selections than one import writes
    (MAX_SOURCES, MAX_SELECTIONS); counted before any source's text is read."""
    ns = PROJECT_NS
    sources = root.findall(f"{{{ns}}}Sources/{{{ns}}}TextSource")
    if len(sources) > MAX_SOURCES:
        raise ExchangeFileRefused(
            f"The project has {len(sources):,} sources; one import reads at most "
            f"{MAX_SOURCES:,}. Split it into several projects."
        )
    selections = sum(
        1 for source in sources for _ in source.iterfind(f"{{{ns}}}PlainTextSelection")
    )
    if selections > MAX_SELECTIONS:
        raise ExchangeFileRefused(
            f"The project has {selections:,} selections; one import reads at most "
            f"{MAX_SELECTIONS:,}. Split it into several projects."
        )


def _read_case(element) -> Case:
    ns = PROJECT_NS
    name = (element.get("name") or "").strip()
    where = f"Case “{name}”"
    return Case(
        guid=_guid(element.get("guid"), where),
        name=name,
        source_guids=tuple(
            _guid(ref.get("targetGUID"), where) for ref in element.iterfind(f"{{{ns}}}SourceRef")
        ),
    )


def _datetime(value: str | None, where: str) -> datetime.datetime | None:
    if not value:
        return None
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise ExchangeFileRefused(f"{where}: “{value}” is not a date and time.") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def _source_text(element, archive: _Archive, where: str) -> str:
    ns = PROJECT_NS
    path = element.get("plainTextPath")
    content = element.find(f"{{{ns}}}PlainTextContent")
    if content is not None:
        return content.text or ""
    if not path:
        raise ExchangeFileRefused(f"{where} has neither plainTextPath nor PlainTextContent.")
    if not path.startswith(INTERNAL):
        raise ExchangeFileRefused(
            f"{where}: its text is outside the archive (“{path}”); only internal:// sources "
            "are read."
        )
    name = path[len(INTERNAL) :]
    parts = PurePosixPath(name).parts
    if not name or name.startswith("/") or ".." in parts or "\\" in name:
        raise ExchangeFileRefused(f"{where}: “{path}” is not a file of the archive's sources.")
    try:
        return archive.read(SOURCES_DIR + name).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ExchangeFileRefused(f"{where}: its text file is not UTF-8.") from None


def _read_source(element, archive: _Archive) -> Source:
    ns = PROJECT_NS
    name = (element.get("name") or "").strip()
    where = f"Source “{name}”" if name else "A source"
    guid = _guid(element.get("guid"), where)
    text = _source_text(element, archive, where)
    selections = tuple(
        _read_selection(selected, name or guid, len(text))
        for selected in element.iterfind(f"{{{ns}}}PlainTextSelection")
    )
    return Source(
        guid=guid, name=name or guid, text=text, selections=selections,
        description=_child_text(element, ns, "Description").strip(),
        created=_datetime(element.get("creationDateTime"), where),
    )  # fmt: skip


def _position(value: str | None, where: str, attribute: str) -> int:
    try:
        return int(value or "")
    except ValueError:
        raise ExchangeFileRefused(
            f"{where}: {attribute} “{value or ''}” is not a number."
        ) from None


def _read_selection(element, source_name: str, length: int) -> Selection:
    ns = PROJECT_NS
    guid = _guid(element.get("guid"), f"A selection in source “{source_name}”")
    where = f"Selection {guid} in source “{source_name}”"
    start = _position(element.get("startPosition"), where, "startPosition")
    end = _position(element.get("endPosition"), where, "endPosition")
    if not 0 <= start < end <= length:
        raise ExchangeFileRefused(
            f"{where}: characters {start}-{end} are outside the text ({length} characters) or "
            "end before they start."
        )
    codings = tuple(_read_coding(coding, where) for coding in element.iterfind(f"{{{ns}}}Coding"))
    return Selection(
        guid=guid, start=start, end=end, codings=codings,
        description=_child_text(element, ns, "Description").strip(),
        user_guid=_optional_guid(element.get("creatingUser"), where),
        created=_datetime(element.get("creationDateTime"), where),
    )  # fmt: skip


def _read_coding(element, selection_where: str) -> Coding:
    where = f"A coding of {selection_where[0].lower()}{selection_where[1:]}"
    reference = element.find(f"{{{PROJECT_NS}}}CodeRef")
    if reference is None:
        raise ExchangeFileRefused(f"{where} has no <CodeRef>.")
    return Coding(
        guid=_guid(element.get("guid"), where),
        code_guid=_guid(reference.get("targetGUID"), where),
        user_guid=_optional_guid(element.get("creatingUser"), where),
    )


def _refuse_unknown_references(project: Project) -> None:
    code_guids = [code.guid for code, _ in codes_flattened(project.codes)]
    _refuse_duplicate_guids("codes", code_guids)
    _refuse_duplicate_guids("users", [user.guid for user in project.users])
    _refuse_duplicate_guids("sources", [source.guid for source in project.sources])
    codes, users = set(code_guids), {user.guid for user in project.users}
    sources = {source.guid for source in project.sources}
    for source in project.sources:
        for selection in source.selections:
            where = f"Selection {selection.guid} in source “{source.name}”"
            for user_guid in [selection.user_guid, *(c.user_guid for c in selection.codings)]:
                if user_guid is not None and user_guid not in users:
                    raise ExchangeFileRefused(
                        f"{where} names user {user_guid}, who is not in <Users>."
                    )
            for coding in selection.codings:
                if coding.code_guid not in codes:
                    raise ExchangeFileRefused(
                        f"{where} is coded with {coding.code_guid}, which is no code of the "
                        "codebook."
                    )
    for case in project.cases:
        for source_guid in case.source_guids:
            if source_guid not in sources:
                raise ExchangeFileRefused(
                    f"Case “{case.name}” refers to source {source_guid}, which the project lacks."
                )
