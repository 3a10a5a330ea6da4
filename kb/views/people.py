"""Researchers, surveys with their invitation links, interviews and highlights."""

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from kb import forms, selectors
from kb.filters import InterviewFilter, ResearcherFilter, list_filter
from kb.models import Survey
from kb.services import codebook, interviews, invitations, people
from kb.views.base import (
    delete_page,
    edit_form_page,
    form_page,
    form_write,
    get_or_404,
    paginate,
    posted,
    rate_limited,
    require_perm,
    save_form_page,
)

# --- researchers ------------------------------------------------------------------------------


@require_perm("kb.view_researcher")
def researcher_list(request):
    listing = list_filter(ResearcherFilter, request.GET, selectors.researcher_list())
    context = {"page": paginate(request, listing.rows), "filters": listing}
    return render(request, "kb/researcher_list.html", context)


@require_perm("kb.view_researcher")
def researcher_detail(request, pk: int):
    researcher = get_or_404(selectors.researcher_get, pk)
    return render(request, "kb/researcher_detail.html", {"researcher": researcher})


@require_perm("kb.add_researcher")
def researcher_create(request):
    form = forms.ResearcherForm(posted(request))
    return save_form_page(
        request,
        form,
        write=lambda: people.researcher_create(actor=request.user, **form.cleaned_data),
        success=lambda researcher: f"Researcher {researcher} added.",
        page={"title": "New researcher", "cancel": reverse("researcher-list")},
    )


@require_perm("kb.change_researcher")
def researcher_update(request, pk: int):
    researcher = get_or_404(selectors.researcher_get, pk)
    form = forms.ResearcherForm(posted(request), instance=researcher)
    return edit_form_page(
        request,
        form,
        success="Researcher saved.",
        update=lambda data: people.researcher_update(
            actor=request.user, researcher=researcher, data=data
        ),
    )


@require_perm("kb.delete_researcher")
def researcher_delete(request, pk: int):
    return delete_page(
        request,
        get_or_404(selectors.researcher_get, pk),
        done=reverse("researcher-list"),
        hint="To erase their personal data and keep the interviews, anonymise them instead.",
    )


@require_perm("kb.change_researcher")
def researcher_anonymise(request, pk: int):
    """GET: what anonymising erases and what it keeps, and the button. POST: erase it."""
    researcher = get_or_404(selectors.researcher_get, pk)
    if researcher.anonymised_at is not None:
        messages.info(request, "This researcher is already anonymised.")
        return redirect(researcher)
    if request.method == "POST":
        words_kept = people.researcher_words_kept(researcher)
        people.researcher_anonymise(actor=request.user, researcher=researcher)
        messages.success(
            request,
            "Personal data erased; interviews and quotes are kept."
            if words_kept
            else "Personal data erased, with their interviews, answers and quotes: they gave "
            "no consent to keep them.",
        )
        return redirect(researcher)
    context = {"researcher": researcher, "words_kept": people.researcher_words_kept(researcher)}
    return render(request, "kb/confirm_anonymise.html", context)


# --- surveys and invitation links -------------------------------------------------------------


@require_perm("kb.view_survey")
def survey_list(request):
    return render(
        request, "kb/survey_list.html", {"page": paginate(request, selectors.survey_list())}
    )


@require_perm("kb.view_survey")
def survey_detail(request, pk: int):
    survey = get_or_404(selectors.survey_get, pk)
    context = {"survey": survey, "question_form": forms.QuestionForm()}
    return render(request, "kb/survey_detail.html", context)


@require_perm("kb.add_survey")
def survey_create(request):
    form = forms.SurveyForm(posted(request))
    return save_form_page(
        request,
        form,
        write=lambda: interviews.survey_create(
            actor=request.user, questions=[], **form.cleaned_data
        ),
        success="Survey created; add its questions.",
        page={"title": "New survey", "cancel": reverse("survey-list")},
    )


@require_perm("kb.change_survey")
def survey_update(request, pk: int):
    survey = get_or_404(selectors.survey_get, pk)
    form = forms.SurveyForm(posted(request), instance=survey)
    return edit_form_page(request, form, success="Survey saved.")


