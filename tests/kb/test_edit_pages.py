"""Editing a highlight's themes and note, and editing or deleting an outcome recorded by hand;
outcomes measured by an analysis run are refused."""

import pytest
from django.urls import reverse

from analysis.engine.stats import compare_arms
from kb import statistics
from kb.events import REDACTED
from kb.models import ArchitectureChange, Event, Outcome
from kb.services.insights import MEASURED_OUTCOME_IS_FIXED, outcome_record_manual
from tests.factories import ChangeFactory, ThemeFactory
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db

# --- highlights ---------------------------------------------------------------------------


def test_highlight_edit_page_shows_the_fixed_passage_and_the_current_themes(client_r, world):
    page = client_r.get(reverse("highlight-update", args=[world.highlight.pk]))
    body = page.content.decode()
    assert "<blockquote>actionable steps</blockquote>" in body
    assert '<h2 id="passage-heading">The passage</h2>' in body
    assert list(page.context["form"]["themes"].value()) == [world.theme.pk]
    assert 'name="quote"' not in body and 'name="start"' not in body


def test_highlight_edit_replaces_themes_and_note_and_logs_both(client_r, world):
    other = ThemeFactory()
    url = reverse("highlight-update", args=[world.highlight.pk])
    response = client_r.post(url, {"themes": [other.pk], "note": "Asked twice."})
    assert response.status_code == 302
    assert response.url == world.highlight.get_absolute_url()
    world.highlight.refresh_from_db()
    assert list(world.highlight.themes.all()) == [other]
    assert world.highlight.note == "Asked twice."
    assert (world.highlight.quote, world.highlight.start) == ("actionable steps", 8)
    events = Event.objects.filter(target_id=world.highlight.pk, target_type__model="highlight")
    assert {(event.action, str(event.changes)) for event in events} == {
        ("updated", str({"note": REDACTED})),
        ("linked", str({"themes": [other.pk]})),
    }


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"note": "No theme."}, "themes", "Tag the highlight with at least one theme."),
        ({"themes": [999999]}, "themes", "Select a valid choice. 999999 is not one of the"),
    ],
)
def test_highlight_edit_without_a_valid_theme_is_refused_and_writes_nothing(
    client_r, world, data, field, message
):
    url = reverse("highlight-update", args=[world.highlight.pk])
    with nothing_written():
        response = client_r.post(url, data)
    assert response.status_code == 200
    assert response.context["form"].errors[field][0].startswith(message)
    world.highlight.refresh_from_db()
    assert list(world.highlight.themes.all()) == [world.theme]
    assert world.highlight.note == ""


# --- manual outcomes ------------------------------------------------------------------------

VALUES = {
    "verdict": "improved",
    "metric": "",
    "baseline_values": "0.80, 0.82, 0.81",
    "variant_values": "0.85, 0.86, 0.88",
    "control_values": "0.80, 0.83, 0.82",
    "notes": "Measured on the held-out set.",
}


def test_outcome_edit_form_starts_from_the_recorded_values(client_r, world):
    page = client_r.get(reverse("outcome-update", args=[world.manual_outcome.pk]))
    form = page.context["form"]
    assert form["baseline_values"].value() == "0.9"
    # The verdict starts as computed, and the page says what the recorded values give
    assert form["verdict"].value() is None
    assert form.fields["verdict"].help_text.endswith(
        "Now the values give 'inconclusive': with fewer than two values per arm there is no "
        "confidence interval."
    )
    assert 'value="0.9"' in page.content.decode()


def test_outcome_edit_recomputes_the_statistics_and_logs_the_update(client_r, world):
    outcome = world.manual_outcome
    response = client_r.post(reverse("outcome-update", args=[outcome.pk]), VALUES)
    assert response.status_code == 302
    assert response.url == outcome.get_absolute_url()
    outcome.refresh_from_db()
    baseline, variant, control = [0.80, 0.82, 0.81], [0.85, 0.86, 0.88], [0.80, 0.83, 0.82]
    versus_baseline = compare_arms(variant, baseline)
    versus_control = compare_arms(variant, control)
    assert (outcome.verdict, outcome.metric, outcome.baseline_values) == (
        "improved", "test_accuracy", baseline,
    )  # fmt: skip
    assert (outcome.effect, outcome.ci_low, outcome.ci_high, outcome.p_value) == (
        versus_baseline["difference"], versus_baseline["ci_low"], versus_baseline["ci_high"],
        versus_baseline["p_value"],
    )  # fmt: skip
    assert (outcome.effect_vs_control, outcome.control_ci_low, outcome.control_ci_high) == (
        versus_control["difference"], versus_control["ci_low"], versus_control["ci_high"],
    )  # fmt: skip
    event = Event.objects.get(action="updated", target_id=outcome.pk)
    assert event.changes["verdict"] == ["no_effect", "improved"]
    assert event.changes["ci_low"] == [None, versus_baseline["ci_low"]]


