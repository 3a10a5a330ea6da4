"""No page logs a console error, throws, violates the Content-Security-Policy or fails a
request: every list, detail and form page as a researcher, and the admin's as staff."""

import pytest

from tests.browser.conftest import log_in
from tests.kb.pages import world_build
from tests.kb.test_views import PAGES, _url

pytestmark = pytest.mark.django_db(transaction=True)

# Downloads and the fragment the run page polls are not pages a browser shows.
NOT_PAGES = {"outcomes-csv", "theme-researcher-csv", "run-live"}
ADMIN_PAGES = [
    "/admin/",
    "/admin/kb/insight/",
    "/admin/kb/interview/",
    "/admin/kb/highlight/",
    "/admin/analysis/analysisrun/",
    "/api/docs/",
]

RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


def _watch(page) -> list[str]:
    """Everything that went wrong on the page, as lines, from now on."""
    problems = []
    page.add_init_script(RECORD_VIOLATIONS)
    page.on(
        "console",
        lambda m: (
            m.type == "error"
            and problems.append(f"console: {m.text} ({m.location.get('url')}) at {page.url}")
        ),
    )
    page.on("pageerror", lambda error: problems.append(f"script error: {error} at {page.url}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} {r.failure}"))
    page.on(
        "response",
        lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url}"),
    )
    return problems


def _visit_all(page, live_server, paths: list[str]) -> list[str]:
    problems = _watch(page)
    for path in paths:
        response = page.goto(f"{live_server.url}{path}", wait_until="networkidle")
        assert response.status == 200, path
        problems += [f"CSP: {v} at {path}" for v in page.evaluate("window.cspViolations")]
    return problems


def test_no_page_logs_an_error_for_a_researcher(
    page, live_server, researcher_user, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path
    world = world_build()
    log_in(page, live_server, "rita", "pw-rita")
    paths = [_url(world, name, attribute) for name, attribute, _ in PAGES if name not in NOT_PAGES]
    paths.append("/search/?q=actionable")
    assert _visit_all(page, live_server, paths) == []


def test_no_admin_page_logs_an_error_for_staff(page, live_server, staff_user, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    world_build()
    log_in(page, live_server, "sam", "pw-sam")
    assert _visit_all(page, live_server, ADMIN_PAGES) == []