@require_perm("kb.delete_survey")
def survey_delete(request, pk: int):
    survey = get_or_404(selectors.survey_get, pk)
    return delete_page(request, survey, done=reverse("survey-list"))


@require_perm("kb.add_question")
def question_create(request, pk: int):
    survey = get_or_404(selectors.survey_get, pk)
    form = forms.QuestionForm(posted(request))
    return save_form_page(
        request,
        form,
        write=lambda: interviews.question_create(
            actor=request.user, survey=survey, **form.cleaned_data
        ),
        success=lambda question: f"Question {question.position} added.",
        page={"title": f"Add a question to {survey}", "cancel": survey.get_absolute_url()},
    )


@require_perm("kb.change_question")
def question_update(request, pk: int):
    question = get_or_404(selectors.question_get, pk)
    form = forms.QuestionForm(posted(request), instance=question)
    return save_form_page(
        request,
        form,
        write=lambda: interviews.question_update(
            actor=request.user, question=question, data=form.cleaned_data
        ),
        success="Question saved.",
        page={"title": f"Edit {question}", "cancel": question.get_absolute_url()},
    )


@require_perm("kb.delete_question")
def question_delete(request, pk: int):
    question = get_or_404(selectors.question_get, pk)
    return delete_page(
        request,
        question,
        done=question.survey.get_absolute_url(),
        delete=lambda: interviews.question_delete(actor=request.user, question=question),
    )


@require_POST
@require_perm("kb.change_question")
def question_move(request, pk: int):
    question = get_or_404(selectors.question_get, pk)
    offset = interviews.QUESTION_MOVES.get(request.POST.get("direction"))
    if offset is None:
        return HttpResponseBadRequest("Move a question up or down.")
    interviews.question_move(actor=request.user, question=question, offset=offset)
    return redirect(question)


@require_perm("kb.add_surveyinvitation", "kb.view_researcher")
def invitation_create(request, pk: int):
    survey = get_or_404(selectors.survey_get, pk)
    form = forms.InvitationForm(posted(request))
    created = form_write(
        form,
        lambda: invitations.invitation_create(
            actor=request.user,
            survey=survey,
            researcher=form.cleaned_data["researcher"],
            valid_days=form.cleaned_data["valid_days"],
        ),
    )
    if created:
        invitation, token = created
        link = request.build_absolute_uri(reverse("survey-respond", args=[token]))
        # The token is stored only as a digest: this response is the one place it appears.
        return render(
            request, "kb/invitation_created.html", {"invitation": invitation, "link": link}
        )
    return form_page(
        request,
        form,
        title=f"Invite a researcher to answer {survey}",
        cancel=survey.get_absolute_url(),
        submit="Create the link",
    )


@require_POST
@require_perm("kb.change_surveyinvitation", "kb.view_researcher")
def invitation_withdraw(request, pk: int):
    invitation = get_or_404(selectors.invitation_get, pk)
    try:
        invitations.invitation_withdraw(actor=request.user, invitation=invitation)
    except ValidationError as refusal:
        messages.error(request, " ".join(refusal.messages))
    else:
        messages.success(request, f"The link for {invitation.researcher} no longer works.")
    return redirect(reverse("survey-detail", args=[invitation.survey_id]) + "#survey-links")


UNAVAILABLE_MESSAGES = {
    "unknown": "This survey link is not valid. Check that you copied the whole link.",
    "used": "This survey link has already been used. Thank you: your answers were recorded.",
    "expired": "This survey link has expired. Ask the research team for a new one.",
}


def survey_respond(request, token: str):
    """A respondent answers a survey through a single-use link, without an account."""
    if request.method == "POST" and rate_limited(
        request,
        scope="survey-respond",
        limit=settings.SURVEY_RESPONSE_RATE_LIMIT,
        window_seconds=settings.SURVEY_RESPONSE_RATE_WINDOW,
    ):
        return render(request, "kb/survey_unavailable.html", {"reason": "rate"}, status=429)
    try:
        invitation = invitations.invitation_get_usable(token=token)
    except invitations.InvitationUnavailable as error:
        context = {"message": UNAVAILABLE_MESSAGES[error.reason], "reason": error.reason}
        return render(
            request,
            "kb/survey_unavailable.html",
            context,
            status=410 if error.reason != "unknown" else 404,
        )
    questions = list(invitation.survey.questions.all())
    form = forms.SurveyResponseForm(posted(request), questions=questions)
    interview = form_write(
        form, lambda: invitations.invitation_respond(token=token, answers=form.answers())
    )
    if interview:
        return render(request, "kb/survey_thanks.html", {"survey": invitation.survey})
    return render(request, "kb/survey_respond.html", {"form": form, "survey": invitation.survey})


