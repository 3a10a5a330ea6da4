"""Reads for the API: which rows a caller may see, and the nested summaries a page of rows
needs, each fetched with one query for the whole page (never one per row)."""

from collections import defaultdict

from django.contrib.contenttypes.models import ContentType
from django.db.models import QuerySet
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from analysis.models import AnalysisJob, AnalysisRun
from kb import selectors, statistics
from kb.api.rows import url_template
from kb.models import (
    ArchitectureChange,
    InsightFinding,
    InsightHighlight,
    Outcome,
    Question,
    invitation_state,
)

# The API's event list and the dashboard read the log through the same rule.
event_list_visible = selectors.event_list_visible


def can_see_quotes(user) -> bool:
    return user.has_perm("kb.view_highlight") and user.has_perm("kb.view_insighthighlight")


# --- nested summaries: each adds one key to every row, with a fixed number of queries ------


def _by(rows: list[dict], key: str = "id") -> list:
    return [row[key] for row in rows]


def survey_attach_questions(rows: list[dict]) -> None:
    questions = defaultdict(list)
    for question in Question.objects.filter(survey_id__in=_by(rows)).values(
        "id", "survey_id", "position", "text", "kind"
    ):
        questions[question.pop("survey_id")].append(question)
    for row in rows:
        row["questions"] = questions.get(row["id"], [])


def insight_attach_evidence(rows: list[dict], *, request, with_quotes: bool) -> None:
    finding_prefix, finding_suffix = url_template(request, "api:finding-detail")
    findings = defaultdict(list)
    for insight_id, finding_id, title, stance in (
        InsightFinding.objects.filter(insight_id__in=_by(rows))
        .order_by("finding_id")
        .values_list("insight_id", "finding_id", "finding__title", "stance")
    ):
        findings[insight_id].append(
            {
                "finding": finding_id,
                "url": f"{finding_prefix}{finding_id}{finding_suffix}",
                "title": title,
                "stance": stance,
            }
        )
    for row in rows:
        row["findings"] = findings.get(row["id"], [])
    if not with_quotes:
        for row in rows:
            row["highlights"] = None
        return
    prefix, suffix = url_template(request, "api:highlight-detail")
    quotes = defaultdict(list)
    for insight_id, highlight_id, stance in (
        InsightHighlight.objects.filter(insight_id__in=_by(rows))
        # A coder coding blind does not learn which of the others' highlights are linked.
        .filter(selectors.highlight_visibility(request.user, prefix="highlight__"))
        .order_by("highlight_id")
        .values_list("insight_id", "highlight_id", "stance")
    ):
        quotes[insight_id].append(
            {"highlight": highlight_id, "url": f"{prefix}{highlight_id}{suffix}", "stance": stance}
        )
    for row in rows:
        row["highlights"] = quotes.get(row["id"], [])


def outcome_latest_by_change(change_ids: list[int], *, request) -> dict[int, dict]:
    """The newest outcome of each change, as a summary."""
    prefix, suffix = url_template(request, "api:outcome-detail")
    latest: dict[int, dict] = {}
    for outcome in (
        Outcome.objects.filter(change_id__in=change_ids)
        .order_by("change_id", "recorded_at", "id")
        .values(
            "id",
            "change_id",
            "verdict",
            "effect",
            "ci_low",
            "ci_high",
            "effect_vs_control",
            "recorded_at",
        )  # fmt: skip
    ):
        change_id = outcome.pop("change_id")
        outcome["url"] = f"{prefix}{outcome['id']}{suffix}"
        latest[change_id] = outcome  # ordered oldest first, so the last one wins
    return latest


def insight_attach_changes(rows: list[dict], *, request) -> None:
    prefix, suffix = url_template(request, "api:architecturechange-detail")
    changes = list(
        ArchitectureChange.objects.filter(insight_id__in=_by(rows))
        .order_by("id")
        .values("id", "insight_id", "operation", "status", "target_model")
    )
    latest = outcome_latest_by_change([change["id"] for change in changes], request=request)
    by_insight = defaultdict(list)
    for change in changes:
        change["url"] = f"{prefix}{change['id']}{suffix}"
        change["latest_outcome"] = latest.get(change["id"])
        by_insight[change.pop("insight_id")].append(change)
    for row in rows:
        row["changes"] = by_insight.get(row["id"], [])


def change_attach_latest_outcome(rows: list[dict], *, request) -> None:
    latest = outcome_latest_by_change(_by(rows), request=request)
    for row in rows:
        row["latest_outcome"] = latest.get(row["id"])


def invitation_attach_state(rows: list[dict]) -> None:
    """Each link's state (waiting, answered, expired), from its row, at one instant."""
    now = timezone.now()
    for row in rows:
        row["state"] = invitation_state(
            used_at=row["used_at"], expires_at=row["expires_at"], now=now
        ).value


def run_attach_details(rows: list[dict], *, request) -> None:
    """Jobs, the outcome the run wrote, and figure URLs (storage paths in the result)."""
    jobs = defaultdict(list)
    for job in AnalysisJob.objects.filter(run_id__in=_by(rows)).values(
        "run_id", "key", "status", "progress", "attempts", "environment"
    ):
        jobs[job.pop("run_id")].append(job)
    outcomes = dict(
        Outcome.objects.filter(analysis_run_id__in=_by(rows)).values_list("analysis_run_id", "id")
    )
    for row in rows:
        row["jobs"] = jobs.get(row["id"], [])
        row["outcome"] = outcomes.get(row["id"])
        row["figures"] = _figure_urls(request, row["id"], row["result"])


def _figure_urls(request, run_id: int, result) -> dict[str, str]:
    """Each figure's URL on the permission-checked figure view (nothing in storage is
    public); a name that view could not serve is left out rather than linked to a 404."""
    figures = result.get("figures") if isinstance(result, dict) else None
    if not isinstance(figures, dict):
        return {}
    urls = {}
    for name, path in figures.items():
        if not isinstance(path, str):
            continue
        try:
            urls[name] = request.build_absolute_uri(reverse("run-figure", args=[run_id, name]))
        except NoReverseMatch:
            continue
    return urls


def event_attach_target_type(rows: list[dict]) -> None:
    if not rows:
        return
    labels = {
        pk: f"{app_label}.{model}"
        for pk, app_label, model in ContentType.objects.filter(
            pk__in={row["target_type"] for row in rows}
        ).values_list("id", "app_label", "model")
    }
    for row in rows:
        row["target_type"] = labels[row["target_type"]]


def run_queryset() -> QuerySet[AnalysisRun]:
    return AnalysisRun.objects.all()


def outcome_attach_settings(rows: list[dict]) -> None:
    """What each measured outcome trained on (kb.statistics.run_settings), with one query
    for the page's runs; None for an outcome entered by hand."""
    runs = {
        run["id"]: run
        for run in AnalysisRun.objects.filter(
            pk__in=[row["analysis_run"] for row in rows if row["analysis_run"]]
        ).values("id", "config", "change__target_model__architecture_spec")
    }
    for row in rows:
        run = runs.get(row["analysis_run"])
        row["settings"] = (
            None
            if run is None
            else statistics.run_settings(
                run["config"], fallback_spec=run["change__target_model__architecture_spec"]
            )
        )
