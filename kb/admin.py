"""Admin for reviewing the knowledge base; every model has its edit history."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.urls import reverse
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from analysis import services as analysis_services
from kb import selectors
from kb.forms import STALE_FORM
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
from kb.services import interviews
from kb.services.changes import change_edit_refusal
from kb.services.records import RecordChanged, record_version_check
from kb.services.subjects import MEASURED_MODEL_FIELDS, subject_model_used_by_run


class HistoryAdmin(SimpleHistoryAdmin):
    """Shows a record's history and its old versions, never restores one: a revert saves the
    old version whole, past every rule of the services (a measured change, a frozen run).
    SIMPLE_HISTORY_REVERT_DISABLED hides the button; this refuses the POST itself."""

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        if request.method == "POST":
            raise PermissionDenied("Old versions are shown here, not restored.")
        return super().history_form_view(request, object_id, version_id, extra_context)


class QuestionInline(admin.TabularInline):
    model = Question
    extra = 0


class AnswerInline(admin.TabularInline):
    model = Answer
    extra = 0
    autocomplete_fields = ["question"]


class HighlightInline(admin.StackedInline):
    model = Highlight
    fk_name = "interview"
    extra = 0
    fields = ["source", "answer", "start", "end", "quote", "themes", "note"]
    autocomplete_fields = ["themes"]


class InsightFindingInline(admin.TabularInline):
    model = InsightFinding
    extra = 0
    autocomplete_fields = ["finding"]


class InsightHighlightInline(admin.TabularInline):
    model = InsightHighlight
    extra = 0
    autocomplete_fields = ["highlight"]


class ChangeInline(admin.StackedInline):
    model = ArchitectureChange
    extra = 0
    fields = [
        "target_model",
        "operation",
        "parameters",
        "rationale",
        "expected_metric",
        "expected_direction",
        "minimum_effect",
        "status",
    ]
    # Shown, not edited here: a change's edits follow its state (see ArchitectureChangeAdmin).
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class OutcomeInline(admin.StackedInline):
    model = Outcome
    extra = 0
    # Outcomes are recorded on the change's page or by a run, where the verdict is computed from
    # the values; here they are shown.
    fields = readonly_fields = [
        "metric",
        "baseline_values",
        "variant_values",
        "control_values",
        "effect",
        "ci_low",
        "ci_high",
        "p_value",
        "effect_vs_control",
        "control_ci_low",
        "control_ci_high",
        "verdict",
        "source",
        "analysis_run",
        "notes",
        "recorded_at",
    ]
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


def _start_runs(modeladmin, request, queryset, start) -> None:
    """Start one run per selected row; report each refusal with its reason."""
    for record in queryset:
        try:
            run = start(request.user, record)
        except ValidationError as error:
            modeladmin.message_user(
                request, f"{record}: {' '.join(error.messages)}", level=messages.ERROR
            )
        else:
            modeladmin.message_user(request, f"{record}: run {run.pk} queued.", messages.SUCCESS)


@admin.action(description="Run the experiment (baseline, change, random control; 5 seeds)")
def start_experiment(modeladmin, request, queryset) -> None:
    _start_runs(
        modeladmin, request, queryset,
        lambda user, change: analysis_services.experiment_request(actor=user, change=change),
    )  # fmt: skip


@admin.action(description="Profile activations")
def start_profile(modeladmin, request, queryset) -> None:
    _start_runs(
        modeladmin, request, queryset,
        lambda user, model: analysis_services.profile_request(actor=user, subject_model=model),
    )  # fmt: skip


@admin.action(description="Ablate the finding's units (against random unit sets)")
def start_ablation(modeladmin, request, queryset) -> None:
    _start_runs(
        modeladmin, request, queryset,
        lambda user, finding: analysis_services.ablation_request(actor=user, finding=finding),
    )  # fmt: skip


@admin.register(Researcher)
class ResearcherAdmin(HistoryAdmin):
    list_display = [
        "pseudonym",
        "role",
        "seniority",
        "research_area",
        "consent_given",
        "interview_count",
    ]
    list_filter = ["role", "seniority", "consent_given", "consent_scope"]
    search_fields = ["pseudonym", "research_area"]
    readonly_fields = ["anonymised_at", "created_at", "updated_at", "interview_count"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_interview_count=Count("interviews"))

    @admin.display(description="Interviews", ordering="_interview_count")
    def interview_count(self, researcher: Researcher) -> int:
        return getattr(researcher, "_interview_count", None) or researcher.interviews.count()


@admin.register(Survey)
class SurveyAdmin(HistoryAdmin):
    list_display = ["title", "question_count", "created_at"]
    search_fields = ["title", "description"]
    inlines = [QuestionInline]
    readonly_fields = ["created_at"]
    date_hierarchy = "created_at"

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_question_count=Count("questions"))

    @admin.display(description="Questions", ordering="_question_count")
    def question_count(self, survey: Survey) -> int:
        return survey._question_count


@admin.register(Question)
class QuestionAdmin(HistoryAdmin):
    list_display = ["survey", "position", "text", "kind", "required"]
    list_filter = ["kind", "required", "survey"]
    search_fields = ["text", "survey__title"]
    list_select_related = ["survey"]


class InterviewAdminForm(forms.ModelForm):
    class Meta:
        model = Interview
        fields = [
            "researcher", "interviewer", "conducted_on", "survey", "transcript", "summary",
            "status",
        ]  # fmt: skip

    def clean_transcript(self) -> str:
        transcript = self.cleaned_data["transcript"]
        if self.instance.pk:
            lost = interviews.transcript_highlights_lost(self.instance, transcript)
            if lost:
                raise ValidationError(interviews.lost_highlights_message(lost))
        return transcript


@admin.register(Interview)
class InterviewAdmin(HistoryAdmin):
    form = InterviewAdminForm
    list_display = [
        "__str__",
        "researcher",
        "interviewer",
        "survey",
        "status",
        "conducted_on",
        "highlight_count",
    ]
    list_filter = ["status", "survey", "researcher__role"]
    search_fields = ["researcher__pseudonym", "transcript", "summary"]
    date_hierarchy = "conducted_on"
    autocomplete_fields = ["researcher"]
    list_select_related = ["researcher", "interviewer", "survey"]
    inlines = [AnswerInline, HighlightInline]
    readonly_fields = ["created_at", "updated_at", "highlight_count"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_highlight_count=Count("highlights"))

    def save_related(self, request, form, formsets, change) -> None:
        """Highlights follow their quotes through a transcript edit here too (the form has
        already refused an edit that would remove a quoted passage)."""
        super().save_related(request, form, formsets, change)
        if change:
            interviews.highlights_reanchor(actor=request.user, interview=form.instance)

    @admin.display(description="Highlights", ordering="_highlight_count")
    def highlight_count(self, interview: Interview) -> int:
        return getattr(interview, "_highlight_count", None) or interview.highlights.count()


@admin.register(Answer)
class AnswerAdmin(HistoryAdmin):
    list_display = ["interview", "question", "likert", "text"]
    list_filter = ["question__kind", "question__survey"]
    search_fields = ["text", "question__text"]
    list_select_related = ["interview__researcher", "question__survey"]


@admin.register(Theme)
class ThemeAdmin(HistoryAdmin):
    list_display = ["name", "parent", "colour", "highlight_count"]
    list_filter = ["parent"]
    search_fields = ["name", "description"]
    list_select_related = ["parent"]
    readonly_fields = ["highlight_count"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_highlight_count=Count("highlights"))

    @admin.display(description="Highlights", ordering="_highlight_count")
    def highlight_count(self, theme: Theme) -> int:
        return getattr(theme, "_highlight_count", None) or theme.highlights.count()


@admin.register(Highlight)
class HighlightAdmin(HistoryAdmin):
    list_display = ["__str__", "interview", "source", "start", "end", "coder", "created_at"]
    list_filter = ["source", "themes"]
    search_fields = ["quote", "note"]
    date_hierarchy = "created_at"
    autocomplete_fields = ["themes"]
    list_select_related = ["interview__researcher", "coder"]
    readonly_fields = ["created_at", "created_by"]
    raw_id_fields = ["coder"]

    def save_model(self, request, obj, form, change) -> None:
        """A highlight added here is the acting user's coding unless another coder is
        chosen, as through the page and the API (kb.services.codebook.highlight_create)."""
        if not change:
            obj.created_by = request.user
            obj.coder = obj.coder or request.user
        super().save_model(request, obj, form, change)


class VersionedAdminForm(forms.ModelForm):
    """The change form of a record that carries a version (insights, findings, changes):
    like the site's edit forms, it holds the version it was opened on and refuses the save
    when someone (or a run) saved the record since, saying who and what, with the input kept
    and the current version taken, so that saving again replaces it knowingly. The admin saves
    inside one transaction, so the row locked by the check stays locked until the save."""

    # Kept on the add page too (unused there): the admin lays out the form class's fields.
    # Not named `version`: the admin would take that for the model's (non-editable) field.
    opened_version = forms.IntegerField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.checked_version: int | None = None
        if self.instance.pk is not None:
            self.initial["opened_version"] = self.instance.version

    def clean(self) -> dict:
        data = super().clean()
        if self.instance.pk is not None:
            opened = data.get("opened_version")
            if opened is None:
                raise forms.ValidationError(STALE_FORM)
            try:
                self.checked_version = record_version_check(self.instance, expected_version=opened)
            except RecordChanged as error:
                if error.current_version is not None:
                    self.data = self.data.copy()
                    self.data[self.add_prefix("opened_version")] = str(error.current_version)
                raise forms.ValidationError(error.messages) from None
        return data


class VersionedAdmin(HistoryAdmin):
    """Moves the version on with every save from the admin (VersionedAdminForm checked it)."""

    form = VersionedAdminForm

    def save_model(self, request, obj, form, change) -> None:
        if change:
            obj.version = form.checked_version + 1
        super().save_model(request, obj, form, change)


class ChangeAdminForm(VersionedAdminForm):
    """Refuses the save, as change_update does, when a run measured the change after the
    page was opened."""

    class Meta:
        model = ArchitectureChange
        fields = ["insight", "target_model", "operation", "parameters", "rationale",
                  "expected_metric", "expected_direction", "minimum_effect"]  # fmt: skip

    def clean(self) -> dict:
        # Refused first: a measured change cannot be saved at all, whatever its version.
        if self.instance.pk is not None:
            current = ArchitectureChange.objects.get(pk=self.instance.pk)
            if refusal := change_edit_refusal(current):
                raise forms.ValidationError(refusal)
        return super().clean()


class SubjectModelAdminForm(forms.ModelForm):
    """Refuses a new spec or kind, as subject_model_update does, once a run used the model."""

    class Meta:
        model = SubjectModel
        fields = ["name", "family", "kind", "task", "dataset", "architecture_spec", "source"]

    def clean(self) -> dict:
        data = super().clean()
        if self.instance.pk is None:
            return data
        current = SubjectModel.objects.get(pk=self.instance.pk)
        changed = [
            name
            for name in MEASURED_MODEL_FIELDS
            if name in data and data[name] != getattr(current, name)
        ]
        if changed and (run := subject_model_used_by_run(current)) is not None:
            for name in changed:
                self.add_error(name, f"Run {run} measured this model as it is; register a new "
                                     "model to try another one.")  # fmt: skip
        return data


@admin.register(SubjectModel)
class SubjectModelAdmin(HistoryAdmin):
    list_display = ["name", "family", "kind", "task", "dataset", "finding_count"]
    list_filter = ["kind", "family"]
    search_fields = ["name", "family", "task", "dataset", "source"]
    readonly_fields = ["weights_sha256", "created_at", "finding_count", "layer_widths"]
    actions = [start_profile]
    form = SubjectModelAdminForm

    def get_readonly_fields(self, request, obj=None):
        fixed = list(super().get_readonly_fields(request, obj))
        if obj is not None:
            # Weights are set when a model is registered (their digest must match the file),
            # and are served only through the permission-checked download.
            fixed.append("weights_download")
            if subject_model_used_by_run(obj) is not None:
                # A run froze this model's spec; a new model is the way to change it.
                fixed += [name for name in MEASURED_MODEL_FIELDS if name != "weights"]
        return fixed

    def get_exclude(self, request, obj=None):
        # Weights are registered on the site or through the API, which check that the file is
        # safetensors and store its digest; runs check the file against that digest.
        return ["weights"]

    @admin.display(description="Weights")
    def weights_download(self, model: SubjectModel) -> str:
        if not model.weights:
            return "-"
        url = reverse("model-weights", args=[model.pk])
        return format_html('<a href="{}">Download (safetensors)</a>', url)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_finding_count=Count("findings"))

    @admin.display(description="Findings", ordering="_finding_count")
    def finding_count(self, model: SubjectModel) -> int:
        return getattr(model, "_finding_count", None) or model.findings.count()

    @admin.display(description="Units per layer (from the spec)")
    def layer_widths(self, model: SubjectModel) -> str:
        widths = model.known_layer_widths()
        return ", ".join(f"{name}: {width}" for name, width in widths.items()) or "-"


@admin.register(Finding)
class FindingAdmin(VersionedAdmin):
    list_display = [
        "title",
        "subject_model",
        "layer_name",
        "unit_count",
        "kind",
        "status",
        "confidence",
    ]
    list_filter = ["status", "kind", "subject_model"]
    search_fields = ["title", "description", "layer_name", "concept"]
    date_hierarchy = "created_at"
    list_select_related = ["subject_model"]
    filter_horizontal = ["evidence_runs"]
    actions = [start_ablation]
    readonly_fields = ["created_at", "updated_at", "unit_count"]

    def get_readonly_fields(self, request, obj=None):
        fixed = list(super().get_readonly_fields(request, obj))
        # A finding stays with its model (kb.services.subjects.finding_update).
        return [*fixed, "subject_model"] if obj is not None else fixed

    @admin.display(description="Units")
    def unit_count(self, finding: Finding) -> int:
        return len(finding.unit_indices or [])


@admin.register(Insight)
class InsightAdmin(VersionedAdmin):
    list_display = [
        "title",
        "understanding_level",
        "relevance",
        "status",
        "change_count",
        "created_at",
    ]
    list_filter = ["status", "understanding_level", "relevance"]
    search_fields = ["title", "statement"]
    date_hierarchy = "created_at"
    inlines = [InsightFindingInline, InsightHighlightInline, ChangeInline]
    readonly_fields = ["created_by", "created_at", "updated_at", "change_count"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_change_count=Count("changes"))

    @admin.display(description="Changes", ordering="_change_count")
    def change_count(self, insight: Insight) -> int:
        return getattr(insight, "_change_count", None) or insight.changes.count()


@admin.register(InsightFinding)
class InsightFindingAdmin(HistoryAdmin):
    list_display = ["insight", "finding", "stance"]
    list_filter = ["stance"]
    search_fields = ["insight__title", "finding__title"]
    list_select_related = ["insight", "finding__subject_model"]


@admin.register(InsightHighlight)
class InsightHighlightAdmin(HistoryAdmin):
    list_display = ["insight", "highlight", "stance"]
    list_filter = ["stance"]
    search_fields = ["insight__title", "highlight__quote"]
    list_select_related = ["insight", "highlight"]


@admin.register(ArchitectureChange)
class ArchitectureChangeAdmin(VersionedAdmin):
    list_display = [
        "__str__",
        "insight",
        "target_model",
        "operation",
        "status",
        "expected_metric",
        "expected_direction",
        "minimum_effect",
    ]
    list_filter = ["status", "operation", "target_model"]
    search_fields = ["rationale", "insight__title", "target_model__name"]
    date_hierarchy = "created_at"
    list_select_related = ["insight", "target_model"]
    inlines = [OutcomeInline]
    readonly_fields = ["status", "created_at", "updated_at"]
    actions = [start_experiment]
    form = ChangeAdminForm

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and change_edit_refusal(obj):
            # Run or evaluated: the change is fixed; "copy as a new change" on its page.
            return [field.name for field in obj._meta.fields if field.name != "id"]
        return super().get_readonly_fields(request, obj)


@admin.register(Outcome)
class OutcomeAdmin(HistoryAdmin):
    list_display = [
        "change",
        "metric",
        "effect",
        "ci_low",
        "ci_high",
        "verdict",
        "source",
        "recorded_at",
    ]
    list_filter = ["verdict", "source", "change__operation"]
    search_fields = ["notes", "change__insight__title"]
    date_hierarchy = "recorded_at"
    list_select_related = ["change__target_model", "change__insight"]
    # Values and verdict change only through the services (the change's page or the API), which
    # compute the statistics and the verdict and refuse a measured outcome; notes stay editable.
    readonly_fields = [
        "change",
        "metric",
        "baseline_values",
        "variant_values",
        "control_values",
        "effect",
        "ci_low",
        "ci_high",
        "p_value",
        "effect_vs_control",
        "control_ci_low",
        "control_ci_high",
        "verdict",
        "source",
        "analysis_run",
        "recorded_at",
    ]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(SurveyInvitation)
class SurveyInvitationAdmin(admin.ModelAdmin):
    """Invitations are created on the survey page, where the link is shown once; the admin
    only shows who was invited and whether the link was used."""

    list_display = [
        "survey", "researcher", "state", "created_at", "expires_at", "used_at", "interview",
    ]  # fmt: skip
    list_filter = ["survey"]
    search_fields = ["survey__title", "researcher__pseudonym"]
    date_hierarchy = "created_at"
    list_select_related = ["survey", "researcher", "interview"]
    readonly_fields = ["token_digest", "used_at", "interview", "created_by", "created_at"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="state")
    def state(self, invitation: SurveyInvitation) -> str:
        return invitation.state.label


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    """The event log is read-only here, as everywhere."""

    list_display = ["created_at", "actor", "action", "target_type", "target_label"]
    list_filter = ["action", "target_type"]
    search_fields = ["target_label"]
    date_hierarchy = "created_at"
    list_select_related = ["actor", "target_type"]

    def get_queryset(self, request):
        # The site's one rule for reading the log: staff see events only about kinds of
        # record their own permissions let them view.
        return selectors.event_list_visible(
            user=request.user, queryset=super().get_queryset(request)
        )

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class CodingRoundCoderInline(admin.TabularInline):
    model = CodingRoundCoder
    extra = 0
    fields = ["coder", "done_at"]
    readonly_fields = ["coder", "done_at"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(CodingRound)
class CodingRoundAdmin(admin.ModelAdmin):
    """Rounds are started, marked done and closed on the site (kb.services.coding_rounds),
    which log each step; the admin only shows them."""

    list_display = ["name", "created_by", "created_at", "closed_at"]
    list_filter = ["closed_at"]
    search_fields = ["name"]
    date_hierarchy = "created_at"
    list_select_related = ["created_by"]
    readonly_fields = ["name", "interviews", "created_by", "created_at", "closed_at"]
    inlines = [CodingRoundCoderInline]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(CodingRoundCoder)
class CodingRoundCoderAdmin(admin.ModelAdmin):
    """One coder's part in a round, read-only (see CodingRoundAdmin)."""

    list_display = ["coding_round", "coder", "done_at"]
    search_fields = ["coding_round__name", "coder__username"]
    list_select_related = ["coding_round", "coder"]
    readonly_fields = ["coding_round", "coder", "done_at"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
