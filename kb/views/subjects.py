"""Models under study and findings, with the buttons that start profiling and ablation."""

from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse

from analysis import services as analysis_services
from kb import forms, selectors
from kb.models import SubjectModel
from kb.services import records, subjects
from kb.views.base import (
    form_page,
    form_write,
    get_or_404,
    paginate,
    posted,
    require_perm,
    run_form_page,
)


@require_perm("kb.view_subjectmodel")
def subject_model_list(request):
    page = paginate(request, selectors.subject_model_list())
    return render(request, "kb/model_list.html", {"page": page})


@require_perm("kb.view_subjectmodel")
def subject_model_detail(request, pk: int):
    model = get_or_404(selectors.subject_model_get, pk)
    findings_by_layer: dict[str, list] = {}
    for finding in model.findings.all():
        findings_by_layer.setdefault(finding.layer_name, []).append(finding)
    widths = model.known_layer_widths()
    layers = [(name, width, findings_by_layer.pop(name, [])) for name, width in widths.items()]
    layers += [(name, None, items) for name, items in findings_by_layer.items()]
    context = {
        "model": model,
        "layers": layers,
        "profile_form": forms.ProfileForm(initial={"dataset": "shapes", "epochs": 3}),
    }
    return render(request, "kb/model_detail.html", context)


@require_perm("kb.add_subjectmodel")
def subject_model_create(request):
    form = forms.SubjectModelForm(
        posted(request), request.FILES if request.method == "POST" else None
    )
    model = form_write(
        form,
        lambda: subjects.subject_model_create(
            actor=request.user,
            **{k: v for k, v in form.cleaned_data.items() if k != "weights" or v},
        ),
    )
    if model:
        messages.success(request, f"Model {model} registered.")
        return redirect(model)
    return form_page(request, form, title="New model", cancel=reverse("model-list"))


@require_perm("kb.change_subjectmodel")
def subject_model_update(request, pk: int):
    model = get_or_404(selectors.subject_model_get, pk)
    form = forms.SubjectModelForm(posted(request), instance=model)
    # Weights are replaced only through a new model, so their hash always matches the file.
    del form.fields["weights"]
    saved = form_write(
        form, lambda: records.record_update(model, actor=request.user, data=form.cleaned_data)
    )
    if saved:
        messages.success(request, "Model saved.")
        return redirect(saved)
    return form_page(request, form, title=f"Edit {model}", cancel=model.get_absolute_url())


@require_perm("kb.view_subjectmodel", "analysis.add_analysisrun")
def subject_model_profile(request, pk: int):
    model = get_or_404(selectors.subject_model_get, pk)
    return run_form_page(
        request,
        forms.ProfileForm(posted(request), initial={"dataset": "shapes", "epochs": 3}),
        start=lambda config: analysis_services.profile_request(
            actor=request.user, subject_model=model, config=config
        ),
        aliases={"subject_model": None, "dataset": "dataset_size", "train": "epochs"},
        page={"title": f"Profile {model}", "cancel": model.get_absolute_url(),
              "submit": "Start profiling"},
        queued="Profiling queued.",
    )  # fmt: skip


@require_perm("kb.view_finding")
def finding_list(request):
    page = paginate(request, selectors.finding_list())
    return render(request, "kb/finding_list.html", {"page": page})


@require_perm("kb.view_finding")
def finding_detail(request, pk: int):
    finding = get_or_404(selectors.finding_get, pk)
    context = {
        "finding": finding,
        "ablation_form": forms.AblationForm(initial={"dataset": "shapes", "epochs": 3}),
    }
    return render(request, "kb/finding_detail.html", context)


@require_perm("kb.add_finding")
def finding_create(request):
    initial = {"subject_model": request.GET.get("model"), "layer_name": request.GET.get("layer")}
    form = forms.FindingForm(posted(request), initial=initial)
    finding = form_write(
        form, lambda: subjects.finding_create(actor=request.user, **form.cleaned_data)
    )
    if finding:
        messages.success(request, "Finding recorded.")
        return redirect(finding)
    context = {"builtin_layers": _layer_hints()}
    return render(
        request,
        "kb/form.html",
        {"form": form, "title": "New finding", "cancel_url": reverse("finding-list"), **context},
    )


def _layer_hints() -> list[tuple[str, dict]]:
    return [(m.name, m.known_layer_widths()) for m in SubjectModel.objects.all()]


@require_perm("kb.change_finding")
def finding_update(request, pk: int):
    finding = get_or_404(selectors.finding_get, pk)
    form = forms.FindingForm(posted(request), instance=finding)
    saved = form_write(
        form, lambda: records.record_update(finding, actor=request.user, data=form.cleaned_data)
    )
    if saved:
        messages.success(request, "Finding saved.")
        return redirect(saved)
    return form_page(request, form, title=f"Edit {finding}", cancel=finding.get_absolute_url())


@require_perm("kb.view_finding", "analysis.add_analysisrun")
def finding_ablate(request, pk: int):
    finding = get_or_404(selectors.finding_get, pk)
    return run_form_page(
        request,
        forms.AblationForm(posted(request), initial={"dataset": "shapes", "epochs": 3}),
        start=lambda config: analysis_services.ablation_request(
            actor=request.user, finding=finding, config=config
        ),
        aliases={"dataset": "dataset_size", "train": "epochs"},
        page={"title": f"Ablate {finding}", "cancel": finding.get_absolute_url(),
              "submit": "Start the ablation"},
        queued="Ablation queued.",
    )  # fmt: skip
