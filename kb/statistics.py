"""Knowledge-base statistics as plain dicts, for the API and the pages (torch-free).

Proportions come with Wilson score intervals (95%), which stay inside [0, 1] and behave
with the small counts interview studies have.
"""

import math
from collections import defaultdict

from django.core.exceptions import ValidationError

from analysis.engine.specs import DEFAULT_HYPERPARAMETERS
from analysis.engine.stats import (
    METRIC_RANGES,
    explain_verdict,
    interval_range_note,
    power_warnings,
    verdict,
    wilson_interval,
)
from kb.models import ArchitectureChange, Highlight, Interview, Outcome, Theme


def proportion(count: int, n: int) -> dict:
    """{"count", "n", "share", "ci_low", "ci_high"}; share and interval are None when n is 0."""
    if n == 0:
        return {"count": 0, "n": 0, "share": None, "ci_low": None, "ci_high": None}
    low, high = wilson_interval(count, n)
    return {"count": count, "n": n, "share": count / n, "ci_low": low, "ci_high": high}


def _ancestors(themes: dict[int, dict]) -> dict[int, list[int]]:
    """Each theme id -> itself and its ancestors, so a child's tag counts for its parents."""
    chains = {}
    for theme_id in themes:
        chain, current = [], theme_id
        while current is not None and current not in chain:
            chain.append(current)
            current = themes[current]["parent_id"]
        chains[theme_id] = chain
    return chains


THEME_SCOPE_BOTH = "Choose one coder or the consensus version, not both."


def theme_scope_validate(*, coder, version) -> None:
    """The one check of a theme statistics scope (the page's form and the API's query both
    call it): one coder or the consensus version, not both. Raises ValidationError keyed by
    field."""
    if coder and version:
        raise ValidationError({"version": THEME_SCOPE_BOTH})


def theme_prevalence(*, user=None, coder_id: int | None = None, consensus: bool = False) -> dict:
    """How many interviewed researchers raised each theme.

    A researcher raised a theme when a highlight in one of their interviews is tagged with it
    or with one of its descendants. The highlights are the coders' (never the consensus
    copies of them); with `coder_id` only that coder's; with `consensus` only the consensus
    version's (kb.services.coding_rounds). With `user`, only the highlights they may see
    while coding blind count (kb.selectors.highlights_counted). Restricted to one coder or
    the consensus, N counts only the researchers with an interview that has such a
    highlight (those the coder or the consensus covered). Out:
    {"researchers": N, "roles": {role: n},
     "themes": [{"theme", "name", "parent", "highlights", "researchers": proportion,
                 "by_role": {role: proportion}}]}
    where N counts researchers with at least one interview and `proportion` is
    {"count", "n", "share", "ci_low", "ci_high"}. Themes come in name order.
    """
    from kb.selectors import highlights_counted  # selectors reads this module

    counted = highlights_counted(user=user, consensus=consensus)
    if coder_id is not None:
        counted = counted.filter(coder_id=coder_id)
    interviews = Interview.objects.all()
    if consensus or coder_id is not None:
        interviews = interviews.filter(pk__in=counted.values("interview_id"))
    role_of = dict(interviews.values_list("researcher_id", "researcher__role").distinct())
    role_totals: dict[str, int] = defaultdict(int)
    for role in role_of.values():
        role_totals[role] += 1
    themes = {row["id"]: row for row in Theme.objects.values("id", "name", "parent_id")}
    chains = _ancestors(themes)
    raised: dict[int, set[int]] = defaultdict(set)
    highlights: dict[int, set[int]] = defaultdict(set)
    for theme_id, highlight_id, researcher_id in Highlight.themes.through.objects.filter(
        highlight__in=counted
    ).values_list("theme_id", "highlight_id", "highlight__interview__researcher_id"):
        for tagged in chains[theme_id]:
            raised[tagged].add(researcher_id)
            highlights[tagged].add(highlight_id)
    rows = []
    for theme_id, theme in sorted(themes.items(), key=lambda item: (item[1]["name"], item[0])):
        by_role = defaultdict(int)
        for researcher_id in raised[theme_id]:
            by_role[role_of[researcher_id]] += 1
        rows.append(
            {
                "theme": theme_id,
                "name": theme["name"],
                "parent": theme["parent_id"],
                "highlights": len(highlights[theme_id]),
                "researchers": proportion(len(raised[theme_id]), len(role_of)),
                "by_role": {
                    role: proportion(by_role[role], total)
                    for role, total in sorted(role_totals.items())
                },
            }
        )
    return {"researchers": len(role_of), "roles": dict(sorted(role_totals.items())), "themes": rows}


