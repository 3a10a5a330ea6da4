"""Every list endpoint costs the same number of queries for 1 row and for 50."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from analysis.models import AnalysisJob, AnalysisRun
from kb.models import Answer, Highlight, InsightFinding, InsightHighlight, Outcome
from kb.services.codebook import theme_create
from kb.services.invitations import invitation_create
from tests import factories

pytestmark = pytest.mark.django_db

TRANSCRIPT = factories.InterviewFactory.transcript


def _outcome(change) -> Outcome:
    return Outcome.objects.create(
        change=change, metric="test_accuracy", baseline_values=[0.8], variant_values=[0.9],
        effect=0.1, verdict="improved",
    )  # fmt: skip


def _highlights(n: int) -> list[Highlight]:
    interview = factories.InterviewFactory()
    themes = factories.ThemeFactory.create_batch(2)
    rows = []
    for i in range(n):
        highlight = Highlight.objects.create(interview=interview, start=i, end=i + 2,
                                             quote=TRANSCRIPT[i : i + 2])  # fmt: skip
        highlight.themes.set(themes)
        rows.append(highlight)
    return rows


def _insights(n: int) -> None:
    model = factories.SubjectModelFactory()
    highlight = _highlights(1)[0]
    for insight in factories.InsightFactory.create_batch(n):
        for finding in factories.FindingFactory.create_batch(2, subject_model=model):
            InsightFinding.objects.create(insight=insight, finding=finding)
        InsightHighlight.objects.create(insight=insight, highlight=highlight)
        _outcome(factories.ChangeFactory(insight=insight))


def _answers(n: int) -> None:
    survey = factories.SurveyFactory()
    interview = factories.InterviewFactory(survey=survey)
    for question in factories.QuestionFactory.create_batch(n, survey=survey):
        Answer.objects.create(interview=interview, question=question, likert=3)


def _findings(n: int) -> None:
    model = factories.SubjectModelFactory()
    run = AnalysisRun.objects.create(kind="profile", subject_model=model)
    for finding in factories.FindingFactory.create_batch(n, subject_model=model):
        finding.evidence_runs.add(run)


def _runs(n: int) -> None:
    model = factories.BuiltinModelFactory()
    for _ in range(n):
        run = AnalysisRun.objects.create(
            kind="profile", subject_model=model, result={"figures": {"map": "runs/1/map.png"}}
        )
        AnalysisJob.objects.create(run=run, key="main")


def _surveys(n: int) -> None:
    for survey in factories.SurveyFactory.create_batch(n):
        factories.QuestionFactory.create_batch(2, survey=survey)


def _invitations(n: int) -> None:
    survey = factories.SurveyFactory()
    for researcher in factories.ResearcherFactory.create_batch(n):
        invitation_create(actor=None, survey=survey, researcher=researcher)


BUILDERS = {
    "researchers": lambda n: factories.ResearcherFactory.create_batch(n),
    "surveys": _surveys,
    "questions": lambda n: factories.QuestionFactory.create_batch(
        n, survey=factories.SurveyFactory()
    ),
    "interviews": lambda n: factories.InterviewFactory.create_batch(n),
    "invitations": _invitations,
    "answers": _answers,
    "themes": lambda n: factories.ThemeFactory.create_batch(n),
    "highlights": _highlights,
    "models": lambda n: factories.SubjectModelFactory.create_batch(n),
    "findings": _findings,
    "insights": _insights,
    "changes": lambda n: [_outcome(change) for change in factories.ChangeFactory.create_batch(n)],
    "outcomes": lambda n: [_outcome(change) for change in factories.ChangeFactory.create_batch(n)],
    "runs": _runs,
    "events": lambda n: [theme_create(actor=None, name=f"T{n}-{i}") for i in range(n)],
}


def _count_queries(client, path: str, expected_rows: int) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path, {"page_size": 100})
    assert response.status_code == 200
    assert len(response.json()["results"]) == expected_rows
    return len(queries.captured_queries)


@pytest.mark.parametrize("endpoint", BUILDERS)
def test_a_list_costs_the_same_queries_for_1_and_50_rows(api, researcher_user, endpoint):
    client = api(researcher_user)
    path = f"/api/{endpoint}/"
    client.get(path)  # the user's permissions are cached from here on
    base = _rows(client, path)
    BUILDERS[endpoint](1)
    one = _count_queries(client, path, base + 1)
    BUILDERS[endpoint](49)
    fifty = _count_queries(client, path, base + 50)
    assert one == fifty


def _rows(client, path: str) -> int:
    return len(client.get(path, {"page_size": 100}).json()["results"])


def test_the_insight_list_takes_six_queries(api, researcher_user):
    client = api(researcher_user)
    client.get("/api/insights/")
    _insights(3)
    # count, page, finding links (with titles), highlight links, changes, their outcomes;
    # the user's permissions were cached by the first request.
    assert _count_queries(client, "/api/insights/", 3) == 6
