"""Search in the browser: typed words in another order and form find the record, the snippet
is plain text with the matching words marked."""

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from tests.factories import InsightFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_search_finds_word_forms_in_any_order(page, live_server, researcher_user):
    insight = InsightFactory(
        title="Grow the network", statement="**Widening** the [second layer](https://x.org) helps."
    )
    log_in(page, live_server, "rita", "pw-rita")
    page.goto(f"{live_server.url}/search/")
    page.get_by_label("Search every kind of record you may see").fill("layers widen")
    page.get_by_role("button", name="Search").click()
    insights = page.get_by_role("region", name="Insights (1)")
    expect(insights.get_by_role("link", name="Grow the network")).to_have_attribute(
        "href", insight.get_absolute_url()
    )
    snippet = insights.locator(".snippet")
    expect(snippet).to_have_text("Widening the second layer helps.")
    expect(snippet.locator("mark")).to_have_text(["Widening", "layer"])
