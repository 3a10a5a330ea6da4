"""Create and edit forms: values converted to the types services expect, errors shown next to
their fields, and nothing saved on error."""

import pytest
from django.urls import reverse
from django.utils import timezone

from analysis.models import AnalysisRun
from kb.models import Answer, ArchitectureChange, Finding, Highlight, Interview, Researcher
from tests.factories import (
    BuiltinModelFactory,
    ChangeFactory,
    InsightFactory,
    InterviewFactory,
    QuestionFactory,
    ResearcherFactory,
    SurveyFactory,
    ThemeFactory,
)
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db


def test_researcher_form_creates_and_shows_constraint_errors(client_r):
    data = {
        "pseudonym": "P1",
        "role": "ml_engineer",
        "seniority": "senior",
        "consent_scope": "none",
    }
    response = client_r.post(reverse("researcher-create"), data)
    assert response.status_code == 302
    assert Researcher.objects.get().pseudonym == "P1"
    with nothing_written():
        response = client_r.post(
            reverse("researcher-create"), {**data, "pseudonym": "P2", "consent_given": "on"}
        )
    assert response.status_code == 200
    assert response.context["form"].non_field_errors() == [
        "Consent needs a date and a scope; without consent the scope must be none."
    ]


def test_duplicate_pseudonym_error_sits_next_to_its_field(client_r):
    ResearcherFactory(pseudonym="Taken")
    data = {"pseudonym": "Taken", "role": "other", "seniority": "junior", "consent_scope": "none"}
    with nothing_written():
        response = client_r.post(reverse("researcher-create"), data)
    assert response.context["form"].errors["pseudonym"] == [
        "Researcher with this Pseudonym already exists."
    ]
    assert 'id="id_pseudonym-errors"' in response.content.decode()


def test_a_survey_picked_in_the_dropdown_asks_for_each_answer_beside_its_question(
    client_r, researcher_user
):
    question = QuestionFactory(text="Useful?", required=True)
    data = {
        "researcher": ResearcherFactory().pk, "conducted_on": "2026-03-01",
        "interviewer": researcher_user.pk, "status": "draft", "transcript": "Hello",
        "survey": question.survey.pk,
    }  # fmt: skip
    with nothing_written():
        response = client_r.post(reverse("interview-create"), data)
    assert response.status_code == 200
    form = response.context["form"]
    assert list(form.errors) == [f"answer_{question.pk}"]
    assert "Useful?" in response.content.decode()


def test_interview_form_defaults_to_today_and_the_current_user(client_r, researcher_user):
    form = client_r.get(reverse("interview-create")).context["form"]
    assert form["conducted_on"].value() == timezone.localdate()
    assert form["interviewer"].value() == researcher_user.pk


def test_interview_form_records_answers_to_its_survey(client_r, researcher_user):
    question = QuestionFactory(text="Useful?")
    researcher = ResearcherFactory()
    url = reverse("interview-create") + f"?survey={question.survey.pk}"
    response = client_r.post(
        url,
        {
            "researcher": researcher.pk, "conducted_on": "2026-03-01",
            "interviewer": researcher_user.pk, "status": "draft",
            "transcript": "Line one\r\nLine two", f"answer_{question.pk}": "5",
        },
    )  # fmt: skip
    interview = Interview.objects.get()
    assert response.url == interview.get_absolute_url()
    assert interview.survey == question.survey
    assert interview.transcript == "Line one\nLine two"
    assert Answer.objects.get().likert == 5


def test_highlight_uses_the_selection_offsets(client_r):
    interview, theme = InterviewFactory(), ThemeFactory()
    start = interview.transcript.index("actionable steps")
    response = client_r.post(
        reverse("highlight-create", args=[interview.pk]),
        {"start": start, "end": start + 16, "quote": "actionable steps", "themes": [theme.pk]},
    )
    highlight = Highlight.objects.get()
    assert response.url == highlight.get_absolute_url()
    assert (highlight.start, highlight.end, list(highlight.themes.all())) == (
        start, start + 16, [theme],
    )  # fmt: skip


def test_highlight_without_offsets_finds_a_typed_quote(client_r):
    interview, theme = InterviewFactory(), ThemeFactory()
    client_r.post(
        reverse("highlight-create", args=[interview.pk]),
        {"quote": "pretty pictures", "themes": [theme.pk]},
    )
    assert Highlight.objects.get().start == interview.transcript.index("pretty pictures")


def test_highlight_with_wrong_offsets_or_no_theme_writes_nothing(client_r):
    interview, theme = InterviewFactory(), ThemeFactory()
    url = reverse("highlight-create", args=[interview.pk])
    with nothing_written():
        wrong = client_r.post(
            url, {"start": 0, "end": 5, "quote": "actionable", "themes": [theme.pk]}
        )
        untagged = client_r.post(url, {"quote": "actionable"})
        missing = client_r.post(url, {"quote": "not in it", "themes": [theme.pk]})
    assert wrong.status_code == 400
    assert wrong.context["highlight_form"].errors["quote"] == [
        "The offsets do not select exactly this quote."
    ]
    assert untagged.context["highlight_form"].errors["themes"] == ["This field is required."]
    assert missing.context["highlight_form"].errors["quote"] == [
        "This text does not occur in the transcript."
    ]


