"""Buttons that undo work ask first: dismissing the question changes nothing, accepting it
does what the button says."""

import pytest
from playwright.sync_api import expect

from analysis.models import AnalysisRun
from kb.models import InsightFinding
from tests.browser.conftest import log_in
from tests.kb.pages import world_build

pytestmark = pytest.mark.django_db(transaction=True)


def test_cancelling_a_run_and_removing_evidence_ask_first(
    page, live_server, researcher_user, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path
    world = world_build()
    queued = AnalysisRun.objects.create(kind="profile", subject_model=world.model)
    log_in(page, live_server, "rita", "pw-rita")
    questions, accept = [], {"answer": False}

    def handle(dialog):
        questions.append(dialog.message)
        dialog.accept() if accept["answer"] else dialog.dismiss()

    page.on("dialog", handle)
    page.goto(f"{live_server.url}{queued.get_absolute_url()}")
    page.get_by_role("button", name="Cancel the run").click()
    expect(page.get_by_role("button", name="Cancel the run")).to_be_visible()
    queued.refresh_from_db()
    assert queued.status == "queued"
    assert questions == [
        f"Cancel run {queued.pk}? Its unfinished jobs stop; you can retry it later."
    ]

    page.goto(f"{live_server.url}{world.insight.get_absolute_url()}")
    remove = page.get_by_role("button", name=f"Remove the finding {world.finding.title}")
    remove.click()
    assert InsightFinding.objects.filter(pk=world.finding_link.pk).exists()

    accept["answer"] = True
    remove.click()
    expect(page.get_by_text(f"Removed “{world.finding.title}” from the evidence.")).to_be_visible()
    assert not InsightFinding.objects.filter(pk=world.finding_link.pk).exists()
    assert len(questions) == 3
