"""The run page and the outcome on its change's page: per-seed values to 4 decimals like the
means, intervals past the metric's range said so, figures described in words, and "run again
with more seeds" starting from the earlier run's settings."""

import pytest
from django.urls import reverse

from analysis.models import AnalysisRun
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db

SEEDS = [0.912345678, 0.9, 0.98765]


def _result(run: AnalysisRun, **arm) -> None:
    result = run.result
    for stats in result["aggregate"]["arms"].values():
        stats.update(values=SEEDS, **arm)
    result["figures"] = {"training_curves": "runs/x/t.png", "metric_by_arm": "runs/x/m.png"}
    AnalysisRun.objects.filter(pk=run.pk).update(result=result)


def test_per_seed_values_are_rounded_like_the_means(world, client_r):
    _result(world.run)
    world.outcome.variant_values = SEEDS
    world.outcome.save()
    run_page = client_r.get(world.run.get_absolute_url()).content.decode()
    assert run_page.count("<td>0.9123, 0.9000, 0.9877</td>") == 3
    change_page = client_r.get(world.change.get_absolute_url()).content.decode()
    assert "<td>0.9123, 0.9000, 0.9877</td>" in change_page
    assert "0.912345678" not in change_page + run_page


def test_an_interval_past_the_metrics_range_is_said_so(world, client_r):
    _result(world.run, ci_low=0.95, ci_high=1.03)
    response = client_r.get(world.run.get_absolute_url())
    notes = response.context["range_notes"]
    assert notes == [
        f"{arm.capitalize()} mean: the t-interval extends past the range of test_accuracy, "
        "[0, 1]; read it as bounded at [0.95, 1]."
        for arm in ("baseline", "variant", "control")
    ]
    assert "1.0300" in response.content.decode()  # the stored number, unchanged
    assert client_r.get(reverse("run-live", args=[world.run.pk])).context["range_notes"] == notes


def test_an_accuracy_experiment_says_its_intervals_are_t_intervals_of_a_bounded_metric(
    world, client_r
):
    _result(world.run)
    response = client_r.get(world.run.get_absolute_url())
    assert response.context["interval_note"] == (
        "95% t-intervals; test_accuracy is bounded in [0, 1] (a difference of two values in "
        "[-1, 1]), and a t-interval can reach past those bounds"
    )
    assert f'<p class="muted interval-note">{response.context["interval_note"]}.</p>' in (
        response.content.decode()
    )


def test_figures_are_described_in_words(world, client_r):
    _result(world.run)
    body = client_r.get(world.run.get_absolute_url()).content.decode()
    assert (
        f'alt="Line chart of test accuracy after each training epoch, one line per arm and '
        f'seed (run {world.run.pk})"' in body
    )
    assert "a thin line for each seed, a thick line for each arm's mean" in body
    assert "Each arm's mean test accuracy with its 95% confidence interval" in body


def test_run_again_starts_from_the_earlier_runs_settings(world, client_r):
    config = {
        "dataset": {"name": "shapes", "n": 1500}, "train": {"epochs": 5},
        "seeds": [0, 1, 2], "control_seed": 7,
    }  # fmt: skip
    AnalysisRun.objects.filter(pk=world.run.pk).update(config=config)
    world.outcome.variant_values = [0.9, 0.91, 0.92]
    world.outcome.save()
    response = client_r.get(reverse("change-experiment", args=[world.change.pk]))
    form = response.context["form"]
    assert form.initial == {
        "dataset": "shapes", "dataset_size": 1500, "epochs": 5, "control_seed": 7, "seeds": 6,
    }  # fmt: skip
    assert f"starts from the settings of run {world.run.pk}" in response.content.decode()


def test_run_again_after_a_manual_outcome_starts_from_the_defaults(world, client_r):
    response = client_r.get(reverse("change-experiment", args=[world.manual_outcome.change.pk]))
    assert set(response.context["form"].initial) == {"seeds"}


def test_cancelling_a_run_without_a_confirmation_asks_on_a_page_first(world, client_r):
    # Given a queued run, and a browser without scripts posting "Cancel the run" unconfirmed
    run = AnalysisRun.objects.create(kind="profile", subject_model=world.model)
    url = reverse("run-cancel", args=[run.pk])
    with nothing_written():
        asked = client_r.post(url)
    run.refresh_from_db()
    assert run.status == "queued"
    html = asked.content.decode()
    assert asked.status_code == 200
    assert f"<p>Cancel run {run.pk}? Its unfinished jobs stop; you can retry it later.</p>" in html
    assert '<input type="hidden" name="confirmed" value="yes">' in html
    assert f'<a href="{run.get_absolute_url()}">Cancel</a>' in html
    # When its button posts the cancellation confirmed, the run is cancelled
    assert client_r.post(url, {"confirmed": "yes"}).url == run.get_absolute_url()
    run.refresh_from_db()
    assert run.status == "cancelled"
