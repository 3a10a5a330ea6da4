"""The plan of a change experiment: baseline, guided variant and budget-matched random control.

Torch-free, so the web process can resolve a run's arms when it is requested and freeze them
into the run; workers then train exactly the specs that were frozen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from analysis.engine.changes import (
    SAME_OPERATION,
    ChangeResult,
    RandomControl,
    apply_change,
    random_control_for,
)
from analysis.engine.specs import DEFAULT_HYPERPARAMETERS, copy_spec


@dataclass
class ExperimentPlan:
    """The three arm specs and the changes that produced them."""

    operation: str
    parameters: dict[str, Any]
    arms: dict[str, dict]
    variant: ChangeResult
    control: RandomControl

    def to_dict(self) -> dict[str, Any]:
        """Out: JSON-able dict; `arms` maps arm name to its spec."""
        return {
            "operation": self.operation,
            "parameters": self.parameters,
            "arms": self.arms,
            "variant": self.variant.to_dict(),
            "control": self.control.to_dict(),
        }

    def mechanism_for(self, concept: str | None) -> dict[str, Any] | None:
        """Out: the mechanism argument for run_arm on the variant arm, or None if not checkable."""
        if not concept or not self.variant.added_units:
            return None
        return {
            "layer": self.variant.touched_layer,
            "added_units": list(self.variant.added_units),
            "concept": concept,
        }


def baseline_spec(spec: dict, train: dict[str, Any]) -> dict:
    """The model spec with the run's hyperparameter settings written in, so that a
    set_hyperparameter change still wins in the variant arm."""
    baseline = copy_spec(spec)
    overrides = {key: value for key, value in train.items() if key in DEFAULT_HYPERPARAMETERS}
    if overrides:
        baseline["hyperparameters"] = {**baseline.get("hyperparameters", {}), **overrides}
    return baseline


def plan_experiment(
    spec: dict,
    operation: str,
    parameters: dict[str, Any],
    train: dict[str, Any],
    *,
    control_seed: int,
    control_policy: str = SAME_OPERATION,
) -> ExperimentPlan:
    """Build the baseline, variant and random-control specs.

    In: the model spec, the guided change, the run's training settings, the seed that draws
    the control and the policy it is drawn under (changes.CONTROL_POLICIES: the same operation
    at another place, or any operation at any place within the same parameter budget). Out:
    ExperimentPlan, its control recording the policy. Raises ChangeError when the change or
    its control is impossible (field "policy" for an unknown policy).
    """
    baseline = baseline_spec(spec, train)
    variant = apply_change(baseline, operation, parameters)
    control = random_control_for(
        baseline, operation, parameters, seed=control_seed, policy=control_policy
    )
    arms = {"baseline": baseline, "variant": variant.spec, "control": control.result.spec}
    return ExperimentPlan(operation, dict(parameters), arms, variant, control)
