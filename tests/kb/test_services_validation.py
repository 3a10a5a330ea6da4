"""Every constraint and validation rule, tried with bad input: a clear error, nothing written."""

import datetime

import pytest
from django.core.exceptions import ValidationError

from kb.models import Event, Highlight, Interview, Question, Researcher
from kb.services.changes import change_create
from kb.services.codebook import highlight_create, theme_create
from kb.services.insights import insight_create, outcome_record_manual
from kb.services.interviews import interview_create, survey_create
from kb.services.people import researcher_create
from kb.services.records import record_delete, record_update
from kb.services.subjects import finding_create, subject_model_create
from tests.factories import (
    BuiltinModelFactory,
    ChangeFactory,
    FindingFactory,
    InsightFactory,
    InterviewFactory,
    ResearcherFactory,
    SubjectModelFactory,
    SurveyFactory,
    ThemeFactory,
)
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db


def _errors(excinfo) -> dict:
    return excinfo.value.message_dict


# --- researchers ----------------------------------------------------------------------------


def test_researcher_consent_without_date_is_refused(researcher_user):
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        researcher_create(
            actor=researcher_user,
            pseudonym="P1",
            role="ml_engineer",
            seniority="senior",
            consent_given=True,
            consent_scope="quotes",
        )
    assert "Consent needs a date and a scope" in str(excinfo.value)


def test_researcher_duplicate_pseudonym_is_refused(researcher_user):
    ResearcherFactory(pseudonym="P1")
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        researcher_create(
            actor=researcher_user, pseudonym="P1", role="ml_engineer", seniority="senior"
        )
    assert "pseudonym" in _errors(excinfo)


def test_researcher_unknown_role_is_refused(researcher_user):
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        researcher_create(actor=researcher_user, pseudonym="P2", role="wizard", seniority="senior")
    assert list(_errors(excinfo)) == ["role"]


def test_researcher_with_interviews_cannot_be_deleted(researcher_user):
    interview = InterviewFactory()
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        record_delete(interview.researcher, actor=researcher_user)
    assert "cannot be deleted while interviews refer to it" in str(excinfo.value)


# --- surveys, interviews and answers ------------------------------------------------------


def test_choice_question_needs_two_choices(researcher_user):
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        survey_create(
            actor=researcher_user,
            title="S",
            questions=[
                {"text": "Pick", "kind": "single_choice", "choices": ["only one"]},
            ],
        )
    assert _errors(excinfo) == {"choices": ["A choice question needs at least two choices."]}


def test_free_text_question_with_choices_is_refused(researcher_user):
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        survey_create(
            actor=researcher_user,
            title="S",
            questions=[
                {"text": "Why?", "kind": "free_text", "choices": ["a", "b"]},
            ],
        )
    assert _errors(excinfo) == {"choices": ["Only choice questions have choices."]}


@pytest.fixture
def survey(researcher_user):
    return survey_create(
        actor=researcher_user,
        title="Care",
        questions=[
            {"text": "Why?", "kind": "free_text"},
            {"text": "Agree?", "kind": "likert"},
            {"text": "Pick one", "kind": "single_choice", "choices": ["a", "b"]},
            {"text": "Pick some", "kind": "multiple_choice", "choices": ["x", "y", "z"]},
        ],
    )


def _answers(survey, **overrides):
    questions = {q.kind: q.pk for q in survey.questions.all()}
    values = {
        "free_text": "Because",
        "likert": 4,
        "single_choice": "a",
        "multiple_choice": ["x", "z"],
    }
    values.update(overrides)
    return {questions[kind]: value for kind, value in values.items()}


def test_interview_with_valid_answers_is_written(researcher_user, survey):
    interview = interview_create(
        actor=researcher_user,
        researcher=ResearcherFactory(),
        conducted_on=datetime.date(2026, 1, 2),
        survey=survey,
        answers=_answers(survey),
    )
    answers = {a.question.kind: a for a in interview.answers.select_related("question")}
    assert answers["likert"].likert == 4
    assert answers["multiple_choice"].selected_choices == ["x", "z"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"likert": 7}, "A Likert answer must be 1 to 5, got 7."),
        ({"likert": 0}, "A Likert answer must be 1 to 5, got 0."),
        ({"likert": "4"}, "A Likert answer must be a whole number, got '4'."),
        ({"single_choice": "c"}, "Not offered by this question: c."),
        ({"multiple_choice": ["x", "nope"]}, "Not offered by this question: nope."),
        ({"multiple_choice": ["x", "x"]}, "A choice was selected twice."),
        ({"free_text": ""}, "This question requires an answer."),
    ],
)
def test_interview_with_an_invalid_answer_writes_nothing(
    researcher_user, survey, override, message
):
    researcher = ResearcherFactory()
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        interview_create(
            actor=researcher_user,
            researcher=researcher,
            conducted_on=datetime.date(2026, 1, 2),
            survey=survey,
            answers=_answers(survey, **override),
        )
    assert message in str(excinfo.value)


