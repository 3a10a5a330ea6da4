"""The guided track of a study: a written, inspectable rule that turns a profile into a change.

Each round a study profiles the guided track's current model and asks a rule here for the
change to try next, within the round's parameter budget. The answer (the change, the rule's
name, the per-layer numbers it compared and its choice in words) is JSON-able, so it is stored
with the round. Torch-free, like changes.py: the web process may plan rounds.

CNN and MLP models are steered by a concept's unit profile (CNN_RULES); transformers by their
heads' role scores (TRANSFORMER_RULES: insert an attention layer while no head reaches the
threshold, then add heads where the best head sits, as in-context copying needs a second
attention layer to compose with the first before an induction head can form).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from analysis.engine.changes import ChangeError, apply_change, insert_templates
from analysis.engine.model_specs import count_model_parameters
from analysis.engine.profiles import (
    LOCALISE_TOP_FRACTION,
    ActivationProfile,
    as_profile,
    cluster_units,
    concept_scores,
    localise_concept,
)
from analysis.engine.specs import UNIT_TYPES, find_layer, unit_layers
from analysis.engine.transformer_specs import (
    TransformerSpecError,
    is_transformer_spec,
    validate_transformer_spec,
)

WIDEN_MOST_SELECTIVE = "widen_most_selective"
INSERT_AFTER_TIGHTEST_CLUSTERS = "insert_after_tightest_clusters"
INSERT_ATTENTION_UNTIL_ROLE = "insert_attention_until_role"
GUIDED_RULES = {
    WIDEN_MOST_SELECTIVE: "widen the layer that holds the concept's most selective units",
    INSERT_AFTER_TIGHTEST_CLUSTERS: (
        "insert a unit-holding layer after the layer whose units cluster most tightly"
    ),
    INSERT_ATTENTION_UNTIL_ROLE: (
        "insert an attention layer on top while no head reaches the role's threshold score, "
        "else add heads to the layer where the best head sits"
    ),
}
# Which rules read which family's profile: CNN/MLP activation profiles, or transformer heads.
CNN_RULES = (WIDEN_MOST_SELECTIVE, INSERT_AFTER_TIGHTEST_CLUSTERS)
TRANSFORMER_RULES = (INSERT_ATTENTION_UNTIL_ROLE,)
# The head role a transformer study steers by, and the score at which a head plays it (the
# level at which head profiling proposes a finding, head_profiles.FINDING_THRESHOLD).
HEAD_ROLES = ("previous_token", "induction", "duplicate_token")
DEFAULT_HEAD_ROLE = "induction"
DEFAULT_ROLE_THRESHOLD = 0.5
DEFAULT_BUDGET_FRACTION = 0.10
DEFAULT_CLUSTERS = 2


@dataclass
class GuidedChoice:
    """What a guided rule chose and why; to_dict() is what a study stores with the round.

    operation/parameters: a change valid for apply_change on the spec the rule was given;
    inputs: the per-layer numbers the rule compared; reason: the choice in words.
    """

    rule: str
    rule_text: str
    concept: str
    operation: str
    parameters: dict[str, Any]
    layer: str
    inputs: list[dict[str, Any]]
    budget: int
    params_before: int
    params_added: int
    description: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Out: a JSON-able dict of all fields."""
        return asdict(self)


def round_budget(spec: dict, fraction: float = DEFAULT_BUDGET_FRACTION) -> int:
    """Out: the parameters a round may add: `fraction` of the spec's parameters, rounded, at
    least 1. Raises ValueError for a fraction that is not a positive finite number."""
    if not isinstance(fraction, int | float) or not math.isfinite(fraction) or fraction <= 0:
        raise ValueError(f"fraction must be a positive number, got {fraction!r}")
    return max(1, round(count_model_parameters(spec) * fraction))


def unit_layer_of(spec: dict, name: str) -> str | None:
    """Out: the conv2d/linear layer whose units the layer `name` carries (itself, or the nearest
    one before it for activations, pooling, batchnorm and dropout), or None when that is the
    output layer, a flatten stands between them, or nothing before it holds units."""
    index, _ = find_layer(spec, name)
    for layer in reversed(spec["layers"][: index + 1]):
        if layer["type"] == "flatten":
            return None
        if layer["type"] in UNIT_TYPES:
            return layer["name"] if layer["name"] in unit_layers(spec) else None
    return None


