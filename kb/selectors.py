"""Reads for pages and commands, with the joins they need: every list and detail page runs a
fixed number of queries whatever the number of rows."""

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from django.contrib.admin.utils import NestedObjects
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ObjectDoesNotExist
from django.core.files.storage import default_storage
from django.db import connection, models, router
from django.db.models import Count, Prefetch, Q, QuerySet, Value
from django.db.models.functions import Concat
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from analysis.models import AnalysisRun
from kb import agreement, statistics
from kb.models import (
    Answer,
    ArchitectureChange,
    Event,
    Finding,
    Highlight,
    Insight,
    InsightFinding,
    InsightHighlight,
    Interview,
    Outcome,
    Question,
    Researcher,
    SubjectModel,
    Survey,
    SurveyInvitation,
    Theme,
)


def dashboard_counts(*, user) -> dict[str, int]:
    """Counts of each kind of record the user may see."""
    counts = {}
    if user.has_perm("kb.view_insight"):
        counts.update(
            insights=Insight.objects.count(),
            findings=Finding.objects.count(),
            changes=ArchitectureChange.objects.count(),
            outcomes=Outcome.objects.count(),
            themes=Theme.objects.count(),
        )
    if user.has_perm("kb.view_interview"):
        counts["interviews"] = Interview.objects.count()
    return counts


def event_list_visible(*, user) -> QuerySet[Event]:
    """Events about kinds of record the user may view; a viewer never sees events about
    researchers, interviews, answers or highlights, even with their redacted labels. The
    dashboard and the API's event list both read the log through this one rule."""
    events = Event.objects.all()
    if user.is_superuser:
        return events
    visible = [
        content_type.pk
        for content_type in ContentType.objects.filter(app_label__in=["kb", "analysis"])
        if user.has_perm(f"{content_type.app_label}.view_{content_type.model}")
    ]
    return events.filter(target_type_id__in=visible)


def event_list_recent(*, user, limit: int = 15) -> QuerySet[Event]:
    """The newest `limit` events the user may see (event_list_visible), with who and what."""
    return event_list_visible(user=user).select_related("actor", "target_type")[:limit]


def run_list_in_progress() -> QuerySet[AnalysisRun]:
    return run_list().filter(status__in=[AnalysisRun.Status.QUEUED, AnalysisRun.Status.RUNNING])


@dataclass
class DeletionPreview:
    """What deleting a record takes with it and what stops it, as (kind, count) pairs."""

    also_deleted: list[tuple[str, int]]
    blocked_by: list[tuple[str, int]]


def _kinds(objects) -> list[tuple[str, int]]:
    counts = Counter(type(obj) for obj in objects)
    return sorted(
        (str(model._meta.verbose_name if n == 1 else model._meta.verbose_name_plural), n)
        for model, n in counts.items()
    )


def deletion_preview(instance: models.Model) -> DeletionPreview:
    """Walk the relations the way delete() would, without deleting anything."""
    collector = NestedObjects(using=router.db_for_write(type(instance)))
    collector.collect([instance])
    cascaded = [
        obj for objects in collector.model_objs.values() for obj in objects if obj != instance
    ]
    return DeletionPreview(also_deleted=_kinds(cascaded), blocked_by=_kinds(collector.protected))


# --- people, surveys, interviews ------------------------------------------------------------


def researcher_list() -> QuerySet[Researcher]:
    return Researcher.objects.annotate(interview_count=Count("interviews")).order_by("pseudonym")


def researcher_get(pk: int) -> Researcher:
    return Researcher.objects.prefetch_related(
        Prefetch("interviews", queryset=Interview.objects.select_related("survey"))
    ).get(pk=pk)


def survey_list() -> QuerySet[Survey]:
    return Survey.objects.annotate(
        question_count=Count("questions", distinct=True),
        interview_count=Count("interviews", distinct=True),
    ).order_by("title")


def survey_get(pk: int) -> Survey:
    return Survey.objects.prefetch_related(
        "questions", "invitations__researcher", "interviews__researcher"
    ).get(pk=pk)


def invitation_get(pk: int) -> SurveyInvitation:
    return SurveyInvitation.objects.select_related("researcher").get(pk=pk)


def survey_with_questions(pk: int) -> Survey | None:
    return Survey.objects.prefetch_related("questions").filter(pk=pk).first()


