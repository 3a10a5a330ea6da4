"""Outcome numbers on the pages: undefined statistics say so, numbers come with the settings
they were measured with, and a hand-entered verdict is the one its values give."""

import csv
import io

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from analysis.models import AnalysisRun
from kb.models import Outcome
from kb.services.insights import outcome_record_manual
from tests.factories import ChangeFactory
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db

CONFIG = {
    "dataset": {"name": "shapes", "n": 2000, "seed": 0},
    "train": {"epochs": 3},
    "seeds": [0, 1, 2],
}


def _measured(change, **fields) -> Outcome:
    """A measured outcome with its run, as the worker writes them; `fields` override."""
    run = AnalysisRun.objects.create(
        kind=AnalysisRun.Kind.CHANGE_EXPERIMENT, change=change, config=CONFIG,
        status=AnalysisRun.Status.SUCCEEDED, progress_percent=100,
    )  # fmt: skip
    values = {
        "metric": "test_accuracy", "baseline_values": [0.812345678, 0.8, 0.81],
        "variant_values": [0.83, 0.84, 0.85], "effect": 0.0325441, "ci_low": 0.01,
        "ci_high": 0.05, "p_value": 0.0123456, "verdict": "improved",
        "source": Outcome.Source.ANALYSIS_RUN, "analysis_run": run, **fields,
    }  # fmt: skip
    change.status = "evaluated"
    change.save()
    return Outcome.objects.create(change=change, **values)


def _page(client, change) -> str:
    response = client.get(change.get_absolute_url())
    assert response.status_code == 200
    return response.content.decode()


# --- the change page ------------------------------------------------------------------------


def test_undefined_statistics_read_undefined_on_the_change_page(client_r):
    # Given a hand-entered outcome whose difference is the same on every seed
    change = ChangeFactory()
    outcome_record_manual(
        actor=None, change=change, baseline_values=[0.80, 0.81, 0.82],
        variant_values=[0.81, 0.82, 0.83],
    )  # fmt: skip
    body = _page(client_r, change)
    # Then no interval or p-value is printed as a number, and the page says why
    assert "test_accuracy +0.01 (95% CI undefined, p = undefined)" in body
    assert (
        "The values give &#x27;inconclusive&#x27;: the values do not vary between seeds (the "
        "difference is the same on every seed), so its spread and its confidence interval are "
        "undefined." in body
    )
    # And the power warning of measured outcomes, computed from the values
    assert (
        "The difference in test_accuracy is the same on all 3 seeds, so its spread, and with "
        "it the power to detect the expected effect, cannot be estimated." in body
    )


def test_a_measured_outcome_shows_its_settings_and_rounded_values(client_r):
    change = ChangeFactory()
    outcome = _measured(change)
    body = _page(client_r, change)
    run = outcome.analysis_run
    assert (
        "<dt>Measured with</dt><dd>shapes (2000 examples), 3 epochs, seeds 0, 1, 2 · "
        f'<a href="{run.get_absolute_url()}">run {run.pk}</a></dd>' in body
    )
    assert "test_accuracy +0.03254 (95% CI +0.01 to +0.05, p = 0.0123)" in body
    assert "<td>0.8123, 0.8000, 0.8100</td>" in body


def test_an_interval_past_the_metrics_range_is_said_on_the_page(client_r):
    change = ChangeFactory()
    _measured(change, effect=-0.3, ci_low=-1.4, ci_high=0.8, verdict="inconclusive")
    body = _page(client_r, change)
    assert (
        "Against the baseline: the t-interval extends past the range of a difference in "
        "test_accuracy, [-1, 1]; read it as bounded at [-1, 0.8]." in body
    )


ACCURACY_NOTE = (
    "95% t-intervals; test_accuracy is bounded in [0, 1] (a difference of two values in "
    "[-1, 1]), and a t-interval can reach past those bounds."
)


def test_an_accuracy_outcome_says_its_intervals_are_t_intervals_of_a_bounded_metric(client_r):
    change = ChangeFactory()
    outcome = _measured(change, ci_low=-0.02, ci_high=0.05)
    body = _page(client_r, change)
    assert f'<p class="muted interval-note">{ACCURACY_NOTE}</p>' in body
    assert "test_accuracy +0.03254 (95% CI -0.02 to +0.05" in body  # the stored interval
    outcome.refresh_from_db()
    assert (outcome.ci_low, outcome.ci_high) == (-0.02, 0.05)


def test_a_loss_outcome_has_no_bounded_metric_note(client_r):
    change = ChangeFactory()
    _measured(change, metric="test_loss")
    assert "interval-note" not in _page(client_r, change)


