"""The experiment plan is built without torch, so the web process can freeze it into a run."""

import subprocess
import sys

import pytest

from analysis.engine.changes import ChangeError
from analysis.engine.plans import plan_experiment
from tests.analysis.engine_helpers import TINY_CNN


def test_plan_writes_train_overrides_into_the_baseline_but_the_change_wins():
    plan = plan_experiment(
        TINY_CNN, "set_hyperparameter", {"name": "learning_rate", "value": 0.002},
        {"epochs": 1, "learning_rate": 0.05}, control_seed=0,
    )  # fmt: skip
    assert plan.arms["baseline"]["hyperparameters"]["learning_rate"] == 0.05
    assert plan.arms["variant"]["hyperparameters"]["learning_rate"] == 0.002
    assert plan.arms["control"]["hyperparameters"]["learning_rate"] == 0.05
    assert plan.mechanism_for("curvature") is None


def test_plan_without_a_possible_control_raises():
    with pytest.raises(ChangeError, match="no budget-matched control"):
        plan_experiment(TINY_CNN, "widen_layer", {"layer": "conv1", "units": 1}, {}, control_seed=0)


def test_planning_does_not_import_torch():
    code = "import sys, analysis.engine.plans; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_the_default_control_is_the_same_operation_one_exactly():
    args = (TINY_CNN, "widen_layer", {"layer": "fc1", "units": 4}, {"epochs": 1})
    default = plan_experiment(*args, control_seed=3).to_dict()
    assert (
        default == plan_experiment(*args, control_seed=3, control_policy="same_operation").to_dict()
    )
    assert default["control"]["policy"] == "same_operation"
    assert default["control"]["operation"] == "widen_layer"


def test_the_any_operation_control_draws_over_every_operation_within_the_budget():
    args = (TINY_CNN, "widen_layer", {"layer": "fc1", "units": 4}, {"epochs": 1})
    plans = [plan_experiment(*args, control_seed=seed, control_policy="any_operation")
             for seed in range(20)]  # fmt: skip
    budget = plans[0].variant.params_added
    for plan in plans:
        control = plan.control
        assert control.policy == "any_operation"
        assert abs(control.result.params_added - budget) <= 0.05 * budget
        assert (control.operation, control.parameters) != (
            "widen_layer",
            {"layer": "fc1", "units": 4},
        )
        assert plan.arms["control"] == control.result.spec
    candidates = {c["operation"] for c in plans[0].control.candidates}
    assert candidates == {"widen_layer", "insert_layer"}
    assert {plan.control.operation for plan in plans} == candidates


def test_the_any_operation_control_refuses_a_change_that_adds_nothing_under_policy():
    with pytest.raises(ChangeError) as excinfo:
        plan_experiment(TINY_CNN, "remove_layer", {"layer": "fc1"}, {}, control_seed=0,
                        control_policy="any_operation")  # fmt: skip
    assert set(excinfo.value.field_errors) == {"policy"}
