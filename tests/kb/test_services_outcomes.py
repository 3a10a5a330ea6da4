"""Hand-entered outcomes get their verdict by the rule measured ones get, and say why."""

import pytest
from django.core.exceptions import ValidationError
from scipy import stats as scipy_stats

from analysis.engine.stats import minimum_detectable_effect
from kb.models import Outcome
from kb.services.insights import outcome_record_manual, outcome_update_manual
from kb.statistics import outcome_summary, run_settings
from tests.factories import ChangeFactory
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db

# Three seeds whose guided change is better on every one: the interval lies above 0.
BASELINE, BETTER = [0.70, 0.71, 0.72], [0.73, 0.75, 0.74]


def _interval(variant, baseline) -> tuple[float, float]:
    result = scipy_stats.ttest_rel(variant, baseline).confidence_interval(0.95)
    return float(result.low), float(result.high)


def _refusal(excinfo) -> str:
    [message] = excinfo.value.message_dict["verdict"]
    return message


# --- the verdict is computed from the values ------------------------------------------------


def test_a_manual_outcome_without_a_verdict_gets_the_computed_one(researcher_user):
    # Given values whose 95% interval lies above 0 for a change expected to increase
    change = ChangeFactory()
    # When they are recorded without a verdict
    outcome = outcome_record_manual(
        actor=researcher_user, change=change, baseline_values=BASELINE, variant_values=BETTER
    )
    # Then the verdict is the one the interval gives, as for a measured outcome
    low, high = _interval(BETTER, BASELINE)
    assert (outcome.ci_low, outcome.ci_high) == (pytest.approx(low), pytest.approx(high))
    assert low > 0
    outcome.refresh_from_db()
    assert outcome.verdict == "improved"


def test_the_rule_follows_the_changes_direction_and_smallest_effect(researcher_user):
    # Given a change expected to decrease its metric (a loss) and one that needs 0.05
    lower = ChangeFactory(expected_direction="decrease", expected_metric="test_loss")
    big = ChangeFactory(minimum_effect=0.05)
    # Then lower values improve the first, and a small, certain gain is no effect for the second
    assert outcome_record_manual(
        actor=None, change=lower, baseline_values=BETTER, variant_values=BASELINE
    ).verdict == "improved"  # fmt: skip
    close = [0.701, 0.709, 0.721]
    assert outcome_record_manual(
        actor=None, change=big, baseline_values=BASELINE, variant_values=close
    ).verdict == "no_effect"  # fmt: skip


def test_a_verdict_that_agrees_with_the_values_is_kept(researcher_user):
    outcome = outcome_record_manual(
        actor=researcher_user, change=ChangeFactory(), verdict="improved",
        baseline_values=BASELINE, variant_values=BETTER,
    )  # fmt: skip
    assert outcome.verdict == "improved"


def test_a_verdict_that_contradicts_the_values_is_refused_with_the_reason(researcher_user):
    change = ChangeFactory()
    low, high = _interval(BETTER, BASELINE)
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        outcome_record_manual(
            actor=researcher_user, change=change, verdict="no_effect",
            baseline_values=BASELINE, variant_values=BETTER,
        )  # fmt: skip
    assert _refusal(excinfo) == (
        f"The values give 'improved': the 95% interval [{low:.4g}, {high:.4g}] of the "
        "difference lies above 0, the expected direction (increase), not 'no_effect'. Leave "
        "the verdict to be computed from the values, or correct the values."
    )
    change.refresh_from_db()
    assert change.status == "proposed"


@pytest.mark.parametrize("given", ["improved", "worse", "no_effect"])
def test_fewer_than_two_values_per_arm_can_only_be_inconclusive(researcher_user, given):
    change = ChangeFactory()
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        outcome_record_manual(
            actor=researcher_user, change=change, verdict=given, baseline_values=[0.8],
            variant_values=[0.9, 0.95],
        )  # fmt: skip
    assert _refusal(excinfo) == (
        "The values give 'inconclusive': with fewer than two values per arm there is no "
        f"confidence interval, not '{given}'. Leave the verdict to be computed from the "
        "values, or correct the values."
    )
    outcome = outcome_record_manual(
        actor=researcher_user, change=change, verdict="inconclusive", baseline_values=[0.8],
        variant_values=[0.9, 0.95],
    )  # fmt: skip
    assert (outcome.verdict, outcome.ci_low, outcome.p_value) == ("inconclusive", None, None)


def test_a_constant_difference_is_stored_without_p_value_or_interval(researcher_user):
    # Given a guided change exactly 0.01 better on every seed (scipy would say p = 0)
    baseline, variant = [0.80, 0.81, 0.82], [0.81, 0.82, 0.83]
    change = ChangeFactory()
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        outcome_record_manual(
            actor=researcher_user, change=change, verdict="improved",
            baseline_values=baseline, variant_values=variant,
        )  # fmt: skip
    assert _refusal(excinfo).startswith(
        "The values give 'inconclusive': the values do not vary between seeds (the difference "
        "is the same on every seed), so its spread and its confidence interval are undefined"
    )
    # When it is recorded with the verdict computed
    outcome = outcome_record_manual(
        actor=researcher_user, change=change, baseline_values=baseline, variant_values=variant
    )
    # Then the stored statistics are null, not 0 and a zero-width interval
    outcome.refresh_from_db()
    assert outcome.effect == pytest.approx(0.01)
    assert [outcome.ci_low, outcome.ci_high, outcome.p_value] == [None, None, None]
    assert outcome.verdict == "inconclusive"