def question_get(pk: int) -> Question:
    return Question.objects.select_related("survey").get(pk=pk)


def interview_list() -> QuerySet[Interview]:
    return (
        Interview.objects.select_related("researcher", "survey", "interviewer")
        .annotate(highlight_count=Count("highlights"))
        .order_by("-conducted_on", "-id")
    )


def interview_get(pk: int) -> Interview:
    highlights = (
        Highlight.objects.select_related("coder").prefetch_related("themes").order_by("start")
    )
    return (
        Interview.objects.select_related("researcher", "survey", "interviewer")
        .prefetch_related(
            Prefetch("highlights", queryset=highlights),
            Prefetch(
                "answers",
                queryset=Answer.objects.select_related("question").prefetch_related(
                    Prefetch("highlights", queryset=highlights)
                ),
            ),
        )
        .get(pk=pk)
    )


# --- codebook and models ----------------------------------------------------------------------


@dataclass
class ThemeNode:
    theme: Theme
    depth: int
    children: list["ThemeNode"] = field(default_factory=list)


def theme_tree() -> list[ThemeNode]:
    """The codebook in depth-first order, each theme with its depth (one query)."""
    themes = list(Theme.objects.annotate(highlight_count=Count("highlights")))
    children: dict[int | None, list[Theme]] = defaultdict(list)
    for theme in themes:
        children[theme.parent_id].append(theme)
    ordered: list[ThemeNode] = []

    def visit(parent_id, depth):
        for theme in children[parent_id]:
            ordered.append(ThemeNode(theme=theme, depth=depth))
            visit(theme.pk, depth + 1)

    visit(None, 0)
    return ordered


def theme_get(pk: int) -> Theme:
    return Theme.objects.select_related("parent").prefetch_related("children").get(pk=pk)


def highlight_get(pk: int) -> Highlight:
    return Highlight.objects.select_related("interview").get(pk=pk)


def theme_highlights(theme: Theme) -> QuerySet[Highlight]:
    return (
        theme.highlights.select_related("interview__researcher")
        .prefetch_related("themes")
        .order_by("-created_at")
    )


def subject_model_list() -> QuerySet[SubjectModel]:
    return SubjectModel.objects.annotate(finding_count=Count("findings")).order_by("name")


def subject_model_get(pk: int) -> SubjectModel:
    return SubjectModel.objects.prefetch_related(
        "findings", Prefetch("runs", queryset=AnalysisRun.objects.order_by("-created_at"))
    ).get(pk=pk)


def finding_list() -> QuerySet[Finding]:
    return Finding.objects.select_related("subject_model")


def finding_get(pk: int) -> Finding:
    return (
        Finding.objects.select_related("subject_model")
        .prefetch_related(
            "evidence_runs",
            Prefetch("runs", queryset=AnalysisRun.objects.order_by("-created_at")),
            Prefetch("insight_links", queryset=InsightFinding.objects.select_related("insight")),
        )
        .get(pk=pk)
    )


# --- insights, changes, outcomes, runs --------------------------------------------------------


def insight_list() -> QuerySet[Insight]:
    return Insight.objects.annotate(
        finding_count=Count("finding_links", distinct=True),
        quote_count=Count("highlight_links", distinct=True),
        change_count=Count("changes", distinct=True),
    ).order_by("-created_at", "-id")


def _outcomes_with_runs() -> QuerySet[Outcome]:
    return Outcome.objects.select_related("analysis_run")


def insight_get(pk: int) -> Insight:
    """An insight with its whole evidence chain: quotes, findings, changes, outcomes, runs."""
    return Insight.objects.prefetch_related(
        Prefetch(
            "finding_links",
            queryset=InsightFinding.objects.select_related("finding__subject_model"),
        ),
        Prefetch(
            "highlight_links",
            queryset=InsightHighlight.objects.select_related(
                "highlight__interview__researcher"
            ).prefetch_related("highlight__themes"),
        ),
        Prefetch(
            "changes",
            queryset=ArchitectureChange.objects.select_related("target_model").prefetch_related(
                Prefetch("outcomes", queryset=_outcomes_with_runs()),
                Prefetch("runs", queryset=AnalysisRun.objects.order_by("-created_at")),
            ),
        ),
    ).get(pk=pk)


