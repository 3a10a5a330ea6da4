"""Writes for insights, their links, architecture changes and outcomes."""

from django.core.exceptions import ValidationError
from django.db import transaction

from analysis.engine.stats import compare_arms
from kb import events
from kb.models import (
    ArchitectureChange,
    Finding,
    Highlight,
    Insight,
    InsightFinding,
    InsightHighlight,
    Outcome,
    Stance,
)
from kb.services.changes import change_set_status
from kb.services.records import record_create, record_delete, record_touch, record_update
from kb.statistics import outcome_verdict_reason


def insight_create(
    *,
    actor,
    title: str,
    statement: str,
    supporting_findings: list[Finding] = (),
    contradicting_findings: list[Finding] = (),
    supporting_highlights: list[Highlight] = (),
    contradicting_highlights: list[Highlight] = (),
    **fields,
) -> Insight:
    """Create an insight with the findings and quotes that support or contradict it."""
    with transaction.atomic():
        insight = record_create(
            Insight(
                title=title,
                statement=statement,
                created_by=actor if actor is not None and actor.is_authenticated else None,
                **fields,
            ),
            actor=actor,
        )
        insight_link_evidence(
            actor=actor,
            insight=insight,
            findings={
                Stance.SUPPORTS: supporting_findings,
                Stance.CONTRADICTS: contradicting_findings,
            },
            highlights={
                Stance.SUPPORTS: supporting_highlights,
                Stance.CONTRADICTS: contradicting_highlights,
            },
        )
    return insight


def insight_update(
    *,
    actor,
    insight: Insight,
    data: dict,
    supporting_findings: list[Finding] = (),
    contradicting_findings: list[Finding] = (),
    supporting_highlights: list[Highlight] = (),
    contradicting_highlights: list[Highlight] = (),
    expected_version: int | None = None,
) -> Insight:
    """Change an insight's fields and link more evidence, in one transaction. Findings and
    quotes already linked keep their stance (unlink one to link it the other way). Given
    `expected_version`, an insight saved since is refused with RecordChanged, and nothing is
    written; new links alone move the version on too."""
    linked_findings = set(insight.finding_links.values_list("finding_id", flat=True))
    linked_highlights = set(insight.highlight_links.values_list("highlight_id", flat=True))

    findings = {Stance.SUPPORTS: supporting_findings, Stance.CONTRADICTS: contradicting_findings}
    highlights = {
        Stance.SUPPORTS: supporting_highlights,
        Stance.CONTRADICTS: contradicting_highlights,
    }
    _refuse_both_stances(findings, highlights)

    def new(by_stance: dict, linked: set) -> dict:
        return {
            stance: [item for item in items if item.pk not in linked]
            for stance, items in by_stance.items()
        }

    new_findings = new(findings, linked_findings)
    new_highlights = new(highlights, linked_highlights)
    with transaction.atomic():
        read_version = insight.version
        record_update(insight, actor=actor, data=data, expected_version=expected_version)
        adds_links = any(new_findings.values()) or any(new_highlights.values())
        if adds_links and insight.version == read_version:  # no field changed: not saved yet
            record_touch(insight)
        insight_link_evidence(
            actor=actor, insight=insight, findings=new_findings, highlights=new_highlights
        )
    return insight


def insight_link_evidence(
    *, actor, insight: Insight, findings: dict[str, list], highlights: dict[str, list]
) -> Insight:
    """Link findings and highlights with a stance; one item cannot both support and contradict."""
    _refuse_both_stances(findings, highlights)
    with transaction.atomic():
        for stance, items in findings.items():
            for finding in items:
                record_create(
                    InsightFinding(insight=insight, finding=finding, stance=stance), actor=actor
                )
        for stance, items in highlights.items():
            for highlight in items:
                record_create(
                    InsightHighlight(insight=insight, highlight=highlight, stance=stance),
                    actor=actor,
                )
    return insight


