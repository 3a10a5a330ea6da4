"""Single-use links that let a researcher answer a survey without an account."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


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
    def is_used(self) -> bool:
        return self.used_at is not None

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()
