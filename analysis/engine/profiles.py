"""Activation profiles as plain numpy data, and the scores derived from them.

Torch-free so stored profiles (JSON dicts) can be read, ranked and plotted anywhere.
A unit's "response" to one example is its activation, or for a conv channel the spatial mean
of its feature map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SELECTIVITY_EPS = 1e-7
LOCALISE_TOP_FRACTION = 0.1
ROUND_DIGITS = 6


@dataclass
class LayerProfile:
    """Per-unit statistics of one layer over a probe set of n examples.

    mean/variance (population)/maximum/fraction_inactive (response <= 0): float [U];
    class_means: [K, U] mean response per class (K = 0 when no labels were given);
    class_counts: [K]; correlations: attribute name -> Pearson r [U] (nan for constant units).
    """

    name: str
    n: int
    mean: np.ndarray
    variance: np.ndarray
    maximum: np.ndarray
    fraction_inactive: np.ndarray
    class_means: np.ndarray
    class_counts: np.ndarray
    correlations: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def width(self) -> int:
        """Out: the number of units U."""
        return len(self.mean)


@dataclass
class ActivationProfile:
    """Streaming statistics for several layers over one probe set."""

    layers: dict[str, LayerProfile]
    class_names: list[str]
    attribute_names: list[str]
    n_examples: int

    def to_dict(self) -> dict[str, Any]:
        """Out: a JSON-able dict (floats rounded to 6 decimals, nan as None)."""
        return {
            "n_examples": self.n_examples,
            "class_names": list(self.class_names),
            "attribute_names": list(self.attribute_names),
            "layers": {name: _layer_to_dict(layer) for name, layer in self.layers.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ActivationProfile:
        """In: a dict made by to_dict(). Out: the profile (None read back as nan)."""
        layers = {name: _layer_from_dict(name, raw) for name, raw in data["layers"].items()}
        return cls(
            layers, list(data["class_names"]), list(data["attribute_names"]), data["n_examples"]
        )


def _jsonable(values: np.ndarray) -> list:
    array = np.round(np.asarray(values, dtype=np.float64), ROUND_DIGITS)
    if array.ndim > 1:
        return [_jsonable(row) for row in array]
    return [None if math.isnan(x) else float(x) for x in array]


def _array(values: Any) -> np.ndarray:
    return np.array(values, dtype=np.float64) if values is not None else np.array([])


def _layer_to_dict(layer: LayerProfile) -> dict[str, Any]:
    return {
        "n": layer.n,
        "mean": _jsonable(layer.mean),
        "variance": _jsonable(layer.variance),
        "maximum": _jsonable(layer.maximum),
        "fraction_inactive": _jsonable(layer.fraction_inactive),
        "class_means": _jsonable(layer.class_means),
        "class_counts": [int(count) for count in layer.class_counts],
        "correlations": {key: _jsonable(value) for key, value in layer.correlations.items()},
    }


def _layer_from_dict(name: str, raw: dict[str, Any]) -> LayerProfile:
    width = len(raw["mean"])
    class_means = _array(raw["class_means"]).reshape(-1, width)
    return LayerProfile(
        name=name,
        n=raw["n"],
        mean=_array(raw["mean"]),
        variance=_array(raw["variance"]),
        maximum=_array(raw["maximum"]),
        fraction_inactive=_array(raw["fraction_inactive"]),
        class_means=class_means,
        class_counts=np.array(raw["class_counts"], dtype=np.int64),
        correlations={key: _array(value) for key, value in raw["correlations"].items()},
    )


def as_profile(profile: ActivationProfile | dict) -> ActivationProfile:
    """Accept a profile or its to_dict() form. Out: an ActivationProfile."""
    return (
        profile if isinstance(profile, ActivationProfile) else ActivationProfile.from_dict(profile)
    )


def _layer(profile: ActivationProfile, layer: str) -> LayerProfile:
    if layer not in profile.layers:
        raise KeyError(f"layer {layer!r} was not profiled; profiled: {', '.join(profile.layers)}")
    return profile.layers[layer]


def selectivity_index(class_means: np.ndarray) -> np.ndarray:
    """Class selectivity of each unit for each class.

    In: class_means [K, U]. Out: [U, K] with
    SI = (mu_class - mu_rest) / (|mu_class| + |mu_rest| + eps), where mu_rest is the mean of
    the other classes' mean responses. For non-negative responses (after ReLU) this is the
    usual (mu_class - mu_rest) / (mu_class + mu_rest + eps) in [-1, 1]; the absolute values
    keep it bounded for signed responses (pre-activation layers).
    """
    k = class_means.shape[0]
    if k < 2:
        raise ValueError("selectivity needs at least two classes in the profile")
    rest = (class_means.sum(axis=0, keepdims=True) - class_means) / (k - 1)  # [K, U]
    index = (class_means - rest) / (np.abs(class_means) + np.abs(rest) + SELECTIVITY_EPS)
    return index.T


def class_selectivity(profile: ActivationProfile | dict, layer: str) -> np.ndarray:
    """Out: selectivity index [units, classes] of the layer (see selectivity_index)."""
    return selectivity_index(_layer(as_profile(profile), layer).class_means)


def attribute_correlation(
    profile: ActivationProfile | dict, layer: str, attribute: str
) -> np.ndarray:
    """Out: Pearson r [units] between each unit's response and the attribute (nan if constant)."""
    layer_profile = _layer(as_profile(profile), layer)
    if attribute not in layer_profile.correlations:
        raise KeyError(f"attribute {attribute!r} was not profiled")
    return layer_profile.correlations[attribute]


