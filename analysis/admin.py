"""Admin for analysis runs and their jobs."""

from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from analysis import services
from analysis.models import AnalysisJob, AnalysisRun
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


class AnalysisJobInline(admin.TabularInline):
    model = AnalysisJob
    extra = 0
    fields = JOB_FIELDS
    readonly_fields = JOB_FIELDS
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


def _apply(modeladmin, request, queryset, change, verb: str) -> None:
    for run in queryset:
        try:
            change(actor=request.user, run=run)
        except ValidationError as error:
            modeladmin.message_user(request, f"Run {run.pk}: {' '.join(error.messages)}",
                                    level=messages.ERROR)  # fmt: skip
        else:
            modeladmin.message_user(request, f"Run {run.pk} {verb}.", messages.SUCCESS)


@admin.action(description="Cancel the selected runs")
def cancel_runs(modeladmin, request, queryset) -> None:
    _apply(modeladmin, request, queryset, services.run_cancel, "cancelled")


@admin.action(description="Retry the selected failed or cancelled runs")
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
