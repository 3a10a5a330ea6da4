"""PNG figures for experiments, profiles and ablations (matplotlib Agg, no torch).

Figures are drawn on standalone Figure objects rather than pyplot's global state, so they are
safe to render from worker threads.
"""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from analysis.engine.profiles import as_profile, concept_scores  # noqa: E402

ARM_COLOURS = {"baseline": "#4c72b0", "variant": "#dd8452", "control": "#55a868"}
DPI = 100


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def _colour(arm: str) -> str:
    return ARM_COLOURS.get(arm, "#8172b3")


def training_curves_png(arm_results: dict[str, list[dict]], metric: str = "test_accuracy") -> bytes:
    """Per-epoch `metric` for every (arm, seed): thin lines per seed, thick line per arm mean.

    In: {arm: [run_arm results with "history"]}. Out: PNG bytes.
    """
    figure = Figure(figsize=(6, 4))
    axes = figure.subplots()
    for arm, results in arm_results.items():
        curves = [[epoch[metric] for epoch in result["history"]] for result in results]
        # Markers keep one-epoch runs visible: a line through a single point draws nothing.
        for curve in curves:
            axes.plot(range(1, len(curve) + 1), curve, color=_colour(arm), alpha=0.3, lw=1,
                      marker="o", markersize=3)  # fmt: skip
        if curves and len({len(curve) for curve in curves}) == 1:
            mean = np.mean(curves, axis=0)
            axes.plot(range(1, len(mean) + 1), mean, color=_colour(arm), lw=2.5, marker="o",
                      label=arm)  # fmt: skip
    axes.set_xlabel("epoch")
    epochs = max((len(r["history"]) for rs in arm_results.values() for r in rs), default=1)
    axes.set_xticks(range(1, epochs + 1, max(1, epochs // 10)))
    axes.set_ylabel(metric.replace("_", " "))
    axes.set_title("Training curves (thin: seeds, thick: mean)")
    if arm_results:
        axes.legend()
    return _png(figure)


def metric_by_arm_png(aggregate: dict[str, Any]) -> bytes:
    """Each arm's mean metric with its 95% CI as error bars, and per-seed values as dots.

    In: an aggregate_experiment() dict. Out: PNG bytes.
    """
    figure = Figure(figsize=(5, 4))
    axes = figure.subplots()
    arms = aggregate.get("arms", {})
    for position, (arm, summary) in enumerate(arms.items()):
        mean = summary["mean"]
        low, high = summary.get("ci_low"), summary.get("ci_high")
        error = [[mean - low], [high - mean]] if low is not None and high is not None else None
        axes.errorbar(position, mean, yerr=error, fmt="o", color=_colour(arm), capsize=8, ms=9)
        values = summary.get("values", [])
        jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else [0.0]
        axes.scatter(position + 0.25 + np.asarray(jitter[: len(values)]), values,
                     color=_colour(arm), alpha=0.6, s=18)  # fmt: skip
    axes.set_xticks(range(len(arms)), list(arms))
    axes.set_ylabel(aggregate.get("metric", "metric").replace("_", " "))
    axes.set_title(f"Verdict: {aggregate.get('verdict', '?')}")
    return _png(figure)


def selectivity_heatmap_png(profile_dict: dict[str, Any], concept: str) -> bytes:
    """Concept scores per layer (rows) and unit (columns); narrower layers are padded blank.

    In: an ActivationProfile.to_dict() and a class or attribute name. Out: PNG bytes.
    """
    profile = as_profile(profile_dict)
    rows = [concept_scores(profile, layer, concept) for layer in profile.layers]
    width = max((len(row) for row in rows), default=1)
    matrix = np.full((max(len(rows), 1), width), np.nan)
    for index, row in enumerate(rows):
        matrix[index, : len(row)] = row
    figure = Figure(figsize=(min(2 + width * 0.15, 14), 1.5 + 0.5 * len(rows)))
    axes = figure.subplots()
    image = axes.imshow(matrix, aspect="auto", cmap="viridis", interpolation="nearest")
    axes.set_yticks(range(len(rows)), list(profile.layers))
    axes.set_xlabel("unit")
    axes.set_title(f"Selectivity for {concept!r}")
    figure.colorbar(image, ax=axes)
    return _png(figure)


def ablation_effect_png(ablation_dict: dict[str, Any]) -> bytes:
    """Histogram of random-set accuracy drops with the target units' drop as a line.

    In: an AblationResult.to_dict(). Out: PNG bytes.
    """
    figure = Figure(figsize=(6, 4))
    axes = figure.subplots()
    random_drops = ablation_dict.get("random_drops", [])
    if random_drops:
        axes.hist(random_drops, bins=min(20, max(5, len(random_drops))), color="#999999",
                  label="random unit sets")  # fmt: skip
    axes.axvline(ablation_dict["drop"], color="#c44e52", lw=2.5, label="target units")
    axes.set_xlabel("accuracy drop")
    axes.set_ylabel("count")
    layer = ablation_dict.get("layer", "?")
    percentile = ablation_dict.get("percentile")
    suffix = f", percentile {percentile:.0f}" if percentile is not None else ""
    axes.set_title(f"Ablating {len(ablation_dict.get('units', []))} units of {layer}{suffix}")
    axes.legend()
    return _png(figure)
