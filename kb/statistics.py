"""Knowledge-base statistics as plain dicts, for the API and the pages (torch-free).

Proportions come with Wilson score intervals (95%), which stay inside [0, 1] and behave
with the small counts interview studies have.
"""

from collections import defaultdict

from analysis.engine.stats import wilson_interval
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


def theme_prevalence() -> dict:
    """How many interviewed researchers raised each theme.

    A researcher raised a theme when a highlight in one of their interviews is tagged with it
    or with one of its descendants. Out:
    {"researchers": N, "roles": {role: n},
     "themes": [{"theme", "name", "parent", "highlights", "researchers": proportion,
                 "by_role": {role: proportion}}]}
    where N counts researchers with at least one interview and `proportion` is
    {"count", "n", "share", "ci_low", "ci_high"}. Themes come in name order.
    """
    role_of = dict(Interview.objects.values_list("researcher_id", "researcher__role").distinct())
    role_totals: dict[str, int] = defaultdict(int)
    for role in role_of.values():
        role_totals[role] += 1
    themes = {row["id"]: row for row in Theme.objects.values("id", "name", "parent_id")}
    chains = _ancestors(themes)
    raised: dict[int, set[int]] = defaultdict(set)
    highlights: dict[int, set[int]] = defaultdict(set)
    for theme_id, highlight_id, researcher_id in Highlight.themes.through.objects.values_list(
        "theme_id", "highlight_id", "highlight__interview__researcher_id"
    ):
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
    """Does understanding pay off? Across evaluated changes, each by its latest outcome: how
    often the guided change beat its baseline (verdict `improved`) and how often it beat its
    budget-matched random control. Out:
    {"overall": block, "by_operation": [{"operation", **block}],
     "by_model": [{"model", "name", **block}]}
    with block = {"changes", "beat_baseline": proportion, "beat_control": proportion}.
    """
    latest: dict[int, dict] = {}
    for outcome in (
        Outcome.objects.filter(change__status=ArchitectureChange.Status.EVALUATED)
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
