"""Researchers, surveys with their invitation links, interviews and highlights."""

from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from kb import forms, selectors
from kb.models import Question, Survey
from kb.services import codebook, interviews, invitations, people, records
from kb.views.base import (
    form_page,
    form_write,
    get_or_404,
    paginate,
    posted,
    rate_limited,
    require_perm,
)

# --- researchers ------------------------------------------------------------------------------


@require_perm("kb.view_researcher")
def researcher_list(request):
    page = paginate(request, selectors.researcher_list())
    return render(request, "kb/researcher_list.html", {"page": page})


@require_perm("kb.view_researcher")
def researcher_detail(request, pk: int):
    researcher = get_or_404(selectors.researcher_get, pk)
    return render(request, "kb/researcher_detail.html", {"researcher": researcher})


@require_perm("kb.add_researcher")
def researcher_create(request):
    form = forms.ResearcherForm(posted(request))
    researcher = form_write(
        form, lambda: people.researcher_create(actor=request.user, **form.cleaned_data)
    )
    if researcher:
        messages.success(request, f"Researcher {researcher} added.")
        return redirect(researcher)
    return form_page(request, form, title="New researcher", cancel=reverse("researcher-list"))


@require_perm("kb.change_researcher")
def researcher_update(request, pk: int):
    researcher = get_or_404(selectors.researcher_get, pk)
    form = forms.ResearcherForm(posted(request), instance=researcher)
    saved = form_write(
        form,
        lambda: people.researcher_update(
            actor=request.user, researcher=researcher, data=form.cleaned_data
        ),
    )
    if saved:
        messages.success(request, "Researcher saved.")
        return redirect(saved)
    return form_page(
        request, form, title=f"Edit {researcher}", cancel=researcher.get_absolute_url()
    )


@require_POST
@require_perm("kb.change_researcher")
def researcher_anonymise(request, pk: int):
    researcher = get_or_404(selectors.researcher_get, pk)
    people.researcher_anonymise(actor=request.user, researcher=researcher)
    messages.success(request, "Personal data erased; interviews and quotes are kept.")
    return redirect(researcher)


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
    survey = form_write(
        form,
        lambda: interviews.survey_create(actor=request.user, questions=[], **form.cleaned_data),
    )
    if survey:
        messages.success(request, "Survey created; add its questions.")
        return redirect(survey)
    return form_page(request, form, title="New survey", cancel=reverse("survey-list"))


@require_perm("kb.change_survey")
def survey_update(request, pk: int):
    survey = get_or_404(selectors.survey_get, pk)
    form = forms.SurveyForm(posted(request), instance=survey)
    saved = form_write(
        form, lambda: records.record_update(survey, actor=request.user, data=form.cleaned_data)
    )
    if saved:
        messages.success(request, "Survey saved.")
        return redirect(saved)
    return form_page(request, form, title=f"Edit {survey}", cancel=survey.get_absolute_url())


@require_perm("kb.add_question")
def question_create(request, pk: int):
    survey = get_or_404(selectors.survey_get, pk)
    form = forms.QuestionForm(posted(request))
    position = max((q.position for q in survey.questions.all()), default=0) + 1
    question = form_write(
        form,
        lambda: interviews.question_create(
            actor=request.user, survey=survey, position=position, **form.cleaned_data
        ),
    )
    if question:
        messages.success(request, f"Question {position} added.")
        return redirect(survey)
    return form_page(
        request, form, title=f"Add a question to {survey}", cancel=survey.get_absolute_url()
    )


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
    page = paginate(request, selectors.interview_list())
    return render(request, "kb/interview_list.html", {"page": page})


@require_perm("kb.view_interview")
def interview_detail(request, pk: int):
    interview = get_or_404(selectors.interview_get, pk)
    context = {
        "interview": interview,
        "highlight_form": forms.HighlightForm(interview=interview),
    }
    return render(request, "kb/interview_detail.html", context)


def _survey_questions(request) -> tuple[Survey | None, list[Question]]:
    survey_id = request.GET.get("survey", "")
    if not survey_id.isdigit():
        return None, []
    survey = Survey.objects.filter(pk=survey_id).prefetch_related("questions").first()
    return survey, list(survey.questions.all()) if survey else []


@require_perm("kb.add_interview")
def interview_create(request):
    survey, questions = _survey_questions(request)
    initial = {"conducted_on": forms.today(), "interviewer": request.user.pk, "survey": survey}
    form = forms.InterviewForm(posted(request), initial=initial, questions=questions)
    interview = form_write(
        form,
        lambda: interviews.interview_create(
            actor=request.user,
            answers=form.answers(),
            **{k: v for k, v in form.cleaned_data.items() if not k.startswith("answer_")},
        ),
    )
    if interview:
        messages.success(request, "Interview recorded. Select passages to code them.")
        return redirect(interview)
    context = {"form": form, "surveys": Survey.objects.all(), "survey": survey}
    return render(request, "kb/interview_form.html", context)


@require_perm("kb.change_interview")
def interview_update(request, pk: int):
    interview = get_or_404(selectors.interview_get, pk)
    form = forms.InterviewForm(posted(request), instance=interview)
    form.fields["survey"].disabled = True
    saved = form_write(
        form,
        lambda: records.record_update(
            interview,
            actor=request.user,
            data={k: v for k, v in form.cleaned_data.items() if k != "survey"},
        ),
    )
    if saved:
        messages.success(request, "Interview saved.")
        return redirect(saved)
    return render(request, "kb/interview_form.html", {"form": form, "interview": interview})


@require_POST
@require_perm("kb.add_highlight")
def highlight_create(request, pk: int):
    interview = get_or_404(selectors.interview_get, pk)
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
    context = {"interview": interview, "highlight_form": form}
    return render(request, "kb/interview_detail.html", context, status=400)