def _profiled_unit_layers(spec: dict, profile: ActivationProfile) -> dict[str, str]:
    """Out: {profiled layer: unit layer it carries}, in spec order, widenable ones only."""
    names = {layer["name"] for layer in spec["layers"]}
    stale = [name for name in profile.layers if name not in names]
    if stale:
        raise ChangeError(
            f"the profile has layers the spec lacks ({', '.join(stale)}): it was made on "
            "another model",
            {"profile": "the profile does not belong to this spec"},
        )
    order = [layer["name"] for layer in spec["layers"] if layer["name"] in profile.layers]
    mapped = {name: unit_layer_of(spec, name) for name in order}
    return {name: unit for name, unit in mapped.items() if unit}


def _sized_to_budget(spec: dict, operation: str, make_parameters, budget: int):
    """Out: (parameters, ChangeResult) of the change whose params_added is nearest the budget,
    at least one unit; the cost is affine in the units, so two probes locate the best count."""
    one = apply_change(spec, operation, make_parameters(1)).params_added
    two = apply_change(spec, operation, make_parameters(2)).params_added
    slope = two - one
    centre = max(1, round((budget - one) / slope + 1)) if slope > 0 else 1
    options = []
    for units in sorted({max(1, centre + delta) for delta in (-1, 0, 1)}):
        try:
            result = apply_change(spec, operation, make_parameters(units))
        except ChangeError:
            continue
        options.append((abs(result.params_added - budget), units, result))
    if not options:
        raise ChangeError(
            f"no {operation} change of this kind is valid here",
            {"operation": f"{operation} is not possible at the rule's choice"},
        )
    _, units, result = min(options, key=lambda option: option[:2])
    return make_parameters(units), result


def _units(count: int) -> str:
    return f"{count} unit" if count == 1 else f"{count} units"


def _budget_words(result, budget: int) -> str:
    return f"{result.params_added:+,} parameters of a {budget:,} budget"


def _widen_most_selective(spec, profile, concept, budget, carriers) -> GuidedChoice:
    by_layer = {row["layer"]: row for row in localise_concept(profile, concept)}
    inputs = []
    for name, unit in carriers.items():
        row = by_layer[name]
        top = max(1, round(LOCALISE_TOP_FRACTION * row["units"]))
        inputs.append({"profiled_layer": name, "layer": unit, "score": row["score"],
                       "top_units": top, "top_unit": row["top_unit"],
                       "top_score": row["top_score"], "units": row["units"]})  # fmt: skip
    # Highest score wins; on a tie the earlier layer, so the choice never depends on dict order.
    best = max(inputs, key=lambda row: row["score"])
    parameters, result = _sized_to_budget(
        spec, "widen_layer", lambda k: {"layer": best["layer"], "units": k}, budget
    )
    others = [row for row in inputs if row["layer"] != best["layer"]]
    runner = max(others, key=lambda row: row["score"]) if others else None
    versus = f" vs {runner['score']:.2f} in {runner['profiled_layer']}" if runner else ""
    reason = (
        f"{best['profiled_layer']} holds the most {concept}-selective units (its top "
        f"{best['top_units']} score {best['score']:.2f} on average{versus}): widen "
        f"{best['layer']} by {_units(parameters['units'])}, {_budget_words(result, budget)}"
    )
    return _choice(WIDEN_MOST_SELECTIVE, concept, "widen_layer", parameters, best["layer"],
                   inputs, budget, result, reason)  # fmt: skip


def cluster_tightness(profile: ActivationProfile | dict, layer: str, n_clusters: int) -> float:
    """How tightly a layer's units cluster by their class-response patterns.

    Out: the silhouette score in [-1, 1] (higher: tighter, better separated clusters) of
    cluster_units' grouping, on the same per-unit standardised class means it clusters.
    """
    # Imported here: the web process imports this module (through study_settings, to check
    # a study's settings) and must not pay for scikit-learn.
    from sklearn.metrics import silhouette_score

    profile = as_profile(profile)
    try:
        clusters = cluster_units(profile, layer, n_clusters)
    except ValueError as error:
        raise ChangeError(str(error), {"n_clusters": str(error)}) from error
    class_means = profile.layers[layer].class_means  # [K, U]
    features = class_means.T
    spread = features.std(axis=1, keepdims=True)
    features = (features - features.mean(axis=1, keepdims=True)) / np.where(spread > 0, spread, 1)
    labels = np.empty(features.shape[0], dtype=np.int64)
    for label, members in enumerate(clusters):
        labels[members] = label
    return float(silhouette_score(features, labels))


