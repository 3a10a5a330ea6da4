"""A small, complete knowledge base for page tests: one record of every kind, linked the way
a research team links them, plus a finished experiment run with a figure in storage and a
second change whose outcome was recorded by hand."""

import datetime
from dataclasses import dataclass

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from analysis.models import AnalysisRun, Study
from analysis.studies import study_request
from kb.models import (
    ArchitectureChange,
    CodingRound,
    Finding,
    Highlight,
    Insight,
    InsightFinding,
    InsightHighlight,
    Interview,
    Outcome,
    Question,
    Researcher,
    SubjectModel,
    Survey,
    SurveyInvitation,
    Theme,
)
from tests.factories import (
    BuiltinModelFactory,
    ChangeFactory,
    FindingFactory,
    InsightFactory,
    InterviewFactory,
    QuestionFactory,
    ResearcherFactory,
    SurveyFactory,
    ThemeFactory,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
TRANSCRIPT = "We want actionable steps for improving the model, not pretty pictures."
QUOTE = "actionable steps"


def experiment_result(figure_path: str) -> dict:
    arm = {"mean": 0.9, "ci_low": 0.85, "ci_high": 0.95, "values": [0.88, 0.9, 0.92]}
    comparison = {
        "difference": 0.02, "ci_low": 0.01, "ci_high": 0.03, "p_value": 0.01,
        "effect_size": 1.5, "verdict": "improved",
    }  # fmt: skip
    return {
        "plan": {"variant": {"description": "widen conv2 by 2"}, "control": {}},
        "aggregate": {
            "metric": "test_accuracy",
            "per_seed": [{}, {}, {}],
            "arms": {"baseline": arm, "variant": arm, "control": arm},
            "variant_vs_baseline": comparison,
            "variant_vs_control": comparison,
            "verdict": "improved",
            "warnings": ["A small test set."],
            "mechanism": None,
        },
        "figures": {"arms": figure_path},
    }


# The smallest study the validator accepts, on the world's shapes CNN.
STUDY_SETTINGS = {
    "dataset": {"name": "shapes", "n": 80},
    "train": {"epochs": 1},
    "seeds": 3,
    "rounds": 1,
    "concept": "curvature",
}


@dataclass
class World:
    researcher: Researcher
    survey: Survey
    interview: Interview
    theme: Theme
    highlight: Highlight
    model: SubjectModel
    finding: Finding
    insight: Insight
    change: ArchitectureChange
    outcome: Outcome
    run: AnalysisRun
    question: Question
    finding_link: InsightFinding
    quote_link: InsightHighlight
    manual_outcome: Outcome
    proposed_change: ArchitectureChange  # no run yet, so it can still be edited
    coding_round: CodingRound  # open, on the interview, with no coders
    study: Study  # queued, round 0 planned, nothing sent to a worker


def world_build(index: int = 0) -> World:
    """One linked record of every kind; `index` keeps names unique when building several."""
    researcher = ResearcherFactory(full_name=f"Secret Person {index}")
    survey = SurveyFactory()
    question = QuestionFactory(survey=survey, position=1)
    interview = InterviewFactory(researcher=researcher, survey=survey, transcript=TRANSCRIPT)
    interview.answers.create(question=question, likert=4)
    SurveyInvitation.objects.create(
        survey=survey, researcher=researcher, token_digest=f"{index:064x}",
        expires_at=datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC),
    )  # fmt: skip
    theme = ThemeFactory()
    start = TRANSCRIPT.index(QUOTE)
    highlight = Highlight.objects.create(
        interview=interview, start=start, end=start + len(QUOTE), quote=QUOTE
    )
    highlight.themes.add(theme)
    model = BuiltinModelFactory()
    finding = FindingFactory(subject_model=model, layer_name="conv2", unit_indices=[1, 2])
    insight = InsightFactory()
    finding_link = InsightFinding.objects.create(insight=insight, finding=finding)
    quote_link = InsightHighlight.objects.create(insight=insight, highlight=highlight)
    change = ChangeFactory(insight=insight, target_model=model, status="evaluated")
    path = default_storage.save(f"runs/test-{index}/arms.png", ContentFile(PNG))
    run = AnalysisRun.objects.create(
        kind=AnalysisRun.Kind.CHANGE_EXPERIMENT,
        change=change,
        status=AnalysisRun.Status.SUCCEEDED,
        progress_percent=100,
        result=experiment_result(path),
    )
    finding.evidence_runs.add(run)
    outcome = Outcome.objects.create(
        change=change,
        metric="test_accuracy",
        baseline_values=[0.88, 0.9, 0.92],
        variant_values=[0.9, 0.92, 0.94],
        control_values=[0.88, 0.9, 0.91],
        effect=0.02,
        ci_low=0.01,
        ci_high=0.03,
        effect_vs_control=0.023,
        control_ci_low=0.01,
        control_ci_high=0.04,
        verdict="improved",
        source=Outcome.Source.ANALYSIS_RUN,
        analysis_run=run,
    )
    manual_change = ChangeFactory(insight=insight, target_model=model, status="evaluated")
    manual_outcome = Outcome.objects.create(
        change=manual_change,
        metric="test_accuracy",
        baseline_values=[0.9],
        variant_values=[0.9],
        effect=0.0,
        verdict="no_effect",
        source=Outcome.Source.MANUAL,
    )
    proposed_change = ChangeFactory(insight=insight, target_model=model)
    coding_round = CodingRound.objects.create(name=f"Round {index}")
    coding_round.interviews.add(interview)
    study = study_request(actor=None, model=model, settings=STUDY_SETTINGS, dispatch=False)
    return World(
        researcher, survey, interview, theme, highlight, model, finding, insight, change,
        outcome, run, question, finding_link, quote_link, manual_outcome, proposed_change,
        coding_round, study,
    )  # fmt: skip