def _beat_control(outcome: dict) -> bool | None:
    """True when the guided change beat its budget-matched random control: its effect over
    the control points the expected way and the control interval excludes zero. None when
    the outcome has no control comparison."""
    effect = outcome["effect_vs_control"]
    if effect is None:
        return None
    if outcome["change__expected_direction"] == ArchitectureChange.Direction.DECREASE:
        high = outcome["control_ci_high"]
        return effect < 0 and high is not None and high < 0
    low = outcome["control_ci_low"]
    return effect > 0 and low is not None and low > 0


def _block(outcomes: list[dict]) -> dict:
    improved = sum(outcome["verdict"] == Outcome.Verdict.IMPROVED for outcome in outcomes)
    versus_control = [_beat_control(outcome) for outcome in outcomes]
    compared = [beat for beat in versus_control if beat is not None]
    return {
        "changes": len(outcomes),
        "beat_baseline": proportion(improved, len(outcomes)),
        "beat_control": proportion(sum(compared), len(compared)),
    }


def scoreboard() -> dict:
    """Does understanding pay off? Across evaluated changes, each by its latest outcome (study
    rounds excluded: the study section reports them): how
    often the guided change beat its baseline (verdict `improved`) and how often it beat its
    budget-matched random control. Out:
    {"overall": block, "by_operation": [{"operation", **block}],
     "by_model": [{"model", "name", **block}]}
    with block = {"changes", "beat_baseline": proportion, "beat_control": proportion}.
    """
    latest: dict[int, dict] = {}
    # A study's rounds (control tracks included) are answered in the study section, paired
    # by round and track; counting them here would mix a search's steps with single changes.
    for outcome in (
        Outcome.objects.filter(change__status=ArchitectureChange.Status.EVALUATED)
        .exclude(source=Outcome.Source.STUDY)
        .order_by("change_id", "recorded_at", "id")
        .values(
            "change_id",
            "verdict",
            "effect_vs_control",
            "control_ci_low",
            "control_ci_high",
            "change__expected_direction",
            "change__operation",
            "change__target_model_id",
            "change__target_model__name",
        )  # fmt: skip
    ):
        latest[outcome["change_id"]] = outcome
    outcomes = list(latest.values())
    by_operation, by_model = defaultdict(list), defaultdict(list)
    for outcome in outcomes:
        by_operation[outcome["change__operation"]].append(outcome)
        model = (outcome["change__target_model_id"], outcome["change__target_model__name"])
        by_model[model].append(outcome)
    return {
        "overall": _block(outcomes),
        "by_operation": [
            {"operation": operation, **_block(group)}
            for operation, group in sorted(by_operation.items())
        ],
        "by_model": [
            {"model": model_id, "name": name, **_block(group)}
            for (model_id, name), group in sorted(by_model.items())
        ],
    }


# --- one outcome: its verdict's reason, its warnings and the settings it was measured with ---


def outcome_verdict_reason(outcome: Outcome) -> tuple[str, str]:
    """The verdict an outcome's interval gives under its change's rule, and why.

    The rule is analysis.engine.stats.verdict with the change's expected direction and smallest
    effect that matters, the one measured outcomes get. Out: (verdict, reason), e.g.
    ("improved", "the values give 'improved': the 95% interval [0.0125, 0.0175] of the
    difference lies above 0, the expected direction (increase)")."""
    change = outcome.change
    rule = {"direction": change.expected_direction, "minimum_effect": change.minimum_effect}
    n = min(len(outcome.baseline_values), len(outcome.variant_values))
    return (
        verdict(outcome.ci_low, outcome.ci_high, **rule),
        explain_verdict(outcome.ci_low, outcome.ci_high, n=n, **rule),
    )


