"""Guided-search studies: the list, the form that starts one, the live page (progress, each
track's round, rounds per track, the trajectory chart filling in round by round), cancel and
resume. Same permissions as runs: a study is a run of kind "study"."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from analysis import studies as study_services
from analysis import study_selectors
from analysis.engine.study_rules import GUIDED_RULES
from kb import selectors
from kb.study_charts import TRACK_NAMES, TRACK_ORDER, trajectory_chart
from kb.study_forms import STUDY_FORMS, TRANSFORMER, study_form_family
from kb.views.base import get_or_404, paginate, posted, require_perm, run_form_page

COMPARISONS = [
    ("Guided against random", "guided_vs_random"),
    ("Guided against uniform", "guided_vs_uniform"),
]


@require_perm("analysis.view_analysisrun")
def study_list(request):
    context = {"page": paginate(request, selectors.study_list())}
    return render(request, "studies/list.html", context)


@require_perm("analysis.view_analysisrun", "analysis.add_analysisrun")
def study_create(request):
    """The form of one model family (?family=cnn|transformer, else the family of ?model=)."""
    model_id = request.GET.get("model")
    family = study_form_family(model_id, request.GET.get("family"))
    form_class = STUDY_FORMS[family]
    form = form_class(posted(request), initial={"model": model_id})
    title = "New study of a transformer" if family == TRANSFORMER else "New study"
    return run_form_page(
        request,
        form,
        start=lambda config: study_services.study_request(
            actor=request.user, model=form.subject_model(), settings=config
        ),
        aliases=form_class.CONFIG_FIELDS,
        page={"title": title, "cancel": reverse("study-list"), "submit": "Start the study",
              "template": "studies/form.html", "family": family},
        queued="Study queued.",
    )  # fmt: skip


def _track_tables(rounds) -> list[tuple[str, str, list]]:
    """(track, its name, its rows in round order) for the base model and each track."""
    by_track: dict[str, list] = {}
    for row in rounds:
        by_track.setdefault(row.track, []).append(row)
    order = [t for t in TRACK_ORDER if t in by_track] + sorted(set(by_track) - set(TRACK_ORDER))
    return [(track, TRACK_NAMES.get(track, track), by_track[track]) for track in order]


def _study_context(study) -> dict:
    rounds = study_selectors.study_rounds(study)
    report = study.result or {}
    compared = report.get("comparisons") or {}
    metric = (study.config or {}).get("metric") or "metric"
    return {
        "study": study,
        "progress": study_selectors.study_progress(study),
        "tracks": _track_tables(rounds),
        "chart": trajectory_chart(
            study_selectors.study_trajectory(study), metric=metric, chart_id=f"study-{study.pk}"
        ),
        "metric": metric,
        "report": report,
        "comparisons": [(label, compared.get(key)) for label, key in COMPARISONS],
    }


@require_perm("analysis.view_analysisrun")
def study_detail(request, pk: int):
    study = get_or_404(selectors.study_get, pk)
    rule_text = GUIDED_RULES.get((study.config or {}).get("rule"))
    return render(request, "studies/detail.html", _study_context(study) | {"rule_text": rule_text})


@require_perm("analysis.view_analysisrun")
def study_live(request, pk: int):
    """The part of the study page that changes while it runs; the page polls it."""
    study = get_or_404(selectors.study_get, pk)
    return render(request, "studies/_live.html", _study_context(study))


def _study_action(request, pk: int, action, done: str):
    study = get_or_404(selectors.study_get, pk)
    try:
        action(actor=request.user, study=study)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, done)
    return redirect(study)


@require_POST
@require_perm("analysis.change_analysisrun")
def study_cancel(request, pk: int):
    return _study_action(
        request, pk, study_services.study_cancel, "Study cancelled; its decided rounds are kept."
    )


@require_POST
@require_perm("analysis.change_analysisrun")
def study_resume(request, pk: int):
    return _study_action(
        request,
        pk,
        study_services.study_resume,
        "Study resumed: each track continues from its last decided round.",
    )