# --- interviews and highlights ----------------------------------------------------------------


@require_perm("kb.view_interview")
def interview_list(request):
    listing = list_filter(InterviewFilter, request.GET, selectors.interview_list(user=request.user))
    context = {"page": paginate(request, listing.rows), "filters": listing}
    return render(request, "kb/interview_list.html", context)


@require_perm("kb.view_interview")
def interview_detail(request, pk: int):
    interview = get_or_404(selectors.interview_get, pk, user=request.user)
    return _interview_page(request, interview)


def _interview_page(request, interview, *, highlight_form=None, theme_form=None, status=200):
    """The interview page with its coding panel: the highlight form beside the codebook as a
    tree, and the inline form for a new theme (each bound when it comes back with errors)."""
    highlight_form = highlight_form or forms.HighlightForm(interview=interview)
    chosen = highlight_form["themes"].value() or []
    context = {
        "interview": interview,
        "highlight_form": highlight_form,
        "theme_form": theme_form or forms.ThemeForm(prefix=THEME_PREFIX),
        "codebook": _codebook_tree(),
        # The open rounds in which the user codes this interview blind (the page says so).
        "blind_rounds": selectors.coding_rounds_blind(user=request.user, interview=interview),
        "chosen_themes": {str(pk) for pk in chosen},
    }
    return render(request, "kb/interview_detail.html", context, status=status)


def _codebook_tree() -> list[selectors.ThemeNode]:
    """The codebook's top-level themes by name, each holding its sub-themes (`children`)."""
    roots: list[selectors.ThemeNode] = []
    path: list[selectors.ThemeNode] = []  # the current node's ancestors, outermost first
    for node in selectors.theme_tree():
        del path[node.depth :]
        (path[-1].children if path else roots).append(node)
        path.append(node)
    _sort_by_name(roots)
    return roots


def _sort_by_name(nodes: list[selectors.ThemeNode]) -> None:
    # theme_tree's query counts highlights, and Django drops Meta.ordering from a GROUP BY.
    nodes.sort(key=lambda node: node.theme.name.casefold())
    for node in nodes:
        _sort_by_name(node.children)


def _chosen_survey(request, default: Survey | None) -> Survey | None:
    """The survey picked with the page's survey picker (?survey=id), else the one chosen in the
    posted form (so a survey picked only in its dropdown still gets its answer fields, each
    with its own error), else `default`."""
    survey_id = request.GET.get("survey")
    if survey_id is None and request.method == "POST" and "survey" in request.POST:
        survey_id = request.POST["survey"]
    if survey_id is None:
        return default
    return selectors.survey_with_questions(int(survey_id)) if survey_id.isdigit() else None


def _interview_form_page(*, title: str, cancel: str, **context) -> dict:
    return {
        "title": title,
        "cancel": cancel,
        "template": "kb/interview_form.html",
        "surveys": Survey.objects.all(),
        **context,
    }


@require_perm("kb.add_interview")
def interview_create(request):
    survey = _chosen_survey(request, default=None)
    questions = list(survey.questions.all()) if survey else []
    initial = {"conducted_on": forms.today(), "interviewer": request.user.pk, "survey": survey}
    form = forms.InterviewForm(
        posted(request),
        request.FILES if request.method == "POST" else None,  # a transcript file
        initial=initial,
        questions=questions,
    )
    return save_form_page(
        request,
        form,
        write=lambda: interviews.interview_create(
            actor=request.user, answers=form.answers(), **form.record_fields()
        ),
        success="Interview recorded. Select passages to code them.",
        page=_interview_form_page(
            title="Record an interview", cancel=reverse("interview-list"), survey=survey
        ),
    )