def test_answer_to_a_question_of_another_survey_is_refused(researcher_user, survey):
    stray = SurveyFactory().questions.create(position=1, text="?", kind=Question.Kind.FREE_TEXT)
    researcher = ResearcherFactory()
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        interview_create(
            actor=researcher_user,
            researcher=researcher,
            conducted_on=datetime.date(2026, 1, 2),
            survey=survey,
            answers={**_answers(survey), stray.pk: "hi"},
        )
    assert f"Question {stray.pk}: This question is not part of the interview's survey." in str(
        excinfo.value
    )


def test_interview_with_unknown_status_is_refused(researcher_user):
    researcher = ResearcherFactory()
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        interview_create(
            actor=researcher_user,
            researcher=researcher,
            conducted_on=datetime.date(2026, 1, 2),
            status="published",
        )
    assert list(_errors(excinfo)) == ["status"]


# --- themes and highlights ---------------------------------------------------------------


def test_sibling_themes_need_distinct_names(researcher_user):
    parent = ThemeFactory(name="Motivation")
    ThemeFactory(name="Actionable", parent=parent)
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        theme_create(actor=researcher_user, name="Actionable", parent=parent)
    assert "A sibling theme already has this name." in str(excinfo.value)


def test_root_themes_need_distinct_names(researcher_user):
    ThemeFactory(name="Motivation")
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        theme_create(actor=researcher_user, name="Motivation")
    assert "A top-level theme already has this name." in str(excinfo.value)


def test_same_name_under_different_parents_is_allowed(researcher_user):
    theme_create(actor=researcher_user, name="Other", parent=ThemeFactory())
    theme_create(actor=researcher_user, name="Other", parent=ThemeFactory())


def test_theme_colour_must_be_hex(researcher_user):
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        theme_create(actor=researcher_user, name="Red", colour="red")
    assert "Colour must be a hex colour such as #4f6d7a." in str(excinfo.value)


def test_theme_cannot_become_its_own_ancestor(researcher_user):
    root = ThemeFactory(name="Root")
    child = ThemeFactory(name="Child", parent=root)
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        record_update(root, actor=researcher_user, data={"parent": child})
    assert _errors(excinfo) == {"parent": ["A theme cannot be its own ancestor."]}
    assert root.parent is None


def test_highlight_offsets_must_select_the_quote(researcher_user):
    interview = InterviewFactory()
    theme = ThemeFactory()
    text = interview.transcript
    start = text.index("actionable")
    highlight = highlight_create(
        actor=researcher_user,
        interview=interview,
        start=start,
        end=start + 10,
        quote="actionable",
        themes=[theme],
    )
    assert list(highlight.themes.all()) == [theme]
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        highlight_create(
            actor=researcher_user,
            interview=interview,
            start=start,
            end=start + 10,
            quote="actionablE",
            themes=[theme],
        )
    assert _errors(excinfo) == {"quote": ["The offsets do not select exactly this quote."]}


@pytest.mark.parametrize(
    ("start", "end", "field", "message"),
    [
        (10, 10, "end", "A highlight must end after it starts."),
        (5, 2, "end", "A highlight must end after it starts."),
        (0, 10_000, "end", "The offsets run past the end of the source"),
    ],
)
def test_highlight_bad_offsets_are_refused(researcher_user, start, end, field, message):
    interview, theme = InterviewFactory(), ThemeFactory()
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        highlight_create(
            actor=researcher_user,
            interview=interview,
            start=start,
            end=end,
            quote="x",
            themes=[theme],
        )
    assert message in " ".join(_errors(excinfo)[field])


