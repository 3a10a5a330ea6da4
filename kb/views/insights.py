"""Insights with their evidence chain, architecture changes, outcomes and experiments."""

from django.contrib import messages
from django.db import transaction
from django.shortcuts import redirect, render
from django.urls import reverse

from analysis import services as analysis_services
from kb import forms, selectors
from kb.models import Stance
from kb.services import insights, records
from kb.views.base import (
    form_page,
    form_write,
    get_or_404,
    paginate,
    posted,
    require_perm,
    run_form_page,
)


@require_perm("kb.view_insight")
def insight_list(request):
    page = paginate(request, selectors.insight_list())
    return render(request, "kb/insight_list.html", {"page": page})


@require_perm("kb.view_insight")
def insight_detail(request, pk: int):
    insight = get_or_404(selectors.insight_get, pk)
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
    form = forms.InsightForm(posted(request))
    insight = form_write(
        form,
        lambda: insights.insight_create(
            actor=request.user, **form.record_fields(), **form.evidence()
        ),
    )
    if insight:
        messages.success(request, "Insight recorded.")
        return redirect(insight)
    return form_page(request, form, title="New insight", cancel=reverse("insight-list"))


def _new_evidence(insight, evidence: dict) -> dict:
    linked_findings = {link.finding_id for link in insight.finding_links.all()}
    linked_highlights = {link.highlight_id for link in insight.highlight_links.all()}

    def fresh(items, linked):
        return [item for item in items if item.pk not in linked]

    return {
        "findings": {
            Stance.SUPPORTS: fresh(evidence["supporting_findings"], linked_findings),
            Stance.CONTRADICTS: fresh(evidence["contradicting_findings"], linked_findings),
        },
        "highlights": {
            Stance.SUPPORTS: fresh(evidence["supporting_highlights"], linked_highlights),
            Stance.CONTRADICTS: fresh(evidence["contradicting_highlights"], linked_highlights),
        },
    }


@require_perm("kb.change_insight")
def insight_update(request, pk: int):
    """Edit an insight's fields and link more evidence (links are removed in the admin)."""
    insight = get_or_404(selectors.insight_get, pk)
    form = forms.InsightForm(posted(request), instance=insight)

    def write():
        with transaction.atomic():
            records.record_update(insight, actor=request.user, data=form.record_fields())
            insights.insight_link_evidence(
                actor=request.user, insight=insight, **_new_evidence(insight, form.evidence())
            )
        return insight

    saved = form_write(form, write)
    if saved:
        messages.success(request, "Insight saved.")
        return redirect(saved)
    return form_page(request, form, title=f"Edit {insight}", cancel=insight.get_absolute_url())


@require_perm("kb.view_architecturechange")
def change_list(request):
    page = paginate(request, selectors.change_list())
    return render(request, "kb/change_list.html", {"page": page})


@require_perm("kb.view_architecturechange")
def change_detail(request, pk: int):
    change = get_or_404(selectors.change_get, pk)
    return render(request, "kb/change_detail.html", {"change": change})


@require_perm("kb.add_architecturechange")
def change_create(request):
    initial = {"insight": request.GET.get("insight"), "target_model": request.GET.get("model")}
    form = forms.ChangeForm(posted(request), initial=initial)
    change = form_write(
        form,
        lambda: insights.change_create(actor=request.user, **form.record_fields()),
        aliases=form.error_aliases() if form.is_bound and form.is_valid() else None,
    )
    if change:
        messages.success(request, "Change proposed. Start its experiment when ready.")
        return redirect(change)
    return form_page(
        request, form, title="Propose an architecture change", cancel=reverse("change-list")
    )


@require_perm("kb.change_architecturechange")
def change_update(request, pk: int):
    change = get_or_404(selectors.change_get, pk)
    form = forms.ChangeForm(posted(request), instance=change)
    saved = form_write(
        form,
        lambda: records.record_update(change, actor=request.user, data=form.record_fields()),
        aliases=form.error_aliases() if form.is_bound and form.is_valid() else None,
    )
    if saved:
        messages.success(request, "Change saved.")
        return redirect(saved)
    return form_page(request, form, title=f"Edit {change}", cancel=change.get_absolute_url())


@require_perm("kb.view_architecturechange", "analysis.add_analysisrun")
def change_experiment(request, pk: int):
    """Start the change's experiment: baseline, guided change and random control over seeds."""
    change = get_or_404(selectors.change_get, pk)
    return run_form_page(
        request,
        forms.ExperimentForm(posted(request), initial={"dataset": "shapes", "epochs": 3}),
        start=lambda config: analysis_services.experiment_request(
            actor=request.user, change=change, config=config
        ),
        aliases={"change": None, "dataset": "dataset_size", "train": "epochs"},
        page={
            "title": f"Run the experiment for {change}",
            "cancel": change.get_absolute_url(),
            "submit": "Start the experiment",
        },
        queued="Experiment queued.",
    )


@require_perm("kb.add_outcome")
def outcome_create(request, pk: int):
    change = get_or_404(selectors.change_get, pk)
    form = forms.OutcomeForm(posted(request))
    outcome = form_write(
        form,
        lambda: insights.outcome_record_manual(
            actor=request.user, change=change, **form.cleaned_data
        ),
    )
    if outcome:
        messages.success(request, "Outcome recorded.")
        return redirect(outcome)
    return form_page(
        request, form, title=f"Record an outcome of {change}", cancel=change.get_absolute_url()
    )