@require_perm("kb.change_interview")
def interview_update(request, pk: int):
    """Edit an interview and its answers; its survey can change while it has no answers."""
    interview = get_or_404(selectors.interview_get, pk)
    answers = list(interview.answers.all())
    survey = interview.survey if answers else _chosen_survey(request, default=interview.survey)
    questions = list(survey.questions.all()) if survey else []
    form = forms.InterviewForm(
        posted(request),
        request.FILES if request.method == "POST" else None,  # a transcript file
        instance=interview,
        initial={"survey": survey},
        questions=questions,
        answers=answers,
    )
    return save_form_page(
        request,
        form,
        write=lambda: interviews.interview_update(
            actor=request.user,
            interview=interview,
            data=form.record_fields(),
            answers=form.answers(),
        ),
        success="Interview saved.",
        page=_interview_form_page(
            title=f"Edit {interview}",
            cancel=interview.get_absolute_url(),
            survey=survey,
            interview=interview,
            survey_fixed=bool(answers),
        ),
    )


@require_perm("kb.delete_interview")
def interview_delete(request, pk: int):
    interview = get_or_404(selectors.interview_get, pk)
    return delete_page(request, interview, done=reverse("interview-list"))


@require_POST
@require_perm("kb.add_highlight")
def highlight_create(request, pk: int):
    interview = get_or_404(selectors.interview_get, pk, user=request.user)
    form = forms.HighlightForm(request.POST, interview=interview)
    highlight = form_write(
        form,
        lambda: codebook.highlight_create(
            actor=request.user, interview=interview, **form.cleaned_data
        ),
    )
    if highlight:
        messages.success(request, f"Highlight saved: {highlight}")
        return redirect(highlight)
    return _interview_page(request, interview, highlight_form=form, status=400)


THEME_PREFIX = "theme"


@require_POST
@require_perm("kb.view_interview", "kb.add_theme")
def interview_theme_create(request, pk: int):
    """A new theme from the interview page's coding panel. The page's script asks for JSON
    (the theme, to tick it in the tree while the selection stays); a plain form post comes
    back to the page, or to the page with the theme form's errors."""
    interview = get_or_404(selectors.interview_get, pk, user=request.user)
    form = forms.ThemeForm(request.POST, prefix=THEME_PREFIX)
    theme = form_write(form, lambda: codebook.theme_create(actor=request.user, **form.cleaned_data))
    if "application/json" in request.headers.get("Accept", ""):
        if theme is None:
            return JsonResponse({"errors": form.errors.get_json_data()}, status=400)
        fields = {"id": theme.pk, "name": theme.name, "colour": theme.colour}
        return JsonResponse({**fields, "parent": theme.parent_id}, status=201)
    if theme is None:
        return _interview_page(request, interview, theme_form=form, status=400)
    messages.success(request, f"Theme {theme} added to the codebook.")
    return redirect(reverse("interview-detail", args=[interview.pk]) + "#code-heading")


@require_perm("kb.change_highlight")
def highlight_update(request, pk: int):
    """Edit a highlight's themes and note; the quote stays as it was selected."""
    highlight = get_or_404(selectors.highlight_get, pk, user=request.user)
    form = forms.HighlightEditForm(posted(request), instance=highlight)
    return save_form_page(
        request,
        form,
        write=lambda: codebook.highlight_update(
            actor=request.user, highlight=highlight, **form.cleaned_data
        ),
        success="Highlight saved.",
        page={
            "title": f"Edit the highlight {highlight}",
            "cancel": highlight.get_absolute_url(),
            "template": "kb/highlight_form.html",
            "highlight": highlight,
        },
    )


@require_perm("kb.delete_highlight")
def highlight_delete(request, pk: int):
    highlight = get_or_404(selectors.highlight_get, pk, user=request.user)
    interview_url = highlight.interview.get_absolute_url()
    return delete_page(
        request,
        highlight,
        done=interview_url,
        cancel=interview_url,
        delete=lambda: codebook.highlight_delete(actor=request.user, highlight=highlight),
    )
