"""The knowledge base in and out of exchange formats (kb.exchange): REFI-QDA codebooks and
projects, and the codebook as CSV.

Exports read records into kb.exchange's plain values and let it write the file. A project
holds only interviews whose researcher's consent keeps their words (SCOPES_KEEPING_WORDS, the
rule anonymising follows), interviewees only by pseudonym (as cases), and coders only by
username: no name, affiliation or e-mail of anyone.

Imports read the whole file first (kb.exchange refuses what it cannot read), check what it
refers to here, then write through the codebook and interview services in one transaction:
a refusal at any point leaves nothing written.
"""

import datetime
import re
from collections import defaultdict
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models.functions import Length
from django.utils import timezone

from kb import selectors, transcripts
from kb.exchange import ExchangeFileRefused, refi_qda
from kb.exchange.codebook_csv import PATH_SEPARATOR, codebook_csv_write
from kb.exchange.refi_qda import Code, Project, codes_flattened, stable_guid
from kb.models import Highlight, Interview, Researcher, Theme
from kb.services.codebook import highlight_create, theme_create
from kb.services.interviews import interview_create
from kb.services.people import SCOPES_KEEPING_WORDS, researcher_words_kept

PROJECT_NAME = "Insight KB"
# Who may export and import a project, on pages and in the API: the project holds transcripts
# and interviewees (researcher role); the codebook alone is what any role reading themes sees.
PROJECT_PERMISSIONS = (
    "kb.view_theme",
    "kb.view_interview",
    "kb.view_highlight",
    "kb.view_researcher",
)
IMPORT_PROJECT_PERMISSIONS = (
    "kb.add_theme", "kb.add_interview", "kb.add_highlight", "kb.view_researcher",
)  # fmt: skip
# What stands in, character for character, for an interviewee's name, e-mail or affiliation
# in an exported text: positions in the text stay those of the transcript.
MASK = "█"
# Errors listed at once in a refusal; the rest are counted.
ERRORS_SHOWN = 10


# --- export ----------------------------------------------------------------------------------


def codebook_codes() -> tuple[Code, ...]:
    """Every theme as a code, nested as in the codebook, siblings by name."""
    rows = Theme.objects.order_by("name", "pk").values_list(
        "pk", "name", "description", "colour", "parent_id"
    )
    children: dict[int | None, list] = defaultdict(list)
    for row in rows:
        children[row[4]].append(row)

    def build(parent_id: int | None) -> tuple[Code, ...]:
        return tuple(
            Code(
                guid=stable_guid("theme", pk),
                name=name,
                description=description,
                colour=colour.lower(),
                children=build(pk),
            )  # fmt: skip
            for pk, name, description, colour, _ in children[parent_id]
        )

    # Depth is bounded by MAX_THEME_DEPTH, so this recursion is shallow.
    return build(None)


def codebook_export_qdc() -> bytes:
    return refi_qda.qdc_write(codebook_codes())


def codebook_export_csv() -> str:
    return codebook_csv_write(codebook_codes())


def project_export_qdpx(*, user=None) -> bytes:
    return refi_qda.qdpx_write(project_for_export(user=user))


def project_for_export(*, user=None) -> Project:
    """The coding project: the codebook, the transcripts of interviews whose consent keeps
    their words (the interviewee's name, e-mail and affiliation masked in them), their
    transcript highlights as coded selections, the coders, and one case per interviewee,
    named by pseudonym. A `user` who codes blind in an open round gets only the highlights
    they may see (selectors.highlights_visible); without a user (the command line), all."""
    interviews = list(
        Interview.objects.filter(researcher__consent_scope__in=SCOPES_KEEPING_WORDS)
        .select_related("researcher")
        .order_by("pk")
    )
    highlights = defaultdict(list)
    for highlight in (
        selectors.highlights_visible(user=user)
        .filter(interview__in=interviews, source=Highlight.Source.TRANSCRIPT)
        .select_related("coder")
        .prefetch_related("themes")
        .order_by("start", "end", "pk")
    ):
        highlights[highlight.interview_id].append(highlight)
    coders = {h.coder for found in highlights.values() for h in found if h.coder is not None}
    return Project(
        name=PROJECT_NAME,
        users=tuple(
            refi_qda.User(guid=stable_guid("user", user.pk), name=user.get_username())
            for user in sorted(coders, key=lambda user: (user.get_username(), user.pk))
        ),
        codes=codebook_codes(),
        cases=_cases(interviews),
        sources=tuple(_source(interview, highlights[interview.pk]) for interview in interviews),
    )


