"""Insights with their evidence chain, architecture changes, outcomes and experiments."""

from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from analysis import services as analysis_services
from analysis.configs import BOUNDS, DEFAULT_SEEDS
from kb import forms, selectors, statistics
from kb.filters import ChangeFilter, InsightFilter, list_filter
from kb.models import Outcome, Stance
from kb.services import changes, insights
from kb.views.base import (
    confirmation_page,
    delete_page,
    get_or_404,
    paginate,
    posted,
    require_perm,
    run_form_page,
    save_form_page,
)


@require_perm("kb.view_insight")
def insight_list(request):
    listing = list_filter(InsightFilter, request.GET, selectors.insight_list())
    context = {"page": paginate(request, listing.rows), "filters": listing}
    return render(request, "kb/insight_list.html", context)


@require_perm("kb.view_insight")
def insight_detail(request, pk: int):
    insight = get_or_404(selectors.insight_get, pk, user=request.user)
    links = list(insight.highlight_links.all())
    context = {
        "insight": insight,
        "supporting_quotes": [link for link in links if link.stance == Stance.SUPPORTS],
        "contradicting_quotes": [link for link in links if link.stance == Stance.CONTRADICTS],
        "finding_links": insight.finding_links.all(),
        "changes": insight.changes.all(),
    }
    return render(request, "kb/insight_detail.html", context)


@require_perm("kb.add_insight")
def insight_create(request):
    form = forms.InsightForm(posted(request), user=request.user)
    return save_form_page(
        request,
        form,
        write=lambda: insights.insight_create(
            actor=request.user, **form.record_fields(), **form.evidence()
        ),
        aliases=forms.InsightForm.ERROR_ALIASES,
        success="Insight recorded.",
        page={
            "title": "New insight",
            "cancel": reverse("insight-list"),
            "template": "kb/insight_form.html",
        },
    )


@require_perm("kb.change_insight")
def insight_update(request, pk: int):
    """Edit an insight's fields and link more evidence (links are removed on its page)."""
    insight = get_or_404(selectors.insight_get, pk, user=request.user)
    form = forms.InsightForm(posted(request), instance=insight, user=request.user)
    return save_form_page(
        request,
        form,
        write=lambda: insights.insight_update(
            actor=request.user,
            insight=insight,
            data=form.record_fields(),
            expected_version=form.opened_version,
            **form.evidence(),
        ),
        aliases=forms.InsightForm.ERROR_ALIASES,
        success="Insight saved.",
        page={
            "title": f"Edit {insight}",
            "cancel": insight.get_absolute_url(),
            "template": "kb/insight_form.html",
            "insight": insight,
            "quote_links": insight.highlight_links.all(),
            "finding_links": insight.finding_links.all(),
        },
    )


@require_perm("kb.delete_insight")
def insight_delete(request, pk: int):
    insight = get_or_404(selectors.insight_get, pk)
    return delete_page(
        request,
        insight,
        done=reverse("insight-list"),
        hint="To retire an insight whose changes were measured, mark it refuted instead.",
    )


def _unlink(request, link, *, question: str, removed: str):
    """Remove an evidence link once confirmed; back to the insight's page, or to its edit
    page when the button was pressed there."""
    back = (
        reverse("insight-update", args=[link.insight_id])
        if request.POST.get("back") == "edit"
        else link.insight.get_absolute_url()
    )
    asked = confirmation_page(
        request, question=question, button="Remove", cancel=back, keep=("back",)
    )
    if asked:
        return asked
    insights.insight_unlink_evidence(actor=request.user, link=link)
    messages.success(request, removed)
    return redirect(back)


@require_POST
@require_perm("kb.change_insight")
def insight_unlink_finding(request, pk: int, link_pk: int):
    link = get_or_404(selectors.insight_finding_link_get, link_pk, insight_id=pk)
    return _unlink(
        request,
        link,
        question=f"Remove the finding {link.finding.title} from this insight's evidence? "
        "The finding itself stays.",
        removed=f"Removed “{link.finding.title}” from the evidence.",
    )


