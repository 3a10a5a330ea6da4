"""Agreement between coders: pick interviews, see alpha and kappa per theme and overall."""

from django import forms
from django.shortcuts import render

from kb import agreement, selectors
from kb.models import Interview
from kb.views.base import require_perm


class AgreementForm(forms.Form):
    """The interviews whose transcripts agreement is computed on (?interview=id&...)."""

    interview = forms.ModelMultipleChoiceField(
        queryset=Interview.objects.select_related("researcher").order_by("-conducted_on", "-id"),
        widget=forms.CheckboxSelectMultiple,
        label="Interviews",
    )

    def clean_interview(self):
        chosen = self.cleaned_data["interview"]
        if len(chosen) > agreement.MAX_INTERVIEWS:
            raise forms.ValidationError(
                f"Choose at most {agreement.MAX_INTERVIEWS} interviews at a time."
            )
        return chosen


@require_perm("kb.view_highlight", "kb.view_interview")
def agreement_page(request):
    form = AgreementForm(request.GET if "interview" in request.GET else None)
    result = None
    if form.is_valid():
        chosen = [i.pk for i in form.cleaned_data["interview"]]
        result = selectors.interview_agreement(chosen, user=request.user)
    status = 400 if form.is_bound and not form.is_valid() else 200
    return render(request, "kb/agreement.html", {"form": form, "result": result}, status=status)
