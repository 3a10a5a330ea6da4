"""Filters for list endpoints (django-filter): by model, layer, status, theme, role, date
ranges, verdict ... Query strings that name unknown values answer 400, not an empty list."""

import datetime

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
    class Meta:
        model = Researcher
        fields = ["role", "seniority", "consent_scope", "consent_given"]


class QuestionFilter(filters.FilterSet):
    class Meta:
        model = Question
        fields = ["survey", "kind"]


class InvitationFilter(filters.FilterSet):
    state = filters.ChoiceFilter(choices=InvitationState.choices, method="filter_state")

    class Meta:
        model = SurveyInvitation
        fields = ["survey", "researcher"]

    def filter_state(self, queryset, name, value):
        return queryset.in_state(value)


class InterviewFilter(filters.FilterSet):
    role = filters.ChoiceFilter(field_name="researcher__role", choices=Researcher.Role.choices)
    conducted_after = filters.DateFilter(field_name="conducted_on", lookup_expr="gte")
    conducted_before = filters.DateFilter(field_name="conducted_on", lookup_expr="lte")

    class Meta:
        model = Interview
        fields = ["researcher", "survey", "status"]


class AnswerFilter(filters.FilterSet):
    class Meta:
        model = Answer
        fields = ["interview", "question"]


class ThemeFilter(filters.FilterSet):
    root = filters.BooleanFilter(field_name="parent", lookup_expr="isnull", label="Top level")

    class Meta:
        model = Theme
        fields = ["parent"]


class HighlightFilter(filters.FilterSet):
    theme = filters.ModelChoiceFilter(field_name="themes", queryset=Theme.objects.all())
    role = filters.ChoiceFilter(
        field_name="interview__researcher__role", choices=Researcher.Role.choices
    )
    created_after, created_before = date_time_range("created_at")

    class Meta:
        model = Highlight
        fields = ["interview", "source", "answer"]


class SubjectModelFilter(filters.FilterSet):
    class Meta:
        model = SubjectModel
        fields = ["kind", "family", "dataset"]


class FindingFilter(filters.FilterSet):
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
    finding = filters.ModelChoiceFilter(field_name="findings", queryset=Finding.objects.all())
    model = filters.ModelChoiceFilter(
        field_name="findings__subject_model", queryset=SubjectModel.objects.all(), distinct=True
    )
    created_after, created_before = date_time_range("created_at")

    class Meta:
        model = Insight
        fields = ["status", "relevance", "understanding_level"]


class ChangeFilter(filters.FilterSet):
    model = filters.ModelChoiceFilter(
        field_name="target_model", queryset=SubjectModel.objects.all()
    )
    created_after, created_before = date_time_range("created_at")

    class Meta:
        model = ArchitectureChange
        fields = ["insight", "operation", "status", "expected_direction"]


class OutcomeFilter(filters.FilterSet):
    model = filters.ModelChoiceFilter(
        field_name="change__target_model", queryset=SubjectModel.objects.all()
    )
    operation = filters.ChoiceFilter(
        field_name="change__operation", choices=ArchitectureChange.Operation.choices
    )
    recorded_after, recorded_before = date_time_range("recorded_at")

    class Meta:
        model = Outcome
        fields = ["change", "verdict", "source"]


class RunFilter(filters.FilterSet):
    model = filters.ModelChoiceFilter(
        field_name="subject_model", queryset=SubjectModel.objects.all()
    )
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
