"""Every list and detail page runs the same number of queries for 1 row and for 30."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from kb.models import (
    ArchitectureChange,
    Finding,
    Highlight,
    InsightFinding,
    InsightHighlight,
    Interview,
    SurveyInvitation,
)
from tests.kb.pages import world_build

pytestmark = pytest.mark.django_db

LIST_PAGES = [
    "dashboard", "insight-list", "finding-list", "model-list", "change-list", "run-list",
    "theme-list", "survey-list", "researcher-list", "interview-list", "scoreboard",
    "outcomes-csv", "theme-researcher-csv",
]  # fmt: skip
DETAIL_PAGES = [
    ("insight-detail", "insight"), ("finding-detail", "finding"), ("model-detail", "model"),
    ("change-detail", "change"), ("run-detail", "run"), ("run-live", "run"),
    ("theme-detail", "theme"), ("survey-detail", "survey"), ("researcher-detail", "researcher"),
    ("interview-detail", "interview"), ("insight-update", "insight"),
    ("change-update", "proposed_change"), ("finding-create", None), ("interview-create", None),
    ("interview-update", "interview"), ("question-update", "question"),
    ("survey-delete", "survey"), ("insight-delete", "insight"), ("theme-delete", "theme"),
    ("model-delete", "model"), ("researcher-delete", "researcher"),
    ("interview-delete", "interview"), ("highlight-update", "highlight"),
    ("outcome-update", "manual_outcome"), ("outcome-delete", "manual_outcome"),
]  # fmt: skip


def _attach_to_first(first, other) -> None:
    """Hang another world's rows off the first world's records, so that every detail page of
    the first world has 30 related rows of each kind instead of one."""
    InsightFinding.objects.create(insight=first.insight, finding=other.finding)
    InsightHighlight.objects.create(insight=first.insight, highlight=other.highlight)
    ArchitectureChange.objects.filter(pk=other.change.pk).update(
        insight=first.insight, target_model=first.model
    )
    Finding.objects.filter(pk=other.finding.pk).update(subject_model=first.model)
    first.finding.evidence_runs.add(other.run)
    other.highlight.themes.add(first.theme)
    Interview.objects.filter(pk=other.interview.pk).update(
        researcher=first.researcher, survey=first.survey
    )
    Highlight.objects.create(
        interview=first.interview, start=first.highlight.start, end=first.highlight.end,
        quote=first.highlight.quote,
    ).themes.add(other.theme)  # fmt: skip
    SurveyInvitation.objects.create(
        survey=first.survey, researcher=other.researcher,
        token_digest=f"{other.researcher.pk + 1000:064x}", expires_at="2030-01-01T00:00Z",
    )  # fmt: skip


def _count(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(queries)


def _urls(world) -> list[str]:
    urls = [reverse(name) for name in LIST_PAGES]
    for name, attribute in DETAIL_PAGES:
        urls.append(reverse(name, args=[getattr(world, attribute).pk] if attribute else []))
    return urls + [reverse("search") + "?q=actionable"]


def test_pages_run_as_many_queries_for_30_rows_as_for_1(
    client, researcher_user, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path
    first = world_build()
    client.force_login(researcher_user)
    urls = _urls(first)
    for url in urls:  # warm up: content types, session
        client.get(url)
    with_one = {url: _count(client, url) for url in urls}
    for index in range(1, 30):
        _attach_to_first(first, world_build(index))
    with_thirty = {url: _count(client, url) for url in urls}
    assert with_thirty == with_one


def test_insight_page_queries_are_pinned(client, researcher_user, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    world = world_build()
    client.force_login(researcher_user)
    client.get(world.insight.get_absolute_url())
    # session, user, the user's permissions (user and group), insight, finding links
    # (+finding, model), highlight links (+highlight, interview, researcher), their themes,
    # changes (+model), their outcomes (+run), their runs
    assert _count(client, world.insight.get_absolute_url()) == 11