def _cases(interviews: list[Interview]) -> tuple[refi_qda.Case, ...]:
    sources = defaultdict(list)
    for interview in interviews:
        sources[interview.researcher].append(stable_guid("interview", interview.pk))
    return tuple(
        refi_qda.Case(
            guid=stable_guid("researcher", researcher.pk),
            name=researcher.pseudonym,
            source_guids=tuple(guids),
        )
        for researcher, guids in sorted(sources.items(), key=lambda item: item[0].pk)
    )


def _masked(text: str, researcher: Researcher) -> str:
    """`text` with the interviewee's e-mail, affiliation and name (of two words or more: a
    one-word name can be an ordinary word, as anonymising holds) masked as whole words."""
    secrets = [researcher.contact_email, researcher.affiliation]
    if len(researcher.full_name.split()) >= 2:
        secrets.append(researcher.full_name)
    for secret in filter(None, (secret.strip() for secret in secrets)):
        pattern = rf"(?<!\w){re.escape(secret)}(?!\w)"
        text = re.sub(pattern, lambda found: MASK * len(found.group()), text, flags=re.IGNORECASE)
    return text


def _source(interview: Interview, highlights: list[Highlight]) -> refi_qda.Source:
    text = interview.transcript
    return refi_qda.Source(
        guid=stable_guid("interview", interview.pk),
        name=str(interview),
        text=_masked(text, interview.researcher),
        description=_masked(interview.summary, interview.researcher),
        # The source's date is the day of the interview, which an import reads back.
        created=datetime.datetime.combine(interview.conducted_on, datetime.time(), datetime.UTC),
        selections=tuple(
            _selection(highlight, interview.researcher)
            for highlight in highlights
            if text[highlight.start : highlight.end] == highlight.quote
        ),
    )


def _selection(highlight: Highlight, researcher: Researcher) -> refi_qda.Selection:
    coder = stable_guid("user", highlight.coder_id) if highlight.coder_id else None
    themes = sorted(highlight.themes.all(), key=lambda theme: theme.pk)
    return refi_qda.Selection(
        guid=stable_guid("highlight", highlight.pk),
        start=highlight.start,
        end=highlight.end,
        description=_masked(highlight.note, researcher),
        user_guid=coder,
        created=highlight.created_at,
        codings=tuple(
            refi_qda.Coding(
                guid=stable_guid("coding", f"{highlight.pk}:{theme.pk}"),
                code_guid=stable_guid("theme", theme.pk),
                user_guid=coder,
            )
            for theme in themes
        ),
    )


# --- import: the codebook --------------------------------------------------------------------


@dataclass(frozen=True)
class CodebookImportReport:
    """Themes the import added, and codes of the file that matched a theme already here (by
    name, case-insensitive), each as its path in the codebook ("Parent / Child")."""

    added: tuple[str, ...]
    kept: tuple[str, ...]


def codebook_import_qdc(*, actor, data: bytes) -> CodebookImportReport:
    """Merge a .qdc codebook into the themes; refused (ExchangeFileRefused) with nothing
    written when the file cannot be read or a code cannot become a theme."""
    codes = refi_qda.qdc_read(data)
    with transaction.atomic():
        report, _ = _codebook_merge(actor=actor, codes=codes)
    return report


class _Codebook:
    """The themes here, for matching codes by name while an import adds to them."""

    def __init__(self) -> None:
        themes = list(Theme.objects.all())
        self.by_id = {theme.pk: theme for theme in themes}
        self.among_siblings = {(t.parent_id, t.name.casefold()): t for t in themes}
        # Only themes that were here before: a code is never matched, by name alone, to a
        # theme the same import added under another parent.
        self.by_name: dict[str, list[Theme]] = defaultdict(list)
        for theme in themes:
            self.by_name[theme.name.casefold()].append(theme)
        # Tools without nesting (Taguette) name a code by its path, as our CSV export does.
        self.by_path = {self.path(t, PATH_SEPARATOR).casefold(): t for t in themes}

    def match(self, name: str, parent: Theme | None) -> Theme | None:
        """The theme named `name` under `parent`, else the one theme of that name anywhere,
        else the theme whose path ("Parent/Child") `name` is."""
        key = name.casefold()
        sibling = self.among_siblings.get((parent.pk if parent else None, key))
        if sibling is not None:
            return sibling
        named = self.by_name.get(key, [])
        if len(named) == 1:
            return named[0]
        return self.by_path.get(key) if parent is None else None

    def add(self, theme: Theme) -> None:
        self.by_id[theme.pk] = theme
        self.among_siblings[(theme.parent_id, theme.name.casefold())] = theme

    def path(self, theme: Theme, separator: str = " / ") -> str:
        names, current = [], theme
        while current is not None:
            names.append(current.name)
            current = self.by_id.get(current.parent_id) if current.parent_id else None
        return separator.join(reversed(names))