def test_outcome_edit_to_single_values_clears_the_interval_and_the_control(client_r):
    outcome = outcome_record_manual(
        actor=None, change=ChangeFactory(), baseline_values=[0.8, 0.81],
        variant_values=[0.85, 0.87], control_values=[0.8, 0.83],
    )  # fmt: skip
    assert outcome.ci_low is not None and outcome.effect_vs_control is not None
    data = {"verdict": "inconclusive", "baseline_values": "0.8", "variant_values": "0.9"}
    client_r.post(reverse("outcome-update", args=[outcome.pk]), data)
    outcome.refresh_from_db()
    assert outcome.effect == pytest.approx(0.1)
    assert [outcome.ci_low, outcome.ci_high, outcome.p_value] == [None, None, None]
    assert [outcome.effect_vs_control, outcome.control_ci_low, outcome.control_ci_high] == [
        None, None, None,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"baseline_values": "0.8, high"}, "baseline_values", "Enter numbers separated by"),
        ({"variant_values": ""}, "variant_values", "This field is required."),
        ({"control_values": "nan"}, "control_values", "Each value must lie between"),
        ({"variant_values": "1e308, 1e308"}, "variant_values", "Each value must lie between"),
        ({"verdict": "great"}, "verdict", "Select a valid choice."),
    ],
)
def test_outcome_edit_with_bad_values_is_refused_and_writes_nothing(
    client_r, world, changes, field, message
):
    outcome = world.manual_outcome
    with nothing_written():
        response = client_r.post(
            reverse("outcome-update", args=[outcome.pk]), {**VALUES, **changes}
        )
    assert response.status_code == 200
    assert response.context["form"].errors[field][0].startswith(message)
    outcome.refresh_from_db()
    assert (outcome.verdict, outcome.variant_values, outcome.effect) == ("no_effect", [0.9], 0.0)


def test_the_create_page_refuses_values_json_cannot_store(client_r):
    change = ChangeFactory()
    with nothing_written():
        response = client_r.post(
            reverse("outcome-create", args=[change.pk]), {**VALUES, "baseline_values": "inf"}
        )
    assert response.status_code == 200
    assert response.context["form"].errors["baseline_values"] == [
        "Each value must lie between -1,000,000,000 and 1,000,000,000."
    ]


def test_deleting_the_last_outcome_puts_the_change_back_to_proposed(client_r, world):
    outcome = world.manual_outcome
    change = outcome.change
    assert statistics.scoreboard()["overall"]["changes"] == 2
    response = client_r.post(reverse("outcome-delete", args=[outcome.pk]))
    assert response.status_code == 302
    assert response.url == change.get_absolute_url()
    assert not Outcome.objects.filter(pk=outcome.pk).exists()
    change.refresh_from_db()
    assert change.status == ArchitectureChange.Status.PROPOSED
    assert Event.objects.filter(action="deleted", target_id=outcome.pk).count() == 1
    status_event = Event.objects.get(action="status_changed", target_id=change.pk)
    assert status_event.changes == {"status": ["evaluated", "proposed"]}
    assert statistics.scoreboard()["overall"]["changes"] == 1


def test_deleting_one_of_several_outcomes_keeps_the_change_evaluated(client_r):
    change = ChangeFactory()
    earlier = outcome_record_manual(
        actor=None, change=change, verdict="improved", baseline_values=[0.8, 0.81, 0.82],
        variant_values=[0.9, 0.92, 0.91],
    )  # fmt: skip
    latest = outcome_record_manual(
        actor=None, change=change, verdict="worse", baseline_values=[0.8, 0.81, 0.82],
        variant_values=[0.7, 0.72, 0.71],
    )  # fmt: skip
    assert statistics.scoreboard()["overall"]["beat_baseline"]["count"] == 0
    client_r.post(reverse("outcome-delete", args=[latest.pk]))
    change.refresh_from_db()
    assert change.status == ArchitectureChange.Status.EVALUATED
    assert list(change.outcomes.all()) == [earlier]
    # The scoreboard counts the latest outcome, now the earlier one.
    assert statistics.scoreboard()["overall"]["beat_baseline"]["count"] == 1


def test_deleting_the_last_outcome_of_a_running_change_keeps_it_running(client_r, world):
    change = world.manual_outcome.change
    ArchitectureChange.objects.filter(pk=change.pk).update(status="running")
    client_r.post(reverse("outcome-delete", args=[world.manual_outcome.pk]))
    change.refresh_from_db()
    assert change.status == ArchitectureChange.Status.RUNNING


@pytest.mark.parametrize("name", ["outcome-update", "outcome-delete"])
def test_measured_outcome_cannot_be_edited_or_deleted(client_r, world, name):
    url = reverse(name, args=[world.outcome.pk])
    page = client_r.get(url)
    assert page.status_code == 400
    assert MEASURED_OUTCOME_IS_FIXED in page.content.decode()
    with nothing_written():
        response = client_r.post(url, VALUES)
    assert response.status_code == 400
    world.outcome.refresh_from_db()
    assert (world.outcome.verdict, world.outcome.effect) == ("improved", 0.02)


def test_measured_outcome_shows_no_edit_or_delete_links(client_r, world):
    body = client_r.get(world.change.get_absolute_url()).content.decode()
    assert f"/outcomes/{world.outcome.pk}/" not in body
    body = client_r.get(world.manual_outcome.change.get_absolute_url()).content.decode()
    assert reverse("outcome-update", args=[world.manual_outcome.pk]) in body
