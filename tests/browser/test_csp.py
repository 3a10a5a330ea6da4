"""Chromium enforces the Content-Security-Policy on the site's pages, the admin and the API
docs without refusing anything they need, and theme colours still show (set by site.js
through the CSSOM, not by style attributes)."""

import pytest
from playwright.sync_api import expect

from kb.models import Theme
from tests.browser.conftest import log_in
from tests.kb.pages import world_build

pytestmark = pytest.mark.django_db(transaction=True)

COLOUR, COLOUR_RGB = "#c0392b", "rgb(192, 57, 43)"

# Every securitypolicyviolation event on the page, from before its first script runs.
RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


def test_pages_admin_and_api_docs_run_under_the_csp_with_theme_colours(
    page, live_server, staff_user, settings, tmp_path, screenshot
):
    settings.MEDIA_ROOT = tmp_path
    world = world_build()
    Theme.objects.filter(pk=world.theme.pk).update(colour=COLOUR)
    console_refusals = []
    page.on(
        "console",
        lambda message: (
            "Content Security Policy" in message.text and console_refusals.append(message.text)
        ),
    )
    page.add_init_script(RECORD_VIOLATIONS)
    log_in(page, live_server, "sam", "pw-sam")

    def visit(path: str) -> None:
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 200, path
        assert page.evaluate("window.cspViolations") == [], path

    visit("/")
    visit(world.interview.get_absolute_url())
    expect(page.locator("a.tag").first).to_have_css("border-left-color", COLOUR_RGB)
    expect(page.locator("mark.hl").first).to_have_css("border-bottom-color", COLOUR_RGB)
    visit(world.insight.get_absolute_url())
    expect(page.locator("span.tag").first).to_have_css("border-left-color", COLOUR_RGB)
    visit("/themes/")
    expect(page.locator(".swatch").first).to_have_css("background-color", COLOUR_RGB)
    screenshot("themes-under-csp")
    visit(world.run.get_absolute_url())
    visit("/admin/kb/insight/")
    visit(f"/admin/kb/insight/{world.insight.pk}/change/")
    expect(page.locator("#insight_form")).to_be_visible()
    visit("/api/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Insight KB API")
    expect(page.locator(".opblock").first).to_be_visible()
    assert page.evaluate("window.cspViolations") == []
    assert console_refusals == []

    # The probe works, and the policy is enforced: a style attribute added now is refused.
    page.evaluate("document.body.setAttribute('style', 'color: red')")
    page.wait_for_function("window.cspViolations.length > 0")
    assert page.evaluate("window.cspViolations") == ["style-src-attr inline"]
