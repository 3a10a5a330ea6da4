"""Reads for pages and commands, with the joins they need."""

from django.db.models import QuerySet

from analysis.models import AnalysisRun
from kb.models import ArchitectureChange, Event, Finding, Insight, Interview, Outcome, Theme


def dashboard_counts(*, user) -> dict[str, int]:
    """Counts of each kind of record the user may see."""
    counts = {
        "insights": Insight.objects.count(),
        "findings": Finding.objects.count(),
        "changes": ArchitectureChange.objects.count(),
        "outcomes": Outcome.objects.count(),
        "themes": Theme.objects.count(),
    }
    if user.has_perm("kb.view_interview"):
        counts["interviews"] = Interview.objects.count()
    return counts


def event_list_recent(*, limit: int = 15) -> QuerySet[Event]:
    return Event.objects.select_related("actor", "target_type")[:limit]


def run_list_in_progress() -> QuerySet[AnalysisRun]:
    return AnalysisRun.objects.filter(
        status__in=[AnalysisRun.Status.QUEUED, AnalysisRun.Status.RUNNING]
    ).select_related("subject_model", "finding", "change__target_model")
