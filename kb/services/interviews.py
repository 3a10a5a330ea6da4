"""Writes for surveys, questions, interviews and answers."""

import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max

from kb.models import Answer, Highlight, Interview, Question, Researcher, Survey
from kb.services.records import record_create, record_delete, record_update


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
    text: str,
    kind: str,
    position: int | None = None,
    choices: list[str] | None = None,
    required: bool = True,
) -> Question:
    """Add a question to a survey, at `position` or, by default, after the last one."""
    with transaction.atomic():
        _lock_questions_of(survey.pk)
        if position is None:
            last = survey.questions.aggregate(last=Max("position"))["last"]
            position = (last or 0) + 1
        question = Question(
            survey=survey,
            position=position,
            text=text,
            kind=kind,
            choices=choices or [],
            required=required,
        )
        return record_create(question, actor=actor)


def _lock_questions_of(survey_id: int) -> None:
    """Writes that number a survey's questions lock the survey row first, one at a time, so
    two of them never work from the same positions (nor lock rows in a different order)."""
    Survey.objects.select_for_update().filter(pk=survey_id).first()


def question_update(*, actor, question: Question, data: dict[str, Any]) -> Question:
    """Edit a question. Once it has answers, no edit may invalidate them: its kind stays,
    chosen choices stay offered, and it becomes required only if every answer has a value."""
    with transaction.atomic():
        if "position" in data:
            _lock_questions_of(question.survey_id)
        answers = list(question.answers.all())
        if answers:
            _require_answers_stay_valid(question, answers, data)
        return record_update(question, actor=actor, data=data)


def _require_answers_stay_valid(question: Question, answers: list[Answer], data: dict) -> None:
    count = f"{len(answers)} answer{'s' if len(answers) != 1 else ''}"
    if data.get("kind", question.kind) != question.kind:
        raise ValidationError(
            {"kind": f"The question has {count}; its kind cannot change. Add a new question."}
        )
    chosen = {choice for answer in answers for choice in answer.selected_choices}
    dropped = sorted(chosen - set(data.get("choices", question.choices)))
    if dropped:
        raise ValidationError(
            {"choices": f"Chosen in stored answers, so still offered: {', '.join(dropped)}."}
        )
    if data.get("required") and not question.required and any(map(_is_blank, answers)):
        raise ValidationError(
            {"required": "Some interviews left this question unanswered; it stays optional."}
        )


def _is_blank(answer: Answer) -> bool:
    return not answer.text.strip() and answer.likert is None and not answer.selected_choices


def question_delete(*, actor, question: Question) -> None:
    """Delete a question that has no answers (answers protect it). The questions after it
    move up one place, so a survey's positions stay 1, 2, 3 ... without a gap."""
    with transaction.atomic():
        _lock_questions_of(question.survey_id)
        # Its position now, not when it was loaded; gone already means nothing to do.
        question = Question.objects.filter(pk=question.pk).first()
        if question is None:
            return
        later = list(
            Question.objects.filter(
                survey=question.survey_id, position__gt=question.position
            ).order_by("position")
        )
        record_delete(question, actor=actor)
        # In ascending order, each question moves into the place just freed before it.
        for sibling in later:
            record_update(sibling, actor=actor, data={"position": sibling.position - 1})


# A move's direction, as the page and the API name it, to the offset question_move takes.
QUESTION_MOVES = {"up": -1, "down": 1}


def question_move(*, actor, question: Question, offset: int) -> Question:
    """Swap the question with its neighbour `offset` places away (-1: up, +1: down); at
    either end of the survey nothing changes."""
    with transaction.atomic():
        _lock_questions_of(question.survey_id)
        siblings = list(Question.objects.filter(survey=question.survey_id))
        index = next(i for i, sibling in enumerate(siblings) if sibling.pk == question.pk)
        if not 0 <= index + offset < len(siblings):
            return siblings[index]
        question, other = siblings[index], siblings[index + offset]
        mine, theirs = question.position, other.position
        # (survey, position) is unique, so one of the two waits at 0 (positions start at 1).
        Question.objects.filter(pk=question.pk).update(position=0)
        record_update(other, actor=actor, data={"position": mine})
        record_update(question, actor=actor, data={"position": theirs})
    return question


def _answer_values(question: Question, value: Any) -> dict[str, Any]:
    """A raw value in the column its question's kind uses, the others empty; validation
    comes later."""
    values = {"text": "", "likert": None, "selected_choices": []}
    if question.kind == Question.Kind.LIKERT:
        if value not in (None, "") and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValidationError(
                {"likert": f"A Likert answer must be a whole number, got {value!r}."}
            )
        values["likert"] = None if value in (None, "") else value
    elif question.kind in Question.CHOICE_KINDS:
        values["selected_choices"] = [value] if isinstance(value, str) else list(value or [])
    else:
        values["text"] = "" if value is None else str(value)
    return values