def test_finding_form_parses_units_and_checks_them_against_the_model(client_r):
    model = BuiltinModelFactory()
    data = {
        "subject_model": model.pk, "title": "Edges", "kind": "feature", "layer_name": "conv2",
        "unit_indices": "1, 2 3", "status": "hypothesis", "confidence": "0.5",
    }  # fmt: skip
    client_r.post(reverse("finding-create"), data)
    assert Finding.objects.get().unit_indices == [1, 2, 3]
    with nothing_written():
        response = client_r.post(
            reverse("finding-create"), {**data, "title": "Too far", "unit_indices": "1, 99"}
        )
    assert response.context["form"].errors["unit_indices"] == [
        "Layer conv2 has 8 units; out of range: 99."
    ]


def _change_data(insight, model, **parameters):
    return {
        "insight": insight.pk, "target_model": model.pk, "operation": "widen_layer",
        "expected_metric": "test_accuracy", "expected_direction": "increase",
        "minimum_effect": "0.01", **parameters,
    }  # fmt: skip


def test_change_form_builds_typed_parameters(client_r):
    insight, model = InsightFactory(), BuiltinModelFactory()
    client_r.post(reverse("change-create"), _change_data(insight, model, layer="conv2", units="2"))
    assert ArchitectureChange.objects.get().parameters == {"layer": "conv2", "units": 2}


def test_change_form_errors_sit_next_to_the_parameter_fields(client_r):
    insight, model = InsightFactory(), BuiltinModelFactory()
    with nothing_written():
        missing = client_r.post(
            reverse("change-create"), _change_data(insight, model, layer="conv2")
        )
        unknown = client_r.post(
            reverse("change-create"), _change_data(insight, model, layer="conv9", units="2")
        )
    assert missing.context["form"].errors["units"] == ["This operation needs this field."]
    assert unknown.context["form"].errors["layer"] == ["no layer named 'conv9'"]


def test_experiment_form_accepts_a_small_configuration(client_r):
    change = ChangeFactory()
    response = client_r.post(
        reverse("change-experiment", args=[change.pk]),
        {
            "dataset": "shapes",
            "dataset_size": "80",
            "epochs": "1",
            "seeds": "3",
            "control_seed": "0",
        },
    )
    run = AnalysisRun.objects.get()
    assert response.url == run.get_absolute_url()
    assert run.config["seeds"] == [0, 1, 2]
    assert run.config["dataset"] == {"name": "shapes", "n": 80, "seed": 0, "size": 12}
    assert run.config["train"] == {"epochs": 1}
    change.refresh_from_db()
    assert change.status == "running"


def test_experiment_form_refuses_too_few_seeds_and_writes_nothing(client_r):
    change = ChangeFactory()
    with nothing_written():
        response = client_r.post(
            reverse("change-experiment", args=[change.pk]),
            {"dataset": "shapes", "epochs": "1", "seeds": "2", "control_seed": "0"},
        )
    assert response.context["form"].errors["seeds"] == [
        "Ensure this value is greater than or equal to 3."
    ]


def test_manual_outcome_form_parses_values(client_r):
    change = ChangeFactory(target_model=BuiltinModelFactory())
    client_r.post(
        reverse("outcome-create", args=[change.pk]),
        {"verdict": "improved", "baseline_values": "0.8, 0.82", "variant_values": "0.85 0.86"},
    )
    outcome = change.outcomes.get()
    assert (outcome.baseline_values, outcome.variant_values) == ([0.8, 0.82], [0.85, 0.86])


def test_run_can_be_cancelled_then_retried_from_its_page(client_r, researcher_user):
    from analysis.services import experiment_request

    run = experiment_request(actor=researcher_user, change=ChangeFactory(), dispatch=False)
    client_r.post(reverse("run-cancel", args=[run.pk]))
    run.refresh_from_db()
    assert run.status == "cancelled"
    client_r.post(reverse("run-retry", args=[run.pk]))
    run.refresh_from_db()
    assert run.status == "queued"


def test_markdown_preview_is_sanitised(client_r):
    response = client_r.post(reverse("markdown-preview"), {"text": "**hi** <script>x</script>"})
    assert response.content.decode() == "<p><strong>hi</strong> </p>"


def test_edit_form_saves_through_the_service_and_logs_it(client_r):
    survey = SurveyFactory(title="Old")
    client_r.post(reverse("survey-update", args=[survey.pk]), {"title": "New", "description": ""})
    survey.refresh_from_db()
    assert survey.title == "New"
    assert survey.history.count() == 2


def test_insight_edit_links_more_evidence_once(client_r):
    insight = InsightFactory()
    finding = Finding.objects.create(
        subject_model=BuiltinModelFactory(), title="F", layer_name="conv1"
    )
    data = {
        "title": insight.title, "statement": "S", "understanding_level": 1,
        "relevance": "both", "status": "open", "supporting_findings": [finding.pk],
    }  # fmt: skip
    client_r.post(reverse("insight-update", args=[insight.pk]), data)
    client_r.post(reverse("insight-update", args=[insight.pk]), data)
    assert list(insight.finding_links.values_list("finding_id", "stance")) == [
        (finding.pk, "supports")
    ]