@require_POST
@require_perm("kb.change_insight")
def insight_unlink_quote(request, pk: int, link_pk: int):
    link = get_or_404(selectors.insight_quote_link_get, link_pk, insight_id=pk)
    return _unlink(
        request,
        link,
        question="Remove this quote from the insight's evidence? The highlight itself stays.",
        removed="Removed the quote from the evidence; the highlight stays.",
    )


# The generic form with the layer names its layer fields offer.
CHANGE_FORM_TEMPLATE = "kb/change_form.html"


@require_perm("kb.view_architecturechange")
def change_list(request):
    listing = list_filter(ChangeFilter, request.GET, selectors.change_list())
    context = {"page": paginate(request, listing.rows), "filters": listing}
    return render(request, "kb/change_list.html", context)


@require_perm("kb.view_architecturechange")
def change_detail(request, pk: int):
    change = get_or_404(selectors.change_get, pk)
    context = {"change": change, "edit_refusal": changes.change_edit_refusal(change)}
    return render(request, "kb/change_detail.html", context)


@require_perm("kb.add_architecturechange")
def change_create(request):
    initial = {"insight": request.GET.get("insight"), "target_model": request.GET.get("model")}
    form = forms.ChangeForm(
        posted(request), initial=initial, layer_names=selectors.subject_model_layer_names()
    )
    return save_form_page(
        request,
        form,
        write=lambda: changes.change_create(actor=request.user, **form.record_fields()),
        aliases=form.error_aliases() if form.is_bound and form.is_valid() else None,
        success="Change proposed. Start its experiment when ready.",
        page={
            "title": "Propose an architecture change",
            "cancel": reverse("change-list"),
            "template": CHANGE_FORM_TEMPLATE,
        },
    )


@require_perm("kb.change_architecturechange")
def change_update(request, pk: int):
    change = get_or_404(selectors.change_get, pk)
    if refusal := changes.change_edit_refusal(change):
        messages.error(request, refusal)
        return redirect(change)
    form = forms.ChangeForm(
        posted(request), instance=change, layer_names=selectors.subject_model_layer_names()
    )
    return save_form_page(
        request,
        form,
        write=lambda: changes.change_update(
            actor=request.user,
            change=change,
            data=form.record_fields(),
            expected_version=form.opened_version,
        ),
        aliases=form.error_aliases() if form.is_bound and form.is_valid() else None,
        success="Change saved.",
        page={
            "title": f"Edit {change}",
            "cancel": change.get_absolute_url(),
            "template": CHANGE_FORM_TEMPLATE,
        },
    )


@require_POST
@require_perm("kb.add_architecturechange")
def change_copy(request, pk: int):
    change = get_or_404(selectors.change_get, pk)
    copy = changes.change_copy(actor=request.user, change=change)
    messages.success(request, f"Copied change {change.pk} as a new proposed change: edit it here.")
    return redirect("change-update", copy.pk)


@require_perm("kb.delete_architecturechange")
def change_delete(request, pk: int):
    change = get_or_404(selectors.change_get, pk)
    return delete_page(request, change, done=change.insight.get_absolute_url())


def _experiment_page(change) -> tuple[dict, dict]:
    """The experiment form's initial values and its page: a change that already has an
    outcome is run again, by default with twice the seeds of its latest outcome and the rest
    of its run's settings."""
    page = {"cancel": change.get_absolute_url(), "submit": "Start the experiment"}
    latest = next(iter(change.outcomes.all()), None)  # newest first
    if latest is None:
        page["title"] = f"Run the experiment for {change}"
        page["intro"] = (
            "Trains the baseline, the guided change and a random change of the same size "
            "once per seed, then records the outcome on this change."
        )
        return {}, page
    seeds = len(latest.variant_values)
    page["title"] = f"Run the experiment for {change} again"
    page["intro"] = (
        f"The latest outcome is {latest.get_verdict_display().lower()} over {seeds} seeds "
        f"({latest.recorded_at:%Y-%m-%d}). Running again trains all three arms anew over the "
        "seeds below and records a new outcome beside it; earlier outcomes are kept, and the "
        "scoreboard counts the latest."
    )
    initial = _experiment_settings_of(latest)
    if latest.analysis_run_id is not None:
        page["intro"] += f" The form starts from the settings of run {latest.analysis_run_id}."
    return {**initial, "seeds": min(BOUNDS["seeds"][1], max(2 * seeds, DEFAULT_SEEDS))}, page