def insight_finding_link_get(pk: int, *, insight_id: int) -> InsightFinding:
    return InsightFinding.objects.select_related("insight", "finding").get(
        pk=pk, insight_id=insight_id
    )


def insight_quote_link_get(pk: int, *, insight_id: int) -> InsightHighlight:
    return InsightHighlight.objects.select_related("insight").get(pk=pk, insight_id=insight_id)


def change_list() -> QuerySet[ArchitectureChange]:
    return (
        ArchitectureChange.objects.select_related("insight", "target_model")
        .annotate(outcome_count=Count("outcomes"))
        .order_by("-created_at", "-id")
    )


def change_get(pk: int) -> ArchitectureChange:
    return (
        ArchitectureChange.objects.select_related("insight", "target_model")
        .prefetch_related(
            Prefetch("outcomes", queryset=_outcomes_with_runs()),
            Prefetch("runs", queryset=AnalysisRun.objects.order_by("-created_at")),
        )
        .get(pk=pk)
    )


def run_list() -> QuerySet[AnalysisRun]:
    return AnalysisRun.objects.select_related(
        "subject_model", "finding__subject_model", "change__target_model", "requested_by"
    )


def run_get(pk: int) -> AnalysisRun:
    return (
        run_list()
        .select_related("outcome", "change__insight")
        .prefetch_related("evidence_for")
        .get(pk=pk)
    )


# --- stored files: found from the record's own fields, never from a path in the request ---

# Only these are shown in the browser; anything else is sent as a download, so a stored file
# can never be rendered as a page of this site (HTML, SVG with scripts, ...).
INLINE_CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


class StoredFileMissing(ObjectDoesNotExist):
    """The record names no such file, or storage no longer holds it."""


@dataclass(frozen=True)
class StoredFile:
    """A file in default storage and how to send it."""

    path: str
    content_type: str
    as_attachment: bool

    @property
    def filename(self) -> str:
        return PurePosixPath(self.path).name


def _stored_file(path: object, *, inline: bool) -> StoredFile:
    if not isinstance(path, str) or not path or not default_storage.exists(path):
        raise StoredFileMissing
    content_type = INLINE_CONTENT_TYPES.get(PurePosixPath(path).suffix.lower()) if inline else None
    return StoredFile(
        path=path,
        content_type=content_type or "application/octet-stream",
        as_attachment=content_type is None,
    )


def run_figure_file(pk: int, *, name: str) -> StoredFile:
    """The figure that run `pk`'s result lists under `name` (e.g. "selectivity"). Raises
    ObjectDoesNotExist for an unknown run or name, or a file missing from storage."""
    result = AnalysisRun.objects.values_list("result", flat=True).get(pk=pk)
    figures = result.get("figures") if isinstance(result, dict) else None
    return _stored_file(figures.get(name) if isinstance(figures, dict) else None, inline=True)


def subject_model_weights_file(pk: int) -> StoredFile:
    """The weights file of model `pk`, always sent as a download. Raises ObjectDoesNotExist
    for an unknown model, a model without weights, or a file missing from storage."""
    path = SubjectModel.objects.values_list("weights", flat=True).get(pk=pk)
    return _stored_file(path, inline=False)


def outcome_get(pk: int) -> Outcome:
    return Outcome.objects.select_related("change").get(pk=pk)


def outcome_list() -> QuerySet[Outcome]:
    return Outcome.objects.select_related(
        "change__target_model", "change__insight", "analysis_run"
    ).order_by("change__insight__title", "recorded_at")


# --- theme statistics (computed in kb.statistics, shared with the API) ----------------------


def theme_prevalence() -> dict:
    """kb.statistics.theme_prevalence in the codebook's tree order, for the pages: rows of
    {"theme", "depth", "overall": proportion, "by_role": [{"label", **proportion}]}, where a
    proportion is {"count", "n", "share", "ci_low", "ci_high"} (95% Wilson interval)."""
    stats = statistics.theme_prevalence()
    by_id = {row["theme"]: row for row in stats["themes"]}
    labels = dict(Researcher.Role.choices)
    roles = [(role, labels.get(role, role)) for role in stats["roles"]]
    rows = [
        {
            "theme": node.theme,
            "depth": node.depth,
            "overall": by_id[node.theme.pk]["researchers"],
            "by_role": [
                {"label": label, **by_id[node.theme.pk]["by_role"][role]} for role, label in roles
            ],
        }
        for node in theme_tree()
    ]
    return {"rows": rows, "roles": roles, "researchers": stats["researchers"]}