def _refuse_both_stances(findings: dict[str, list], highlights: dict[str, list]) -> None:
    for kind, by_stance in (("findings", findings), ("highlights", highlights)):
        both = {item.pk for item in by_stance.get(Stance.SUPPORTS, ())} & {
            item.pk for item in by_stance.get(Stance.CONTRADICTS, ())
        }
        if both:
            raise ValidationError({kind: "An item cannot both support and contradict an insight."})


def insight_unlink_evidence(*, actor, link: InsightFinding | InsightHighlight) -> None:
    """Remove one finding or quote from an insight's evidence; the finding or the highlight
    itself stays, and the insight's version moves on."""
    with transaction.atomic():
        record_touch(link.insight)
        record_delete(link, actor=actor)


def insight_unlink(
    *,
    actor,
    insight: Insight,
    findings: list[int] = (),
    highlights: list[int] = (),
    expected_version: int | None = None,
) -> Insight:
    """Remove findings and quotes (by their ids) from an insight's evidence, all or none: an
    id that is not linked to the insight is refused. The findings and highlights stay. The
    insight's version moves on; given `expected_version`, an insight saved since is refused
    with RecordChanged."""
    with transaction.atomic():
        record_touch(insight, expected_version=expected_version)
        links = []
        for field, related, key, ids in (
            ("findings", insight.finding_links, "finding_id", findings),
            ("highlights", insight.highlight_links, "highlight_id", highlights),
        ):
            chosen = related.select_for_update().filter(**{f"{key}__in": ids})
            found = {getattr(link, key): link for link in chosen}
            if missing := sorted(set(ids) - set(found)):
                listed = ", ".join(map(str, missing))
                raise ValidationError({field: f"Not linked to this insight: {listed}."})
            links.extend(found.values())
        for link in links:
            record_delete(link, actor=actor)
    return insight


MEASURED_OUTCOME_IS_FIXED = (
    "This outcome was measured by an analysis run, so it cannot be edited or deleted. "
    "Run the experiment again to record a new outcome beside it."
)
# What a manual outcome's form sets, and the statistics computed from its values.
MANUAL_OUTCOME_FIELDS = ["metric", "verdict", "baseline_values", "variant_values",
                         "control_values", "notes"]  # fmt: skip
OUTCOME_STATISTICS = ["effect", "ci_low", "ci_high", "p_value", "effect_vs_control",
                      "control_ci_low", "control_ci_high"]  # fmt: skip


def outcome_record_manual(
    *,
    actor,
    change: ArchitectureChange,
    baseline_values: list[float],
    variant_values: list[float],
    control_values: list[float] = (),
    verdict: str | None = None,
    metric: str | None = None,
    notes: str = "",
) -> Outcome:
    """Record an outcome measured elsewhere. The effect is the difference of means; with two
    or more values per arm (paired by seed when both arms have as many) it gets a 95%
    confidence interval and a p-value too. The verdict follows from the interval by the rule
    measured outcomes use (analysis.engine.stats.verdict, with the change's expected direction
    and smallest effect that matters): None computes it; a verdict given that the values do
    not give is refused with a ValidationError on "verdict" that says why."""
    outcome = _manual_outcome(
        change=change,
        verdict=verdict,
        baseline_values=baseline_values,
        variant_values=variant_values,
        control_values=control_values,
        metric=metric,
        notes=notes,
    )
    with transaction.atomic():
        record_create(outcome, actor=actor)
        events.record_outcome_recorded(actor=actor, outcome=outcome)
        change_set_status(actor=actor, change=change, status=ArchitectureChange.Status.EVALUATED)
    return outcome