def _experiment_settings_of(outcome) -> dict:
    """The form's fields as the outcome's run was frozen with ({} for a manual outcome)."""
    run = outcome.analysis_run
    if run is None:
        return {}
    if (run.config or {}).get("family") == "transformer":
        return forms.TransformerExperimentForm.initial_from_config(run.config)
    settings = statistics.run_settings(
        run.config, fallback_spec=outcome.change.target_model.architecture_spec
    )
    values = {
        "dataset": settings["dataset"],
        "dataset_size": settings["dataset_size"],
        "epochs": settings["epochs"],
        "control_seed": (run.config or {}).get("control_seed"),
        # Frozen only when it is not the default same-operation control.
        "control_policy": (run.config or {}).get("control_policy"),
    }
    return {name: value for name, value in values.items() if value is not None}


@require_perm("kb.view_architecturechange", "analysis.add_analysisrun")
def change_experiment(request, pk: int):
    """Start the change's experiment: baseline, guided change and random control over seeds."""
    change = get_or_404(selectors.change_get, pk)
    model = change.target_model
    initial, page = _experiment_page(change)
    if model is not None and model.is_transformer:
        # A sequence task, training steps and the control's policy instead of a dataset.
        form = forms.TransformerExperimentForm(
            posted(request), initial=initial, spec=model.architecture_spec
        )
    else:
        form = forms.ExperimentForm(posted(request), initial=initial)
    return run_form_page(
        request,
        form,
        start=lambda config: analysis_services.experiment_request(
            actor=request.user, change=change, config=config
        ),
        aliases=form.CONFIG_FIELDS,
        page=page,
        queued="Experiment queued.",
    )


@require_perm("kb.add_outcome")
def outcome_create(request, pk: int):
    change = get_or_404(selectors.change_get, pk)
    form = forms.OutcomeForm(posted(request))
    return save_form_page(
        request,
        form,
        write=lambda: insights.outcome_record_manual(
            actor=request.user, change=change, **form.cleaned_data
        ),
        success=lambda outcome: f"Outcome recorded: {_verdict_said(outcome)}.",
        page={"title": f"Record an outcome of {change}", "cancel": change.get_absolute_url()},
    )


def _verdict_said(outcome) -> str:
    return f"the values give “{outcome.get_verdict_display().lower()}”"


def _measured_outcome_refused(request, outcome):
    return render(
        request,
        "kb/refused.html",
        {
            "title": f"The outcome of {outcome.change} cannot change",
            "message": insights.MEASURED_OUTCOME_IS_FIXED,
            "back_url": outcome.get_absolute_url(),
        },
        status=400,
    )


@require_perm("kb.change_outcome")
def outcome_update(request, pk: int):
    """Edit an outcome recorded by hand; its statistics are computed again from the values."""
    outcome = get_or_404(selectors.outcome_get, pk)
    if outcome.source != Outcome.Source.MANUAL:
        return _measured_outcome_refused(request, outcome)
    form = forms.OutcomeForm(posted(request), outcome=outcome)
    return save_form_page(
        request,
        form,
        write=lambda: insights.outcome_update_manual(
            actor=request.user, outcome=outcome, **form.cleaned_data
        ),
        success=lambda outcome: (
            f"Outcome saved; its statistics were computed again: {_verdict_said(outcome)}."
        ),
        page={
            "title": f"Edit the outcome of {outcome.change}",
            "cancel": outcome.get_absolute_url(),
        },
    )


@require_perm("kb.delete_outcome")
def outcome_delete(request, pk: int):
    outcome = get_or_404(selectors.outcome_get, pk)
    if outcome.source != Outcome.Source.MANUAL:
        return _measured_outcome_refused(request, outcome)
    change_url = outcome.change.get_absolute_url()
    return delete_page(
        request,
        outcome,
        done=change_url,
        cancel=outcome.get_absolute_url(),
        delete=lambda: insights.outcome_delete_manual(actor=request.user, outcome=outcome),
    )