def _codebook_merge(*, actor, codes: tuple[Code, ...]) -> tuple[CodebookImportReport, dict]:
    """Match each code to a theme (by name, case-insensitive: among the siblings under its
    parent's theme first, then anywhere when one theme has that name, then a top-level code
    named by a theme's path) or create it there.
    Out: the report and each code GUID's theme. Call inside a transaction."""
    codebook = _Codebook()
    themes: dict[str, Theme] = {}
    added, kept, reported = [], [], set()
    for code, parent in codes_flattened(codes):
        parent_theme = themes[parent.guid] if parent is not None else None
        theme = codebook.match(code.name, parent_theme)
        if theme is None:
            theme = _theme_from_code(actor=actor, code=code, parent=parent_theme)
            codebook.add(theme)
            added.append(codebook.path(theme))
        elif theme.pk not in reported:
            kept.append(codebook.path(theme))
        reported.add(theme.pk)
        themes[code.guid] = theme
    return CodebookImportReport(added=tuple(added), kept=tuple(kept)), themes


def _theme_from_code(*, actor, code: Code, parent: Theme | None) -> Theme:
    fields = {"name": code.name, "parent": parent, "description": code.description}
    if code.colour:
        fields["colour"] = code.colour
    try:
        return theme_create(actor=actor, **fields)
    except ValidationError as error:
        raise ExchangeFileRefused([f"Code “{code.name}”: {m}" for m in error.messages]) from None


# --- import: a project -----------------------------------------------------------------------


@dataclass(frozen=True)
class ProjectImportReport:
    """What a project import wrote: its codebook's merge, the interviews it added (their
    labels), sources skipped because the same transcript of the same interviewee is here
    already, as stored or as our export masks it (their names), highlights added, and
    selections skipped for having no code."""

    codebook: CodebookImportReport
    interviews_added: tuple[str, ...]
    sources_already_present: tuple[str, ...]
    highlights_added: int
    selections_uncoded: int


def project_import_qdpx(
    *, actor, data: bytes, researcher: Researcher | None = None
) -> ProjectImportReport:
    """Import a .qdpx project: its codebook (merged as codebook_import_qdc does), each text
    source as an interview, each coded selection as highlights (one per coder).

    A source's interviewee is the researcher whose pseudonym is the name of a case holding
    the source, else `researcher`. A source whose interviewee has an interview with its text
    (as stored, or masked as our export writes it) is skipped, so importing our own export
    again adds nothing. Refused (ExchangeFileRefused), with nothing written, when the file
    cannot be read or holds more than MAX_SOURCES sources or MAX_SELECTIONS selections, a
    source's text is one an uploaded transcript could not have (kb.transcripts: empty, binary,
    too long), a source has no interviewee here or one whose consent does not keep their words
    (or who was anonymised), or a coder's username has no account here.
    """
    project = refi_qda.qdpx_read(data)
    _refuse(_unfit_sources(project))
    interviewees = _interviewees(project, researcher)
    coders = _coders(project)
    with transaction.atomic():
        codebook, themes = _codebook_merge(actor=actor, codes=project.codes)
        added, present, counts = [], [], defaultdict(int)
        for source in project.sources:
            interviewee = interviewees[source.guid]
            if _already_here(source, interviewee):
                present.append(source.name)
                continue
            interview = _interview_from_source(actor=actor, source=source, researcher=interviewee)
            added.append(str(interview))
            for selection in source.selections:
                made = _highlights_from_selection(
                    actor=actor, interview=interview, selection=selection, themes=themes,
                    coders=coders,
                )  # fmt: skip
                if made:
                    counts["highlights"] += made
                else:
                    counts["uncoded"] += 1
    return ProjectImportReport(
        codebook=codebook,
        interviews_added=tuple(added),
        sources_already_present=tuple(present),
        highlights_added=counts["highlights"],
        selections_uncoded=counts["uncoded"],
    )


