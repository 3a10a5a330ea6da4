"""Coding rounds on the site: list, start, a round's page (who is done, the disagreements side
by side, agreement before and after consensus), mark done, close, build the consensus."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from kb import forms, selectors
from kb.services import coding_rounds
from kb.views.base import get_or_404, paginate, posted, require_perm, save_form_page

READ = ("kb.view_highlight", "kb.view_interview")
WRITE = (*READ, "kb.add_highlight")


@require_perm(*READ)
def coding_round_list(request):
    page = paginate(request, selectors.coding_round_list())
    return render(request, "kb/coding_round_list.html", {"page": page})


@require_perm(*WRITE)
def coding_round_create(request):
    form = forms.CodingRoundForm(posted(request))
    return save_form_page(
        request,
        form,
        write=lambda: coding_rounds.round_start(actor=request.user, **form.cleaned_data),
        success=lambda r: f"Coding round {r} started; its coders now code blind.",
        page={
            "title": "New coding round",
            "cancel": reverse("coding-round-list"),
            "submit": "Start the round",
        },
    )


@require_perm(*READ)
def coding_round_detail(request, pk: int):
    coding_round = get_or_404(selectors.coding_round_get, pk)
    return _detail_page(request, coding_round)


def _detail_page(request, coding_round, *, decisions=None, errors=None, status=200):
    blind = selectors.coding_round_blind_for(coding_round, request.user)
    # A coder still coding blind (here or in another open round sharing an interview) must
    # not see the others' work here either.
    report = selectors.coding_round_report_for(coding_round, user=request.user)
    errors = dict(errors or {})
    for passage in _passages(report):
        passage["decision"] = (decisions or {}).get(passage["key"], "")
        passage["errors"] = errors.pop(passage["key"], [])
    parts = list(coding_round.coders.all())
    context = {
        "round": coding_round,
        "blind": blind,
        "blind_elsewhere": report is None and not blind,
        "report": report,
        "my_part": next((p for p in parts if p.coder_id == request.user.pk), None),
        "all_done": all(p.done_at for p in parts),
        # Errors about passages not on the page (decisions for coding changed since).
        "other_errors": [message for messages in errors.values() for message in messages],
    }
    return render(request, "kb/coding_round_detail.html", context, status=status)


def _passages(report):
    for interview in report["interviews"] if report else []:
        for theme in interview["themes"]:
            yield from theme["passages"]


def _state_change(request, pk: int, change, success: str):
    coding_round = get_or_404(selectors.coding_round_get, pk)
    try:
        change(actor=request.user, coding_round=coding_round)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, success)
    return redirect(coding_round)


@require_POST
@require_perm(*WRITE)
def coding_round_done(request, pk: int):
    return _state_change(
        request,
        pk,
        coding_rounds.round_mark_done,
        "Your part is marked done: you now see the other coders' highlights.",
    )


@require_POST
@require_perm(*WRITE)
def coding_round_close(request, pk: int):
    return _state_change(
        request, pk, coding_rounds.round_close, "The round is closed; nobody codes blind now."
    )


@require_POST
@require_perm(*WRITE)
def coding_round_consensus(request, pk: int):
    """Build the consensus version from the decisions posted for each disagreement
    (fields named by kb.selectors.passage_key); errors come back beside each passage."""
    coding_round = get_or_404(selectors.coding_round_get, pk)
    decisions = {k: v for k, v in request.POST.items() if k.startswith("d-")}
    try:
        counts = coding_rounds.round_consensus_build(
            actor=request.user, coding_round=coding_round, decisions=decisions
        )
    except ValidationError as error:
        errors = error.message_dict if hasattr(error, "error_dict") else {}
        if not errors:
            messages.error(request, " ".join(error.messages))
            return redirect(coding_round)
        messages.error(request, "Nothing was saved: see the passages marked below.")
        return _detail_page(request, coding_round, decisions=decisions, errors=errors, status=400)
    messages.success(
        request,
        f"Consensus saved: {counts['created']} highlights added, {counts['deleted']} removed, "
        f"{counts['kept']} unchanged.",
    )
    return redirect(coding_round)