def test_unequal_arms_are_compared_unpaired_by_welchs_interval(researcher_user):
    baseline, variant = [0.70, 0.71, 0.72, 0.70], [0.75, 0.77, 0.76]
    outcome = outcome_record_manual(
        actor=researcher_user, change=ChangeFactory(), baseline_values=baseline,
        variant_values=variant,
    )  # fmt: skip
    expected = scipy_stats.ttest_ind(variant, baseline, equal_var=False)
    interval = expected.confidence_interval(0.95)
    assert (outcome.ci_low, outcome.ci_high) == pytest.approx((interval.low, interval.high))
    assert outcome.p_value == pytest.approx(expected.pvalue)
    assert outcome.verdict == "improved"


# --- editing recomputes the verdict ---------------------------------------------------------


def test_editing_the_values_recomputes_the_verdict(researcher_user):
    outcome = outcome_record_manual(
        actor=researcher_user, change=ChangeFactory(), baseline_values=[0.8], variant_values=[0.9]
    )
    assert outcome.verdict == "inconclusive"
    outcome_update_manual(
        actor=researcher_user, outcome=outcome, baseline_values=BASELINE, variant_values=BETTER
    )
    outcome.refresh_from_db()
    assert (outcome.verdict, outcome.variant_values) == ("improved", BETTER)


def test_an_edit_whose_verdict_contradicts_its_values_writes_nothing(researcher_user):
    outcome = outcome_record_manual(
        actor=researcher_user, change=ChangeFactory(), baseline_values=[0.8], variant_values=[0.9]
    )
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        outcome_update_manual(
            actor=researcher_user, outcome=outcome, verdict="worse", baseline_values=BASELINE,
            variant_values=BETTER, notes="changed",
        )  # fmt: skip
    assert _refusal(excinfo).startswith("The values give 'improved': the 95% interval")
    outcome.refresh_from_db()
    assert (outcome.verdict, outcome.variant_values, outcome.notes) == ("inconclusive", [0.9], "")


# --- what the pages say beside an outcome (kb.statistics) -----------------------------------


def test_a_manual_outcome_gets_the_power_warning_of_measured_ones(researcher_user):
    # Given three seeds whose differences spread too much to detect the change's 0.01
    variant = [0.75, 0.80, 0.78]
    outcome = outcome_record_manual(
        actor=researcher_user, change=ChangeFactory(), baseline_values=BASELINE,
        variant_values=variant,
    )  # fmt: skip
    sd = scipy_stats.tstd([v - b for v, b in zip(variant, BASELINE, strict=True)])
    detectable = minimum_detectable_effect(3, sd)
    # Then the summary carries the warning, computed from the stored values
    summary = outcome_summary(outcome)
    assert summary["warnings"] == [
        f"N=3 seeds can detect a difference of {detectable:.4g} in test_accuracy with 80% "
        "power; the expected effect of 0.01 is smaller, so a null result is weak evidence"
    ]
    # And the user's notes stay theirs
    outcome.refresh_from_db()
    assert outcome.notes == ""
    assert summary["verdict"] == outcome.verdict
    assert summary["verdict_differs"] is False
    assert summary["settings"] is None


def test_a_verdict_stored_before_the_rule_is_flagged(researcher_user):
    outcome = outcome_record_manual(
        actor=researcher_user, change=ChangeFactory(), baseline_values=[0.8], variant_values=[0.9]
    )
    Outcome.objects.filter(pk=outcome.pk).update(verdict="improved")
    outcome.refresh_from_db()
    summary = outcome_summary(outcome)
    assert (summary["verdict"], summary["verdict_differs"]) == ("inconclusive", True)


def test_an_interval_past_the_metrics_range_is_said_plainly(researcher_user):
    # Given two seeds of accuracy so noisy that the t-interval of the difference passes -1
    outcome = outcome_record_manual(
        actor=researcher_user, change=ChangeFactory(), baseline_values=[0.1, 0.9],
        variant_values=[0.9, 0.2],
    )  # fmt: skip
    assert outcome.ci_low < -1
    assert outcome_summary(outcome)["range_notes"] == [
        "against the baseline: the t-interval extends past the range of a difference in "
        f"test_accuracy, [-1, 1]; read it as bounded at [-1, {min(outcome.ci_high, 1):.4g}]"
    ]


@pytest.mark.parametrize(
    ("config", "spec", "expected"),
    [
        # The request's training settings win
        ({"dataset": {"name": "shapes", "n": 2000, "seed": 0}, "train": {"epochs": 3},
          "seeds": [0, 1, 2]}, {},
         {"dataset": "shapes", "dataset_size": 2000, "epochs": 3, "seeds": [0, 1, 2]}),
        # Then the frozen baseline arm's hyperparameters, over the frozen model spec's
        ({"dataset": {"name": "digits", "limit": 500}, "train": {}, "seeds": [4, 5, 6],
          "arms": {"baseline": {"hyperparameters": {"epochs": 7}}},
          "model": {"architecture_spec": {"hyperparameters": {"epochs": 9}}}}, {},
         {"dataset": "digits", "dataset_size": 500, "epochs": 7, "seeds": [4, 5, 6]}),
        # Then the model's spec (a run from before specs were frozen), then the defaults
        ({"dataset": {"name": "fashion-mnist"}, "seeds": 3}, {"hyperparameters": {"epochs": 4}},
         {"dataset": "fashion-mnist", "dataset_size": None, "epochs": 4, "seeds": [0, 1, 2]}),
        ({}, {}, {"dataset": None, "dataset_size": None, "epochs": 2, "seeds": []}),
    ],
)  # fmt: skip
def test_run_settings_read_the_frozen_config(config, spec, expected):
    change = ChangeFactory.build()
    change.target_model.architecture_spec = spec
    assert run_settings(config, fallback_spec=change.target_model.architecture_spec) == expected
