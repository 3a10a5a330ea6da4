"""The plan of a transformer change experiment: its config, the baseline, guided variant and
random-control specs, and which added heads the mechanism check looks at.

Torch-free, so the web process can resolve a run's arms when it is requested and freeze them
into the run (as plans.py does for CNNs); transformer_experiments trains and aggregates them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from analysis.engine.changes import apply_change
from analysis.engine.plans import ExperimentPlan, baseline_spec
from analysis.engine.run_settings import SettingsError, transformer_run_config_clean
from analysis.engine.stats import DIRECTIONS, METRIC_RANGES
from analysis.engine.transformer_changes import (
    ANY_OPERATION,
    CONTROL_POLICIES,
    transformer_control_for,
)
from analysis.engine.transformer_specs import transformer_hyperparameters

# Scores where a higher value means the head plays the role (entropy is not a role).
HEAD_ROLES = ("previous_token", "induction", "duplicate_token")

ARMS = ("baseline", "variant", "control")


@dataclass
class TransformerExperimentConfig:
    """What to train on, how, with which seeds, and what counts as success.

    dataset: a sequence task ({"name": "induction"} by default); train: "steps" and any of
    batch_size, learning_rate, weight_decay, optimizer (these are written into the baseline
    spec's hyperparameters, so a set_hyperparameter change still wins in the variant arm);
    probe_size: held-out sequences for the metrics and the head profiles; score: the head
    role the mechanism check asks about; control_policy and control_seed draw the control.
    The task and train settings are checked against the model by plan_transformer_experiment.
    Raises SettingsError keyed by field for the rest.
    """

    dataset: dict[str, Any] = field(default_factory=lambda: {"name": "induction"})
    train: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    probe_size: int = 256
    metric: str = "test_loss"
    direction: str = "decrease"
    minimum_effect: float = 0.01
    score: str = "induction"
    control_policy: str = ANY_OPERATION
    control_seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "seeds": isinstance(self.seeds, list)
            and len(self.seeds) >= 2
            and len(set(self.seeds)) == len(self.seeds)
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in self.seeds),
            "metric": self.metric in METRIC_RANGES,
            "direction": self.direction in DIRECTIONS,
            "minimum_effect": isinstance(self.minimum_effect, int | float)
            and not isinstance(self.minimum_effect, bool)
            and self.minimum_effect >= 0,
            "score": self.score in HEAD_ROLES,
            "control_policy": self.control_policy in CONTROL_POLICIES,
        }
        messages = {
            "seeds": "must be a list of at least 2 distinct whole numbers >= 0.",
            "metric": f"must be one of {', '.join(METRIC_RANGES)}.",
            "direction": f"must be one of {', '.join(DIRECTIONS)}.",
            "minimum_effect": "must be a number >= 0.",
            "score": f"must be one of {', '.join(HEAD_ROLES)}.",
            "control_policy": f"must be one of {', '.join(CONTROL_POLICIES)}.",
        }
        errors = {key: messages[key] for key, ok in checks.items() if not ok}
        if errors:
            raise SettingsError(errors)

    @classmethod
    def coerce(cls, config: TransformerExperimentConfig | dict) -> TransformerExperimentConfig:
        """In: a config or its to_dict() form. Out: a TransformerExperimentConfig."""
        return config if isinstance(config, cls) else cls(**config)

    def to_dict(self) -> dict[str, Any]:
        """Out: a JSON-able dict of all fields."""
        return asdict(self)


def arm_settings(arm_spec: dict, config: TransformerExperimentConfig) -> dict[str, Any]:
    """Out: the arm's cleaned run settings ({"dataset", "train", "probe_size", ...}): the
    run's steps, every other training setting from the arm spec's hyperparameters. Raises
    SettingsError keyed as for transformer runs ("dataset.length", "train.steps", ...)."""
    steps = {"steps": config.train["steps"]} if "steps" in config.train else {}
    raw = {"dataset": config.dataset, "train": steps, "probe_size": config.probe_size}
    return transformer_run_config_clean(
        raw,
        kind="profile",
        n_ctx=arm_spec["n_ctx"],
        d_vocab=arm_spec["d_vocab"],
        hyperparameters=transformer_hyperparameters(arm_spec),
    )


def plan_transformer_experiment(
    spec: dict, operation: str, parameters: dict, config: TransformerExperimentConfig | dict
) -> ExperimentPlan:
    """The baseline, guided variant and random-control specs (control drawn under the
    config's policy and seed). Raises ChangeError or SettingsError keyed by field."""
    config = TransformerExperimentConfig.coerce(config)
    unknown = set(config.train) - {"steps", "batch_size", "learning_rate", "weight_decay",
                                   "optimizer"}  # fmt: skip
    if unknown:
        raise SettingsError({f"train.{key}": "unknown field." for key in sorted(unknown)})
    baseline = baseline_spec(spec, config.train)
    arm_settings(baseline, config)  # the task and steps must fit the model before anything runs
    variant = apply_change(baseline, operation, parameters)
    control = transformer_control_for(
        baseline, operation, parameters, seed=config.control_seed, policy=config.control_policy
    )
    arms = {"baseline": baseline, "variant": variant.spec, "control": control.result.spec}
    return ExperimentPlan(operation, dict(parameters), arms, variant, control)


def head_mechanism_target(plan: ExperimentPlan) -> dict[str, Any] | None:
    """Out: {"layer", "added_heads"} when the guided change added attention heads, else None."""
    variant = plan.variant
    if not variant.touched_layer.endswith(".attn") or not variant.added_units:
        return None
    return {"layer": variant.touched_layer, "added_heads": list(variant.added_units)}
