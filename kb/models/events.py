"""The append-only event log written by service functions."""

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import models


class AppendOnlyError(RuntimeError):
    """Raised when code tries to edit or delete an event."""


class Event(models.Model):
    """Who did what to which record, when, with the changed fields. Never edited or deleted
    (one exception: anonymising a researcher erases their personal data, see kb/events.py).

    `target_label` is a non-personal label (pseudonym, title, id) so the log can be shown to
    anyone who may see the record's kind without leaking names or transcripts.
    """

    class Action(models.TextChoices):
        CREATED = "created", "Created"
        UPDATED = "updated", "Updated"
        DELETED = "deleted", "Deleted"
        ANONYMISED = "anonymised", "Anonymised"
        LINKED = "linked", "Linked"
        STATUS_CHANGED = "status_changed", "Status changed"
        RUN_REQUESTED = "run_requested", "Run requested"
        RUN_FINISHED = "run_finished", "Run finished"
        JOB_RECLAIMED = "job_reclaimed", "Job taken over after its worker stopped"
        OUTCOME_RECORDED = "outcome_recorded", "Outcome recorded"

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    action = models.CharField(max_length=24, choices=Action.choices)
    target_type = models.ForeignKey(ContentType, on_delete=models.PROTECT)
    target_id = models.PositiveBigIntegerField()
    target_label = models.CharField(max_length=200)
    changes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["target_type", "target_id"], name="event_target_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.action} {self.target_label}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise AppendOnlyError("Events are append-only and cannot be edited.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Events are append-only and cannot be deleted.")
