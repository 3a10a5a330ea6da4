"""A transformer change experiment end to end on the repeated-tokens task (tiny settings)."""

import numpy as np
import pytest

from analysis.engine.run_settings import SettingsError
from analysis.engine.transformer_experiments import (
    TransformerExperimentConfig,
    plan_transformer_experiment,
    run_transformer_arm,
    run_transformer_experiment_locally,
)
from analysis.engine.transformer_specs import count_transformer_parameters
from tests.analysis.transformer_helpers import TINY_TRANSFORMER  # noqa: F401 (runtime setup)

ONE_LAYER = {
    "family": "transformer",
    "d_vocab": 8,
    "n_ctx": 12,
    "d_model": 16,
    "d_head": 8,
    "blocks": [{"n_heads": 2}],
}
CONFIG = {"train": {"steps": 3, "batch_size": 8}, "seeds": [0, 1], "probe_size": 8}
GUIDED = ("insert_block", {"after": 0, "n_heads": 2})


@pytest.fixture(scope="module")
def experiment():
    return run_transformer_experiment_locally(ONE_LAYER, *GUIDED, CONFIG)


def test_experiment_trains_three_arms_and_checks_the_added_heads(experiment):
    plan, results, aggregate = (experiment[k] for k in ("plan", "arm_results", "aggregate"))
    # Given the plan: the guided block is inserted, the control spends the same budget anywhere
    assert plan["arms"]["variant"]["blocks"] == [{"n_heads": 2}, {"n_heads": 2}]
    assert plan["arms"]["variant"]["hyperparameters"] == {"batch_size": 8}
    budget = plan["variant"]["params_added"]
    assert plan["control"]["policy"] == "any_operation"
    assert abs(plan["control"]["result"]["params_added"] - budget) <= 0.05 * budget
    # Then every arm ran every seed, with its own parameter count
    for arm, spec in plan["arms"].items():
        assert [r["seed"] for r in results[arm]] == [0, 1]
        assert {r["parameters"] for r in results[arm]} == {count_transformer_parameters(spec)}
    assert [r["head_profile"] for r in results["control"]] == [None, None]
    # And the aggregate is the paired comparison of the arms' test loss
    loss = {arm: [r["metrics"]["test_loss"] for r in results[arm]] for arm in results}
    assert aggregate["per_seed"] == [
        {"seed": s, **{arm: loss[arm][i] for arm in results}} for i, s in enumerate([0, 1])
    ]
    difference = np.mean(np.subtract(loss["variant"], loss["baseline"]))
    assert aggregate["variant_vs_baseline"]["difference"] == pytest.approx(difference)
    # And the mechanism check compares the added layer's best head with the baseline's best
    mechanism = aggregate["mechanism"]
    assert (mechanism["layer"], mechanism["added_heads"]) == ("blocks.1.attn", [0, 1])
    for row, base, variant in zip(
        mechanism["per_seed"], results["baseline"], results["variant"], strict=True
    ):
        assert row["added_best"] == max(
            variant["head_profile"]["heads"]["blocks.1.attn"]["induction"]
        )
        assert row["baseline_best"] == max(
            base["head_profile"]["heads"]["blocks.0.attn"]["induction"]
        )
    assert mechanism["seeds"] == 2


def test_an_arm_is_bit_identical_when_rerun(experiment):
    plan, results = experiment["plan"], experiment["arm_results"]
    again = run_transformer_arm(plan["arms"]["variant"], CONFIG, seed=1)
    assert again["metrics"] == results["variant"][1]["metrics"]
    assert again["head_profile"] == results["variant"][1]["head_profile"]


def test_settings_are_refused_keyed_by_field():
    with pytest.raises(SettingsError) as error:
        TransformerExperimentConfig(seeds=[0], metric="bleu", control_policy="nearby")
    assert set(error.value.field_errors) == {"seeds", "metric", "control_policy"}
    with pytest.raises(SettingsError) as error:
        plan_transformer_experiment(ONE_LAYER, *GUIDED, {**CONFIG, "train": {"epochs": 2}})
    assert error.value.field_errors == {"train.epochs": ["unknown field."]}
    with pytest.raises(SettingsError) as error:
        plan_transformer_experiment(
            ONE_LAYER, *GUIDED, {**CONFIG, "dataset": {"name": "induction", "length": 40}}
        )
    assert "dataset.length" in error.value.field_errors