def test_highlight_needs_a_theme(researcher_user):
    interview = InterviewFactory()
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        highlight_create(
            actor=researcher_user, interview=interview, start=0, end=2, quote="We", themes=[]
        )
    assert _errors(excinfo) == {"themes": ["Tag the highlight with at least one theme."]}


def test_highlight_of_an_answer_of_another_interview_is_refused(researcher_user, survey):
    interview = interview_create(
        actor=researcher_user,
        researcher=ResearcherFactory(),
        conducted_on=datetime.date(2026, 1, 2),
        survey=survey,
        answers=_answers(survey),
    )
    answer = interview.answers.get(question__kind="free_text")
    other, theme = InterviewFactory(), ThemeFactory()
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        highlight_create(
            actor=researcher_user,
            interview=other,
            answer=answer,
            start=0,
            end=7,
            quote="Because",
            themes=[theme],
        )
    assert _errors(excinfo)["answer"] == ["This answer belongs to another interview."]
    created = highlight_create(
        actor=researcher_user,
        interview=interview,
        answer=answer,
        start=0,
        end=7,
        quote="Because",
        themes=[ThemeFactory()],
    )
    assert created.source == Highlight.Source.ANSWER


# --- models and findings ------------------------------------------------------------------


def test_builtin_model_needs_a_valid_spec(researcher_user):
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        subject_model_create(
            actor=researcher_user,
            name="Bad",
            kind="builtin",
            architecture_spec={
                "input_shape": [1, 8, 8],
                "num_classes": 2,
                "layers": [{"name": "fc", "type": "warp"}],
            },
        )
    assert "fc" in " ".join(_errors(excinfo)["architecture_spec"])


def test_builtin_model_without_spec_is_refused(researcher_user):
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        subject_model_create(actor=researcher_user, name="Empty", kind="builtin")
    assert _errors(excinfo) == {"architecture_spec": ["A built-in model needs a spec."]}


@pytest.mark.parametrize(
    ("units", "message"),
    [
        ([1, 1], "Unit indices must be unique."),
        ([-1], "Unit indices must be non-negative."),
        (["3"], "Unit indices must be a list of integers."),
        ([2, 6, 9], "Layer conv1 has 6 units; out of range: 6, 9."),
    ],
)
def test_finding_units_are_validated(researcher_user, units, message):
    model = BuiltinModelFactory()
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        finding_create(
            actor=researcher_user,
            subject_model=model,
            title="Curves",
            layer_name="conv1",
            unit_indices=units,
        )
    assert _errors(excinfo) == {"unit_indices": [message]}


def test_finding_on_an_unknown_layer_is_refused(researcher_user):
    model = BuiltinModelFactory()
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        finding_create(
            actor=researcher_user,
            subject_model=model,
            title="X",
            layer_name="mixed3b",
            unit_indices=[0],
        )
    assert _errors(excinfo) == {"layer_name": ["The model has no layer 'mixed3b' with units."]}


def test_finding_on_an_external_model_accepts_any_layer(researcher_user):
    finding = finding_create(
        actor=researcher_user,
        subject_model=SubjectModelFactory(),
        title="Curves",
        layer_name="mixed3b",
        unit_indices=[379, 406],
    )
    assert finding.unit_indices == [379, 406]


def test_finding_confidence_must_be_a_probability(researcher_user):
    model = SubjectModelFactory()
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        finding_create(
            actor=researcher_user, subject_model=model, title="X", layer_name="l", confidence=1.5
        )
    assert _errors(excinfo) == {"confidence": ["Confidence must lie between 0 and 1."]}


# --- insights, changes and outcomes -------------------------------------------------------


def test_insight_evidence_cannot_both_support_and_contradict(researcher_user):
    finding = FindingFactory()
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        insight_create(
            actor=researcher_user,
            title="T",
            statement="S",
            supporting_findings=[finding],
            contradicting_findings=[finding],
        )
    assert _errors(excinfo) == {
        "findings": ["An item cannot both support and contradict an insight."]
    }


def test_insight_level_must_be_1_or_2(researcher_user):
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        insight_create(actor=researcher_user, title="T", statement="S", understanding_level=3)
    assert "understanding_level" in _errors(excinfo)


