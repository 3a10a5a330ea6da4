"""Reads for pages and commands, with the joins they need: every list and detail page runs a
fixed number of queries whatever the number of rows."""

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from django.contrib.admin.utils import NestedObjects
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ObjectDoesNotExist
from django.core.files.storage import default_storage
from django.db import models, router
from django.db.models import Count, Exists, Prefetch, Q, QuerySet

from analysis.engine.model_specs import spec_family
from analysis.engine.specs import SpecError, validate_spec
from analysis.models import AnalysisRun, Study
from kb import agreement, statistics
from kb.models import (
    Answer,
    ArchitectureChange,
    CodingRound,
    CodingRoundCoder,
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


def event_list_visible(*, user, queryset: QuerySet[Event] | None = None) -> QuerySet[Event]:
    """Events (of `queryset`, by default all) about kinds of record the user may view; a
    viewer never sees events about researchers, interviews, answers or highlights, even with
    their redacted labels. The dashboard, the API's event list and the admin's read the log
    through this one rule."""
    events = queryset if queryset is not None else Event.objects.all()
    events = events.filter(_highlight_events_visibility(user))
    if user.is_superuser:
        return events
    visible = [
        content_type.pk
        for content_type in ContentType.objects.filter(app_label__in=["kb", "analysis"])
        if user.has_perm(f"{content_type.app_label}.view_{content_type.model}")
    ]
    return events.filter(target_type_id__in=visible)


def _highlight_events_visibility(user) -> Q:
    """Blind coding in the log: while `user` codes blind somewhere, events about highlights
    show only when the highlight is one they may see (highlight_visibility) or the event is
    their own doing. A deleted highlight's event records no interview, so while blind the
    user sees no other user's deletions of highlights at all (on any interview)."""
    if user is None or not user.is_authenticated:
        return Q()
    return (
        ~Q(target_type__app_label="kb", target_type__model="highlight")
        | ~Q(Exists(_blind_interviews(user)))
        | Q(actor=user)
        | Q(target_id__in=highlights_visible(user=user).values("pk"))
    )


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


def interview_list(*, user=None) -> QuerySet[Interview]:
    """Interviews, newest first, each with `highlight_count`: its highlights_counted."""
    return (
        Interview.objects.select_related("researcher", "survey", "interviewer")
        .annotate(highlight_count=_counted(user, "highlights"))
        .order_by("-conducted_on", "-id")
    )


def _counted(user, relation: str) -> Count:
    """Count over `relation` (highlights) of just the highlights_counted for `user`."""
    counted = highlights_counted(user=user).values("pk")
    return Count(relation, filter=Q(**{f"{relation}__in": counted}), distinct=True)


def interview_get(pk: int, *, user=None) -> Interview:
    """An interview with its highlights; with `user`, only those the user may see while
    coding blind (highlights_visible)."""
    highlights = (
        highlights_visible(user=user)
        .select_related("coder")
        .prefetch_related("themes")
        .order_by("start")
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


def theme_tree(*, user=None) -> list[ThemeNode]:
    """The codebook in depth-first order, each theme with its depth and `highlight_count`
    (its highlights_counted for `user`). One query."""
    # An aggregate drops Meta.ordering, so the order is asked for again.
    themes = list(
        Theme.objects.annotate(highlight_count=_counted(user, "highlights")).order_by("name", "pk")
    )
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


def highlight_get(pk: int, *, user=None) -> Highlight:
    """A highlight; with `user`, only one they may see while coding blind."""
    return highlights_visible(user=user).select_related("interview").get(pk=pk)


def theme_highlights(theme: Theme, *, user=None) -> QuerySet[Highlight]:
    return (
        highlights_visible(user=user, queryset=theme.highlights.all())
        .select_related("interview__researcher")
        .prefetch_related("themes")
        .order_by("-created_at")
    )


def subject_model_list() -> QuerySet[SubjectModel]:
    return SubjectModel.objects.annotate(finding_count=Count("findings")).order_by("name")


def subject_model_get(pk: int) -> SubjectModel:
    return SubjectModel.objects.prefetch_related(
        "findings", Prefetch("runs", queryset=AnalysisRun.objects.order_by("-created_at"))
    ).get(pk=pk)


def subject_model_layer_names() -> dict[int, list[str]]:
    """Each CNN model's layer names in order, as a change's layer fields name them (and as
    the change's error lists them); models whose spec is a transformer's, missing or invalid
    have none."""
    names = {}
    for pk, spec in SubjectModel.objects.order_by("pk").values_list("pk", "architecture_spec"):
        if not spec or spec_family(spec) != "cnn":
            continue
        try:
            names[pk] = [layer.name for layer in validate_spec(spec)]
        except SpecError:
            continue
    return names


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


def insight_get(pk: int, *, user=None) -> Insight:
    """An insight with its whole evidence chain: quotes, findings, changes, outcomes, runs.
    With `user`, only the quotes the user may see while coding blind (highlights_visible)."""
    return Insight.objects.prefetch_related(
        Prefetch(
            "finding_links",
            queryset=InsightFinding.objects.select_related("finding__subject_model"),
        ),
        Prefetch(
            "highlight_links",
            queryset=InsightHighlight.objects.filter(
                highlight_visibility(user, prefix="highlight__")
            )
            .select_related("highlight__interview__researcher")
            .prefetch_related("highlight__themes"),
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


def study_list() -> QuerySet[Study]:
    """Studies, newest first, with their model and who requested them."""
    return Study.objects.select_related("subject_model", "requested_by")


def study_get(pk: int) -> Study:
    return study_list().get(pk=pk)


def study_list_finished() -> QuerySet[Study]:
    """Studies that ran every round and hold their final report (the scoreboard's)."""
    return study_list().filter(status=AnalysisRun.Status.SUCCEEDED)


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


def outcomes_flagged(outcomes) -> list[Outcome]:
    """The outcomes, each with `beats_baseline` and `beats_control` set."""
    outcomes = list(outcomes)
    for outcome in outcomes:
        outcome.beats_baseline = outcome_beats_baseline(outcome)
        outcome.beats_control = outcome_beats_control(outcome)
    return outcomes


def outcome_list() -> QuerySet[Outcome]:
    return Outcome.objects.select_related(
        "change__target_model", "change__insight", "analysis_run"
    ).order_by("change__insight__title", "recorded_at")


# --- theme statistics (computed in kb.statistics, shared with the API) ----------------------


def theme_prevalence(*, user=None, coder_id: int | None = None, consensus: bool = False) -> dict:
    """kb.statistics.theme_prevalence (every coder's highlights, one coder's or the
    consensus version's) in the codebook's tree order, for the pages: rows of
    {"theme", "depth", "overall": proportion, "by_role": [{"label", **proportion}]}, where a
    proportion is {"count", "n", "share", "ci_low", "ci_high"} (95% Wilson interval)."""
    stats = statistics.theme_prevalence(user=user, coder_id=coder_id, consensus=consensus)
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
        for node in theme_tree(user=user)
    ]
    return {"rows": rows, "roles": roles, "researchers": stats["researchers"]}


def interview_agreement(interview_ids: list[int], *, user=None) -> dict:
    """Agreement between coders on these interviews' transcripts (kb.agreement), named.

    Out: {"interviews": [ids], "characters": units per theme, "coders": [{"id", "username"}],
    "themes": [{"theme", "name", "alpha", "kappa", "coders": [{"coder", "username",
    "coded_characters"}]}] in name order, "overall": {"alpha", "kappa", "coders"}}.
    Only transcript highlights with a recorded coder count: answer highlights lie outside
    the transcript, and older highlights have no coder. A coder counts only on the interviews
    where they coded some theme (elsewhere missing, not "coded nothing"). Consensus
    highlights are no coder's; with `user`, only the highlights they may see while coding
    blind count. Two queries whatever the size.
    """
    lengths = dict(
        Interview.objects.filter(pk__in=interview_ids)
        .annotate(characters=models.functions.Length("transcript"))
        .values_list("pk", "characters")
    )
    rows = Highlight.themes.through.objects.filter(
        highlight_visibility(user, prefix="highlight__"),
        highlight__interview_id__in=lengths,
        highlight__source=Highlight.Source.TRANSCRIPT,
        highlight__is_consensus=False,
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


def theme_researcher_matrix(*, user=None) -> tuple[list[Researcher], list[tuple[Theme, list[int]]]]:
    """Highlight counts (highlights_counted for `user`) per theme (rows) and researcher
    (columns), for the CSV export."""
    researchers = list(Researcher.objects.filter(interviews__isnull=False).distinct())
    counts = (
        Highlight.themes.through.objects.filter(
            highlight__in=highlights_counted(user=user).values("pk")
        )
        .values("theme_id", "highlight__interview__researcher_id")
        .annotate(n=Count("highlight_id"))
        .values_list("theme_id", "highlight__interview__researcher_id", "n")
    )
    table = {(theme_id, researcher_id): n for theme_id, researcher_id, n in counts}
    rows = [
        (node.theme, [table.get((node.theme.pk, r.pk), 0) for r in researchers])
        for node in theme_tree(user=user)
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
    """kb.statistics.scoreboard with display labels (the page lists the outcomes a page at a
    time, outcomes_flagged)."""
    board = statistics.scoreboard()
    operations = dict(ArchitectureChange.Operation.choices)
    return {
        "overall": board["overall"],
        "by_operation": [(operations[b["operation"]], b) for b in board["by_operation"]],
        "by_model": [(b["name"], b) for b in board["by_model"]],
    }


# --- coding rounds and blind coding (issue 15) ----------------------------------------------


def highlight_visibility(user, *, prefix: str = "") -> Q:
    """The one rule of blind coding, as a filter on highlights (`prefix` reaches them from
    another model, e.g. "highlight__"): while a round is open and `user` is one of its coders
    who has not marked their part done, on that round's interviews they see only their own
    highlights (not the other coders', nor consensus ones). Everyone else sees everything."""
    if user is None or not user.is_authenticated:
        return Q()
    # Through-table ids are never NULL, so NOT IN is safe here.
    blind = _blind_interviews(user).values("interview_id")
    return ~Q(**{f"{prefix}interview_id__in": blind}) | Q(**{f"{prefix}coder": user})


def _blind_interviews(user) -> QuerySet:
    """The (round, interview) links on which `user` codes blind now."""
    return CodingRound.interviews.through.objects.filter(
        codinground__closed_at__isnull=True,
        codinground__coders__coder=user,
        codinground__coders__done_at__isnull=True,
    )


def highlights_visible(*, user, queryset: QuerySet[Highlight] | None = None) -> QuerySet[Highlight]:
    """`queryset` (every highlight by default) less what `user` may not see while coding
    blind (highlight_visibility). Pages, the API and the agreement statistics all read
    highlights through this."""
    queryset = Highlight.objects.all() if queryset is None else queryset
    return queryset.filter(highlight_visibility(user))


def highlights_counted(*, user, consensus: bool = False) -> QuerySet[Highlight]:
    """The highlights that counts count (interview list, codebook tree, theme statistics,
    theme-by-researcher matrix): those `user` may see (highlights_visible), the coders' with
    consensus copies left out, or with `consensus` only the consensus version's."""
    return highlights_visible(user=user).filter(is_consensus=consensus)


def coding_round_list() -> QuerySet[CodingRound]:
    return CodingRound.objects.select_related("created_by").prefetch_related(
        Prefetch("coders", queryset=CodingRoundCoder.objects.select_related("coder")),
        Prefetch("interviews", queryset=Interview.objects.select_related("researcher")),
    )


def coding_round_get(pk: int) -> CodingRound:
    return coding_round_list().get(pk=pk)


def coding_round_blind_for(coding_round: CodingRound, user) -> bool:
    """Whether `user` still codes blind in this round (uses the prefetched coders)."""
    return coding_round.is_open and any(
        part.coder_id == user.pk and part.done_at is None for part in coding_round.coders.all()
    )


def coding_round_report_for(coding_round: CodingRound, *, user) -> dict | None:
    """round_report for `user`, or None while they code blind on any of the round's
    interviews, in this round or in another open one (the report shows every coder's spans,
    which highlight_visibility hides from them there). One query more than round_report."""
    interview_ids = [interview.pk for interview in coding_round.interviews.all()]
    if _blind_interviews(user).filter(interview_id__in=interview_ids).exists():
        return None
    return round_report(coding_round)


def coding_round_done_open(*, user, interview_id: int) -> CodingRound | None:
    """An open round on this interview in which `user` has marked their part done (they have
    seen the other coders' work, so they may not revise their coding there until it closes),
    or None. One query."""
    if user is None or not user.is_authenticated:
        return None
    return (
        CodingRound.objects.filter(
            closed_at__isnull=True,
            interviews=interview_id,
            coders__coder=user,
            coders__done_at__isnull=False,
        )
        .order_by("created_at", "pk")
        .first()
    )


def coding_rounds_blind(*, user, interview: Interview) -> list[CodingRound]:
    """The open rounds in which `user` codes `interview` blind, for the interview page."""
    if not user.is_authenticated:
        return []
    return list(
        CodingRound.objects.filter(
            closed_at__isnull=True,
            interviews=interview,
            coders__coder=user,
            coders__done_at__isnull=True,
        ).order_by("created_at")
    )


def _round_codings(coding_round: CodingRound) -> tuple[dict[int, str], list[tuple]]:
    """The round's transcripts (id -> text) and the transcript coding on them of the round's
    coders and of its own consensus version, as (coder id or None for consensus, theme id,
    interview id, start, end)."""
    transcripts = dict(coding_round.interviews.values_list("pk", "transcript"))
    coders = [part.coder_id for part in coding_round.coders.all()]
    rows = Highlight.themes.through.objects.filter(
        Q(highlight__coder_id__in=coders, highlight__is_consensus=False)
        | Q(highlight__is_consensus=True, highlight__coding_round=coding_round),
        highlight__interview_id__in=transcripts,
        highlight__source=Highlight.Source.TRANSCRIPT,
    ).values_list(
        "highlight__is_consensus", "highlight__coder_id", "theme_id", "highlight__interview_id",
        "highlight__start", "highlight__end",
    )  # fmt: skip
    codings = [(None if consensus else coder, *rest) for consensus, coder, *rest in rows]
    return transcripts, codings


def round_passages(coding_round: CodingRound) -> dict[tuple[int, int], list[dict]]:
    """(interview id, theme id) -> the passages there (kb.agreement.passages) between the
    round's coders, from their own highlights (never read this for a user coding blind)."""
    transcripts, codings = _round_codings(coding_round)
    return _passages_of(coding_round, transcripts, codings)


def _passages_of(coding_round, transcripts, codings) -> dict[tuple[int, int], list[dict]]:
    coders = [part.coder_id for part in coding_round.coders.all()]
    grouped: dict[tuple[int, int], dict[int, list]] = defaultdict(lambda: defaultdict(list))
    for coder, theme, interview, start, end in codings:
        if coder is not None:
            grouped[interview, theme][coder].append((start, end))
    result = {}
    for (interview, theme), spans in sorted(grouped.items()):
        length = len(transcripts[interview])
        by_coder = {coder: agreement.merged(spans.get(coder, []), length) for coder in coders}
        result[interview, theme] = agreement.passages(by_coder)
    return result


def passage_key(interview: int, theme: int, passage: dict) -> str:
    """The name a passage's decision goes by, in forms and in the service."""
    return f"d-{interview}-{theme}-{passage['start']}-{passage['end']}"


def _named_agreement(result: dict, usernames: dict, themes: dict) -> dict:
    def block(summary):
        return {
            "alpha": summary["alpha"],
            "kappa": summary["kappa"],
            "coders": [
                {"coder": coder, "username": usernames.get(coder, "consensus"), "coded": count}
                for coder, count in summary["coded"].items()
            ],
        }

    rows = [
        {"theme": theme, "name": themes.get(theme, str(theme)), **block(summary)}
        for theme, summary in result["themes"].items()
    ]
    rows.sort(key=lambda row: (row["name"], row["theme"]))
    return {"themes": rows, **block(result["overall"])}


def round_report(coding_round: CodingRound) -> dict:
    """What the round's page shows to those who may see every coder's work: per interview and
    theme the passages side by side (with the text of each span), agreement between the
    coders before consensus, and each coder against the consensus version after it.

    Out: {"interviews": [{"interview", "themes": [{"theme", "passages": [{"key", "start",
    "end", "text", "agreed", "choices", "coders": [{"coder", "coder_id", "spans": [{"start",
    "end", "text"}]}]}]}]}], "disagreements": n, "before": agreement, "after": [{"coder",
    "username", **agreement}] (empty without consensus), "has_consensus": bool}; agreement
    is {"alpha", "kappa", "coders", "themes": [...]} as kb.agreement computes it. Four
    queries whatever the size."""
    usernames = {part.coder_id: part.coder.get_username() for part in coding_round.coders.all()}
    transcripts, codings = _round_codings(coding_round)
    passages = _passages_of(coding_round, transcripts, codings)
    themes = Theme.objects.in_bulk({row[1] for row in codings})
    labels = [f"{name}'s version" for name in usernames.values()] + ["Keep all", "Drop"]
    choices = list(zip(agreement.decision_choices(usernames), labels, strict=True))
    by_interview: dict[int, list[dict]] = defaultdict(list)
    for (interview, theme), found in passages.items():
        text = transcripts[interview]
        shown = [
            {
                **_passage_shown(passage, text, usernames),
                "key": passage_key(interview, theme, passage),
                "choices": choices,
            }
            for passage in found
        ]
        by_interview[interview].append({"theme": themes[theme], "passages": shown})
    interviews = sorted(coding_round.interviews.all(), key=lambda i: (i.conducted_on, i.pk))
    report = [
        {
            "interview": interview,
            "themes": sorted(
                by_interview[interview.pk], key=lambda row: (row["theme"].name, row["theme"].pk)
            ),
        }
        for interview in interviews
    ]
    consensus = [row[1:] for row in codings if row[0] is None]
    return {
        "interviews": report,
        "disagreements": sum(not p["agreed"] for found in passages.values() for p in found),
        **_round_agreement(transcripts, codings, usernames, themes),
        "has_consensus": bool(consensus),
    }


def _passage_shown(passage: dict, text: str, usernames: dict) -> dict:
    start, end = passage["start"], passage["end"]
    coders = [
        {
            "coder": usernames[coder],
            "coder_id": coder,
            "spans": [{"start": s, "end": e, "text": text[s:e]} for s, e in spans],
        }
        for coder, spans in passage["spans"].items()
    ]
    return {"start": start, "end": end, "text": text[start:end],
            "agreed": passage["agreed"], "coders": coders}  # fmt: skip


def _round_agreement(transcripts, codings, usernames, themes) -> dict:
    """{"before": between the coders, "after": [each coder against the consensus]}."""
    lengths = {pk: len(text) for pk, text in transcripts.items()}
    names = {pk: theme.name for pk, theme in themes.items()}
    coder_spans = [row for row in codings if row[0] is not None]
    consensus = [row[1:] for row in codings if row[0] is None]
    before = _named_agreement(agreement.agreement(lengths, coder_spans), usernames, names)
    after = []
    if consensus:
        # The consensus enters as a pseudo-coder, id 0 (no user has it), one coder at a time.
        against = [(0, *row) for row in consensus]
        for coder, username in usernames.items():
            own = [row for row in coder_spans if row[0] == coder]
            result = agreement.agreement(lengths, own + against)
            named = _named_agreement(result, usernames, names)
            after.append({"coder": coder, "username": username, **named})
    return {"before": before, "after": after}


def coder_candidates():
    """Active users who may code (create highlights), by username: superusers and holders of
    kb.add_highlight directly or through a group (the researcher role). One query."""
    permission = Permission.objects.filter(codename="add_highlight", content_type__app_label="kb")
    return (
        get_user_model()
        .objects.filter(
            Q(is_superuser=True)
            | Q(groups__permissions__in=permission)
            | Q(user_permissions__in=permission),
            is_active=True,
        )
        .distinct()
        .order_by("username")
    )
