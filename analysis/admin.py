"""Admin for analysis runs and their jobs."""

from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from analysis import services, studies
from analysis.models import AnalysisJob, AnalysisRun, Study, StudyRound
from kb.admin import HistoryAdmin

JOB_FIELDS = [
    "key",
    "status",
    "progress",
    "attempts",
    "heartbeat_at",
    "error",
    "environment",
    "started_at",
    "finished_at",
]


class ReadOnlyInline(admin.TabularInline):
    """Rows written by workers only: shown, never added, edited or deleted here."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class AnalysisJobInline(ReadOnlyInline):
    model = AnalysisJob
    fields = JOB_FIELDS
    readonly_fields = JOB_FIELDS


def _apply(modeladmin, request, queryset, change, verb: str, *, keyword: str = "run") -> None:
    """Call a service (run_cancel, study_resume, ...) on each selected record and report each
    result; `keyword` is the record's argument name and its label."""
    label = keyword.capitalize()
    for record in queryset:
        try:
            change(actor=request.user, **{keyword: record})
        except ValidationError as error:
            modeladmin.message_user(request, f"{label} {record.pk}: {' '.join(error.messages)}",
                                    level=messages.ERROR)  # fmt: skip
        else:
            modeladmin.message_user(request, f"{label} {record.pk} {verb}.", messages.SUCCESS)


@admin.action(description="Cancel the selected runs", permissions=["change"])
def cancel_runs(modeladmin, request, queryset) -> None:
    _apply(modeladmin, request, queryset, services.run_cancel, "cancelled")


@admin.action(description="Retry the selected failed or cancelled runs", permissions=["change"])
def retry_runs(modeladmin, request, queryset) -> None:
    _apply(modeladmin, request, queryset, services.run_retry, "queued again")


@admin.register(AnalysisRun)
class AnalysisRunAdmin(HistoryAdmin):
    list_display = [
        "id",
        "kind",
        "status",
        "progress_percent",
        "subject_model",
        "finding",
        "change",
        "requested_by",
        "created_at",
        "finished_at",
    ]
    list_filter = ["kind", "status"]
    search_fields = ["progress_message", "error"]
    date_hierarchy = "created_at"
    list_select_related = [
        "subject_model",
        "finding__subject_model",
        "change__target_model",
        "requested_by",
    ]
    # A run is requested through the pages, API, CLI or the admin actions on changes, models
    # and findings; what it measures is frozen then, so nothing here edits it.
    readonly_fields = [
        "kind",
        "subject_model",
        "finding",
        "change",
        "config",
        "config_digest",
        "reproduces",
        "requested_by",
        "failure",
        "status",
        "progress_percent",
        "progress_message",
        "result",
        "error",
        "environment",
        "attempts",
        "created_at",
        "started_at",
        "finished_at",
    ]
    inlines = [AnalysisJobInline]
    actions = [cancel_runs, retry_runs]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(AnalysisJob)
class AnalysisJobAdmin(admin.ModelAdmin):
    """Jobs are written by workers only; the admin shows them for diagnosis."""

    list_display = ["run", "key", "status", "progress", "attempts", "heartbeat_at"]
    list_filter = ["status"]
    search_fields = ["key", "error"]
    list_select_related = ["run"]
    readonly_fields = [*JOB_FIELDS, "run", "result"]

    def has_add_permission(self, request) -> bool:
        return False


# --- studies --------------------------------------------------------------------------------

ROUND_FIELDS = [
    "index",
    "track",
    "parameters",
    "params_added",
    "values",
    "summary",
    "kept",
    "decision",
    "plan",
    "mechanism",
    "finding",
    "insight",
    "change",
    "outcome",
    "decided_at",
]


class StudyRoundInline(ReadOnlyInline):
    model = StudyRound
    fields = ROUND_FIELDS
    readonly_fields = ROUND_FIELDS


@admin.action(description="Cancel the selected studies", permissions=["change"])
def cancel_studies(modeladmin, request, queryset) -> None:
    _apply(modeladmin, request, queryset, studies.study_cancel, "cancelled", keyword="study")


@admin.action(description="Resume the selected cancelled or failed studies", permissions=["change"])
def resume_studies(modeladmin, request, queryset) -> None:
    _apply(modeladmin, request, queryset, studies.study_resume, "resumed", keyword="study")


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    """Studies are requested through the pages, API or CLI and run by workers; their design is
    frozen, so nothing here edits one: it is read with its rounds, cancelled or resumed. A
    study is a run, so the run permissions apply (the proxy's own are granted to no role),
    and its recorded history is the run's (simple-history does not follow proxy models)."""

    list_display = [
        "id",
        "status",
        "progress_percent",
        "progress_message",
        "subject_model",
        "requested_by",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status"]
    search_fields = ["progress_message", "error"]
    date_hierarchy = "created_at"
    list_select_related = ["subject_model", "requested_by"]
    readonly_fields = [
        "subject_model",
        "config",
        "config_digest",
        "reproduces",
        "requested_by",
        "status",
        "failure",
        "progress_percent",
        "progress_message",
        "result",
        "error",
        "environment",
        "attempts",
        "created_at",
        "started_at",
        "finished_at",
    ]
    exclude = ["kind", "finding", "change", "dispatched_at"]
    inlines = [StudyRoundInline]
    actions = [cancel_studies, resume_studies]

    def has_add_permission(self, request) -> bool:
        return False

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("analysis.view_analysisrun")

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("analysis.change_analysisrun")

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("analysis.delete_analysisrun")


@admin.register(StudyRound)
class StudyRoundAdmin(admin.ModelAdmin):
    """Rounds are written by the study's workers only; the admin shows them for diagnosis."""

    list_display = ["study", "index", "track", "parameters", "kept", "decided_at"]
    list_filter = ["track", "kept"]
    search_fields = ["track"]
    list_select_related = ["study"]
    readonly_fields = ["study", "spec", "created_at", *ROUND_FIELDS]

    def has_add_permission(self, request) -> bool:
        return False