def interview_agreement(interview_ids: list[int]) -> dict:
    """Agreement between coders on these interviews' transcripts (kb.agreement), named.

    Out: {"interviews": [ids], "characters": units per theme, "coders": [{"id", "username"}],
    "themes": [{"theme", "name", "alpha", "kappa", "coders": [{"coder", "username",
    "coded_characters"}]}] in name order, "overall": {"alpha", "kappa", "coders"}}.
    Only transcript highlights with a recorded coder count: answer highlights lie outside
    the transcript, and older highlights have no coder. A coder counts only on the interviews
    where they coded some theme (elsewhere missing, not "coded nothing"). Two queries whatever
    the size.
    """
    lengths = dict(
        Interview.objects.filter(pk__in=interview_ids)
        .annotate(characters=models.functions.Length("transcript"))
        .values_list("pk", "characters")
    )
    rows = Highlight.themes.through.objects.filter(
        highlight__interview_id__in=lengths,
        highlight__source=Highlight.Source.TRANSCRIPT,
        highlight__coder__isnull=False,
    ).values_list(
        "highlight__coder_id", "theme_id", "highlight__interview_id", "highlight__start",
        "highlight__end", "theme__name", "highlight__coder__username",
    )  # fmt: skip
    rows = list(rows)
    names = {theme: name for _, theme, *_, name, _ in rows}
    usernames = {coder: username for coder, *_, username in rows}
    result = agreement.agreement(lengths, [row[:5] for row in rows])

    def named(summary: dict) -> dict:
        coders = [
            {"coder": coder, "username": usernames[coder], "coded_characters": count}
            for coder, count in summary["coded"].items()
        ]
        return {"alpha": summary["alpha"], "kappa": summary["kappa"], "coders": coders}

    themes = [
        {"theme": theme, "name": names[theme], **named(summary)}
        for theme, summary in sorted(result["themes"].items(), key=lambda t: (names[t[0]], t[0]))
    ]
    return {
        "interviews": sorted(lengths),
        "characters": result["characters"],
        "coders": [{"id": coder, "username": usernames[coder]} for coder in result["coders"]],
        "themes": themes,
        "overall": named(result["overall"]),
    }


def theme_researcher_matrix() -> tuple[list[Researcher], list[tuple[Theme, list[int]]]]:
    """Highlight counts per theme (rows) and researcher (columns), for the CSV export."""
    researchers = list(Researcher.objects.filter(interviews__isnull=False).distinct())
    counts = (
        Highlight.themes.through.objects.values("theme_id", "highlight__interview__researcher_id")
        .annotate(n=Count("highlight_id"))
        .values_list("theme_id", "highlight__interview__researcher_id", "n")
    )
    table = {(theme_id, researcher_id): n for theme_id, researcher_id, n in counts}
    rows = [
        (node.theme, [table.get((node.theme.pk, r.pk), 0) for r in researchers])
        for node in theme_tree()
    ]
    return researchers, rows


# --- the scoreboard ---------------------------------------------------------------------------


def outcome_beats_baseline(outcome: Outcome) -> bool:
    return outcome.verdict == Outcome.Verdict.IMPROVED


def outcome_beats_control(outcome: Outcome) -> bool | None:
    """Did the guided change beat its budget-matched random control? None without a control;
    otherwise the whole 95% interval of the difference must lie on the expected side (the
    rule kb.statistics.scoreboard counts by)."""
    if outcome.effect_vs_control is None:
        return None
    if outcome.control_ci_low is None or outcome.control_ci_high is None:
        return False
    sign = 1 if outcome.change.expected_direction == ArchitectureChange.Direction.INCREASE else -1
    return min(sign * outcome.control_ci_low, sign * outcome.control_ci_high) > 0


def scoreboard() -> dict:
    """kb.statistics.scoreboard with display labels, plus every outcome with its two flags."""
    board = statistics.scoreboard()
    operations = dict(ArchitectureChange.Operation.choices)
    outcomes = list(outcome_list())
    for outcome in outcomes:
        outcome.beats_baseline = outcome_beats_baseline(outcome)
        outcome.beats_control = outcome_beats_control(outcome)
    return {
        "outcomes": outcomes,
        "overall": board["overall"],
        "by_operation": [(operations[b["operation"]], b) for b in board["by_operation"]],
        "by_model": [(b["name"], b) for b in board["by_model"]],
    }


