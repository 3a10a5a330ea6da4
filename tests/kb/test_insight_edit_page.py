"""The insight form: it shows the evidence already linked, with its stance, says how linking
and removing work, and names whose quote each choice is, with the quote whole."""

import pytest
from django.urls import reverse

from kb.models import Highlight, InsightFinding, InsightHighlight, Stance
from tests.factories import FindingFactory, InterviewFactory

pytestmark = pytest.mark.django_db

LONG_QUOTE = (
    "We want actionable steps for improving the model, and a reason to believe "
    "that each step would help"
)


def test_the_edit_page_lists_linked_evidence_with_its_stance_and_how_to_remove_it(client_r, world):
    against = FindingFactory(title="Shapes live elsewhere")
    InsightFinding.objects.create(insight=world.insight, finding=against, stance=Stance.CONTRADICTS)

    response = client_r.get(reverse("insight-update", args=[world.insight.pk]))

    html = response.content.decode()
    assert [link.finding for link in response.context["finding_links"]] == [
        world.finding,
        against,
    ]
    assert [link.highlight for link in response.context["quote_links"]] == [world.highlight]
    assert '<span class="stance stance-supports">Supports</span> ' in html
    assert '<span class="stance stance-contradicts">Contradicts</span> ' in html
    assert f"<blockquote>{world.highlight.quote}</blockquote>" in html
    assert "How evidence is linked" in html
    assert "To remove a link, press its <em>Remove</em> button" in html
    unlink = reverse("insight-unlink-finding", args=[world.insight.pk, world.finding_link.pk])
    assert f'action="{unlink}"' in html


def test_removing_evidence_from_the_edit_page_returns_to_it(client_r, world):
    url = reverse("insight-unlink-quote", args=[world.insight.pk, world.quote_link.pk])

    response = client_r.post(url, {"back": "edit", "confirmed": "yes"})

    assert response.url == reverse("insight-update", args=[world.insight.pk])
    assert not InsightHighlight.objects.filter(pk=world.quote_link.pk).exists()
    assert Highlight.objects.filter(pk=world.highlight.pk).exists()


def test_removing_evidence_elsewhere_returns_to_the_insight(client_r, world):
    url = reverse("insight-unlink-finding", args=[world.insight.pk, world.finding_link.pk])

    response = client_r.post(url, {"back": "https://elsewhere.example/", "confirmed": "yes"})

    assert response.url == world.insight.get_absolute_url()


def test_quote_choices_name_the_interviewee_and_show_the_whole_quote(client_r):
    interview = InterviewFactory(transcript=LONG_QUOTE + ". Thanks.")
    interview.researcher.pseudonym = "Vision lead A"
    interview.researcher.save()
    highlight = Highlight.objects.create(
        interview=interview, start=0, end=len(LONG_QUOTE), quote=LONG_QUOTE
    )

    response = client_r.get(reverse("insight-create"))

    choices = list(response.context["form"].fields["supporting_highlights"].choices)
    assert [(choice.value, label) for choice, label in choices] == [
        (highlight.pk, f"Vision lead A, 2026-02-01: “{LONG_QUOTE}”")
    ]
    assert "How evidence is linked" in response.content.decode()


def test_a_very_long_quote_is_cut_with_an_ellipsis(client_r):
    words = "word " * 80
    interview = InterviewFactory(transcript=words)
    Highlight.objects.create(interview=interview, start=0, end=len(words), quote=words)

    response = client_r.get(reverse("insight-create"))

    [(_, label)] = list(response.context["form"].fields["contradicting_highlights"].choices)
    quote = label.split(": ", 1)[1]
    assert len(quote) == 240 + 2  # the cut quote in its quotation marks
    assert quote.endswith("word…”")
