"""A newcomer's whole path, from a quote to a measured outcome, with a real worker."""

import re

import pytest
from playwright.sync_api import expect

from analysis.models import AnalysisRun
from kb.models import ArchitectureChange, Highlight, Outcome
from tests.analysis.workers import celery_worker, require_redis, unique_queue
from tests.browser.conftest import log_in
from tests.factories import BuiltinModelFactory, ResearcherFactory, ThemeFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TRANSCRIPT = (
    "Interviewer: When would a paper change what you do?\n\n"
    "A: Only if it ends with a concrete change I can try. Tell me which layer to widen, "
    "and why, and I will run it the same day."
)
PASSAGE = "Tell me which layer to widen"
RUN_TIMEOUT_MS = 240_000


@pytest.fixture
def worker_settings(settings, tmp_path):
    require_redis()
    settings.ANALYSIS_QUEUE = unique_queue()
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings


def select_passage(page, container: str, passage: str) -> None:
    """Select `passage` inside the container as a mouse drag would (a DOM Range)."""
    # The page's scripts listen for the selection from DOMContentLoaded on; a heading can be
    # visible before that on a busy host, and a selection made earlier is never seen.
    page.wait_for_load_state("domcontentloaded")
    page.evaluate(
        """([selector, passage]) => {
            const root = document.querySelector(selector);
            const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
            for (let node = walker.nextNode(); node; node = walker.nextNode()) {
                const at = node.textContent.indexOf(passage);
                if (at >= 0) {
                    const range = document.createRange();
                    range.setStart(node, at);
                    range.setEnd(node, at + passage.length);
                    const selection = document.getSelection();
                    selection.removeAllRanges();
                    selection.addRange(range);
                    return;
                }
            }
            throw new Error("passage not found");
        }""",
        [container, passage],
    )


def test_newcomer_goes_from_a_quote_to_a_measured_outcome(
    page, live_server, researcher_user, worker_settings, tmp_path, screenshot
):
    ThemeFactory(name="Wants actionable steps")
    model = BuiltinModelFactory(name="Tiny shapes CNN")
    ResearcherFactory(pseudonym="Vision lead A")
    with celery_worker(
        queue=worker_settings.ANALYSIS_QUEUE,
        log_path=tmp_path / "worker.log",
        media_root=worker_settings.MEDIA_ROOT,
    ):
        log_in(page, live_server, "rita", "pw-rita")
        screenshot("dashboard")

        # Record an interview; today's date and the current user are the defaults.
        page.get_by_role("link", name="Record an interview").first.click()
        page.get_by_label("Researcher").select_option(label="Vision lead A")
        expect(page.get_by_label("Interviewer")).to_have_value(str(researcher_user.pk))
        page.get_by_label("Transcript").fill(TRANSCRIPT)
        page.get_by_role("button", name="Save the interview").click()
        expect(page.get_by_role("heading", level=1)).to_contain_text("Interview with Vision lead A")

        # Select a passage and tag it with a theme.
        select_passage(page, "#transcript-source", PASSAGE)
        expect(page.locator("#selection-status")).to_have_text(
            f"Selected {len(PASSAGE)} characters of the transcript."
        )
        page.get_by_label("Wants actionable steps").check()
        page.get_by_role("button", name="Save the highlight").click()
        expect(page.locator("mark.hl")).to_have_text(PASSAGE)
        highlight = Highlight.objects.get()
        assert (highlight.start, highlight.end) == (
            TRANSCRIPT.index(PASSAGE),
            TRANSCRIPT.index(PASSAGE) + len(PASSAGE),
        )
        screenshot("interview")

        # A finding on the built-in model.
        page.goto(f"{live_server.url}{model.get_absolute_url()}")
        screenshot("model")
        page.get_by_role("link", name="New finding").click()
        page.get_by_label("Title").fill("Shape units in conv2")
        page.get_by_label("Layer name").fill("conv2")
        page.get_by_label("Unit indices").fill("1, 2, 3")
        page.get_by_label("Concept").fill("circle")
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Shape units in conv2")
        screenshot("finding")

        # An insight that links both, then a widen change.
        page.goto(f"{live_server.url}/insights/new/")
        page.get_by_label("Title").fill("Widen where shapes live")
        page.get_by_label("Statement").fill(
            "Researchers want a layer to widen; conv2 holds shapes."
        )
        page.get_by_label("Supporting findings").select_option(
            label="Tiny shapes CNN: Shape units in conv2"
        )
        # A quote's choice names whose quote it is, and from which interview.
        conducted = f"{highlight.interview.conducted_on:%Y-%m-%d}"
        page.get_by_label("Supporting quotes").select_option(
            label=f"Vision lead A, {conducted}: “{PASSAGE}”"
        )
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Widen where shapes live")
        page.get_by_role("link", name="Propose a change").click()
        page.get_by_label("Target model").select_option(label="Tiny shapes CNN")
        page.get_by_label("Operation").select_option("widen_layer")
        page.locator("#id_layer").fill("conv2")
        page.get_by_label("Units").fill("2")
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_role("heading", level=1)).to_have_text(
            "Widen a layer on Tiny shapes CNN"
        )
        change = ArchitectureChange.objects.get()
        assert change.parameters == {"layer": "conv2", "units": 2}

        # Start the experiment with a small configuration and watch it run.
        page.goto(f"{live_server.url}{change.insight.get_absolute_url()}")
        page.get_by_role("link", name="Start the change experiment").click()
        page.get_by_label("Dataset size").fill("80")
        page.get_by_label("Epochs").fill("1")
        page.get_by_label("Seeds").fill("3")
        page.get_by_role("button", name="Start the experiment").click()
        expect(page.get_by_role("heading", level=1)).to_have_text(re.compile("Change experiment #"))
        page.evaluate("window.notReloaded = true")
        expect(page.get_by_test_id("progress-percent")).to_have_text("100%", timeout=RUN_TIMEOUT_MS)
        assert page.evaluate("window.notReloaded") is True
        expect(page.get_by_role("heading", name="Results")).to_be_visible()
        screenshot("run")
        run = AnalysisRun.objects.get()
        assert run.status == AnalysisRun.Status.SUCCEEDED, run.error

    # The outcome and its figure are on the insight page, and counted on the scoreboard.
    outcome = Outcome.objects.get()
    page.goto(f"{live_server.url}{change.insight.get_absolute_url()}")
    expect(page.locator(f"#outcome-{outcome.pk} .verdict")).to_have_text(
        outcome.get_verdict_display()
    )
    figure = page.locator(f"#outcome-{outcome.pk} img").first
    expect(figure).to_be_visible()
    assert page.evaluate("(img) => img.naturalWidth", figure.element_handle()) > 0
    screenshot("insight")
    page.get_by_role("link", name="Scoreboard").click()
    expect(page.locator(".scores")).to_contain_text("of 1")
    expect(page.get_by_role("link", name="Widen a layer on Tiny shapes CNN")).to_be_visible()
    screenshot("scoreboard")
    page.goto(f"{live_server.url}/themes/")
    screenshot("themes")
    page.goto(f"{live_server.url}/search/?q=widen")
    screenshot("search")
