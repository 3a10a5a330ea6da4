"""A viewer cannot reach a transcript; a respondent answers a survey link exactly once."""

import pytest
from playwright.sync_api import expect

from kb.models import Answer, Interview, SurveyInvitation
from kb.services.interviews import survey_create
from kb.services.invitations import invitation_create
from tests.browser.conftest import log_in
from tests.factories import InsightFactory, ResearcherFactory
from tests.kb.pages import world_build

pytestmark = pytest.mark.django_db(transaction=True)


def test_viewer_cannot_open_a_transcript_by_link_or_by_url(
    page, live_server, viewer_user, settings, tmp_path, screenshot
):
    settings.MEDIA_ROOT = tmp_path
    world = world_build()
    InsightFactory(title="Only an insight")
    log_in(page, live_server, "victor", "pw-victor")
    screenshot("dashboard-viewer")

    # No link leads to interviews: not in the navigation, not from the insight's quotes.
    expect(page.get_by_role("navigation", name="Main").get_by_role("link")).not_to_contain_text(
        ["Interviews"]
    )
    page.goto(f"{live_server.url}{world.insight.get_absolute_url()}")
    expect(page.get_by_role("heading", name=world.insight.title)).to_be_visible()
    expect(page.locator("blockquote")).to_have_text("actionable steps")
    assert page.locator(f"a[href^='/interviews/{world.interview.pk}']").count() == 0
    assert "pretty pictures" not in page.content()
    screenshot("insight-viewer")

    # Typing the address gives the refusal page, without the transcript.
    response = page.goto(f"{live_server.url}{world.interview.get_absolute_url()}")
    assert response.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("You may not open this page")
    assert "pretty pictures" not in page.content()
    screenshot("interview-refused-viewer")


def test_respondent_answers_through_a_link_which_then_refuses_a_second_use(
    page, live_server, researcher_user, screenshot
):
    survey = survey_create(
        actor=researcher_user,
        title="What would make you care?",
        questions=[
            {"text": "What would you act on?", "kind": "free_text"},
            {"text": "Interpretability changed my designs.", "kind": "likert"},
            {"text": "Act on first?", "kind": "single_choice", "choices": ["A change", "A map"]},
        ],
    )
    researcher = ResearcherFactory(pseudonym="Respondent R")
    _, token = invitation_create(actor=researcher_user, survey=survey, researcher=researcher)
    link = f"{live_server.url}/s/{token}/"

    page.goto(link)
    expect(page.get_by_role("heading", level=1)).to_have_text("What would make you care?")
    page.get_by_label("What would you act on?").fill("A concrete layer to widen.")
    page.get_by_role("group", name="Interpretability changed my designs.").get_by_label("4").check()
    page.get_by_label("A change").check()
    screenshot("survey-respond")
    page.get_by_role("button", name="Send my answers").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Thank you")

    interview = Interview.objects.get(researcher=researcher)
    answers = {a.question.position: a for a in Answer.objects.filter(interview=interview)}
    assert answers[1].text == "A concrete layer to widen."
    assert answers[2].likert == 4
    assert answers[3].selected_choices == ["A change"]
    assert SurveyInvitation.objects.get().interview == interview

    response = page.goto(link)
    assert response.status == 410
    expect(page.get_by_role("alert")).to_contain_text("already been used")
    screenshot("survey-link-used")
    assert Interview.objects.count() == 1
