"""The filter sets of every list, shared by the API (kb/api/filters.py) and the list pages:
by model, layer, status, theme, role, date ranges, verdict ... Each names the columns a list
can be sorted by (`ordering_fields`). A query string that names an unknown value is an error
(400 in the API, a message on a page), never a silently unfiltered list."""

import datetime
import functools

import django_filters as filters
from django import forms
from django_filters.fields import IsoDateTimeField

from analysis.models import AnalysisRun
from kb.models import (
    Answer,
    ArchitectureChange,
    Event,
    Finding,
    Highlight,
    Insight,
    Interview,
    InvitationState,
    Outcome,
    Question,
    Researcher,
    SubjectModel,
    SurveyInvitation,
    Theme,
)

MAX_UTC_OFFSET = datetime.timedelta(hours=14)
# A finding's and a change's names include their model: fetched with them, a page's list of
# choices costs one query however many there are.
FINDINGS = Finding.objects.select_related("subject_model")
CHANGES = ArchitectureChange.objects.select_related("target_model")


class BoundedIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time the database can compare: a real-world UTC offset, and a
    value that still exists once converted to UTC (year 1 minus an offset does not)."""

    def clean(self, value):
        value = super().clean(value)
        if value is None:
            return value
        offset = value.utcoffset()
        if offset is not None and abs(offset) > MAX_UTC_OFFSET:
            raise forms.ValidationError("The UTC offset must lie within ±14 hours.")
        try:
            value.astimezone(datetime.UTC)
        except OverflowError:
            raise forms.ValidationError("The date-time is out of range.") from None
        return value


class DateTimeFilter(filters.IsoDateTimeFilter):
    field_class = BoundedIsoDateTimeField


def date_time_range(field_name: str) -> tuple[DateTimeFilter, DateTimeFilter]:
    """The `<name>_after` (inclusive) and `<name>_before` (inclusive) filters on one field."""
    return (
        DateTimeFilter(field_name=field_name, lookup_expr="gte"),
        DateTimeFilter(field_name=field_name, lookup_expr="lte"),
    )


class ResearcherFilter(filters.FilterSet):
    ordering_fields = ["pseudonym", "created_at", "role"]

    class Meta:
        model = Researcher
        fields = ["role", "seniority", "consent_scope", "consent_given"]


class QuestionFilter(filters.FilterSet):
    ordering_fields = ["survey", "position"]

    class Meta:
        model = Question
        fields = ["survey", "kind"]


class InvitationFilter(filters.FilterSet):
    ordering_fields = ["created_at", "expires_at"]
    state = filters.ChoiceFilter(choices=InvitationState.choices, method="filter_state")

    class Meta:
        model = SurveyInvitation
        fields = ["survey", "researcher"]

    def filter_state(self, queryset, name, value):
        return queryset.in_state(value)


class InterviewFilter(filters.FilterSet):
    ordering_fields = ["conducted_on", "created_at", "status"]
    role = filters.ChoiceFilter(field_name="researcher__role", choices=Researcher.Role.choices)
    conducted_after = filters.DateFilter(field_name="conducted_on", lookup_expr="gte")
    conducted_before = filters.DateFilter(field_name="conducted_on", lookup_expr="lte")

    class Meta:
        model = Interview
        fields = ["researcher", "survey", "status"]


class AnswerFilter(filters.FilterSet):
    ordering_fields = ["interview", "question"]

    class Meta:
        model = Answer
        fields = ["interview", "question"]


class ThemeFilter(filters.FilterSet):
    ordering_fields = ["name"]
    root = filters.BooleanFilter(field_name="parent", lookup_expr="isnull", label="Top level")

    class Meta:
        model = Theme
        fields = ["parent"]


class HighlightFilter(filters.FilterSet):
    ordering_fields = ["created_at", "start"]
    theme = filters.ModelChoiceFilter(field_name="themes", queryset=Theme.objects.all())
    role = filters.ChoiceFilter(
        field_name="interview__researcher__role", choices=Researcher.Role.choices
    )
    created_after, created_before = date_time_range("created_at")

    class Meta:
        model = Highlight
        fields = ["interview", "source", "answer"]


class SubjectModelFilter(filters.FilterSet):
    ordering_fields = ["name", "created_at"]

    class Meta:
        model = SubjectModel
        fields = ["kind", "family", "dataset"]


class FindingFilter(filters.FilterSet):
    ordering_fields = ["title", "layer_name", "confidence", "created_at"]
    model = filters.ModelChoiceFilter(
        field_name="subject_model", queryset=SubjectModel.objects.all()
    )
    layer = filters.CharFilter(field_name="layer_name")
    insight = filters.ModelChoiceFilter(field_name="insights", queryset=Insight.objects.all())
    confidence_min = filters.NumberFilter(field_name="confidence", lookup_expr="gte")
    confidence_max = filters.NumberFilter(field_name="confidence", lookup_expr="lte")
    created_after, created_before = date_time_range("created_at")

    class Meta:
        model = Finding
        fields = ["status", "kind", "concept"]


class InsightFilter(filters.FilterSet):
    ordering_fields = ["title", "created_at", "updated_at", "status"]
    finding = filters.ModelChoiceFilter(field_name="findings", queryset=FINDINGS)
    model = filters.ModelChoiceFilter(
        field_name="findings__subject_model", queryset=SubjectModel.objects.all(), distinct=True
    )
    created_after, created_before = date_time_range("created_at")

    class Meta:
        model = Insight
        fields = ["status", "relevance", "understanding_level"]


class ChangeFilter(filters.FilterSet):
    ordering_fields = ["created_at", "updated_at", "status", "operation"]
    model = filters.ModelChoiceFilter(
        field_name="target_model", queryset=SubjectModel.objects.all()
    )
    created_after, created_before = date_time_range("created_at")

    class Meta:
        model = ArchitectureChange
        fields = ["insight", "operation", "status", "expected_direction"]


class OutcomeFilter(filters.FilterSet):
    ordering_fields = ["recorded_at", "effect", "verdict"]
    model = filters.ModelChoiceFilter(
        field_name="change__target_model", queryset=SubjectModel.objects.all()
    )
    operation = filters.ChoiceFilter(
        field_name="change__operation", choices=ArchitectureChange.Operation.choices
    )
    change = filters.ModelChoiceFilter(queryset=CHANGES)
    recorded_after, recorded_before = date_time_range("recorded_at")

    class Meta:
        model = Outcome
        fields = ["change", "verdict", "source"]


class RunFilter(filters.FilterSet):
    ordering_fields = ["created_at", "finished_at", "status"]
    model = filters.ModelChoiceFilter(
        field_name="subject_model", queryset=SubjectModel.objects.all()
    )
    finding = filters.ModelChoiceFilter(queryset=FINDINGS)
    change = filters.ModelChoiceFilter(queryset=CHANGES)
    created_after, created_before = date_time_range("created_at")

    class Meta:
        model = AnalysisRun
        fields = ["kind", "status", "finding", "change"]


class EventFilter(filters.FilterSet):
    target_type = filters.CharFilter(method="filter_target_type", help_text="e.g. kb.insight")
    created_after, created_before = date_time_range("created_at")

    class Meta:
        model = Event
        fields = ["action", "target_id", "actor"]

    def filter_target_type(self, queryset, name, value):
        app_label, _, model = value.partition(".")
        return queryset.filter(target_type__app_label=app_label, target_type__model=model)


# --- list pages ------------------------------------------------------------------------------


class ListPageFilters:
    """What a list page adds to a filter set: an `ordering` choice (one of the set's
    `ordering_fields`, `-name` for descending, as the API's `?ordering=` takes it), labels in
    words and date pickers for the form above the list, and `rows`."""

    @property
    def rows(self):
        """The rows the query string lets through, sorted; none while it is invalid (the form
        says why), never every row."""
        return self.qs if self.is_valid() else self.queryset.none()

    @property
    def active(self) -> bool:
        """Whether the query string narrows the list (an empty list then means no match)."""
        return self.is_bound and any(
            self.data.get(name) not in (None, "") for name in self.filters if name != "ordering"
        )

    @property
    def form(self):
        form = super().form
        for name, field in form.fields.items():
            _show_on_page(name, field)
        return form

    def sort(self, queryset, name, value):
        # The primary key breaks ties, so that pages never repeat or skip a row.
        return queryset.order_by(value, "-pk" if value.startswith("-") else "pk")


# Records of which a knowledge base holds thousands, too many for a drop-down.
GROWING_KINDS = (Finding, Insight, ArchitectureChange)


def _show_on_page(name: str, field: forms.Field) -> None:
    """Words for a page: "Created after", not the API's "Created at is greater than or
    equal to"; "Any" for no choice; the browser's date pickers."""
    if name == "ordering":
        return
    field.label = name.replace("_", " ").capitalize()
    if isinstance(field, forms.ModelChoiceField) and field.queryset.model in GROWING_KINDS:
        # Every finding, insight or change as an option would make each page view heavier
        # as the knowledge base grows: the page asks for the record's number instead.
        field.widget = forms.NumberInput(attrs={"min": 1})
        field.label = f"{field.label} number"
    elif hasattr(field, "empty_label"):  # choices from a list or a table
        field.empty_label = "Any"
    if isinstance(field.widget, forms.NullBooleanSelect):
        field.widget.choices = [("", "Any"), ("true", "Yes"), ("false", "No")]
    elif isinstance(field, IsoDateTimeField):
        field.widget.input_type = "datetime-local"
    elif isinstance(field, forms.DateField):
        field.widget.input_type = "date"


def _ordering_choices(filterset_class) -> list[tuple[str, str]]:
    model = filterset_class._meta.model
    choices = []
    for name in filterset_class.ordering_fields:
        label = str(model._meta.get_field(name).verbose_name).capitalize()
        choices += [(name, f"{label}, ascending"), (f"-{name}", f"{label}, descending")]
    return choices


@functools.cache
def list_page_filters(filterset_class: type[filters.FilterSet]) -> type[filters.FilterSet]:
    """`filterset_class` as a list page uses it (see ListPageFilters)."""
    ordering = filters.ChoiceFilter(
        choices=_ordering_choices(filterset_class),
        method="sort",
        label="Sort by",
        empty_label="Default order",
    )
    return type(filterset_class)(
        f"Page{filterset_class.__name__}",
        (ListPageFilters, filterset_class),
        {"ordering": ordering, "__module__": __name__},
    )


def list_filter(filterset_class: type[filters.FilterSet], data, queryset) -> filters.FilterSet:
    """The list page's filters bound to its query string `data` (a QueryDict; page numbers and
    other parameters are ignored) over `queryset`, the rows the page may show."""
    return list_page_filters(filterset_class)(data, queryset=queryset)
