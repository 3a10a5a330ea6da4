"""Filters for list endpoints (django-filter): the filter sets live in kb/filters.py, shared
with the list pages so that a page and its endpoint filter alike. Query strings that name
unknown values answer 400, not an empty list."""

from kb.filters import (
    AnswerFilter,
    ChangeFilter,
    EventFilter,
    FindingFilter,
    HighlightFilter,
    InsightFilter,
    InterviewFilter,
    InvitationFilter,
    OutcomeFilter,
    QuestionFilter,
    ResearcherFilter,
    RunFilter,
    SubjectModelFilter,
    ThemeFilter,
)

__all__ = [
    "AnswerFilter",
    "ChangeFilter",
    "EventFilter",
    "FindingFilter",
    "HighlightFilter",
    "InsightFilter",
    "InterviewFilter",
    "InvitationFilter",
    "OutcomeFilter",
    "QuestionFilter",
    "ResearcherFilter",
    "RunFilter",
    "SubjectModelFilter",
    "ThemeFilter",
]
