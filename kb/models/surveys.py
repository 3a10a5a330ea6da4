"""Questionnaires, interviews and the answers given in them."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.urls import reverse
from simple_history.models import HistoricalRecords

LIKERT_MIN = 1
LIKERT_MAX = 5


class Survey(models.Model):
    """A questionnaire, such as "What would make you care about interpretability?"."""

    title = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("survey-detail", args=[self.pk])


class Question(models.Model):
    """One question of a survey; choice questions carry the choices they offer."""

    class Kind(models.TextChoices):
        FREE_TEXT = "free_text", "Free text"
        LIKERT = "likert", "Likert 1-5"
        SINGLE_CHOICE = "single_choice", "Single choice"
        MULTIPLE_CHOICE = "multiple_choice", "Multiple choice"

    CHOICE_KINDS = (Kind.SINGLE_CHOICE, Kind.MULTIPLE_CHOICE)

    survey = models.ForeignKey(Survey, on_delete=models.CASCADE, related_name="questions")
    # From 1; question_move parks a question at 0 for a moment while swapping two.
    position = models.PositiveSmallIntegerField(validators=[MinValueValidator(1)])
    text = models.TextField()
    kind = models.CharField(max_length=20, choices=Kind.choices)
    choices = models.JSONField(default=list, blank=True)
    required = models.BooleanField(default=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["survey", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["survey", "position"], name="question_unique_position_in_survey"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.survey}: Q{self.position}"

    def get_absolute_url(self) -> str:
        return reverse("survey-detail", args=[self.survey_id]) + f"#question-{self.pk}"

    def clean(self) -> None:
        if not isinstance(self.choices, list) or not all(
            isinstance(choice, str) and choice.strip() for choice in self.choices
        ):
            raise ValidationError({"choices": "Choices must be a list of non-empty strings."})
        if self.kind in self.CHOICE_KINDS:
            if len(self.choices) < 2:
                raise ValidationError({"choices": "A choice question needs at least two choices."})
            if len(set(self.choices)) != len(self.choices):
                raise ValidationError({"choices": "Choices must be distinct."})
        elif self.choices:
            raise ValidationError({"choices": "Only choice questions have choices."})


class Interview(models.Model):
    """One researcher's session: a transcript, optionally the survey it followed, and answers."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        CODED = "coded", "Coded"
        REVIEWED = "reviewed", "Reviewed"

    researcher = models.ForeignKey(
        "kb.Researcher", on_delete=models.PROTECT, related_name="interviews"
    )
    interviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="interviews_conducted",
        null=True,
        blank=True,
    )
    conducted_on = models.DateField()
    survey = models.ForeignKey(
        Survey, on_delete=models.PROTECT, related_name="interviews", null=True, blank=True
    )
    transcript = models.TextField(blank=True, help_text="Markdown.")
    summary = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["-conducted_on", "-id"]
        indexes = [
            models.Index(fields=["status"], name="interview_status_idx"),
            models.Index(fields=["conducted_on"], name="interview_date_idx"),
        ]

    def __str__(self) -> str:
        return f"Interview with {self.researcher} on {self.conducted_on:%Y-%m-%d}"

    def get_absolute_url(self) -> str:
        return reverse("interview-detail", args=[self.pk])


class Answer(models.Model):
    """An interview's answer to one question, stored in the column its question's kind uses."""

    interview = models.ForeignKey(Interview, on_delete=models.CASCADE, related_name="answers")
    question = models.ForeignKey(Question, on_delete=models.PROTECT, related_name="answers")
    text = models.TextField(blank=True)
    likert = models.PositiveSmallIntegerField(null=True, blank=True)
    selected_choices = models.JSONField(default=list, blank=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["interview", "question__position"]
        constraints = [
            models.UniqueConstraint(
                fields=["interview", "question"], name="answer_one_per_question"
            ),
            models.CheckConstraint(
                name="answer_likert_in_range",
                condition=Q(likert__isnull=True)
                | Q(likert__gte=LIKERT_MIN, likert__lte=LIKERT_MAX),
                violation_error_message=f"A Likert answer must be {LIKERT_MIN} to {LIKERT_MAX}.",
            ),
        ]

    def __str__(self) -> str:
        return f"Answer to {self.question}"

    def clean(self) -> None:
        question = self.question
        if self.interview.survey_id != question.survey_id:
            raise ValidationError(
                {"question": "This question is not part of the interview's survey."}
            )
        kind = question.kind
        if kind == Question.Kind.LIKERT:
            self._clean_likert()
        elif kind in Question.CHOICE_KINDS:
            self._clean_choices(question)
        else:
            if self.likert is not None or self.selected_choices:
                raise ValidationError("A free-text answer has only text.")
            if question.required and not self.text.strip():
                raise ValidationError({"text": "This question requires an answer."})

    def _clean_likert(self) -> None:
        if self.text or self.selected_choices:
            raise ValidationError("A Likert answer has only a value from 1 to 5.")
        if self.likert is None:
            if self.question.required:
                raise ValidationError({"likert": "This question requires an answer."})
            return
        if not LIKERT_MIN <= self.likert <= LIKERT_MAX:
            raise ValidationError(
                {
                    "likert": (
                        f"A Likert answer must be {LIKERT_MIN} to {LIKERT_MAX}, got {self.likert}."
                    )
                }
            )

    def _clean_choices(self, question: Question) -> None:
        if self.text or self.likert is not None:
            raise ValidationError("A choice answer has only selected choices.")
        selected = self.selected_choices
        if not isinstance(selected, list) or not all(isinstance(c, str) for c in selected):
            raise ValidationError(
                {"selected_choices": "Selected choices must be a list of strings."}
            )
        offered = set(question.choices)
        unknown = [choice for choice in selected if choice not in offered]
        if unknown:
            raise ValidationError(
                {"selected_choices": f"Not offered by this question: {', '.join(unknown)}."}
            )
        if len(set(selected)) != len(selected):
            raise ValidationError({"selected_choices": "A choice was selected twice."})
        if question.kind == Question.Kind.SINGLE_CHOICE and len(selected) > 1:
            raise ValidationError({"selected_choices": "Select exactly one choice."})
        if question.required and not selected:
            raise ValidationError({"selected_choices": "This question requires an answer."})

    @property
    def source_text(self) -> str:
        """The text a highlight of this answer points into."""
        return self.text