def outcome_update_manual(
    *,
    actor,
    outcome: Outcome,
    verdict: str | None = None,
    baseline_values: list[float],
    variant_values: list[float],
    control_values: list[float] = (),
    metric: str | None = None,
    notes: str = "",
) -> Outcome:
    """Replace a manual outcome's values, verdict and notes, recompute its statistics and its
    verdict as outcome_record_manual does, and log the update. Measured outcomes are
    refused."""
    _refuse_measured(outcome)
    revised = _manual_outcome(
        change=outcome.change,
        verdict=verdict,
        baseline_values=baseline_values,
        variant_values=variant_values,
        control_values=control_values,
        metric=metric,
        notes=notes,
    )
    data = {name: getattr(revised, name) for name in MANUAL_OUTCOME_FIELDS + OUTCOME_STATISTICS}
    return record_update(outcome, actor=actor, data=data)


def outcome_delete_manual(*, actor, outcome: Outcome) -> None:
    """Delete a manual outcome and log it. A change left without outcomes is `proposed`
    again, so the scoreboard, which counts evaluated changes, no longer counts it; a running
    change stays running. Measured outcomes are refused."""
    _refuse_measured(outcome)
    with transaction.atomic():
        # Locked so that two deletions of a change's last outcomes cannot each see the other.
        change = ArchitectureChange.objects.select_for_update().get(pk=outcome.change_id)
        record_delete(outcome, actor=actor)
        if change.status == ArchitectureChange.Status.EVALUATED and not change.outcomes.exists():
            change_set_status(actor=actor, change=change, status=ArchitectureChange.Status.PROPOSED)


def _refuse_measured(outcome: Outcome) -> None:
    if outcome.source != Outcome.Source.MANUAL:
        raise ValidationError(MEASURED_OUTCOME_IS_FIXED)


def _manual_outcome(
    *,
    change: ArchitectureChange,
    verdict: str | None,
    baseline_values: list[float],
    variant_values: list[float],
    control_values: list[float],
    metric: str | None,
    notes: str,
) -> Outcome:
    """An unsaved manual outcome with validated values, its statistics and its verdict."""
    outcome = Outcome(
        change=change,
        metric=metric or change.expected_metric,
        # A stand-in while the values are checked; _settle_verdict sets the real one.
        verdict=Outcome.Verdict.INCONCLUSIVE if verdict is None else verdict,
        baseline_values=list(baseline_values),
        variant_values=list(variant_values),
        control_values=list(control_values),
        notes=notes,
        source=Outcome.Source.MANUAL,
    )
    outcome.clean_fields(exclude=["effect"])
    outcome.clean()
    _fill_statistics(outcome)
    _settle_verdict(outcome, given=verdict)
    return outcome


def _settle_verdict(outcome: Outcome, *, given: str | None) -> None:
    computed, reason = outcome_verdict_reason(outcome)
    if given is not None and given != computed:
        raise ValidationError(
            {"verdict": f"{reason[0].upper()}{reason[1:]}, not '{given}'. Leave the verdict "
             "to be computed from the values, or correct the values."}
        )  # fmt: skip
    outcome.verdict = computed


def _fill_statistics(outcome: Outcome) -> None:
    # Reset first: revised values may no longer support an interval or a control comparison.
    for name in OUTCOME_STATISTICS:
        setattr(outcome, name, None)
    baseline, variant = outcome.baseline_values, outcome.variant_values
    paired = len(baseline) == len(variant)
    if min(len(baseline), len(variant)) >= 2:
        comparison = compare_arms(variant, baseline, paired=paired)
        outcome.effect = comparison["difference"]
        outcome.ci_low, outcome.ci_high = comparison["ci_low"], comparison["ci_high"]
        outcome.p_value = comparison["p_value"]
    else:
        outcome.effect = sum(variant) / len(variant) - sum(baseline) / len(baseline)
    control = outcome.control_values
    if len(control) >= 2 and len(variant) >= 2:
        comparison = compare_arms(variant, control, paired=len(control) == len(variant))
        outcome.effect_vs_control = comparison["difference"]
        outcome.control_ci_low = comparison["ci_low"]
        outcome.control_ci_high = comparison["ci_high"]
    elif control:
        outcome.effect_vs_control = sum(variant) / len(variant) - sum(control) / len(control)
