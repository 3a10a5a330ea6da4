"""Analysis runs: the live page (progress polled without reloading), cancel and retry.
Figures and other stored files are served by kb/views/files.py."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from analysis import services as analysis_services
from analysis.engine.changes import SAME_OPERATION
from analysis.engine.model_specs import spec_family
from analysis.models import AnalysisRun
from kb import selectors, statistics
from kb.filters import RunFilter, list_filter
from kb.forms import CONTROL_POLICY_LABELS
from kb.views.base import confirmation_page, get_or_404, paginate, require_perm


@require_perm("analysis.view_analysisrun")
def run_list(request):
    listing = list_filter(RunFilter, request.GET, selectors.run_list())
    context = {"page": paginate(request, listing.rows), "filters": listing}
    return render(request, "kb/run_list.html", context)


COMPARISON_ROWS = [
    ("Baseline", "variant_vs_baseline"),
    ("Random control", "variant_vs_control"),
]
ARM_ORDER = ("baseline", "variant", "control")


def _aggregate(run) -> dict:
    return (run.result or {}).get("aggregate") or {}


def _arm_rows(run) -> list[tuple[str, dict]]:
    """The result's arms in the experiment's order, whatever order the stored JSON keeps."""
    arms = _aggregate(run).get("arms") or {}
    rank = {arm: index for index, arm in enumerate(ARM_ORDER)}
    return sorted(arms.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0]))


def _range_notes(run, arm_rows) -> list[str]:
    """A sentence for each interval that reaches values the metric cannot take (a t-interval
    of an accuracy can pass 1); the stored numbers stay as computed."""
    aggregate = _aggregate(run)
    metric = aggregate.get("metric") or ""
    intervals = [(f"{arm} mean", stats, False) for arm, stats in arm_rows] + [
        (f"difference against the {label.lower()}", aggregate.get(key) or {}, True)
        for label, key in COMPARISON_ROWS
    ]
    notes = []
    for label, stats, difference in intervals:
        note = statistics.interval_range_note(
            stats.get("ci_low"), stats.get("ci_high"), metric=metric, difference=difference
        )
        if note:
            notes.append(f"{label.capitalize()}: {note}.")
    return notes


def _control_policy(run) -> str | None:
    """What the experiment's random control was drawn under, as the experiment form says it;
    None for other runs and for runs from before arms were frozen. A control frozen before
    controls had a policy was drawn as the same operation at another place."""
    control = ((run.config or {}).get("plan") or {}).get("control")
    if run.kind != AnalysisRun.Kind.CHANGE_EXPERIMENT or not control:
        return None
    policy = control.get("policy", SAME_OPERATION)
    return CONTROL_POLICY_LABELS.get(policy, policy)


def _sequence_task(run) -> dict | None:
    """A transformer run's task: {"name", "options": "length 12, segment 3, ...", "roles":
    the head roles its profile found, "induction (layer 1 head 0)"}, or None for a run on a
    CNN (whose profile has a concept instead)."""
    config = run.config or {}
    spec = (config.get("model") or {}).get("architecture_spec")
    if spec_family(spec) != "transformer":
        return None
    dataset = config.get("dataset") or {}
    options = ", ".join(
        f"{option.replace('_', ' ')} {value}"
        for option, value in dataset.items()
        if option != "name"
    )
    roles = [
        f"{proposal['role'].replace('_', '-')} (layer {proposal['block']} head {proposal['head']})"
        for proposal in (run.result or {}).get("proposed_findings") or []
    ]
    return {"name": dataset.get("name", ""), "options": options, "roles": roles}


def _run_context(run) -> dict:
    arm_rows = _arm_rows(run)
    return {
        "run": run,
        "comparison_rows": COMPARISON_ROWS,
        "arm_rows": arm_rows,
        "range_notes": _range_notes(run, arm_rows),
        "interval_note": statistics.bounded_metric_note(_aggregate(run).get("metric") or ""),
        "control_policy": _control_policy(run),
        "sequence_task": _sequence_task(run),
    }


@require_perm("analysis.view_analysisrun")
def run_detail(request, pk: int):
    run = get_or_404(selectors.run_get, pk)
    return render(request, "kb/run_detail.html", _run_context(run))


@require_perm("analysis.view_analysisrun")
def run_live(request, pk: int):
    """The part of the run page that changes while it runs; the page polls it."""
    run = get_or_404(selectors.run_get, pk)
    return render(request, "kb/_run_live.html", _run_context(run))


def _run_action(request, run, action, done: str):
    try:
        action(actor=request.user, run=run)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, done)
    return redirect(run)


@require_POST
@require_perm("analysis.change_analysisrun")
def run_cancel(request, pk: int):
    run = get_or_404(selectors.run_get, pk)
    asked = confirmation_page(
        request,
        question=f"Cancel run {run.pk}? Its unfinished jobs stop; you can retry it later.",
        button="Cancel the run",
        cancel=run.get_absolute_url(),
    )
    return asked or _run_action(request, run, analysis_services.run_cancel, "Run cancelled.")


@require_POST
@require_perm("analysis.change_analysisrun")
def run_retry(request, pk: int):
    run = get_or_404(selectors.run_get, pk)
    return _run_action(request, run, analysis_services.run_retry, "Run queued again.")
