"""Writes for surveys, questions, interviews and answers."""

import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from kb.models import Answer, Interview, Question, Researcher, Survey
from kb.services.records import record_create


def survey_create(*, actor, title: str, description: str = "", questions: list[dict]) -> Survey:
    """Create a survey with its questions, numbered in the given order; all or nothing.

    Each question dict has `text`, `kind`, optional `choices` and `required`.
    """
    with transaction.atomic():
        survey = record_create(Survey(title=title, description=description), actor=actor)
        for position, question in enumerate(questions, start=1):
            question_create(actor=actor, survey=survey, position=position, **question)
    return survey


def question_create(
    *,
    actor,
    survey: Survey,
    position: int,
    text: str,
    kind: str,
    choices: list[str] | None = None,
    required: bool = True,
) -> Question:
    question = Question(
        survey=survey,
        position=position,
        text=text,
        kind=kind,
        choices=choices or [],
        required=required,
    )
    return record_create(question, actor=actor)


def _answer_for(interview: Interview, question: Question, value: Any) -> Answer:
    """Put a raw value in the column its question's kind uses; validation comes later."""
    answer = Answer(interview=interview, question=question)
    if question.kind == Question.Kind.LIKERT:
        if value not in (None, "") and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValidationError(
                {"likert": f"A Likert answer must be a whole number, got {value!r}."}
            )
        answer.likert = None if value in (None, "") else value
    elif question.kind in Question.CHOICE_KINDS:
        answer.selected_choices = [value] if isinstance(value, str) else list(value or [])
    else:
        answer.text = "" if value is None else str(value)
    return answer


def answer_create(*, actor, interview: Interview, question: Question, value: Any) -> Answer:
    return record_create(_answer_for(interview, question, value), actor=actor)


def interview_create(
    *,
    actor,
    researcher: Researcher,
    conducted_on: datetime.date,
    interviewer=None,
    survey: Survey | None = None,
    transcript: str = "",
    summary: str = "",
    status: str = Interview.Status.DRAFT,
    answers: dict[int, Any] | None = None,
) -> Interview:
    """Create an interview and its answers (question id -> value); all or nothing.

    Errors in answers are raised as {"answers": {question_id: message}} so a form can show
    each next to its question.
    """
    with transaction.atomic():
        interview = record_create(
            Interview(
                researcher=researcher,
                interviewer=interviewer,
                conducted_on=conducted_on,
                survey=survey,
                transcript=transcript,
                summary=summary,
                status=status,
            ),
            actor=actor,
        )
        _create_answers(actor=actor, interview=interview, answers=answers or {})
    return interview


def _create_answers(*, actor, interview: Interview, answers: dict[int, Any]) -> None:
    questions = {q.pk: q for q in interview.survey.questions.all()} if interview.survey else {}
    errors: dict[int, str] = {}
    for question_id in answers:
        if question_id not in questions:
            errors[question_id] = "This question is not part of the interview's survey."
    for question_id, question in questions.items():
        try:
            answer_create(
                actor=actor,
                interview=interview,
                question=question,
                value=answers.get(question_id),
            )
        except ValidationError as error:
            errors[question_id] = " ".join(error.messages)
    if errors:
        raise ValidationError(
            {"answers": [f"Question {qid}: {msg}" for qid, msg in errors.items()]}
        )