def _insert_after_tightest(spec, profile, concept, budget, carriers, n_clusters) -> GuidedChoice:
    if not isinstance(n_clusters, int) or isinstance(n_clusters, bool) or n_clusters < 2:
        raise ChangeError(
            f"n_clusters must be an integer >= 2, got {n_clusters!r}",
            {"n_clusters": "must be an integer >= 2 (a silhouette compares clusters)"},
        )
    eligible = {
        name: unit for name, unit in carriers.items() if n_clusters < profile.layers[name].width
    }
    if not eligible:
        raise ChangeError(
            f"no profiled layer has more than {n_clusters} units to cluster",
            {"n_clusters": "fewer clusters than every profiled layer's units"},
        )
    inputs = [{"profiled_layer": name, "layer": unit, "n_clusters": n_clusters,
               "silhouette": cluster_tightness(profile, name, n_clusters)}
              for name, unit in eligible.items()]  # fmt: skip
    best = max(inputs, key=lambda row: row["silhouette"])
    after = best["profiled_layer"]
    template = _template_after(spec, after)
    width_field = "out_channels" if template["type"] == "conv2d" else "out_features"
    parameters, result = _sized_to_budget(
        spec,
        "insert_layer",
        lambda k: {"after": after, "layer": {**template, width_field: k}},
        budget,
    )
    others = [row for row in inputs if row["layer"] != best["layer"]]
    runner = max(others, key=lambda row: row["silhouette"]) if others else None
    versus = f" vs {runner['silhouette']:.2f} in {runner['profiled_layer']}" if runner else ""
    reason = (
        f"{after}'s units cluster most tightly into {n_clusters} groups (silhouette "
        f"{best['silhouette']:.2f}{versus}): insert a {template['type']} layer of "
        f"{_units(parameters['layer'][width_field])} after {after}, {_budget_words(result, budget)}"
    )
    # The choice's layer is the widenable layer the insertion follows (the one it ranked), so
    # a rejected insertion excludes that layer next time, as a rejected widening does.
    return _choice(INSERT_AFTER_TIGHTEST_CLUSTERS, concept, "insert_layer", parameters,
                   best["layer"], inputs, budget, result, reason)  # fmt: skip


def _template_after(spec: dict, after: str) -> dict:
    """A conv2d where the layer's output is [C, H, W], a linear layer where it is flat."""
    conv, linear = insert_templates(spec)
    index, _ = find_layer(spec, after)
    flat = any(layer["type"] in ("flatten", "linear") for layer in spec["layers"][: index + 1])
    flat = flat or len(spec["input_shape"]) == 1
    return linear if flat else conv


def _choice(rule, concept, operation, parameters, layer, inputs, budget, result, reason):
    return GuidedChoice(
        rule=rule, rule_text=GUIDED_RULES[rule], concept=concept, operation=operation,
        parameters=parameters, layer=layer, inputs=inputs, budget=budget,
        params_before=result.params_before, params_added=result.params_added,
        description=result.description, reason=reason,
    )  # fmt: skip


