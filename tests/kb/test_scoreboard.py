"""The scoreboard page: a number only where it is defined, labels whole, and every outcome
newest first, a page at a time."""

import datetime
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from kb.models import ArchitectureChange, Outcome
from kb.templatetags.kb_pages import proportion_chart
from kb.views.base import PAGE_SIZE
from tests.factories import BuiltinModelFactory, ChangeFactory

pytestmark = pytest.mark.django_db

LONG_NAME = "A model with a rather long name that would not fit beside its bar"


def manual_outcome(change, *, verdict="no_effect", recorded_at=None) -> Outcome:
    """An outcome entered by hand: no control, so nothing to say against the control."""
    outcome = Outcome.objects.create(
        change=change, metric="test_accuracy", baseline_values=[0.9], variant_values=[0.91],
        effect=0.01, verdict=verdict, source=Outcome.Source.MANUAL,
    )  # fmt: skip
    if recorded_at is not None:
        Outcome.objects.filter(pk=outcome.pk).update(recorded_at=recorded_at)
    return outcome


def test_rows_without_control_outcomes_show_no_interval(client, viewer_user):
    change = ChangeFactory(target_model=BuiltinModelFactory(name=LONG_NAME), status="evaluated")
    manual_outcome(change)
    client.force_login(viewer_user)
    body = client.get(reverse("scoreboard")).content.decode()
    assert "undefined" not in body
    assert "0 of 0" not in body
    row = re.search(rf"<th scope=\"row\">{LONG_NAME}</th>(.*?)</tr>", body, re.S).group(1)
    # Beat baseline: 0 of 1 with its interval; beat control: nothing to count, no interval.
    assert row.startswith("<td>0 of 1</td><td>0%–79%</td>")
    assert row.endswith(
        '<td class="muted">none to count</td><td><span class="visually-hidden">no interval'
        "</span></td>"
    )


def test_chart_labels_wrap_whole_and_empty_rows_draw_no_interval():
    empty = {"count": 0, "n": 0, "share": None, "ci_low": None, "ci_high": None}
    full = {"count": 1, "n": 2, "share": 0.5, "ci_low": 0.1, "ci_high": 0.9}
    svg = str(proportion_chart([(LONG_NAME, empty), ("Short", full)], "Chart"))
    words = " ".join(re.findall(r"<tspan [^>]*>([^<]*)</tspan>", svg))
    assert words == f"{LONG_NAME} Short"
    assert svg.count('class="ci"') == 1 and svg.count('class="bar"') == 1
    assert "none counted" in svg


def test_every_outcome_is_listed_newest_first_a_page_at_a_time(client, viewer_user):
    model = BuiltinModelFactory()
    now = timezone.now()
    outcomes = [
        manual_outcome(
            ChangeFactory(target_model=model, status=ArchitectureChange.Status.EVALUATED),
            recorded_at=now - datetime.timedelta(hours=hours),
        )
        for hours in range(PAGE_SIZE + 2)
    ]
    client.force_login(viewer_user)
    first = client.get(reverse("scoreboard"))
    second = client.get(reverse("scoreboard"), {"page": 2})
    listed = [o.pk for o in first.context["page"]] + [o.pk for o in second.context["page"]]
    assert listed == [outcome.pk for outcome in outcomes]
    assert 'href="?page=2"' in first.content.decode()
    assert "Page 2 of 2" in second.content.decode()