# --- recording an outcome by hand -----------------------------------------------------------


def test_the_outcome_form_computes_the_verdict_by_default(client_r):
    change = ChangeFactory()
    form = client_r.get(reverse("outcome-create", args=[change.pk])).context["form"]
    assert form["verdict"].value() is None
    assert form.fields["verdict"].choices[0] == ("", "Computed from the values")
    response = client_r.post(
        reverse("outcome-create", args=[change.pk]),
        {"verdict": "", "baseline_values": "0.70 0.71 0.72", "variant_values": "0.73 0.75 0.74"},
        follow=True,
    )
    assert [str(m) for m in response.context["messages"]] == [
        "Outcome recorded: the values give “improved”."
    ]
    assert change.outcomes.get().verdict == "improved"


def test_a_verdict_the_values_do_not_give_is_refused_on_the_form(client_r):
    change = ChangeFactory()
    data = {"verdict": "improved", "baseline_values": "0.8", "variant_values": "0.9"}
    with nothing_written():
        response = client_r.post(reverse("outcome-create", args=[change.pk]), data)
    assert response.status_code == 200
    assert response.context["form"].errors["verdict"] == [
        "The values give 'inconclusive': with fewer than two values per arm there is no "
        "confidence interval, not 'improved'. Leave the verdict to be computed from the "
        "values, or correct the values."
    ]


# --- the scoreboard and the CSV -------------------------------------------------------------


def test_the_scoreboard_shows_no_number_for_a_share_of_nothing(client_r):
    # Given one evaluated change, entered by hand, without a random control
    outcome_record_manual(
        actor=None, change=ChangeFactory(), baseline_values=[0.8], variant_values=[0.9]
    )
    body = client_r.get(reverse("scoreboard")).content.decode()
    # Then the share that beat a control (0 of 0) shows no count, share or interval
    assert '<dt>Beat the random control</dt><dd class="muted">none to count yet</dd>' in body
    assert "undefined" not in body
    assert "<td>+0.1</td><td>no control</td><td>no control</td><td>entered by hand</td>" in body


def test_the_scoreboard_lists_what_each_outcome_was_measured_with(client_r):
    _measured(ChangeFactory())
    body = client_r.get(reverse("scoreboard")).content.decode()
    assert "<td>shapes (2000 examples), 3 epochs, seeds 0, 1, 2</td>" in body


def test_the_csv_has_empty_cells_for_undefined_statistics_and_the_settings(client_r):
    manual = outcome_record_manual(
        actor=None, change=ChangeFactory(), baseline_values=[0.80, 0.81, 0.82],
        variant_values=[0.81, 0.82, 0.83],
    )  # fmt: skip
    measured = _measured(ChangeFactory())
    response = client_r.get(reverse("outcomes-csv"))
    rows = {row["change"]: row for row in csv.DictReader(io.StringIO(response.content.decode()))}
    by_hand, by_run = rows[str(manual.change)], rows[str(measured.change)]
    assert [by_hand[key] for key in ("ci_low", "ci_high", "p_value")] == ["", "", ""]
    assert by_hand["effect"] == repr(manual.effect)  # full precision
    assert [by_hand[key] for key in ("dataset", "epochs", "seed_list", "run_url")] == [""] * 4
    run = measured.analysis_run
    assert [by_run[key] for key in ("dataset", "dataset_size", "epochs", "seed_list")] == [
        "shapes", "2000", "3", "0 1 2",
    ]  # fmt: skip
    assert by_run["run_url"] == f"http://testserver{run.get_absolute_url()}"
    assert by_run["p_value"] == "0.0123456"


# --- the same number of queries for 1 outcome and for 10 ------------------------------------


def _count(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_outcome_pages_run_as_many_queries_for_10_outcomes_as_for_1(client_r):
    change = ChangeFactory()
    _measured(change)
    outcome_record_manual(
        actor=None, change=change, baseline_values=[0.7, 0.71], variant_values=[0.72, 0.75]
    )
    urls = [change.get_absolute_url(), reverse("scoreboard"), reverse("outcomes-csv")]
    for url in urls:  # warm up: content types, session
        client_r.get(url)
    with_one = [_count(client_r, url) for url in urls]
    for _ in range(4):
        _measured(change)
        outcome_record_manual(
            actor=None, change=change, baseline_values=[0.7, 0.71], variant_values=[0.72, 0.75]
        )
        _measured(ChangeFactory())
    assert [_count(client_r, url) for url in urls] == with_one