def guided_change(
    spec: dict,
    profile: ActivationProfile | dict,
    concept: str,
    *,
    budget: int,
    rule: str = WIDEN_MOST_SELECTIVE,
    n_clusters: int = DEFAULT_CLUSTERS,
    exclude_layers: tuple[str, ...] = (),
) -> GuidedChoice:
    """Apply a guided rule to the track's current model.

    In: the current spec, its ActivationProfile (or the stored dict form), the guiding concept
    (a class or attribute name of the profile), the parameters the round may add, the rule
    (a key of GUIDED_RULES) and, for the clustering rule, the number of clusters. Only profiled
    layers that carry a widenable layer's units are compared. The change is sized to the units
    whose cost is nearest the budget (at least one unit): a unit's cost is fixed by the model,
    so the result states how far it is from the budget. Out: GuidedChoice. Raises ChangeError
    keyed by field for an unknown rule or concept, a profile of another model, or a profile
    without any widenable layer. `exclude_layers`: widenable layers whose candidate was tried
    from this very model and not kept; the rule ranks the others (the next-best layer), and
    raises ChangeError (field "profile") when none is left.
    """
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
        raise ChangeError(
            f"budget must be a positive integer, got {budget!r}",
            {"budget": "must be a positive integer"},
        )
    if rule not in CNN_RULES:
        known = ", ".join(CNN_RULES)
        raise ChangeError(f"unknown rule {rule!r}", {"rule": f"must be one of {known}"})
    profile = as_profile(profile)
    try:
        concept_scores(profile, next(iter(profile.layers)), concept)
    except (KeyError, StopIteration) as error:
        raise ChangeError(
            str(error), {"concept": "the profile does not know this concept"}
        ) from error
    carriers = _profiled_unit_layers(spec, profile)
    if not carriers:
        raise ChangeError(
            "no profiled layer carries the units of a widenable layer",
            {"profile": "profile a hidden layer (not only the output layer)"},
        )
    carriers = {name: unit for name, unit in carriers.items() if unit not in exclude_layers}
    if not carriers:
        tried = ", ".join(sorted(set(exclude_layers)))
        raise ChangeError(
            f"the rule's every layer ({tried}) was tried from this model and not kept",
            {"profile": "nothing new to try until a candidate is kept"},
        )
    if rule == WIDEN_MOST_SELECTIVE:
        return _widen_most_selective(spec, profile, concept, budget, carriers)
    return _insert_after_tightest(spec, profile, concept, budget, carriers, n_clusters)


# --- transformers: heads and their roles -------------------------------------------------------


def _best_head(scores: list) -> tuple[float, int] | None:
    """Out: (highest finite score, its head; the earliest head on a tie) or None when no head
    has a measurable score (a score nobody could measure is missing, not zero)."""
    finite = [
        (float(score), head)
        for head, score in enumerate(scores)
        if score is not None and math.isfinite(score)
    ]
    return max(finite, key=lambda item: (item[0], -item[1])) if finite else None


def _head_inputs(spec: dict, heads: dict[str, dict], role: str) -> list[dict[str, Any]]:
    """The rule's inputs: per attention layer of the spec, its heads' best `role` score and
    the head holding it (None when unmeasured). Raises ChangeError when the profile was made
    on another model (a layer or head count the spec does not have)."""
    try:
        config = validate_transformer_spec(spec)
    except TransformerSpecError as error:
        raise ChangeError(f"the spec is invalid: {error}", {"spec": str(error)}) from error
    widths = {f"blocks.{index}.attn": block.n_heads for index, block in enumerate(config.blocks)}
    stale = [
        layer for layer, scores in heads.items() if widths.get(layer) != len(scores.get(role) or [])
    ]
    if stale or set(widths) != set(heads):
        raise ChangeError(
            "the head profile does not match the spec's attention layers: it was made on "
            "another model",
            {"profile": "the profile does not belong to this spec"},
        )
    inputs = []
    for layer, n_heads in widths.items():
        best = _best_head(heads[layer][role])
        inputs.append({"layer": layer, "block": int(layer.split(".")[1]), "heads": n_heads,
                       "best_head": None if best is None else best[1],
                       "best_score": None if best is None else best[0]})  # fmt: skip
    return inputs


def _heads_words(count: int) -> str:
    return f"{count} head" if count == 1 else f"{count} heads"


def _best_words(best: dict | None, role: str) -> str:
    if best is None:
        return f"no head has a measurable {role} score"
    return f"best {best['best_score']:.2f} at layer {best['block']} head {best['best_head']}"


