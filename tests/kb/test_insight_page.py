"""The insight page's own writes: removing evidence links, and the experiment button, which
says what a second run of an evaluated change does."""

import pytest
from django.urls import reverse
from django.utils.html import escape

from kb.models import Event, Finding, Highlight, Insight, InsightFinding, InsightHighlight
from kb.services.insights import insight_create
from tests.factories import ChangeFactory, FindingFactory, InsightFactory
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db


# --- removing evidence ------------------------------------------------------------------------


CONFIRMED = {"confirmed": "yes"}


def test_removing_a_finding_keeps_the_finding_and_logs_it(client_r, world):
    url = reverse("insight-unlink-finding", args=[world.insight.pk, world.finding_link.pk])
    response = client_r.post(url, CONFIRMED)
    assert response.status_code == 302
    assert response.url == world.insight.get_absolute_url()
    assert not InsightFinding.objects.exists()
    assert Finding.objects.filter(pk=world.finding.pk).exists()
    event = Event.objects.get(action="deleted")
    assert (event.target_type.model, event.target_id) == ("insightfinding", world.finding_link.pk)
    page = client_r.get(response.url).content.decode()
    assert f"Removed “{world.finding.title}” from the evidence." in page
    assert "No findings linked." in page


def test_removing_a_quote_keeps_the_highlight(client_r, world):
    url = reverse("insight-unlink-quote", args=[world.insight.pk, world.quote_link.pk])
    assert client_r.post(url, CONFIRMED).status_code == 302
    assert not InsightHighlight.objects.exists()
    assert Highlight.objects.filter(pk=world.highlight.pk).exists()
    event = Event.objects.get(action="deleted")
    assert event.target_label == f"insight highlight #{world.quote_link.pk}"


def test_a_link_of_another_insight_is_404_and_kept(client_r, world):
    other = InsightFactory()
    with nothing_written():
        finding = client_r.post(
            reverse("insight-unlink-finding", args=[other.pk, world.finding_link.pk]), CONFIRMED
        )
        quote = client_r.post(
            reverse("insight-unlink-quote", args=[other.pk, world.quote_link.pk]), CONFIRMED
        )
    assert (finding.status_code, quote.status_code) == (404, 404)


def test_removing_evidence_without_a_confirmation_asks_on_a_page_and_writes_nothing(
    client_r, world
):
    # Given a browser without scripts, which posts the Remove button unconfirmed
    url = reverse("insight-unlink-finding", args=[world.insight.pk, world.finding_link.pk])
    with nothing_written():
        response = client_r.post(url, {"back": "edit"})
    # Then the page asks, and its button posts the removal again, confirmed, keeping "back"
    html = response.content.decode()
    assert response.status_code == 200
    question = (
        f"Remove the finding {world.finding.title} from this insight's evidence? The finding "
        "itself stays."
    )
    assert f"<p>{escape(question)}</p>" in html
    assert '<input type="hidden" name="confirmed" value="yes">' in html
    assert '<input type="hidden" name="back" value="edit">' in html
    edit_url = reverse("insight-update", args=[world.insight.pk])
    assert f'<a href="{edit_url}">Cancel</a>' in html
    # When confirmed, the link goes
    assert client_r.post(url, {"back": "edit", **CONFIRMED}).url == edit_url
    assert not InsightFinding.objects.filter(pk=world.finding_link.pk).exists()


def test_viewer_dashboard_never_shows_a_linked_quote(client, viewer_user, researcher_user, world):
    world.researcher.consent_scope = "internal"
    world.researcher.save()
    insight_create(
        actor=researcher_user,
        title="Quoted",
        statement="S",
        supporting_highlights=[world.highlight],
    )
    client.force_login(viewer_user)
    body = client.get(reverse("dashboard")).content.decode()
    assert "insight highlight #" not in body  # viewers see no event about quote links
    assert world.highlight.quote not in body


# --- the experiment button --------------------------------------------------------------------


def test_change_without_outcome_offers_its_first_experiment(client_r):
    change = ChangeFactory()
    body = client_r.get(change.insight.get_absolute_url()).content.decode()
    assert "Start the change experiment" in body
    assert "Run again with more seeds" not in body
    page = client_r.get(reverse("change-experiment", args=[change.pk]))
    assert page.context["title"] == f"Run the experiment for {change}"
    assert page.context["form"]["seeds"].value() == 5


def test_evaluated_change_is_offered_a_rerun_with_more_seeds(client_r, world):
    body = client_r.get(world.insight.get_absolute_url()).content.decode()
    # only the world's proposed change, which has never run, offers a first experiment
    assert body.count("Start the change experiment") == 1
    assert reverse("change-experiment", args=[world.proposed_change.pk]) in body
    assert "Run again with more seeds" in body
    assert "The latest outcome, improved over 3 seeds, stays; a new run adds another" in body
    page = client_r.get(reverse("change-experiment", args=[world.change.pk]))
    assert page.context["title"] == f"Run the experiment for {world.change} again"
    assert page.context["form"]["seeds"].value() == 6
    intro = page.content.decode()
    assert "The latest outcome is improved over 3 seeds" in intro
    assert "earlier outcomes are kept" in intro


def test_running_change_offers_no_experiment(client_r, world):
    world.change.status = "running"
    world.change.save()
    body = client_r.get(world.insight.get_absolute_url()).content.decode()
    assert reverse("change-experiment", args=[world.change.pk]) not in body


def test_finding_removed_from_the_evidence_can_be_linked_again(client_r):
    insight = InsightFactory()
    finding = FindingFactory()
    link = InsightFinding.objects.create(insight=insight, finding=finding)
    client_r.post(reverse("insight-unlink-finding", args=[insight.pk, link.pk]), CONFIRMED)
    data = {
        "title": insight.title, "statement": "S", "understanding_level": 1,
        "relevance": "both", "status": "open", "contradicting_findings": [finding.pk],
        "version": Insight.objects.get(pk=insight.pk).version,
    }  # fmt: skip
    client_r.post(reverse("insight-update", args=[insight.pk]), data)
    assert list(insight.finding_links.values_list("stance", flat=True)) == ["contradicts"]
