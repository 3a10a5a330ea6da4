"""What a run measures, resolved and frozen into the run when it is requested.

A run's `config` holds the cleaned settings (dataset, training, seeds ...) and a snapshot of
everything else the jobs need: the model's spec and weights digest, the change's operation and
parameters, each arm's full spec, the metric and the rule for the verdict, the finding's units.
Workers and aggregation read only this snapshot, never the live (editable) rows, so an outcome
can be cited later knowing exactly what it measured. Torch-free: the web process builds it.
"""

import hashlib
import json
from typing import Any

from django.core.exceptions import ValidationError

from analysis.engine.changes import SAME_OPERATION, ChangeError
from analysis.engine.plans import plan_experiment
from kb.models import ArchitectureChange, Finding, SubjectModel

FROZEN_VERSION = 1


def _model_snapshot(model: SubjectModel) -> dict[str, Any]:
    return {
        "id": model.pk,
        "name": model.name,
        "architecture_spec": model.architecture_spec,
        "weights": model.weights.name or None,
        "weights_sha256": model.weights_sha256 or None,
    }


def experiment_config_freeze(change: ArchitectureChange, settings: dict) -> dict:
    """In: the change and its cleaned, dataset-fitted settings. Out: the frozen config.
    Raises ChangeError/SpecError when the change or its random control cannot be planned,
    ValidationError under "control_policy" when no control exists under the chosen policy
    for this kind of change (the any-operation control of a change that adds nothing)."""
    model = change.target_model
    try:
        plan = plan_experiment(
            model.architecture_spec,
            change.operation,
            change.parameters,
            settings["train"],
            control_seed=settings["control_seed"],
            # Left out of the settings when it is the default (run_settings._cnn_control_policy).
            control_policy=settings.get("control_policy", SAME_OPERATION),
        )
    except ChangeError as error:
        if "policy" not in error.field_errors:
            raise
        raise ValidationError({"control_policy": f"{error}."}) from None
    planned = plan.to_dict()
    return {
        **settings,
        "version": FROZEN_VERSION,
        "metric": change.expected_metric,
        "direction": change.expected_direction,
        "minimum_effect": change.minimum_effect,
        "change": {
            "id": change.pk,
            "operation": change.operation,
            "parameters": change.parameters,
        },
        "model": _model_snapshot(model),
        "arms": planned.pop("arms"),
        "plan": planned,
        "mechanism": plan.mechanism_for(settings["concept"]),
    }


def profile_config_freeze(model: SubjectModel, settings: dict) -> dict:
    """In: the model and its cleaned, dataset-fitted settings. Out: the frozen config."""
    return {**settings, "version": FROZEN_VERSION, "model": _model_snapshot(model)}


def ablation_config_freeze(finding: Finding, settings: dict) -> dict:
    """In: the finding and its cleaned, dataset-fitted settings. Out: the frozen config."""
    return {
        **settings,
        "version": FROZEN_VERSION,
        "model": _model_snapshot(finding.subject_model),
        "finding": {
            "id": finding.pk,
            "layer_name": finding.layer_name,
            "unit_indices": list(finding.unit_indices),
            "concept": finding.concept,
        },
    }


def study_config_freeze(model: SubjectModel, settings: dict) -> dict:
    """In: the model and the study's cleaned settings (study_settings.study_config_clean).
    Out: the frozen design: the settings and a snapshot of the model. Each round's specs are
    frozen into its StudyRound row when the round is planned."""
    return {**settings, "version": FROZEN_VERSION, "model": _model_snapshot(model)}


# Descriptive parts of the snapshot: a renamed model or a moved weights file measures the same.
UNMEASURED_MODEL_FIELDS = ("name", "weights")


def config_digest(config: dict) -> str:
    """SHA-256 of what the frozen config measures, in canonical JSON: equal digests, equal
    experiments. The model's name and weights path are left out (its weights digest stays)."""
    model = {
        key: value
        for key, value in config.get("model", {}).items()
        if key not in UNMEASURED_MODEL_FIELDS
    }
    measured = {**config, "model": model} if "model" in config else config
    canonical = json.dumps(measured, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def experiment_settings(config: dict) -> dict:
    """The engine's ExperimentConfig fields, read from a frozen experiment config."""
    return {
        "dataset": config["dataset"],
        "train": config["train"],
        "seeds": config["seeds"],
        "metric": config["metric"],
        "direction": config["direction"],
        "minimum_effect": config["minimum_effect"],
        "concept": config["concept"] or None,
        # The request already enforced the seed count (benchmarks may lower it).
        "allow_small": True,
    }