def transformer_guided_change(
    spec: dict,
    profile: dict,
    *,
    budget: int,
    role: str = DEFAULT_HEAD_ROLE,
    threshold: float = DEFAULT_ROLE_THRESHOLD,
    rule: str = INSERT_ATTENTION_UNTIL_ROLE,
) -> GuidedChoice:
    """The transformer rule (INSERT_ATTENTION_UNTIL_ROLE) on a transformer's head profile.

    In: the current transformer spec, its head profile ({"heads": {"blocks.{i}.attn": {score:
    [per head]}}}, as head profiling's to_dict() or run_transformer_arm's head_profile), the
    round's budget, the head role (HEAD_ROLES) and the score at which a head plays it.
    While no head reaches the threshold, an attention-only block is inserted after the last
    block, with the number of heads (block 0's head dimension) whose cost is nearest the
    budget, at least one; once a head reaches it, heads are added to the block whose head
    scores highest (the earliest block and head on a tie), as many as the budget buys, at
    least one. Out: GuidedChoice whose inputs are the per-layer best scores
    ({"layer", "block", "heads", "best_head", "best_score"}) and whose concept is the role.
    Raises ChangeError keyed by field (rule, role, threshold, budget, profile).
    """
    if rule not in TRANSFORMER_RULES:
        known = ", ".join(TRANSFORMER_RULES)
        raise ChangeError(f"unknown rule {rule!r}", {"rule": f"must be one of {known}"})
    if role not in HEAD_ROLES:
        message = f"must be one of {', '.join(HEAD_ROLES)}"
        raise ChangeError(f"unknown head role {role!r}", {"role": message})
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
        raise ChangeError(
            f"budget must be a positive integer, got {budget!r}",
            {"budget": "must be a positive integer"},
        )
    if not isinstance(profile, dict) or not isinstance(profile.get("heads"), dict):
        raise ChangeError("the profile holds no head scores", {"profile": "profile the heads"})
    inputs = _head_inputs(spec, profile["heads"], role)
    scored = [row for row in inputs if row["best_score"] is not None]
    best = max(scored, key=lambda row: (row["best_score"], -row["block"])) if scored else None
    for row in inputs:
        row["threshold"] = threshold
    if best is None or best["best_score"] < threshold:
        return _insert_attention(spec, role, threshold, budget, inputs, best)
    return _add_heads_at_best(spec, role, threshold, budget, inputs, best)


def _insert_attention(spec, role, threshold, budget, inputs, best) -> GuidedChoice:
    after = len(inputs) - 1
    parameters, result = _sized_to_budget(
        spec, "insert_block", lambda k: {"after": after, "n_heads": k}, budget
    )
    reason = (
        f"no head reaches the {role} threshold {threshold:.2f} ({_best_words(best, role)}): "
        f"insert an attention-only layer of {_heads_words(parameters['n_heads'])} after block "
        f"{after}, {_budget_words(result, budget)}"
    )
    return _choice(INSERT_ATTENTION_UNTIL_ROLE, role, "insert_block", parameters,
                   result.touched_layer, inputs, budget, result, reason)  # fmt: skip


def _add_heads_at_best(spec, role, threshold, budget, inputs, best) -> GuidedChoice:
    block = best["block"]
    parameters, result = _sized_to_budget(
        spec, "add_heads", lambda k: {"block": block, "heads": k}, budget
    )
    reason = (
        f"a head reaches the {role} threshold {threshold:.2f} ({_best_words(best, role)}): "
        f"add {_heads_words(parameters['heads'])} to block {block}, "
        f"{_budget_words(result, budget)}"
    )
    return _choice(INSERT_ATTENTION_UNTIL_ROLE, role, "add_heads", parameters, best["layer"],
                   inputs, budget, result, reason)  # fmt: skip


def study_guided_change(
    spec: dict, profile: dict, config: dict, *, budget: int, exclude_layers: tuple[str, ...] = ()
) -> GuidedChoice:
    """The study's guided rule on its track's current model, for either family: the
    transformer rule with the config's head_role and threshold, else a CNN rule with its
    concept, skipping `exclude_layers` (layers already tried from this model and not kept;
    the transformer rule has one choice per model, so a repeat of it sits the round out
    instead: study_plans). Raises ChangeError keyed by field."""
    if is_transformer_spec(spec):
        return transformer_guided_change(
            spec, profile, budget=budget, role=config["head_role"],
            threshold=config["threshold"], rule=config["rule"],
        )  # fmt: skip
    return guided_change(
        spec, profile, config["concept"], budget=budget, rule=config["rule"],
        exclude_layers=exclude_layers,
    )  # fmt: skip


__all__ = [
    "CNN_RULES",
    "DEFAULT_BUDGET_FRACTION",
    "DEFAULT_HEAD_ROLE",
    "DEFAULT_ROLE_THRESHOLD",
    "GUIDED_RULES",
    "HEAD_ROLES",
    "INSERT_AFTER_TIGHTEST_CLUSTERS",
    "INSERT_ATTENTION_UNTIL_ROLE",
    "TRANSFORMER_RULES",
    "WIDEN_MOST_SELECTIVE",
    "GuidedChoice",
    "cluster_tightness",
    "guided_change",
    "round_budget",
    "study_guided_change",
    "transformer_guided_change",
    "unit_layer_of",
]