def outcome_power_warnings(outcome: Outcome) -> list[str]:
    """What the outcome's seeds can and cannot detect, computed from its stored values by the
    rule measured runs use (analysis.engine.stats.power_warnings)."""
    return power_warnings(
        outcome.variant_values,
        outcome.baseline_values,
        metric=outcome.metric,
        minimum_effect=outcome.change.minimum_effect,
    )


def run_settings(config: dict, *, fallback_spec: dict | None = None) -> dict:
    """What a change experiment trained on, from its run's frozen config. Out: {"dataset",
    "dataset_size" (None: the whole dataset), "epochs", "seeds" (list)}; missing keys give
    None or [].

    Epochs come from the run's training settings, else the frozen baseline arm's
    hyperparameters, else the frozen model spec's (for runs from before specs were frozen,
    `fallback_spec`: the change's model's), else the engine's defaults."""
    config = config or {}
    dataset = config.get("dataset") or {}
    spec = (config.get("model") or {}).get("architecture_spec")
    if spec is None:
        spec = fallback_spec or {}
    baseline = (config.get("arms") or {}).get("baseline") or {}
    hyperparameters = {
        **DEFAULT_HYPERPARAMETERS,
        **(spec.get("hyperparameters") or {}),
        **(baseline.get("hyperparameters") or {}),
        **(config.get("train") or {}),
    }
    return {
        "dataset": dataset.get("name"),
        "dataset_size": dataset.get("n", dataset.get("limit")),
        "epochs": hyperparameters["epochs"],
        "seeds": _seed_list(config.get("seeds")),
    }


def _seed_list(seeds) -> list[int]:
    # Requests may give a number of seeds; the frozen config lists them.
    if isinstance(seeds, int):
        return list(range(seeds))
    return list(seeds or [])


def bounded_metric_note(metric: str) -> str | None:
    """What to keep in mind reading t-intervals of a metric that lies between two bounds
    (test_accuracy: [0, 1]): a t-interval does not know the bounds and can reach past them.
    None for metrics unbounded on a side (losses) or unknown. The stored intervals stay as
    computed; pages say this beside them."""
    low, high = METRIC_RANGES.get(metric, (None, None))
    if low is None or math.isinf(low) or math.isinf(high):
        return None
    return (
        f"95% t-intervals; {metric} is bounded in [{low:g}, {high:g}] (a difference of two "
        f"values in [{low - high:g}, {high - low:g}]), and a t-interval can reach past "
        "those bounds"
    )


def outcome_summary(outcome: Outcome) -> dict:
    """Everything the pages say beside an outcome's numbers. Out: {"verdict" (computed),
    "reason", "verdict_differs" (the stored verdict is not the computed one: entered by hand
    before verdicts were computed), "warnings" (power, for manual outcomes; a measured
    outcome's are in its notes), "range_notes" (intervals past the metric's range),
    "interval_note" (bounded_metric_note),
    "settings" (run_settings, or None for a manual outcome)}."""
    computed, reason = outcome_verdict_reason(outcome)
    manual = outcome.source == Outcome.Source.MANUAL
    notes = [
        (label, interval_range_note(low, high, metric=outcome.metric))
        for label, low, high in (
            ("against the baseline", outcome.ci_low, outcome.ci_high),
            ("against the random control", outcome.control_ci_low, outcome.control_ci_high),
        )
    ]
    return {
        "verdict": computed,
        "reason": reason,
        "verdict_differs": computed != outcome.verdict,
        "warnings": outcome_power_warnings(outcome) if manual else [],
        "range_notes": [f"{label}: {note}" for label, note in notes if note],
        "interval_note": bounded_metric_note(outcome.metric),
        "settings": None if manual or outcome.analysis_run is None
        else run_settings(
            outcome.analysis_run.config,
            fallback_spec=outcome.change.target_model.architecture_spec,
        ),
    }  # fmt: skip
