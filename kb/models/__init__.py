"""The knowledge base's data model, one module per area."""

from kb.models.codebook import Highlight, Theme
from kb.models.coding import CodingRound, CodingRoundCoder
from kb.models.events import AppendOnlyError, Event
from kb.models.insights import (
    ArchitectureChange,
    Insight,
    InsightFinding,
    InsightHighlight,
    Outcome,
    Stance,
)
from kb.models.invitations import InvitationState, SurveyInvitation, invitation_state
from kb.models.people import Researcher
from kb.models.subjects import Finding, SubjectModel
from kb.models.surveys import Answer, Interview, Question, Survey

__all__ = [
    "Answer",
    "AppendOnlyError",
    "ArchitectureChange",
    "CodingRound",
    "CodingRoundCoder",
    "Event",
    "Finding",
    "Highlight",
    "Insight",
    "InsightFinding",
    "InsightHighlight",
    "Interview",
    "InvitationState",
    "Outcome",
    "Question",
    "Researcher",
    "Stance",
    "SubjectModel",
    "Survey",
    "SurveyInvitation",
    "Theme",
    "invitation_state",
]
