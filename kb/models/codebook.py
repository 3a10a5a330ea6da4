"""The codebook (hierarchical themes) and highlights that tag transcript passages with it."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.urls import reverse
from simple_history.models import HistoricalRecords

MAX_THEME_DEPTH = 8


class Theme(models.Model):
    """A code in a hierarchical codebook; names are unique among siblings."""

    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    parent = models.ForeignKey(
        "self", on_delete=models.PROTECT, related_name="children", null=True, blank=True
    )
    colour = models.CharField(max_length=7, default="#4f6d7a", help_text="Hex colour, #rrggbb.")

    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["parent", "name"],
                name="theme_unique_name_among_siblings",
                violation_error_message="A sibling theme already has this name.",
            ),
            # NULL parents are distinct in a plain unique constraint, so roots need their own.
            models.UniqueConstraint(
                fields=["name"],
                condition=Q(parent__isnull=True),
                name="theme_unique_root_name",
                violation_error_message="A top-level theme already has this name.",
            ),
            models.CheckConstraint(
                name="theme_colour_is_hex",
                condition=Q(colour__regex=r"^#[0-9a-fA-F]{6}$"),
                violation_error_message="Colour must be a hex colour such as #4f6d7a.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("theme-detail", args=[self.pk])

    def clean(self) -> None:
        ancestor, depth = self.parent, 0
        while ancestor is not None:
            if self.pk is not None and ancestor.pk == self.pk:
                raise ValidationError({"parent": "A theme cannot be its own ancestor."})
            depth += 1
            if depth > MAX_THEME_DEPTH:
                raise ValidationError({"parent": f"Themes nest at most {MAX_THEME_DEPTH} deep."})
            ancestor = ancestor.parent


class Highlight(models.Model):
    """An excerpt of a transcript or of an answer, located by character offsets.

    `quote` is stored alongside the offsets so the excerpt survives later transcript edits;
    validation requires that the offsets select exactly the quote when the highlight is saved.
    """

    class Source(models.TextChoices):
        TRANSCRIPT = "transcript", "Transcript"
        ANSWER = "answer", "Answer"

    interview = models.ForeignKey(
        "kb.Interview", on_delete=models.CASCADE, related_name="highlights"
    )
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.TRANSCRIPT)
    answer = models.ForeignKey(
        "kb.Answer", on_delete=models.CASCADE, related_name="highlights", null=True, blank=True
    )
    start = models.PositiveIntegerField()
    end = models.PositiveIntegerField()
    quote = models.TextField()
    themes = models.ManyToManyField(Theme, related_name="highlights")
    note = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    # Whose coding this is, for agreement between coders (kb.agreement); null for highlights
    # made before coders were recorded. Apart from created_by so that an import or a
    # consensus merge can record a coder other than the person who saved the row.
    coder = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="coded_highlights",
    )
    # Part of the version coders agreed on after a coding round (kb.services.coding_rounds);
    # it has no coder, so it never counts as one in agreement. (Not named `version`: that
    # name marks a record whose saves are checked against a version, kb.services.records.)
    is_consensus = models.BooleanField(default=False)
    # The round whose consensus version this is (set only on consensus highlights): each
    # round's consensus is read and replaced apart from another's on a shared interview.
    coding_round = models.ForeignKey(
        "kb.CodingRound",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="consensus_highlights",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords(m2m_fields=[themes])

    class Meta:
        ordering = ["interview", "start"]
        constraints = [
            models.CheckConstraint(
                name="highlight_offsets_ordered",
                condition=Q(end__gt=models.F("start")),
                violation_error_message="A highlight must end after it starts.",
            ),
            models.CheckConstraint(
                name="highlight_answer_matches_source",
                condition=Q(source="transcript", answer__isnull=True)
                | Q(source="answer", answer__isnull=False),
                violation_error_message="An answer highlight needs its answer; others have none.",
            ),
            models.CheckConstraint(
                name="highlight_round_only_on_consensus",
                condition=Q(is_consensus=True) | Q(coding_round__isnull=True),
                violation_error_message="Only a consensus highlight belongs to a coding round.",
            ),
        ]

    def __str__(self) -> str:
        excerpt = self.quote if len(self.quote) <= 60 else self.quote[:57] + "..."
        return f"“{excerpt}”"

    def get_absolute_url(self) -> str:
        return reverse("interview-detail", args=[self.interview_id]) + f"#highlight-{self.pk}"

    def source_text(self) -> str:
        if self.source == self.Source.ANSWER:
            return self.answer.text if self.answer else ""
        return self.interview.transcript

    def clean(self) -> None:
        if self.answer is not None and self.answer.interview_id != self.interview_id:
            raise ValidationError({"answer": "This answer belongs to another interview."})
        if self.start is None or self.end is None or self.end <= self.start:
            raise ValidationError({"end": "A highlight must end after it starts."})
        text = self.source_text()
        if self.end > len(text):
            raise ValidationError(
                {"end": f"The offsets run past the end of the source ({len(text)} characters)."}
            )
        if text[self.start : self.end] != self.quote:
            raise ValidationError({"quote": "The offsets do not select exactly this quote."})
