"""Analysis runs: the live page (progress polled without reloading), cancel and retry.
Figures and other stored files are served by kb/views/files.py."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from analysis import services as analysis_services
from kb import selectors
from kb.filters import RunFilter, list_filter
from kb.views.base import get_or_404, paginate, require_perm


@require_perm("analysis.view_analysisrun")
def run_list(request):
    listing = list_filter(RunFilter, request.GET, selectors.run_list())
    context = {"page": paginate(request, listing.rows), "filters": listing}
    return render(request, "kb/run_list.html", context)


COMPARISON_ROWS = [
    ("Baseline", "variant_vs_baseline"),
    ("Random control", "variant_vs_control"),
]


@require_perm("analysis.view_analysisrun")
def run_detail(request, pk: int):
    run = get_or_404(selectors.run_get, pk)
    context = {"run": run, "comparison_rows": COMPARISON_ROWS}
    return render(request, "kb/run_detail.html", context)


@require_perm("analysis.view_analysisrun")
def run_live(request, pk: int):
    """The part of the run page that changes while it runs; the page polls it."""
    run = get_or_404(selectors.run_get, pk)
    context = {"run": run, "comparison_rows": COMPARISON_ROWS}
    return render(request, "kb/_run_live.html", context)


def _run_action(request, pk: int, action, done: str):
    run = get_or_404(selectors.run_get, pk)
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
    return _run_action(request, pk, analysis_services.run_cancel, "Run cancelled.")


@require_POST
@require_perm("analysis.change_analysisrun")
def run_retry(request, pk: int):
    return _run_action(request, pk, analysis_services.run_retry, "Run queued again.")