# --- search -----------------------------------------------------------------------------------

# kind, model, searched text fields, permission needed, joins for the result's label
SEARCH_KINDS = [
    ("Interviews", Interview, ["transcript", "summary"], "kb.view_interview", ["researcher"]),
    ("Highlights", Highlight, ["quote", "note"], "kb.view_highlight", ["interview__researcher"]),
    (
        "Findings",
        Finding,
        ["title", "concept", "description"],
        "kb.view_finding",
        ["subject_model"],
    ),  # noqa: E501
    ("Insights", Insight, ["title", "statement"], "kb.view_insight", []),
    (
        "Changes",
        ArchitectureChange,
        ["rationale", "expected_metric"],
        "kb.view_architecturechange",
        ["target_model"],
    ),
]
SEARCH_LIMIT = 20
SNIPPET_RADIUS = 80
# Control characters that cannot occur in text typed into a form mark a headline's matches.
MARK_START, MARK_STOP = "\x02", "\x03"


def search(*, user, query: str) -> list[tuple[str, list]]:
    """Records of every kind the user may see whose text matches, grouped by kind, each with
    `snippet`: the matching text with the matches in <mark>. PostgreSQL full-text search
    (web search syntax, ranked); a case-insensitive substring match elsewhere."""
    query = query.strip()
    if not query:
        return []
    groups = []
    for label, model, fields, permission, joins in SEARCH_KINDS:
        if not user.has_perm(permission):
            continue
        if connection.vendor == "postgresql":
            results = _search_postgres(model, fields, joins, query)
        else:
            results = _search_fallback(model, fields, joins, query)
        groups.append((label, results))
    return groups


def _search_postgres(model, fields, joins, query) -> list:
    from django.contrib.postgres.search import (
        SearchHeadline,
        SearchQuery,
        SearchRank,
        SearchVector,
    )

    search_query = SearchQuery(query, search_type="websearch", config="english")
    text = Concat(*_interleave(fields), output_field=model._meta.get_field(fields[0]))
    rows = (
        model.objects.select_related(*joins)
        .annotate(
            search_vector=SearchVector(*fields, config="english"),
            headline=SearchHeadline(
                text,
                search_query,
                config="english",
                start_sel=MARK_START,
                stop_sel=MARK_STOP,
                max_words=30,
                min_words=10,
            ),
        )
        .filter(search_vector=search_query)
        .annotate(rank=SearchRank("search_vector", search_query))
        .order_by("-rank", "-pk")[:SEARCH_LIMIT]
    )
    results = list(rows)
    for row in results:
        row.snippet = _marked(row.headline)
    return results


def _interleave(fields: list[str]) -> list:
    parts = []
    for name in fields:
        parts += [name, Value(" … ")]
    return parts[:-1]


def _marked(headline: str) -> SafeString:
    html = escape(headline).replace(MARK_START, "<mark>").replace(MARK_STOP, "</mark>")
    return mark_safe(html)  # noqa: S308 - everything but our own markers is escaped


def _search_fallback(model, fields, joins, query) -> list:
    condition = Q()
    for name in fields:
        condition |= Q(**{f"{name}__icontains": query})
    results = list(model.objects.select_related(*joins).filter(condition)[:SEARCH_LIMIT])
    for row in results:
        text = " … ".join(getattr(row, name) for name in fields if getattr(row, name))
        row.snippet = _snippet(text, query)
    return results


def _snippet(text: str, query: str) -> SafeString:
    position = text.lower().find(query.lower())
    if position < 0:
        return escape(text[: 2 * SNIPPET_RADIUS])
    start = max(0, position - SNIPPET_RADIUS)
    end = position + len(query)
    before, match = text[start:position], text[position:end]
    after = text[end : end + SNIPPET_RADIUS]
    prefix = "…" if start else ""
    return mark_safe(  # noqa: S308 - all three parts are escaped
        f"{prefix}{escape(before)}<mark>{escape(match)}</mark>{escape(after)}…"
    )
