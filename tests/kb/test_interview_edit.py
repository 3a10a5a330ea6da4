"""The interview edit page: answers are edited there, and the survey can change while the
interview has no answers."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from kb.models import Answer, Event
from kb.services.interviews import interview_update
from tests.factories import InterviewFactory, QuestionFactory, SurveyFactory
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db


def _fields(interview, **overrides) -> dict:
    data = {
        "researcher": interview.researcher_id,
        "conducted_on": interview.conducted_on.isoformat(),
        "status": interview.status,
        "transcript": interview.transcript,
        "summary": interview.summary,
    }
    return {**data, **overrides}


@pytest.fixture
def answered():
    """An interview that answered both questions of its survey."""
    survey = SurveyFactory(title="Tools")
    useful = QuestionFactory(survey=survey, position=1, text="Useful?")
    why = QuestionFactory(survey=survey, position=2, text="Why?", kind="free_text")
    interview = InterviewFactory(survey=survey)
    interview.answers.create(question=useful, likert=2)
    interview.answers.create(question=why, text="Too slow")
    return interview, useful, why


def test_edit_page_shows_the_stored_answers_and_fixes_the_survey(client_r, answered):
    interview, useful, why = answered
    form = client_r.get(reverse("interview-update", args=[interview.pk])).context["form"]
    assert form[f"answer_{useful.pk}"].value() == 2
    assert form[f"answer_{why.pk}"].value() == "Too slow"
    assert form.fields["survey"].disabled
    assert form.fields["survey"].help_text == "Fixed: the interview has answers to this survey."


def test_answers_are_edited_on_the_edit_page_and_logged_without_text(client_r, answered):
    interview, useful, why = answered
    data = _fields(interview, **{f"answer_{useful.pk}": "5", f"answer_{why.pk}": "Fast now"})
    response = client_r.post(reverse("interview-update", args=[interview.pk]), data)
    assert response.status_code == 302
    assert dict(interview.answers.values_list("question_id", "likert")) == {
        useful.pk: 5,
        why.pk: None,
    }
    assert interview.answers.get(question=why).text == "Fast now"
    logged = Event.objects.filter(action="updated", target_type__model="answer")
    assert sorted(str(event.changes) for event in logged) == [
        "{'likert': [2, 5]}",
        "{'text': '(changed; value not logged)'}",
    ]


def test_an_invalid_answer_writes_nothing(client_r, answered):
    interview, useful, why = answered
    data = _fields(
        interview, transcript="New", **{f"answer_{useful.pk}": "", f"answer_{why.pk}": ""}
    )
    with nothing_written():
        response = client_r.post(reverse("interview-update", args=[interview.pk]), data)
    assert response.status_code == 200
    form = response.context["form"]
    assert form.errors[f"answer_{useful.pk}"] == ["This field is required."]
    interview.refresh_from_db()
    assert interview.transcript != "New"


def test_an_answer_out_of_range_writes_nothing(researcher_user, answered):
    interview, useful, why = answered
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        interview_update(
            actor=researcher_user,
            interview=interview,
            data={"summary": "Changed"},
            answers={useful.pk: 9, why.pk: "Still slow"},
        )
    assert excinfo.value.message_dict == {
        "answers": [f"Question {useful.pk}: A Likert answer must be 1 to 5, got 9."]
    }
    assert interview.answers.get(question=why).text == "Too slow"


def test_survey_of_an_answered_interview_cannot_change(researcher_user, answered):
    interview, _, _ = answered
    other = SurveyFactory(title="Other")
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        interview_update(
            actor=researcher_user, interview=interview, data={"survey": other}, answers={}
        )
    assert excinfo.value.message_dict == {
        "survey": ["This interview has answers to “Tools”, so its survey cannot change."]
    }
    interview.refresh_from_db()
    assert interview.survey.title == "Tools"


def test_posted_survey_is_ignored_while_answers_exist(client_r, answered):
    interview, useful, why = answered
    other = SurveyFactory(title="Other")
    data = _fields(
        interview, survey=other.pk, **{f"answer_{useful.pk}": "2", f"answer_{why.pk}": "Too slow"}
    )
    client_r.post(reverse("interview-update", args=[interview.pk]) + f"?survey={other.pk}", data)
    interview.refresh_from_db()
    assert interview.survey.title == "Tools"


def test_interview_without_answers_takes_a_survey_and_its_answers(client_r):
    interview = InterviewFactory(survey=None)
    survey = SurveyFactory(title="Later")
    question = QuestionFactory(survey=survey, text="Useful?")
    url = reverse("interview-update", args=[interview.pk]) + f"?survey={survey.pk}"
    assert f"answer_{question.pk}" in client_r.get(url).context["form"].fields
    with nothing_written():
        refused = client_r.post(url, _fields(interview))
    assert refused.context["form"].errors[f"answer_{question.pk}"] == ["This field is required."]
    response = client_r.post(url, _fields(interview, **{f"answer_{question.pk}": "4"}))
    assert response.status_code == 302
    interview.refresh_from_db()
    assert interview.survey == survey
    assert list(interview.answers.values_list("question_id", "likert")) == [(question.pk, 4)]


def test_question_added_after_the_interview_is_answered_only_when_filled(client_r, answered):
    interview, useful, why = answered
    later = QuestionFactory(survey=interview.survey, position=3, text="Anything else?")
    data = _fields(interview, **{f"answer_{useful.pk}": "2", f"answer_{why.pk}": "Too slow"})
    response = client_r.post(reverse("interview-update", args=[interview.pk]), data)
    assert response.status_code == 302
    assert not Answer.objects.filter(question=later).exists()
    client_r.post(
        reverse("interview-update", args=[interview.pk]), {**data, f"answer_{later.pk}": "3"}
    )
    assert Answer.objects.get(question=later).likert == 3
