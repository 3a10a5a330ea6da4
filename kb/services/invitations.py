"""Writes for survey invitations: create a single-use link, and answer a survey through it."""

import datetime
import hashlib
import secrets
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from kb import events
from kb.models import Interview, InvitationState, Researcher, Survey, SurveyInvitation
from kb.services.interviews import interview_create
from kb.services.records import record_create, record_update

DEFAULT_VALID_DAYS = 14
MAX_VALID_DAYS = 90
TOKEN_BYTES = 32


class InvitationUnavailable(Exception):
    """The link cannot be used: `reason` is "unknown", "used" or "expired"."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invitation_create(
    *, actor, survey: Survey, researcher: Researcher, valid_days: int = DEFAULT_VALID_DAYS
) -> tuple[SurveyInvitation, str]:
    """Invite a researcher to answer a survey. Returns the invitation and its token, which is
    not stored anywhere (only its digest is) and must be shown to the inviter now.
    A link is valid for 1 to MAX_VALID_DAYS days; an anonymised researcher is not invited
    (their data was erased on request)."""
    if not 1 <= valid_days <= MAX_VALID_DAYS:
        raise ValidationError({"valid_days": f"A link is valid for 1 to {MAX_VALID_DAYS} days."})
    with transaction.atomic():
        # Locked (anonymising saves this row), so an anonymisation running alongside either
        # comes first and is seen here, or comes after and withdraws the new link.
        researcher = Researcher.objects.select_for_update().get(pk=researcher.pk)
        if researcher.anonymised_at is not None:
            raise ValidationError(
                {"researcher": "This researcher was anonymised; they cannot be invited again."}
            )
        token = secrets.token_urlsafe(TOKEN_BYTES)
        invitation = SurveyInvitation(
            survey=survey,
            researcher=researcher,
            token_digest=token_digest(token),
            expires_at=timezone.now() + datetime.timedelta(days=valid_days),
            created_by=actor if actor is not None and actor.is_authenticated else None,
        )
        return record_create(invitation, actor=actor), token


def invitation_withdraw(*, actor, invitation: SurveyInvitation) -> SurveyInvitation:
    """Make a waiting link unusable now (it expires this instant, so its page says so); an
    answered link is refused, and an expired one is left as it is."""
    with transaction.atomic():
        # Locked like a response, so a withdrawal and an answer cannot both go through.
        invitation = SurveyInvitation.objects.select_for_update().get(pk=invitation.pk)
        if invitation.is_used:
            raise ValidationError("This link has been answered already; nothing to withdraw.")
        if invitation.is_expired:
            return invitation
        return _expire_now(invitation, actor=actor)


def invitations_withdraw_waiting(*, actor, researcher: Researcher) -> int:
    """Withdraw every link of the researcher's that still works. Out: how many."""
    with transaction.atomic():
        # Locked like a response, so a link cannot be answered while it is withdrawn.
        waiting = list(
            SurveyInvitation.objects.select_for_update()
            .filter(researcher=researcher)
            .in_state(InvitationState.WAITING)
        )
        for invitation in waiting:
            _expire_now(invitation, actor=actor)
    return len(waiting)


def _expire_now(invitation: SurveyInvitation, *, actor) -> SurveyInvitation:
    """Withdrawn: the link expires this instant, so its page says it has expired."""
    return record_update(invitation, actor=actor, data={"expires_at": timezone.now()})


def invitation_get_usable(*, token: str) -> SurveyInvitation:
    """The invitation a token opens; raises InvitationUnavailable when it cannot be used."""
    invitation = (
        SurveyInvitation.objects.select_related("survey", "researcher")
        .filter(token_digest=token_digest(token))
        .first()
    )
    _check_usable(invitation)
    return invitation


def _check_usable(invitation: SurveyInvitation | None) -> None:
    if invitation is None:
        raise InvitationUnavailable("unknown")
    if invitation.is_used:
        raise InvitationUnavailable("used")
    if invitation.is_expired:
        raise InvitationUnavailable("expired")


def invitation_respond(*, token: str, answers: dict[int, Any]) -> Interview:
    """Turn a respondent's answers into an Interview with its Answers and spend the link.

    The invitation row is locked, so two submissions racing on one link create one interview;
    invalid answers raise ValidationError and leave the link unused.
    """
    with transaction.atomic():
        invitation = (
            SurveyInvitation.objects.select_for_update()
            .filter(token_digest=token_digest(token))
            .first()
        )
        _check_usable(invitation)
        interview = interview_create(
            actor=None,
            researcher=invitation.researcher,
            conducted_on=timezone.localdate(),
            survey=invitation.survey,
            answers=answers,
            summary="Answered through a survey link.",
        )
        invitation.used_at = timezone.now()
        invitation.interview = interview
        invitation.save(update_fields=["used_at", "interview"])
        events.record_linked(
            actor=None, instance=invitation, relation="interview", ids=[interview.pk]
        )
    return interview
