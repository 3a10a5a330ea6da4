"""A study's rounds, planned: each track's candidate for round k, at equal budget.

The guided track is planned first, from its current model's profile, with the round's budget
(a share of its current model's parameters); the control tracks then spend what the guided
candidate actually adds, so every track grows by the same amount. A track that cannot form a
candidate sits the round out with the reason recorded, and the study goes on.

Torch-free, like changes.py: the process that advances a study plans its next round without
training anything. Everything returned is JSON-able and is stored with the round.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from analysis.engine.changes import ChangeError, apply_change
from analysis.engine.model_specs import count_model_parameters
from analysis.engine.plans import baseline_spec
from analysis.engine.run_settings import MAX_SEED
from analysis.engine.specs import ACTIVATION_TYPES, SpecError, unit_layers
from analysis.engine.study_rules import round_budget, study_guided_change, unit_layer_of
from analysis.engine.study_settings import GUIDED, RANDOM, UNIFORM
from analysis.engine.study_tracks import TrackChange, random_track_change, uniform_track_change
from analysis.engine.transformer_specs import is_transformer_spec

MULTI_STEP_OPERATION = "manual"


def study_base_spec(config: dict, spec: dict) -> dict:
    """Out: the model's spec with the study's training settings written in (as
    plans.baseline_spec does for a change experiment's baseline). Every candidate is derived
    from it, so each track's models train the same way in every round."""
    return baseline_spec(spec, config["train"])


def probe_layers(spec: dict) -> list[str]:
    """The layers a study profiles: for each widenable conv2d/linear layer, the first
    activation after it that carries its units (where selectivity is usually read, as the
    profiling runs do), or the layer itself when no activation follows it.

    Out: layer names in spec order, one per widenable layer.
    """
    chosen: dict[str, str] = {}
    for layer in spec["layers"]:
        unit = unit_layer_of(spec, layer["name"])
        if unit is None:
            continue
        if layer["type"] in ACTIVATION_TYPES and chosen.get(unit) == unit:
            chosen[unit] = layer["name"]
        chosen.setdefault(unit, layer["name"])
    order = unit_layers(spec)
    return [chosen[unit] for unit in order if unit in chosen]


def random_track_seed(random_seed: int, index: int) -> int:
    """Out: the seed that draws the random track's change in round `index`, derived from the
    study's random_seed (numpy SeedSequence of [random_seed, index], within 0..MAX_SEED), so a
    study replays its draws and no two rounds share one."""
    state = np.random.SeedSequence([random_seed, index]).generate_state(1)[0]
    return int(state) & MAX_SEED


def _sat_out(spec: dict, error: Exception, **recorded: Any) -> dict[str, Any]:
    field_errors = getattr(error, "field_errors", None) or {"__all__": str(error)}
    return {
        "spec": None,
        "plan": {"error": str(error), "field_errors": dict(field_errors), **recorded},
        "parameters": count_model_parameters(spec),
        "params_added": 0,
        "mechanism": None,
        "operation": "",
        "change_parameters": {},
    }


def rejected_candidates(rows: list[dict], track: str) -> list[dict[str, Any]]:
    """The candidates `track` trained and did not keep since its current model was adopted.

    In: the study's decided rows so far (dicts with "index", "track", "spec", "plan", "kept",
    "sat_out"; StudyRound rows or run_study_locally's), the track. Out: [{"round", "spec",
    "layer"}] in round order ("layer": the widenable layer a guided candidate changed, else
    None). A kept candidate becomes the current model and clears the list.
    """
    tried: list[dict[str, Any]] = []
    for row in sorted((row for row in rows if row["track"] == track), key=lambda r: r["index"]):
        if row["kept"]:
            tried = []
        elif not row["sat_out"]:
            tried.append({"round": row["index"], "spec": row["spec"],
                          "layer": (row["plan"] or {}).get("layer")})  # fmt: skip
    return tried


def _repeat_of(candidate: dict, rejected: list[dict]) -> int | None:
    """Out: the round whose rejected candidate has this very spec, or None."""
    if candidate["spec"] is None:
        return None
    return next((tried["round"] for tried in rejected if tried["spec"] == candidate["spec"]), None)


def _without_repeat(spec: dict, candidate: dict, rejected: list[dict]) -> dict[str, Any]:
    """A deterministic track (the guided rule, the uniform widening) proposes again the very
    candidate it trained from the same current model and did not keep: training it again would
    repeat that round's numbers and count one comparison twice, so the track sits out."""
    repeat = _repeat_of(candidate, rejected)
    if repeat is None:
        return candidate
    error = ChangeError(
        f"the same candidate as round {repeat}, which was not kept: the current model is "
        f"unchanged, so training it again would only repeat round {repeat}'s values",
        {"__all__": "nothing new to try until a candidate is kept"},
    )
    return _sat_out(spec, error, repeat_of=repeat, budget=candidate["plan"].get("budget"))


def _plan_guided(config: dict, current: dict) -> dict[str, Any]:
    spec, profile = current["spec"], current.get("profile")
    budget = round_budget(spec, config["budget_fraction"])
    if profile is None:
        error = ChangeError(
            "the guided track's current model has no profile",
            {"profile": "profile the current model first (its first-seed job)"},
        )
        return _sat_out(spec, error, budget=budget)
    tried = tuple(row["layer"] for row in current.get("rejected", []) if row["layer"])
    try:
        choice = study_guided_change(spec, profile, config, budget=budget, exclude_layers=tried)
        result = apply_change(spec, choice.operation, choice.parameters)
    except (ChangeError, SpecError) as error:
        return _sat_out(spec, error, budget=budget)
    return {
        "spec": result.spec,
        "plan": choice.to_dict(),
        "parameters": result.params_after,
        "params_added": result.params_added,
        "mechanism": _mechanism_request(config, result),
        "operation": choice.operation,
        "change_parameters": choice.parameters,
    }


def _mechanism_request(config: dict, result) -> dict[str, Any] | None:
    """What the guided candidate's mechanism check asks: for a CNN, the added units of the
    widened or inserted layer against the concept; for a transformer, the added heads of
    "blocks.{i}.attn" against the head role (transformer_experiments.head_mechanism_check).
    None when the change added no units (or, for a transformer, no heads)."""
    if not result.added_units:
        return None
    if "head_role" in config:
        if not result.touched_layer.endswith(".attn"):
            return None
        return {"layer": result.touched_layer, "added_heads": list(result.added_units),
                "score": config["head_role"]}  # fmt: skip
    return {"layer": result.touched_layer, "added_units": list(result.added_units),
            "concept": config["concept"]}  # fmt: skip


def _control_record(change: TrackChange, budget_source: str) -> dict[str, Any]:
    """A control track's candidate; a change of several steps is recorded as one "manual"
    change holding its steps, since it is never run again as a change experiment."""
    plan = change.to_dict()
    spec = plan.pop("spec")
    plan["budget_source"] = budget_source
    if len(change.changes) == 1:
        operation, parameters = change.changes[0]["operation"], change.changes[0]["parameters"]
    else:
        operation, parameters = MULTI_STEP_OPERATION, {"steps": change.changes}
    return {
        "spec": spec,
        "plan": plan,
        "parameters": change.params_before + change.params_added,
        "params_added": change.params_added,
        "mechanism": None,
        "operation": operation,
        "change_parameters": parameters,
    }


# Draws of the random track tried before it gives up on finding a candidate it has not
# already trained and rejected from the same model.
MAX_RANDOM_REDRAWS = 8


def _random_draw(spec, budget, seed, tolerance, exclude, rejected, recorded) -> TrackChange:
    """The random track's change, drawn again (seeds derived from the round's, recorded as
    "redraws") while it would be a candidate already rejected from this model: a random
    track has other candidates to try, so it does not sit the round out for a repeat."""
    tried = [row["spec"] for row in rejected]
    change = None
    for redraw in range(MAX_RANDOM_REDRAWS):
        draw_seed = seed if redraw == 0 else random_track_seed(seed, redraw)
        change = random_track_change(
            spec, budget, seed=draw_seed, tolerance=tolerance, exclude=exclude
        )
        if change.spec not in tried:
            if redraw:
                recorded["redraws"] = redraw
            return change
    return change  # every draw repeats a rejected candidate: _without_repeat sits it out


def _plan_control(
    config: dict,
    track: str,
    index: int,
    spec: dict,
    guided_added: int | None,
    exclude: tuple[str, dict] | None = None,
    rejected: list[dict] | None = None,
):
    if guided_added is not None:
        budget, source = guided_added, "guided"
    else:
        budget, source = round_budget(spec, config["budget_fraction"]), "own"
    tolerance = config["tolerance"]
    seed = random_track_seed(config["random_seed"], index) if track == RANDOM else None
    recorded = {"budget": budget, "budget_source": source}
    if seed is not None:
        recorded["seed"] = seed
    try:
        if track == RANDOM:
            change = _random_draw(spec, budget, seed, tolerance, exclude, rejected, recorded)
        else:
            change = uniform_track_change(spec, budget, tolerance=tolerance)
    except (ChangeError, SpecError) as error:
        return _sat_out(spec, error, **recorded)
    planned = _control_record(change, source)
    if "redraws" in recorded:
        planned["plan"]["redraws"] = recorded["redraws"]
    if exclude is not None:
        planned["plan"]["excluded"] = {"operation": exclude[0], "parameters": exclude[1]}
    return planned


def _guided_model_excluded(specs: dict, guided: dict) -> tuple[str, dict] | None:
    """The guided change, for the random track of a transformer to leave out when both tracks
    start the round from the same model: blocks of equal shape make several places build the
    very same model (a block inserted before or after its twin), which would copy the guided
    candidate bit for bit, as transformer experiments' any-operation control also leaves it
    out. CNN studies draw from every candidate, as they always have."""
    if guided["spec"] is None or RANDOM not in specs or not is_transformer_spec(specs[GUIDED]):
        return None
    if specs[RANDOM] != specs[GUIDED]:
        return None
    return guided["operation"], guided["change_parameters"]


def study_round_plan(config: dict, index: int, current: dict[str, dict]) -> dict[str, dict]:
    """Plan round `index` (>= 1) of a study.

    In: the cleaned study config (study_settings.study_config_clean), the round's index, and
    per track of config["tracks"] its current model {"spec": dict, "profile": dict | None,
    "rejected": rejected_candidates(...)} (the guided track needs the profile of its current
    model, ActivationProfile.to_dict(), or for a transformer its head profile {"heads": ...}).
    A CNN guided rule skips the layers of rejected candidates; the random track draws again
    (up to MAX_RANDOM_REDRAWS, "redraws" in its plan); a track whose candidate is still a
    rejected one sits the round out ("repeat_of" in its plan), so a comparison is never counted
    twice, while the controls keep the budget the guided track would spend.
    Out: per track {"spec": the candidate's spec, or None when the track sits the round out,
    "plan": how it was chosen (the rule's GuidedChoice, or the control's TrackChange less its
    spec, with "budget_source" "guided" or "own"; for a track sitting out {"error",
    "field_errors", "budget", ...}), "parameters" (the candidate's count; the current one when
    sitting out), "params_added", "mechanism" ({"layer", "added_units", "concept"} for a guided
    candidate that adds units to a layer; {"layer", "added_heads", "score"} for a guided
    transformer candidate that adds heads; else None), "operation" and "change_parameters" (the
    change to record; "manual" with {"steps": [...]} for several steps, "" when sitting out)}.
    The controls' budget is the guided candidate's params_added (their own round_budget when
    the guided track sits out); the random track's seed is random_track_seed(random_seed,
    index), recorded in its plan. A transformer's random track leaves out the guided
    candidate's model when both tracks start the round from the same model (its plan's
    "excluded"). Deterministic. Raises ValueError for a bad index or a missing track.
    """
    if not isinstance(index, int) or isinstance(index, bool) or index < 1:
        raise ValueError(f"rounds count from 1 (round 0 is the base model), got {index!r}")
    missing = [track for track in config["tracks"] if track not in current]
    if missing:
        raise ValueError(f"no current model for track(s) {', '.join(missing)}")
    specs = {track: study_base_spec(config, current[track]["spec"]) for track in config["tracks"]}
    rejected = {track: current[track].get("rejected", []) for track in config["tracks"]}
    guided = _plan_guided(config, {**current[GUIDED], "spec": specs[GUIDED]})
    planned = {GUIDED: _without_repeat(specs[GUIDED], guided, rejected[GUIDED])}
    # A candidate that adds nothing sets no budget; the controls then size their own. A guided
    # candidate that sits out only as a repeat still sets it: the controls go on spending what
    # the guided track would, so their budget stays equal.
    has_budget = guided["spec"] is not None and guided["params_added"] >= 1
    guided_added = guided["params_added"] if has_budget else None
    for track in (RANDOM, UNIFORM):
        if track in config["tracks"]:
            exclude = _guided_model_excluded(specs, guided) if track == RANDOM else None
            control = _plan_control(
                config, track, index, specs[track], guided_added, exclude, rejected[track]
            )
            planned[track] = _without_repeat(specs[track], control, rejected[track])
    return planned


__all__ = [
    "MULTI_STEP_OPERATION",
    "probe_layers",
    "random_track_seed",
    "rejected_candidates",
    "study_base_spec",
    "study_round_plan",
]
