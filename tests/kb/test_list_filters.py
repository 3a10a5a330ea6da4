"""List pages filter and sort with the API's filter sets (kb/filters.py): controls above the
list, page links that keep the query, and a message instead of an unfiltered list when the
query is wrong."""

import pytest
from django.urls import reverse

from kb.api import filters as api_filters
from kb.models import Insight
from tests.factories import FindingFactory, InsightFactory

pytestmark = pytest.mark.django_db

ACTIONED = Insight.Status.ACTIONED
NOT_APPLIED = "These filters could not be applied"

LIST_PAGES = [
    ("insight-list", api_filters.InsightFilter),
    ("change-list", api_filters.ChangeFilter),
    ("finding-list", api_filters.FindingFilter),
    ("model-list", api_filters.SubjectModelFilter),
    ("run-list", api_filters.RunFilter),
    ("researcher-list", api_filters.ResearcherFilter),
    ("interview-list", api_filters.InterviewFilter),
]


def _titles(response) -> list[str]:
    return [insight.title for insight in response.context["page"].object_list]


def test_each_list_page_offers_every_filter_of_its_endpoint_and_a_sort_order(client_r):
    # One test for every page: the signed-in client is the costly part.
    for page, api_filterset in LIST_PAGES:
        response = client_r.get(reverse(page))

        assert response.status_code == 200, page
        offered = set(response.context["filters"].form.fields)
        assert offered == {*api_filterset.base_filters, "ordering"}, page
        for name in offered:
            assert f'name="{name}"' in response.content.decode(), (page, name)


def test_insights_filtered_by_status_show_only_that_status(client_r):
    InsightFactory(title="Done", status=ACTIONED)
    InsightFactory(title="Still open")

    response = client_r.get(reverse("insight-list"), {"status": ACTIONED})

    assert _titles(response) == ["Done"]
    assert '<option value="actioned" selected>' in response.content.decode()


def test_a_filtered_page_lists_the_same_rows_as_the_api(client_r):
    model = FindingFactory().subject_model
    kept = InsightFactory(title="About the model")
    kept.findings.add(FindingFactory(subject_model=model))
    InsightFactory(title="Elsewhere").findings.add(FindingFactory())
    query = {"model": model.pk, "created_after": "2020-01-01T00:00", "ordering": "-status"}

    page_rows = _titles(client_r.get(reverse("insight-list"), query))
    api_rows = [row["title"] for row in client_r.get("/api/insights/", query).json()["results"]]

    assert page_rows == api_rows == ["About the model"]


def test_sorting_by_a_column_both_ways(client_r):
    for title in ["Beta", "Alpha", "Gamma"]:
        InsightFactory(title=title)

    ascending = client_r.get(reverse("insight-list"), {"ordering": "title"})
    descending = client_r.get(reverse("insight-list"), {"ordering": "-title"})

    assert _titles(ascending) == ["Alpha", "Beta", "Gamma"]
    assert _titles(descending) == ["Gamma", "Beta", "Alpha"]


def test_page_links_keep_the_filters_and_the_order(client_r):
    InsightFactory.create_batch(26, status=ACTIONED)
    InsightFactory(title="Still open")
    query = {"status": ACTIONED, "ordering": "title"}

    first = client_r.get(reverse("insight-list"), query)
    second = client_r.get(reverse("insight-list"), {**query, "page": 2})

    assert 'href="?status=actioned&amp;ordering=title&amp;page=2" rel="next"' in (
        first.content.decode()
    )
    assert len(second.context["page"].object_list) == 1
    assert "Still open" not in second.content.decode()


def test_a_filter_that_matches_nothing_says_so(client_r):
    InsightFactory()

    response = client_r.get(reverse("insight-list"), {"status": ACTIONED})

    assert "No insights match these filters." in response.content.decode()


INVALID_QUERIES = [
    ("insight-list", {"status": "done-ish"}, "Status: Select a valid choice."),
    ("insight-list", {"created_after": "last week"}, "Created after: Enter a valid date/time."),
    ("insight-list", {"created_before": "2026-01-01T00:00+15:00"}, "±14 hours"),
    ("insight-list", {"model": "abc"}, "Model: Select a valid choice."),
    ("insight-list", {"ordering": "statement"}, "Sort by: Select a valid choice."),
    ("finding-list", {"layer": "mixed\x00"}, "Null characters are not allowed."),
    ("finding-list", {"confidence_min": "high"}, "Confidence min: Enter a number."),
    ("interview-list", {"conducted_after": "2026-13-01"}, "Conducted after: Enter a valid date."),
]


def test_an_invalid_filter_is_explained_and_shows_no_rows(client_r):
    FindingFactory()
    InsightFactory()

    for page, query, error in INVALID_QUERIES:
        response = client_r.get(reverse(page), query)

        assert response.status_code == 200, query
        content = response.content.decode()
        assert NOT_APPLIED in content, query
        assert error in content, query
        assert list(response.context["page"].object_list) == [], query
        assert "table-wrap" not in content, query


def test_viewers_filter_the_pages_they_may_read(as_role):
    InsightFactory(title="Done", status=ACTIONED)
    InsightFactory(title="Still open")

    response = as_role("viewer").get(reverse("insight-list"), {"status": ACTIONED})

    assert _titles(response) == ["Done"]


def test_findings_and_changes_are_asked_for_by_number_not_listed(client_r):
    """A drop-down of every finding would grow each page view with the knowledge base."""
    findings = FindingFactory.create_batch(3)
    kept = InsightFactory(title="Linked")
    kept.findings.add(findings[0], through_defaults={"stance": "supports"})
    InsightFactory(title="Other")

    response = client_r.get(reverse("insight-list"), {"finding": findings[0].pk})

    html = response.content.decode()
    assert 'type="number" name="finding"' in html
    assert '<select name="finding"' not in html
    assert str(findings[1]) not in html
    assert _titles(response) == ["Linked"]
