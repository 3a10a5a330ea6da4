"""The change experiment end to end, its planning, configuration and aggregation."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.engine.changes import ChangeError
from analysis.engine.experiments import (
    ExperimentConfig,
    aggregate_experiment,
    plan_experiment,
    run_experiment_locally,
)
from tests.analysis.engine_helpers import TINY_CNN

REPO_ROOT = Path(__file__).resolve().parents[2]
QUICK = {
    "dataset": {"name": "shapes", "n": 300, "seed": 0, "size": 12},
    "train": {"epochs": 1, "batch_size": 32},
    "seeds": [0, 1, 2],
    "concept": "curvature",
}


def _fake_results(values_by_arm):
    return {
        arm: [
            {"seed": seed, "metrics": {"test_accuracy": value}, "dataset_fingerprint": "f"}
            for seed, value in enumerate(values)
        ]
        for arm, values in values_by_arm.items()
    }


def test_run_experiment_locally_returns_a_complete_aggregate():
    # Given a tiny CNN, a guided widening of conv2 and a 3-seed, 1-epoch configuration
    # When the whole experiment runs in this process
    outcome = run_experiment_locally(
        TINY_CNN, "widen_layer", {"layer": "conv2", "units": 2}, QUICK, control_seed=0
    )
    aggregate = outcome["aggregate"]
    # Then every arm ran every seed and the answer is complete and JSON-able
    json.dumps(outcome)
    assert {arm: len(runs) for arm, runs in outcome["arm_results"].items()} == {
        "baseline": 3,
        "variant": 3,
        "control": 3,
    }
    assert [row["seed"] for row in aggregate["per_seed"]] == [0, 1, 2]
    assert set(aggregate["arms"]) == {"baseline", "variant", "control"}
    assert aggregate["verdict"] in {"improved", "no_effect", "worse", "inconclusive"}
    assert aggregate["variant_vs_baseline"]["n"] == 3
    assert aggregate["variant_vs_control"]["seeds"] == [0, 1, 2]
    assert any(warning.startswith("N=3 seeds can detect") for warning in aggregate["warnings"])
    # And the mechanism check compared the two added conv2 channels with the original six
    mechanism = aggregate["mechanism"]
    assert (mechanism["layer"], mechanism["concept"], mechanism["seeds"]) == (
        "conv2",
        "curvature",
        3,
    )
    assert mechanism["score_kind"] == "abs_correlation"
    first = outcome["arm_results"]["variant"][0]["mechanism"]
    assert (len(first["added_scores"]), len(first["original_scores"])) == (2, 6)
    assert 0.0 <= mechanism["p_value"] <= 1.0
    # And the control widened a different layer by a matching budget
    plan = outcome["plan"]
    assert plan["control"]["parameters"]["layer"] != "conv2"
    added = plan["variant"]["params_added"]
    assert abs(plan["control"]["result"]["params_added"] - added) <= 0.05 * added


def test_plan_writes_train_overrides_into_the_baseline_but_the_change_wins():
    config = ExperimentConfig(**{**QUICK, "train": {"epochs": 1, "learning_rate": 0.05}})
    plan = plan_experiment(
        TINY_CNN, "set_hyperparameter", {"name": "learning_rate", "value": 0.002}, config,
        control_seed=0,
    )  # fmt: skip
    assert plan.arms["baseline"]["hyperparameters"]["learning_rate"] == 0.05
    assert plan.arms["variant"]["hyperparameters"]["learning_rate"] == 0.002
    assert plan.arms["control"]["hyperparameters"]["learning_rate"] == 0.05
    assert plan.mechanism_for("curvature") is None


def test_plan_without_a_possible_control_raises():
    with pytest.raises(ChangeError, match="no budget-matched control"):
        plan_experiment(
            TINY_CNN, "widen_layer", {"layer": "conv1", "units": 1}, QUICK, control_seed=0
        )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"seeds": [0, 1]}, "at least 3 seeds"),
        ({"seeds": [0, 0, 1]}, "distinct"),
        ({"metric": "f1"}, "metric"),
        ({"direction": "up"}, "direction"),
        ({"train": {"momentum": 0.9}}, "unknown field"),
    ],
)
def test_config_validation(changes, message):
    with pytest.raises(ValueError, match=message):
        ExperimentConfig(**{**QUICK, **changes})


def test_small_seed_counts_are_allowed_when_asked():
    assert ExperimentConfig(**{**QUICK, "seeds": [0, 1], "allow_small": True}).seeds == [0, 1]


def test_aggregate_verdict_and_comparisons_from_known_numbers():
    results = _fake_results(
        {
            "baseline": [0.70, 0.72, 0.71, 0.69, 0.70],
            "variant": [0.75, 0.78, 0.76, 0.74, 0.76],
            "control": [0.70, 0.73, 0.70, 0.70, 0.71],
        }
    )
    aggregate = aggregate_experiment(results, {**QUICK, "seeds": [0, 1, 2, 3, 4]})
    assert aggregate["verdict"] == "improved"
    assert aggregate["variant_vs_baseline"]["difference"] == pytest.approx(0.054)
    assert aggregate["variant_vs_control"]["verdict"] == "improved"
    assert aggregate["arms"]["variant"]["mean"] == pytest.approx(0.758)
    assert aggregate["mechanism"] is None
    assert aggregate["warnings"] == []


def test_aggregate_warns_about_missing_seeds():
    results = _fake_results({"baseline": [0.7, 0.7, 0.71], "variant": [0.7, 0.72]})
    aggregate = aggregate_experiment(results, QUICK)
    assert "seeds missing in some arm: [2]" in aggregate["warnings"]
    assert aggregate["variant_vs_baseline"]["n"] == 2


def test_torch_free_modules_do_not_import_torch():
    code = (
        "import sys\n"
        "import analysis.engine, analysis.engine.specs, analysis.engine.changes\n"
        "import analysis.engine.stats, analysis.engine.profiles\n"
        "print('torch' in sys.modules, 'django' in sys.modules)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == "False False"
