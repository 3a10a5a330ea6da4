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
