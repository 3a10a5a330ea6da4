"""A study from the form to its live page: the page fills its chart in as rounds are decided,
without a reload and within the Content-Security-Policy, and cancelling asks first."""

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from analysis.engine.study_report import study_values_summary
from analysis.models import AnalysisRun, Study
from tests.analysis.workers import unique_queue
from tests.browser.conftest import log_in
from tests.factories import BuiltinModelFactory

pytestmark = pytest.mark.django_db(transaction=True)

RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


def _decide_base_model(study: Study) -> None:
    """What a worker does when round 0's jobs are done, as far as the page can see."""
    values = [0.8, 0.82, 0.84]
    study.study_rounds.filter(index=0).update(
        values=values, summary=study_values_summary(values), decided_at=timezone.now()
    )


def test_a_study_starts_from_the_form_fills_in_live_and_cancels_after_asking(
    page, live_server, researcher_user, screenshot, settings
):
    # No worker here: round 0's messages go to a queue of their own, which nobody reads.
    settings.ANALYSIS_QUEUE = unique_queue()
    model = BuiltinModelFactory(name="Shapes CNN")
    page.add_init_script(RECORD_VIOLATIONS)
    log_in(page, live_server, "rita", "pw-rita")
    page.goto(f"{live_server.url}{model.get_absolute_url()}")
    page.get_by_role("link", name="Start a study").click()
    expect(page.get_by_label("Base model")).to_have_value(str(model.pk))
    page.get_by_label("Dataset size").fill("200")
    page.get_by_label("Epochs").fill("1")
    page.get_by_label("Seeds").fill("3")
    page.get_by_label("Rounds").fill("2")
    page.get_by_label("Concept").fill("curvature")
    page.get_by_role("button", name="Start the study").click()

    study = Study.objects.get()
    page.wait_for_url(f"{live_server.url}{study.get_absolute_url()}")
    expect(page.get_by_role("heading", name=f"Study #{study.pk} of Shapes CNN")).to_be_visible()
    expect(page.get_by_test_id("study-round")).to_have_text("Base model (round 0), then 2 rounds")
    expect(page.get_by_test_id("no-trajectory")).to_be_visible()

    _decide_base_model(study)  # the live part picks it up without a reload
    chart = page.get_by_role("img", name="test_accuracy against parameters, per track")
    expect(chart).to_be_visible()
    expect(page.locator(".study-chart circle")).to_have_count(3)  # the base model, per track
    expect(page.locator(".study-chart .track-guided polyline")).to_have_css(
        "stroke", "rgb(47, 93, 138)"
    )
    screenshot("study-live")

    questions = []
    page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.dismiss()))
    page.get_by_role("button", name="Cancel the study").click()
    study.refresh_from_db()
    assert study.status == AnalysisRun.Status.QUEUED
    page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.accept()))
    page.get_by_role("button", name="Cancel the study").click()
    expect(page.get_by_text("Study cancelled; its decided rounds are kept.")).to_be_visible()
    study.refresh_from_db()
    assert study.status == AnalysisRun.Status.CANCELLED
    assert (
        questions
        == [
            f"Cancel study {study.pk}? Its unfinished jobs stop; its decided rounds are kept and "
            "you can resume it later."
        ]
        * 2
    )
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    assert page.evaluate("window.cspViolations") == []