def _unfit_sources(project: Project) -> list[str]:
    """Sources whose text an uploaded transcript could not have (kb.transcripts): empty,
    holding binary data, or too long."""
    errors = []
    for source in project.sources:
        try:
            transcripts.transcript_text_check(source.text)
        except transcripts.TranscriptFileRefused as error:
            errors.extend(f"Source “{source.name}”: {m}" for m in error.messages)
    return errors


def _already_here(source: refi_qda.Source, researcher: Researcher) -> bool:
    """Whether `researcher` has an interview whose transcript is the source's text, as stored
    or as our export masks it (so our own export imports again without duplicates). Masking
    keeps the length, so only transcripts of that length are compared."""
    stored = (
        Interview.objects.filter(researcher=researcher)
        .annotate(length=Length("transcript"))
        .filter(length=len(source.text))
        .values_list("transcript", flat=True)
    )
    return any(source.text in (text, _masked(text, researcher)) for text in stored)


def _refuse(errors: list[str]) -> None:
    if errors:
        more = len(errors) - ERRORS_SHOWN
        shown = errors[:ERRORS_SHOWN] + ([f"… and {more} more."] if more > 0 else [])
        raise ExchangeFileRefused(shown)


def _interviewees(project: Project, fallback: Researcher | None) -> dict[str, Researcher]:
    """Each source's interviewee: by its case's name as a pseudonym, else `fallback`."""
    case_names = {}
    for case in project.cases:
        for source_guid in case.source_guids:
            case_names.setdefault(source_guid, case.name)
    known = Researcher.objects.in_bulk(set(case_names.values()), field_name="pseudonym")
    found, errors = {}, []
    for source in project.sources:
        researcher = known.get(case_names.get(source.guid, "")) or fallback
        if researcher is None:
            named = case_names.get(source.guid)
            errors.append(
                f"Source “{source.name}”: "
                + (f"no researcher here has the pseudonym “{named}”" if named else "no case")
                + "; choose the researcher its interviews belong to."
            )
        elif researcher.anonymised_at is not None or not researcher_words_kept(researcher):
            errors.append(
                f"Source “{source.name}”: {researcher.pseudonym} was anonymised or has not "
                "consented to keeping their words, so no interview of theirs is imported."
            )
        found[source.guid] = researcher
    _refuse(errors)
    return found


def _coders(project: Project) -> dict[str, object]:
    """User GUID -> the account with that username, for every user who coded something."""
    used = {
        guid
        for source in project.sources
        for selection in source.selections
        for guid in [selection.user_guid, *(c.user_guid for c in selection.codings)]
        if guid is not None
    }
    names = {user.guid: user.name for user in project.users if user.guid in used}
    accounts = get_user_model().objects.filter(username__in=set(names.values()))
    by_name = {account.get_username(): account for account in accounts}
    missing = sorted({name for name in names.values() if name not in by_name})
    _refuse(
        [
            f"Coder “{name}” has no account here; add a user with that username first, so "
            "their coding stays theirs."
            for name in missing
        ]
    )
    return {guid: by_name[name] for guid, name in names.items()}


def _interview_from_source(*, actor, source: refi_qda.Source, researcher: Researcher):
    conducted_on = source.created.date() if source.created else timezone.localdate()
    try:
        return interview_create(
            actor=actor, researcher=researcher, conducted_on=conducted_on,
            transcript=source.text, summary=source.description,
        )  # fmt: skip
    except ValidationError as error:
        raise ExchangeFileRefused(
            [f"Source “{source.name}”: {m}" for m in error.messages]
        ) from None


def _highlights_from_selection(
    *, actor, interview: Interview, selection: refi_qda.Selection, themes: dict, coders: dict
) -> int:
    """One highlight per coder of the selection, tagged with that coder's codes. Out: how
    many were made (0: the selection has no code)."""
    by_coder: dict[str | None, list[Theme]] = defaultdict(list)
    for coding in selection.codings:
        theme = themes[coding.code_guid]
        coded = by_coder[coding.user_guid or selection.user_guid]
        if theme not in coded:
            coded.append(theme)
    for coder_guid, coded in by_coder.items():
        try:
            highlight_create(
                actor=actor, interview=interview, start=selection.start, end=selection.end,
                quote=interview.transcript[selection.start : selection.end], themes=coded,
                note=selection.description, coder=coders.get(coder_guid),
            )  # fmt: skip
        except ValidationError as error:
            raise ExchangeFileRefused(
                [f"Selection {selection.guid}: {m}" for m in error.messages]
            ) from None
    return len(by_coder)
