"""Survey questions after creation: edited, moved and deleted from the survey page, never in a
way that invalidates the answers already stored."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from kb.models import Event, Question
from kb.services.interviews import (
    question_create,
    question_delete,
    question_move,
    question_update,
)
from tests.factories import InterviewFactory, QuestionFactory, SurveyFactory
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db


def _choice_question(**fields) -> Question:
    return QuestionFactory(
        text="Which tools?", kind="multiple_choice", choices=["probes", "saliency"], **fields
    )


def _answer(question: Question, **values):
    interview = InterviewFactory(survey=question.survey)
    return interview.answers.create(question=question, **values)


def _form_data(question: Question, **overrides) -> dict:
    data = {
        "text": question.text,
        "kind": question.kind,
        "choices": "\n".join(question.choices),
        "required": "on" if question.required else "",
    }
    return {**data, **overrides}


# --- editing ----------------------------------------------------------------------------------


def test_edit_page_shows_the_choices_one_a_line(client_r):
    question = _choice_question()
    response = client_r.get(reverse("question-update", args=[question.pk]))
    assert response.status_code == 200
    assert response.context["form"]["choices"].value() == "probes\nsaliency"


def test_question_without_answers_can_change_anything_and_the_edit_is_logged(client_r):
    question = _choice_question()
    response = client_r.post(
        reverse("question-update", args=[question.pk]),
        _form_data(question, text="How useful?", kind="likert", choices=""),
    )
    assert response.status_code == 302
    assert response.url == f"{question.survey.get_absolute_url()}#question-{question.pk}"
    question.refresh_from_db()
    assert (question.text, question.kind, question.choices) == ("How useful?", "likert", [])
    event = Event.objects.get(action="updated", target_id=question.pk)
    assert event.changes["kind"] == ["multiple_choice", "likert"]


def test_answered_question_keeps_its_kind(client_r):
    question = _choice_question()
    _answer(question, selected_choices=["probes"])
    with nothing_written():
        response = client_r.post(
            reverse("question-update", args=[question.pk]),
            _form_data(question, kind="likert", choices=""),
        )
    assert response.status_code == 200
    assert response.context["form"].errors["kind"] == [
        "The question has 1 answer; its kind cannot change. Add a new question."
    ]


def test_answered_question_keeps_the_choices_that_were_chosen(client_r):
    question = _choice_question()
    _answer(question, selected_choices=["probes"])
    with nothing_written():
        response = client_r.post(
            reverse("question-update", args=[question.pk]),
            _form_data(question, choices="saliency\ncircuits"),
        )
    assert response.context["form"].errors["choices"] == [
        "Chosen in stored answers, so still offered: probes."
    ]
    client_r.post(
        reverse("question-update", args=[question.pk]),
        _form_data(question, choices="probes\nsaliency\ncircuits", text="Which tools, if any?"),
    )
    question.refresh_from_db()
    assert question.choices == ["probes", "saliency", "circuits"]
    assert question.text == "Which tools, if any?"


def test_question_left_unanswered_somewhere_cannot_become_required(researcher_user):
    question = _choice_question(required=False)
    _answer(question, selected_choices=[])
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        question_update(actor=researcher_user, question=question, data={"required": True})
    assert excinfo.value.message_dict == {
        "required": ["Some interviews left this question unanswered; it stays optional."]
    }
    question.refresh_from_db()
    assert question.required is False


def test_invalid_edit_is_refused_by_the_model_rules(client_r):
    question = _choice_question()
    with nothing_written():
        response = client_r.post(
            reverse("question-update", args=[question.pk]), _form_data(question, choices="one")
        )
    assert response.context["form"].errors["choices"] == [
        "A choice question needs at least two choices."
    ]


# --- moving -----------------------------------------------------------------------------------


@pytest.fixture
def three_questions():
    survey = SurveyFactory()
    return [QuestionFactory(survey=survey, position=p, text=f"Q{p}") for p in (1, 2, 3)]


def _texts(survey) -> list[str]:
    return list(survey.questions.order_by("position").values_list("text", flat=True))


def test_move_up_and_down_swaps_with_the_neighbour(client_r, three_questions):
    first, second, third = three_questions
    response = client_r.post(reverse("question-move", args=[third.pk]), {"direction": "up"})
    assert response.status_code == 302
    assert _texts(first.survey) == ["Q1", "Q3", "Q2"]
    client_r.post(reverse("question-move", args=[first.pk]), {"direction": "down"})
    assert _texts(first.survey) == ["Q3", "Q1", "Q2"]
    assert sorted(first.survey.questions.values_list("position", flat=True)) == [1, 2, 3]


def test_move_past_either_end_changes_nothing(researcher_user, three_questions):
    first, _, third = three_questions
    with nothing_written():
        question_move(actor=researcher_user, question=first, offset=-1)
        question_move(actor=researcher_user, question=third, offset=1)
    assert _texts(first.survey) == ["Q1", "Q2", "Q3"]


def test_move_without_a_direction_is_a_bad_request(client_r, three_questions):
    with nothing_written():
        response = client_r.post(
            reverse("question-move", args=[three_questions[0].pk]), {"direction": "sideways"}
        )
    assert response.status_code == 400


# --- deleting ---------------------------------------------------------------------------------


def test_unanswered_question_is_deleted_from_its_confirmation_page(client_r):
    question = _choice_question()
    survey = question.survey
    url = reverse("question-delete", args=[question.pk])
    page = client_r.get(url)
    assert page.status_code == 200
    assert "Nothing else is deleted with it." in page.content.decode()
    response = client_r.post(url)
    assert response.status_code == 302
    assert response.url == survey.get_absolute_url()
    assert not Question.objects.exists()
    assert Event.objects.filter(action="deleted", target_id=question.pk).count() == 1


def test_answered_question_is_not_deleted(client_r, researcher_user):
    question = _choice_question()
    _answer(question, selected_choices=["probes"])
    page = client_r.get(reverse("question-delete", args=[question.pk])).content.decode()
    assert "<li>1 answer</li>" in page
    assert 'type="submit" class="danger"' not in page
    with nothing_written():
        response = client_r.post(reverse("question-delete", args=[question.pk]))
    assert response.status_code == 400
    assert f"{question} cannot be deleted while answers refer to it." in response.content.decode()
    with nothing_written(), pytest.raises(ValidationError):
        question_delete(actor=researcher_user, question=question)


def test_deleting_a_question_closes_the_gap_behind_it(client_r, three_questions):
    first, second, third = three_questions
    client_r.post(reverse("question-delete", args=[first.pk]))
    positions = list(first.survey.questions.order_by("position").values_list("text", "position"))
    assert positions == [("Q2", 1), ("Q3", 2)]
    moved = Event.objects.filter(action="updated", target_id__in=[second.pk, third.pk])
    assert moved.count() == 2
    client_r.post(reverse("question-delete", args=[third.pk]))
    assert _texts(first.survey) == ["Q2"]
    assert list(first.survey.questions.values_list("position", flat=True)) == [1]


def test_a_refused_delete_moves_nothing(researcher_user, three_questions):
    first = three_questions[0]
    _answer(first, text="Yes")
    with nothing_written(), pytest.raises(ValidationError):
        question_delete(actor=researcher_user, question=first)
    assert _texts(first.survey) == ["Q1", "Q2", "Q3"]


def test_a_delete_works_from_the_positions_in_the_database(researcher_user, three_questions):
    first, second, third = three_questions
    stale_third = Question.objects.get(pk=third.pk)  # loaded at position 3
    question_delete(actor=researcher_user, question=second)
    question_delete(actor=researcher_user, question=stale_third)  # now at 2
    assert list(first.survey.questions.values_list("text", "position")) == [("Q1", 1)]
    with nothing_written():  # deleted meanwhile: nothing left to do
        question_delete(actor=researcher_user, question=stale_third)


def test_a_question_goes_after_the_last_unless_placed(researcher_user, three_questions):
    survey = three_questions[0].survey
    added = question_create(actor=researcher_user, survey=survey, text="Q4", kind="free_text")
    assert added.position == 4
    with nothing_written(), pytest.raises(ValidationError) as refusal:
        question_create(
            actor=researcher_user, survey=survey, text="Q0", kind="free_text", position=0
        )
    assert "position" in refusal.value.message_dict
