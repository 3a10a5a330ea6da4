"""Single-use links that let a researcher answer a survey without an account."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class InvitationState(models.TextChoices):
    WAITING = "waiting", "waiting"  # the link works
    ANSWERED = "answered", "answered"  # it made an interview
    EXPIRED = "expired", "expired"  # its time ran out, or it was withdrawn


def invitation_state(*, used_at, expires_at, now=None) -> InvitationState:
    if used_at is not None:
        return InvitationState.ANSWERED
    if expires_at <= (now or timezone.now()):
        return InvitationState.EXPIRED
    return InvitationState.WAITING


class SurveyInvitationQuerySet(models.QuerySet):
    def in_state(self, state: str, now=None) -> "SurveyInvitationQuerySet":
        now = now or timezone.now()
        if state == InvitationState.ANSWERED:
            return self.filter(used_at__isnull=False)
        if state == InvitationState.EXPIRED:
            return self.filter(used_at__isnull=True, expires_at__lte=now)
        if state == InvitationState.WAITING:
            return self.filter(used_at__isnull=True, expires_at__gt=now)
        raise ValueError(f"unknown invitation state {state!r}")


class SurveyInvitation(models.Model):
    """An invitation for one researcher to answer one survey through a link.

    Only the SHA-256 digest of the link's token is stored, so a database leak does not leak
    working links; the token itself is shown once, when the invitation is created.
    """

    survey = models.ForeignKey("kb.Survey", on_delete=models.CASCADE, related_name="invitations")
    researcher = models.ForeignKey(
        "kb.Researcher", on_delete=models.CASCADE, related_name="invitations"
    )
    token_digest = models.CharField(max_length=64, unique=True, editable=False)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True, editable=False)
    interview = models.OneToOneField(
        "kb.Interview",
        on_delete=models.SET_NULL,
        related_name="invitation",
        null=True,
        blank=True,
        editable=False,
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = SurveyInvitationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                name="invitation_digest_is_hex",
                condition=Q(token_digest__regex=r"^[0-9a-f]{64}$"),
            ),
        ]

    def __str__(self) -> str:
        return f"Invitation #{self.pk} to {self.survey}"

    @property
    def state(self) -> InvitationState:
        return invitation_state(used_at=self.used_at, expires_at=self.expires_at)

    @property
    def is_used(self) -> bool:
        return self.used_at is not None

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()
