"""Coding rounds: chosen coders code chosen interviews blind, then compare and agree.

While a round is open, a coder who has not marked their part done sees, on the round's
interviews, only their own highlights (kb.selectors.highlight_visibility holds that rule).
"""

from django.conf import settings
from django.db import models
from django.urls import reverse


class CodingRound(models.Model):
    """A round in which `coders` code `interviews` independently (blind) until each marks
    their part done; closing the round ends the blindness for everyone."""

    name = models.CharField(max_length=120)
    interviews = models.ManyToManyField("kb.Interview", related_name="coding_rounds")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="coding_rounds_started",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["closed_at"], name="codinground_closed_at")]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("coding-round-detail", args=[self.pk])

    @property
    def is_open(self) -> bool:
        return self.closed_at is None


class CodingRoundCoder(models.Model):
    """One coder's part in a round; `done_at` is when they marked it done (null: still
    coding, and so still blind to the other coders on the round's interviews)."""

    coding_round = models.ForeignKey(CodingRound, on_delete=models.CASCADE, related_name="coders")
    coder = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="coding_round_parts"
    )
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["coding_round", "coder__username"]
        constraints = [
            models.UniqueConstraint(
                fields=["coding_round", "coder"],
                name="codingroundcoder_once_per_round",
                violation_error_message="This user is already a coder in this round.",
            )
        ]
        indexes = [models.Index(fields=["coder", "done_at"], name="codingroundcoder_coder_done")]

    def __str__(self) -> str:
        return f"{self.coder} in {self.coding_round}"