def answer_create(*, actor, interview: Interview, question: Question, value: Any) -> Answer:
    answer = Answer(interview=interview, question=question, **_answer_values(question, value))
    return record_create(answer, actor=actor)


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


def interview_update(
    *, actor, interview: Interview, data: dict[str, Any], answers: dict[int, Any] | None = None
) -> Interview:
    """Edit an interview and, unless `answers` is None, its answers (question id -> value);
    all or nothing.

    The survey can change only while the interview has no answers: answers to the old survey
    are never thrown away. Existing answers are updated; a question of the same survey that
    has no answer yet (added after the interview) gets one only when a value is given.
    Highlights follow their quotes through text edits (`highlights_reanchor`).
    """
    with transaction.atomic():
        existing = {answer.question_id: answer for answer in interview.answers.all()}
        new_survey = "survey" in data and data["survey"] != interview.survey
        if new_survey and existing:
            raise ValidationError(
                {
                    "survey": f"This interview has answers to “{interview.survey}”, so its "
                    "survey cannot change."
                }
            )
        record_update(interview, actor=actor, data=data)
        if answers is not None:
            _save_answers(
                actor=actor, interview=interview, answers=answers, existing=existing,
                complete=new_survey,
            )  # fmt: skip
        highlights_reanchor(actor=actor, interview=interview)
    return interview


def answer_update(*, actor, answer: Answer, data: dict[str, Any]) -> Answer:
    """Edit one answer; highlights of its text follow their quotes (`highlights_reanchor`)."""
    with transaction.atomic():
        record_update(answer, actor=actor, data=data)
        highlights_reanchor(actor=actor, interview=answer.interview)
    return answer


def highlights_reanchor(*, actor, interview: Interview) -> None:
    """After the transcript or an answer changed, move each highlight whose offsets no longer
    select its quote to the quote's occurrence nearest its old start. An edit that removes a
    highlighted passage is refused: a coded quote never silently loses its place."""
    lost = []
    for highlight in Highlight.objects.filter(interview=interview).select_related(
        "interview", "answer"
    ):
        text = highlight.source_text()
        if text[highlight.start : highlight.end] == highlight.quote:
            continue
        start = _nearest_occurrence(text, highlight.quote, highlight.start)
        if start is None:
            lost.append(highlight)
            continue
        record_update(
            highlight, actor=actor, data={"start": start, "end": start + len(highlight.quote)}
        )
    if lost:
        field = "transcript" if lost[0].source == Highlight.Source.TRANSCRIPT else "text"
        raise ValidationError({field: lost_highlights_message([h.pk for h in lost])})


def transcript_highlights_lost(interview: Interview, transcript: str) -> list[int]:
    """Out: ids of the interview's transcript highlights whose quote `transcript` lacks (what
    saving it would refuse), for forms that validate before anything is saved."""
    highlights = interview.highlights.filter(source=Highlight.Source.TRANSCRIPT)
    return [pk for pk, quote in highlights.values_list("pk", "quote") if quote not in transcript]


def lost_highlights_message(ids: list[int]) -> str:
    return (
        f"This edit removes {len(ids)} highlighted passage{'s' if len(ids) != 1 else ''} "
        f"(highlight {', '.join(f'#{pk}' for pk in ids)}). Keep the quoted text, or delete "
        "those highlights first."
    )


def _nearest_occurrence(text: str, quote: str, near: int) -> int | None:
    """Out: the start of the occurrence of `quote` in `text` closest to `near`, or None."""
    starts, found = [], text.find(quote)
    while found != -1:
        starts.append(found)
        found = text.find(quote, found + 1)
    return min(starts, key=lambda start: abs(start - near), default=None)


def _create_answers(*, actor, interview: Interview, answers: dict[int, Any]) -> None:
    _save_answers(actor=actor, interview=interview, answers=answers, existing={}, complete=True)


def _save_answers(
    *, actor, interview: Interview, answers: dict[int, Any], existing: dict, complete: bool
) -> None:
    """Update the `existing` answers and create the others; without `complete`, a question
    left empty gets no answer row. Every error is raised at the end, per question."""
    questions = {q.pk: q for q in interview.survey.questions.all()} if interview.survey else {}
    errors: dict[int, str] = {}
    for question_id in answers:
        if question_id not in questions:
            errors[question_id] = "This question is not part of the interview's survey."
    for question_id, question in questions.items():
        value = answers.get(question_id)
        try:
            if question_id in existing:
                record_update(
                    existing[question_id], actor=actor, data=_answer_values(question, value)
                )
            elif complete or value not in (None, "", []):
                answer_create(actor=actor, interview=interview, question=question, value=value)
        except ValidationError as error:
            errors[question_id] = " ".join(error.messages)
    if errors:
        raise ValidationError(
            {"answers": [f"Question {qid}: {msg}" for qid, msg in errors.items()]}
        )
