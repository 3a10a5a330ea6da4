"""The dashboard, search, the scoreboard, the outcomes export and the Markdown preview."""

import csv

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ObjectDoesNotExist
from django.http import HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST

from kb import search as kb_search
from kb import selectors, statistics
from kb.markup import render_markdown
from kb.views.base import paginate, require_perm


@login_required
def dashboard(request):
    user = request.user
    context = {
        "counts": selectors.dashboard_counts(user=user),
        "events": selectors.event_list_recent(user=user) if user.has_perm("kb.view_event") else [],
        "runs": selectors.run_list_in_progress()
        if user.has_perm("analysis.view_analysisrun")
        else [],
    }
    return render(request, "kb/dashboard.html", context)


@login_required
def search(request):
    query = request.GET.get("q", "").replace("\x00", "")[: kb_search.MAX_QUERY_CHARS]
    groups = kb_search.search(user=request.user, query=query)
    context = {"query": query, "groups": groups, "max_query_chars": kb_search.MAX_QUERY_CHARS}
    return render(request, "kb/search.html", context)


@require_perm("kb.view_outcome")
def scoreboard(request):
    board = selectors.scoreboard()
    # Newest first, a page at a time: the list grows with every run.
    page = paginate(request, selectors.outcome_list().order_by("-recorded_at", "-pk"))
    page.object_list = selectors.outcomes_flagged(page.object_list)
    sections = [
        ("change type", board["by_operation"]),
        ("model", board["by_model"]),
    ]
    chart_rows = [
        (label, score["beat_control"]) for _, groups in sections for label, score in groups
    ]
    context = {"board": board, "sections": sections, "chart_rows": chart_rows, "page": page}
    if request.user.has_perm("analysis.view_analysisrun"):
        context["studies"] = selectors.study_list_finished()
    return render(request, "kb/scoreboard.html", context)


OUTCOME_COLUMNS = [
    "insight", "change", "model", "metric", "direction", "verdict", "effect", "ci_low",
    "ci_high", "p_value", "effect_vs_control", "control_ci_low", "control_ci_high",
    "beats_baseline", "beats_control", "source", "seeds", "recorded_at", "dataset",
    "dataset_size", "epochs", "seed_list", "run_url", "study", "study_round", "study_track",
]  # fmt: skip


@require_perm("kb.view_outcome")
def outcomes_csv(request):
    """Every outcome with the settings it was measured with, numbers at full precision. An
    undefined statistic (no interval or p-value for fewer than two values per arm or for a
    difference that is the same on every seed) is an empty cell, which spreadsheets and
    pandas read as missing; so are the settings of an outcome entered by hand."""
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="outcomes.csv"'
    writer = csv.writer(response)
    writer.writerow(OUTCOME_COLUMNS)
    # A study's outcome was measured by one of its rounds, under the study's frozen design.
    outcomes = selectors.outcome_list().select_related("study_round__study")
    for outcome in outcomes.defer("study_round__study__result", "study_round__spec"):
        change = outcome.change
        writer.writerow(
            [
                change.insight.title, str(change), change.target_model.name, outcome.metric,
                change.expected_direction, outcome.verdict, outcome.effect, outcome.ci_low,
                outcome.ci_high, outcome.p_value, outcome.effect_vs_control,
                outcome.control_ci_low, outcome.control_ci_high,
                selectors.outcome_beats_baseline(outcome),
                selectors.outcome_beats_control(outcome), outcome.source,
                len(outcome.variant_values), outcome.recorded_at.isoformat(),
                *_outcome_settings_cells(request, outcome), *_outcome_study_cells(outcome),
            ]
        )  # fmt: skip
    return response


def _outcome_study_round(outcome):
    """The study round that measured `outcome`, or None (loaded with the outcome)."""
    if outcome.source != "study":
        return None
    try:
        return outcome.study_round
    except ObjectDoesNotExist:
        return None


def _outcome_study_cells(outcome) -> list:
    """study (its id), study_round (the round's index), study_track; empty for an outcome
    that no study measured."""
    study_round = _outcome_study_round(outcome)
    if study_round is None:
        return [None] * 3
    return [study_round.study_id, study_round.index, study_round.track]


def _outcome_settings_cells(request, outcome) -> list:
    """dataset, dataset_size, epochs, seed_list (space-separated), run_url (a study's
    outcome: the study's page); empty for a manual outcome."""
    study_round = _outcome_study_round(outcome)
    if study_round is not None:
        run, url = study_round.study, reverse("study-detail", args=[study_round.study_id])
    elif outcome.analysis_run is not None:
        run, url = outcome.analysis_run, outcome.analysis_run.get_absolute_url()
    else:
        return [None] * 5
    settings = statistics.run_settings(
        run.config, fallback_spec=outcome.change.target_model.architecture_spec
    )
    return [
        settings["dataset"], settings["dataset_size"], settings["epochs"],
        " ".join(map(str, settings["seeds"])), request.build_absolute_uri(url),
    ]  # fmt: skip


@require_POST
@login_required
def markdown_preview(request):
    """The Markdown of a form field, rendered exactly as its page will show it."""
    return HttpResponse(render_markdown(request.POST.get("text", "")))