def concept_kind(profile: ActivationProfile | dict, concept: str) -> str:
    """Out: "class" or "attribute" for a concept name known to the profile; KeyError otherwise."""
    profile = as_profile(profile)
    if concept in profile.class_names:
        return "class"
    if concept in profile.attribute_names:
        return "attribute"
    known = [*profile.class_names, *profile.attribute_names]
    raise KeyError(f"unknown concept {concept!r}; known: {', '.join(known)}")


def concept_scores(profile: ActivationProfile | dict, layer: str, concept: str) -> np.ndarray:
    """Out: [units] scores for a concept: selectivity for a class name, |Pearson r| for an
    attribute (units encoding it with either sign count); dead units score 0."""
    profile = as_profile(profile)
    if concept_kind(profile, concept) == "class":
        scores = class_selectivity(profile, layer)[:, profile.class_names.index(concept)]
    else:
        scores = np.abs(attribute_correlation(profile, layer, concept))
    return np.nan_to_num(scores, nan=0.0)


def top_units(
    profile: ActivationProfile | dict, concept: str, k: int
) -> list[tuple[str, int, float]]:
    """Out: the k best (layer, unit, score) across all profiled layers, best first."""
    profile = as_profile(profile)
    ranked = [
        (name, unit, float(score))
        for name in profile.layers
        for unit, score in enumerate(concept_scores(profile, name, concept))
    ]
    ranked.sort(key=lambda item: -item[2])
    return ranked[:k]


def localise_concept(profile: ActivationProfile | dict, concept: str) -> list[dict[str, Any]]:
    """Which layers hold the concept, best first.

    Out: one dict per layer {"layer", "score", "top_unit", "top_score", "units"} where score is
    the mean of the layer's top 10% unit scores (at least one unit), so a single outlier unit
    does not decide and wide layers are not favoured by their size alone.
    """
    profile = as_profile(profile)
    rows = []
    for name in profile.layers:
        scores = concept_scores(profile, name, concept)
        top_count = max(1, round(LOCALISE_TOP_FRACTION * len(scores)))
        best = np.sort(scores)[::-1][:top_count]
        rows.append(
            {
                "layer": name,
                "score": float(best.mean()),
                "top_unit": int(np.argmax(scores)),
                "top_score": float(scores.max()),
                "units": len(scores),
            }
        )
    return sorted(rows, key=lambda row: -row["score"])


def cluster_units(
    profile: ActivationProfile | dict, layer: str, n_clusters: int
) -> list[list[int]]:
    """Group a layer's units by their per-class response profiles.

    Each unit is described by its class means, standardised per unit (so clusters reflect the
    pattern of preferences, not overall activation level), and grouped with Ward
    agglomerative clustering. Out: clusters as lists of unit indices, largest first.
    """
    class_means = _layer(as_profile(profile), layer).class_means  # [K, U]
    if class_means.shape[0] < 2:
        raise ValueError("clustering needs class means for at least two classes")
    if not 1 <= n_clusters <= class_means.shape[1]:
        raise ValueError(f"n_clusters must be in [1, {class_means.shape[1]}], got {n_clusters}")
    features = class_means.T
    spread = features.std(axis=1, keepdims=True)
    features = (features - features.mean(axis=1, keepdims=True)) / np.where(spread > 0, spread, 1)
    # Imported here: the web process plans studies with this module and never clusters.
    from sklearn.cluster import AgglomerativeClustering

    labels = AgglomerativeClustering(n_clusters=n_clusters).fit_predict(features)
    clusters = [np.flatnonzero(labels == label).tolist() for label in range(n_clusters)]
    return sorted(clusters, key=lambda members: (-len(members), members[0]))