@pytest.mark.parametrize(
    ("operation", "parameters", "field"),
    [
        ("widen_layer", {"layer": "conv1", "units": 0}, "parameters.units"),
        ("widen_layer", {"layer": "nope", "units": 2}, "parameters.layer"),
        ("widen_layer", {"layer": "fc_out", "units": 2}, "parameters.layer"),
        ("remove_layer", {}, "parameters.layer"),
        ("teleport_layer", {}, "operation"),
    ],
)
def test_change_parameters_are_validated(researcher_user, operation, parameters, field):
    insight, model = InsightFactory(), BuiltinModelFactory()
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        change_create(
            actor=researcher_user,
            insight=insight,
            target_model=model,
            operation=operation,
            parameters=parameters,
        )
    # keyed by the parameter itself, so forms and the API need not parse messages apart
    assert list(_errors(excinfo)) == [field]


def test_typed_change_on_an_external_model_is_refused(researcher_user):
    insight, model = InsightFactory(), SubjectModelFactory()
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        change_create(
            actor=researcher_user,
            insight=insight,
            target_model=model,
            operation="widen_layer",
            parameters={"layer": "mixed4a", "units": 64},
        )
    assert _errors(excinfo) == {"operation": ["Only a manual change can target an external model."]}


def test_change_minimum_effect_must_be_positive(researcher_user):
    insight, model = InsightFactory(), BuiltinModelFactory()
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        change_create(
            actor=researcher_user,
            insight=insight,
            target_model=model,
            operation="widen_layer",
            parameters={"layer": "conv1", "units": 2},
            minimum_effect=0,
        )
    assert "The smallest effect that matters must be positive." in str(excinfo.value)


def test_manual_outcome_gets_statistics_and_evaluates_the_change(researcher_user):
    change = ChangeFactory()
    outcome = outcome_record_manual(
        actor=researcher_user,
        change=change,
        verdict="improved",
        baseline_values=[0.70, 0.71, 0.72],
        variant_values=[0.73, 0.75, 0.74],
    )
    assert outcome.effect == pytest.approx(0.03)
    assert outcome.ci_low < outcome.effect < outcome.ci_high
    assert 0 <= outcome.p_value <= 1
    change.refresh_from_db()
    assert change.status == "evaluated"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"baseline_values": [], "variant_values": [0.5]}, "This field cannot be blank."),
        ({"baseline_values": ["a"], "variant_values": [0.5]}, "Values must be a list of numbers"),
        ({"baseline_values": [0.5], "variant_values": [True]}, "Values must be a list of numbers"),
    ],
)
def test_manual_outcome_with_bad_values_writes_nothing(researcher_user, values, message):
    change = ChangeFactory()
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        outcome_record_manual(actor=researcher_user, change=change, verdict="improved", **values)
    assert message in str(excinfo.value)


def test_manual_outcome_with_unknown_verdict_writes_nothing(researcher_user):
    change = ChangeFactory()
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        outcome_record_manual(
            actor=researcher_user,
            change=change,
            verdict="great",
            baseline_values=[0.5],
            variant_values=[0.6],
        )
    assert "verdict" in _errors(excinfo)


def test_update_with_invalid_value_keeps_row_and_instance(researcher_user):
    researcher = ResearcherFactory(pseudonym="Keep")
    with nothing_written(), pytest.raises(ValidationError):
        record_update(researcher, actor=researcher_user, data={"seniority": "ancient"})
    assert researcher.seniority == Researcher.Seniority.SENIOR
    assert Researcher.objects.get(pk=researcher.pk).seniority == Researcher.Seniority.SENIOR
    assert not Event.objects.exists()


def test_update_of_an_unknown_field_is_refused(researcher_user):
    interview = InterviewFactory()
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        record_update(interview, actor=researcher_user, data={"secret": 1})
    assert excinfo.value.message_dict == {"secret": ["Unknown or read-only field."]}
    assert Interview.objects.get(pk=interview.pk).status == "draft"


@pytest.mark.parametrize(
    ("units", "message"),
    [
        (5, "Unit indices must be a list of integers."),
        ("1,2", "Unit indices must be a list of integers."),
        (list(range(4097)), "A finding names at most 4096 units."),
    ],
)
def test_finding_units_of_the_wrong_shape_are_refused_by_the_service(
    researcher_user, units, message
):
    model = SubjectModelFactory()
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        finding_create(
            actor=researcher_user, subject_model=model, title="X", layer_name="l",
            unit_indices=units,
        )  # fmt: skip
    assert _errors(excinfo) == {"unit_indices": [message]}
