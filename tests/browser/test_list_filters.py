"""List filters in Chromium: choosing a filter changes the rows, and the filter (and the sort
order) survives the page links."""

import pytest
from playwright.sync_api import expect

from kb.models import Finding, Insight
from tests.browser.conftest import log_in
from tests.factories import FindingFactory, SubjectModelFactory

pytestmark = pytest.mark.django_db(transaction=True)

ACTIONED = 27  # more than one page (25 rows)


@pytest.fixture
def reader(page, live_server, researcher_user):
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    log_in(page, live_server, "rita", "pw-rita")
    return errors


def _cells(page, column: int) -> list[str]:
    return page.locator(f"table tbody tr td:nth-child({column})").all_inner_texts()


def test_a_status_filter_changes_the_rows_and_survives_pagination(page, live_server, reader):
    Insight.objects.bulk_create(
        [Insight(title=f"Done {n:02d}", statement="s", status="actioned") for n in range(ACTIONED)]
        + [Insight(title=f"Open {n}", statement="s", status="open") for n in range(3)]
    )
    page.goto(f"{live_server.url}/insights/")
    expect(page.get_by_text("Page 1 of 2")).to_be_visible()
    assert set(_cells(page, 4)) == {"Actioned", "Open"}

    page.locator("select[name=status]").select_option("actioned")
    page.locator("select[name=ordering]").select_option("-title")
    page.get_by_role("button", name="Apply").click()

    expect(page.get_by_text("Page 1 of 2")).to_be_visible()
    assert set(_cells(page, 4)) == {"Actioned"}
    assert _cells(page, 1)[:2] == ["Done 26", "Done 25"]
    page.get_by_role("link", name="Next").click()

    expect(page.get_by_text("Page 2 of 2")).to_be_visible()
    assert _cells(page, 1) == ["Done 01", "Done 00"]
    assert set(_cells(page, 4)) == {"Actioned"}
    expect(page.locator("select[name=status]")).to_have_value("actioned")
    expect(page.locator("select[name=ordering]")).to_have_value("-title")
    assert "status=actioned" in page.url and "page=2" in page.url
    assert reader == []


def test_a_model_filter_on_findings_shows_only_that_models_findings(page, live_server, reader):
    kept, other = SubjectModelFactory(name="Kept model"), SubjectModelFactory(name="Other model")
    FindingFactory(title="About kept", subject_model=kept)
    FindingFactory(title="About other", subject_model=other)
    page.goto(f"{live_server.url}/findings/")
    expect(page.get_by_role("link", name="About other")).to_be_visible()

    page.locator("select[name=model]").select_option(label="Kept model")
    page.get_by_role("button", name="Apply").click()

    expect(page.get_by_role("link", name="About kept")).to_be_visible()
    expect(page.get_by_role("link", name="About other")).to_have_count(0)
    assert Finding.objects.count() == 2  # filtering reads, never writes
    page.get_by_role("link", name="Clear filters").click()
    expect(page.get_by_role("link", name="About other")).to_be_visible()
    assert reader == []
