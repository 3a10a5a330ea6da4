"""Highlights follow their quotes when the transcript or an answer is edited; an edit that
removes a highlighted passage is refused, through the services, the pages and the API."""

import pytest
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from kb.admin import InterviewAdmin, InterviewAdminForm
from kb.models import Event, Highlight, Interview
from kb.services.codebook import highlight_create, highlight_update
from kb.services.interviews import answer_update, interview_update
from tests.factories import InterviewFactory, QuestionFactory, SurveyFactory, ThemeFactory
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db

TRANSCRIPT = "We want actionable steps for improving the model, not pretty pictures."
QUOTE = "actionable steps"


@pytest.fixture
def highlighted(researcher_user):
    interview = InterviewFactory(transcript=TRANSCRIPT)
    start = TRANSCRIPT.index(QUOTE)
    highlight = highlight_create(
        actor=researcher_user, interview=interview, start=start, end=start + len(QUOTE),
        quote=QUOTE, themes=[ThemeFactory()],
    )  # fmt: skip
    return interview, highlight


def test_text_inserted_before_a_quote_moves_its_highlight(researcher_user, highlighted):
    interview, highlight = highlighted
    edited = "Honestly: " + TRANSCRIPT
    interview_update(actor=researcher_user, interview=interview, data={"transcript": edited})
    highlight.refresh_from_db()
    assert (highlight.start, highlight.end) == (18, 34)
    assert edited[highlight.start : highlight.end] == QUOTE
    moved = Event.objects.get(action="updated", target_type__model="highlight")
    assert moved.changes == {"start": [8, 18], "end": [24, 34]}


def test_a_repeated_quote_keeps_the_occurrence_nearest_its_old_place(researcher_user, highlighted):
    interview, highlight = highlighted
    edited = f"Well, {TRANSCRIPT} In short: {QUOTE}."
    interview_update(actor=researcher_user, interview=interview, data={"transcript": edited})
    highlight.refresh_from_db()
    assert highlight.start == 14 and edited.count(QUOTE) == 2


def test_a_moved_highlight_can_take_a_note_afterwards(researcher_user, highlighted):
    interview, highlight = highlighted
    interview_update(
        actor=researcher_user, interview=interview, data={"transcript": "So: " + TRANSCRIPT}
    )
    highlight.refresh_from_db()
    highlight_update(actor=researcher_user, highlight=highlight, note="the core ask")
    assert Highlight.objects.get(pk=highlight.pk).note == "the core ask"


def test_removing_a_highlighted_passage_is_refused_and_nothing_is_written(
    researcher_user, highlighted
):
    interview, highlight = highlighted
    with nothing_written(), pytest.raises(ValidationError) as refused:
        interview_update(
            actor=researcher_user, interview=interview,
            data={"transcript": "We want better models."},
        )  # fmt: skip
    assert refused.value.message_dict == {
        "transcript": [
            f"This edit removes 1 highlighted passage (highlight #{highlight.pk}). Keep the "
            "quoted text, or delete those highlights first."
        ]
    }
    interview.refresh_from_db()
    assert interview.transcript == TRANSCRIPT


def test_the_edit_page_shows_the_refusal_next_to_the_transcript(client_r, highlighted):
    interview, _ = highlighted
    data = {
        "researcher": interview.researcher_id,
        "conducted_on": interview.conducted_on.isoformat(),
        "status": interview.status,
        "transcript": "Nothing quoted survives.",
        "summary": "",
    }
    with nothing_written():
        response = client_r.post(reverse("interview-update", args=[interview.pk]), data)
    assert response.status_code == 200
    assert "removes 1 highlighted passage" in str(response.context["form"].errors["transcript"])


def test_answer_highlights_follow_the_answer_text(researcher_user):
    survey = SurveyFactory()
    question = QuestionFactory(survey=survey, kind="free_text")
    interview = InterviewFactory(survey=survey)
    answer = interview.answers.create(question=question, text="Too slow to be useful")
    highlight = highlight_create(
        actor=researcher_user, interview=interview, answer=answer, start=0, end=8,
        quote="Too slow", themes=[ThemeFactory()],
    )  # fmt: skip
    answer_update(
        actor=researcher_user, answer=answer, data={"text": "Really: Too slow to be useful"}
    )
    highlight.refresh_from_db()
    assert (highlight.start, highlight.end) == (8, 16)
    with nothing_written(), pytest.raises(ValidationError) as refused:
        answer_update(actor=researcher_user, answer=answer, data={"text": "Fine now"})
    assert list(refused.value.message_dict) == ["text"]


def test_the_api_refuses_a_transcript_edit_that_drops_a_quote(researcher_user, highlighted):
    interview, highlight = highlighted
    client = APIClient()
    client.force_authenticate(researcher_user)
    url = f"/api/interviews/{interview.pk}/"
    with nothing_written():
        response = client.patch(url, {"transcript": "Gone."}, format="json")
    assert response.status_code == 400
    assert response.json()["transcript"][0].startswith("This edit removes 1 highlighted passage")
    response = client.patch(url, {"transcript": "Well. " + TRANSCRIPT}, format="json")
    assert response.status_code == 200
    highlight.refresh_from_db()
    assert highlight.start == TRANSCRIPT.index(QUOTE) + 6


def _admin_form(interview, transcript: str) -> InterviewAdminForm:
    data = {
        "researcher": interview.researcher_id,
        "conducted_on": interview.conducted_on.isoformat(),
        "transcript": transcript,
        "summary": "",
        "status": interview.status,
    }
    return InterviewAdminForm(data, instance=interview)


def test_the_admin_form_refuses_dropping_a_quote_and_saving_moves_the_highlight(
    rf, staff_user, highlighted
):
    interview, highlight = highlighted
    refused = _admin_form(interview, "Nothing quoted survives.")
    assert not refused.is_valid()
    assert refused.errors["transcript"] == [
        f"This edit removes 1 highlighted passage (highlight #{highlight.pk}). Keep the quoted "
        "text, or delete those highlights first."
    ]
    form = _admin_form(Interview.objects.get(pk=interview.pk), "So: " + TRANSCRIPT)
    assert form.is_valid(), form.errors
    form.save(commit=False).save()  # as the admin's save_model does
    request = rf.post("/")
    request.user = staff_user
    InterviewAdmin(Interview, admin.site).save_related(request, form, [], change=True)
    highlight.refresh_from_db()
    assert highlight.start == TRANSCRIPT.index(QUOTE) + 4
