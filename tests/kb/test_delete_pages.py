"""Delete pages: a confirmation that says what goes with the record, a deletion through the
service that logs it, and a clear refusal (never a 500) while other records depend on it."""

import pytest
from django.urls import reverse

from kb.models import Event, Highlight, InsightFinding, Interview, Question
from kb.services.insights import outcome_record_manual
from tests.factories import (
    ChangeFactory,
    FindingFactory,
    InsightFactory,
    InterviewFactory,
    QuestionFactory,
    ResearcherFactory,
    SubjectModelFactory,
    SurveyFactory,
    ThemeFactory,
)
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db


def _tagged_highlight(theme=None) -> Highlight:
    interview = InterviewFactory(transcript="Show me the layer to widen.")
    highlight = Highlight.objects.create(interview=interview, start=8, end=13, quote="me th")
    highlight.themes.add(theme or ThemeFactory())
    return highlight


def _survey_with_a_question():
    survey = SurveyFactory()
    QuestionFactory(survey=survey)
    return survey


def _insight_with_a_finding():
    insight = InsightFactory()
    InsightFinding.objects.create(insight=insight, finding=FindingFactory())
    return insight


def _theme_tagging_a_highlight():
    """A theme that tags one highlight, which has another theme too."""
    theme = ThemeFactory()
    _tagged_highlight(theme).themes.add(ThemeFactory())
    return theme


def _interview_with_answer_and_highlight():
    highlight = _tagged_highlight()
    question = QuestionFactory()
    interview = highlight.interview
    Interview.objects.filter(pk=interview.pk).update(survey=question.survey)
    interview.answers.create(question=question, likert=3)
    return interview


def _manual_outcome():
    return outcome_record_manual(
        actor=None, change=ChangeFactory(), baseline_values=[0.9], variant_values=[0.92],
    )  # fmt: skip


# (url name, record builder, where the user lands, what goes with it)
DELETABLE = [
    ("researcher-delete", ResearcherFactory, lambda r: reverse("researcher-list"), []),
    ("survey-delete", _survey_with_a_question, lambda s: reverse("survey-list"), ["1 question"]),
    (
        "interview-delete",
        _interview_with_answer_and_highlight,
        lambda i: reverse("interview-list"),
        ["1 answer", "1 highlight", "1 highlight-theme relationship"],
    ),
    (
        "theme-delete",
        _theme_tagging_a_highlight,
        lambda t: reverse("theme-list"),
        ["1 highlight-theme relationship"],
    ),
    (
        "highlight-delete",
        _tagged_highlight,
        lambda h: h.interview.get_absolute_url(),
        ["1 highlight-theme relationship"],
    ),
    ("model-delete", SubjectModelFactory, lambda m: reverse("model-list"), []),
    ("finding-delete", FindingFactory, lambda f: reverse("finding-list"), []),
    (
        "insight-delete",
        _insight_with_a_finding,
        lambda i: reverse("insight-list"),
        ["1 insight finding"],
    ),
    ("change-delete", ChangeFactory, lambda c: c.insight.get_absolute_url(), []),
    ("question-delete", QuestionFactory, lambda q: q.survey.get_absolute_url(), []),
    ("outcome-delete", _manual_outcome, lambda o: o.change.get_absolute_url(), []),
]


@pytest.mark.parametrize(("name", "build", "landing", "cascade"), DELETABLE)
def test_confirmation_lists_what_goes_and_post_deletes_and_logs(
    client_r, name, build, landing, cascade
):
    record = build()
    url = reverse(name, args=[record.pk])
    body = client_r.get(url).content.decode()
    assert f"<h1>Delete the {record._meta.verbose_name} " in body
    for line in cascade:
        assert f"<li>{line}</li>" in body
    if not cascade:
        assert "Nothing else is deleted with it." in body
    expected_landing = landing(record)
    response = client_r.post(url)
    assert response.status_code == 302
    assert response.url == expected_landing
    assert not type(record).objects.filter(pk=record.pk).exists()
    event = Event.objects.get(action="deleted", target_id=record.pk)
    assert event.target_type.model == record._meta.model_name


# (url name, world attribute, what stops it: (kind, count))
PROTECTED = [
    ("researcher-delete", "researcher", [("interview", 1)]),
    ("survey-delete", "survey", [("answer", 1), ("interview", 1)]),
    ("interview-delete", "interview", [("insight highlight", 1)]),
    ("highlight-delete", "highlight", [("insight highlight", 1)]),
    # the world's study is an analysis run of the model
    ("model-delete", "model", [("analysis run", 1), ("architecture changes", 3), ("finding", 1)]),
    ("finding-delete", "finding", [("insight finding", 1)]),
    ("insight-delete", "insight", [("architecture changes", 3)]),
    ("change-delete", "change", [("analysis run", 1), ("outcome", 1)]),
    ("question-delete", "question", [("answer", 1)]),
]


@pytest.mark.parametrize(("name", "attribute", "blockers"), PROTECTED)
def test_record_others_depend_on_is_refused_clearly_and_kept(
    client_r, world, name, attribute, blockers
):
    record = getattr(world, attribute)
    url = reverse(name, args=[record.pk])
    page = client_r.get(url)
    assert page.status_code == 200
    assert page.context["preview"].blocked_by == blockers
    assert 'class="danger"' not in page.content.decode()
    with nothing_written():
        response = client_r.post(url)
    assert response.status_code == 400
    assert response.context["error"].startswith(f"{record} cannot be deleted while ")
    assert type(record).objects.filter(pk=record.pk).exists()


def test_researcher_page_suggests_anonymising_instead(client_r, world):
    body = client_r.get(reverse("researcher-delete", args=[world.researcher.pk])).content.decode()
    assert "anonymise them instead" in body


def test_theme_with_subthemes_is_refused(client_r):
    parent = ThemeFactory(name="Parent")
    ThemeFactory(name="Child", parent=parent)
    with nothing_written():
        response = client_r.post(reverse("theme-delete", args=[parent.pk]))
    assert response.status_code == 400
    assert response.context["error"] == "Parent cannot be deleted while themes refer to it."


def test_deleting_a_survey_deletes_its_unanswered_questions(client_r):
    survey = _survey_with_a_question()
    client_r.post(reverse("survey-delete", args=[survey.pk]))
    assert not Question.objects.exists()


def test_missing_record_is_404(client_r):
    assert client_r.get(reverse("insight-delete", args=[999999])).status_code == 404
    assert client_r.post(reverse("question-delete", args=[999999])).status_code == 404


def test_theme_that_is_the_only_tag_of_a_highlight_is_refused(client_r):
    theme = _tagged_highlight().themes.get()
    with nothing_written():
        response = client_r.post(reverse("theme-delete", args=[theme.pk]))
    assert response.status_code == 400
    assert response.context["error"] == (
        f"{theme} is the only theme of 1 highlight; tag them with another theme first."
    )


def test_theme_deletion_keeps_the_highlights_it_tagged_with_their_other_themes(client_r):
    highlight = _tagged_highlight()
    kept = highlight.themes.get()
    theme = ThemeFactory()
    highlight.themes.add(theme)
    assert client_r.post(reverse("theme-delete", args=[theme.pk])).status_code == 302
    assert list(highlight.themes.all()) == [kept]
