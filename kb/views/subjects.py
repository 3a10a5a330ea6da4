"""Models under study and findings, with the buttons that start profiling and ablation."""

from django.core.exceptions import ValidationError
from django.shortcuts import render
from django.urls import reverse

from analysis import services as analysis_services
from analysis.models import AnalysisRun
from kb import forms, selectors
from kb.filters import FindingFilter, SubjectModelFilter, list_filter
from kb.models import SubjectModel
from kb.services import subjects
from kb.views.base import (
    delete_page,
    edit_form_page,
    get_or_404,
    paginate,
    posted,
    require_perm,
    run_form_page,
    save_form_page,
)


@require_perm("kb.view_subjectmodel")
def subject_model_list(request):
    listing = list_filter(SubjectModelFilter, request.GET, selectors.subject_model_list())
    context = {"page": paginate(request, listing.rows), "filters": listing}
    return render(request, "kb/model_list.html", context)


@require_perm("kb.view_subjectmodel")
def subject_model_detail(request, pk: int):
    model = get_or_404(selectors.subject_model_get, pk)
    findings_by_layer: dict[str, list] = {}
    for finding in model.findings.all():
        findings_by_layer.setdefault(finding.layer_name, []).append(finding)
    widths = model.known_layer_widths()
    layers = [(name, width, findings_by_layer.pop(name, [])) for name, width in widths.items()]
    layers += [(name, None, items) for name, items in findings_by_layer.items()]
    return render(request, "kb/model_detail.html", {"model": model, "layers": layers})


@require_perm("kb.add_subjectmodel")
def subject_model_create(request):
    form = forms.SubjectModelForm(
        posted(request), request.FILES if request.method == "POST" else None
    )
    return save_form_page(
        request,
        form,
        write=_spec_errors_on_field(
            lambda: subjects.subject_model_create(
                actor=request.user,
                **{k: v for k, v in form.cleaned_data.items() if k != "weights" or v},
            )
        ),
        success=lambda model: f"Model {model} registered.",
        page={"title": "New model", "cancel": reverse("model-list")},
    )


@require_perm("kb.change_subjectmodel")
def subject_model_update(request, pk: int):
    model = get_or_404(selectors.subject_model_get, pk)
    form = forms.SubjectModelForm(posted(request), instance=model)
    # Weights are replaced only through a new model, so their hash always matches the file.
    del form.fields["weights"]
    if (run := subjects.subject_model_used_by_run(model)) is not None:
        for name in set(subjects.MEASURED_MODEL_FIELDS) & set(form.fields):
            form.fields[name].disabled = True
            form.fields[name].help_text = (
                f"Fixed: run {run} measured this model as it is. Register a new model to try "
                "another one."
            )
    return edit_form_page(
        request,
        form,
        success="Model saved.",
        update=_spec_errors_on_field(
            lambda data: subjects.subject_model_update(actor=request.user, model=model, data=data)
        ),
    )


def _spec_errors_on_field(write):
    """`write`, with a transformer spec's problems (keyed "architecture_spec.blocks.1.n_heads"
    by the model) shown on the form's spec field, each message led by the path it names."""

    def written(*args):
        try:
            return write(*args)
        except ValidationError as error:
            if not hasattr(error, "error_dict") or not any(
                key.startswith("architecture_spec.") for key in error.error_dict
            ):
                raise
            folded: dict[str, list[str]] = {}
            for key, messages in error.message_dict.items():
                field, dot, path = key.partition(".")
                if dot and field == "architecture_spec":
                    folded.setdefault(field, []).extend(f"{path}: {m}" for m in messages)
                else:
                    folded.setdefault(key, []).extend(messages)
            raise ValidationError(folded) from None

    return written


@require_perm("kb.delete_subjectmodel")
def subject_model_delete(request, pk: int):
    model = get_or_404(selectors.subject_model_get, pk)
    return delete_page(request, model, done=reverse("model-list"))


@require_perm("kb.view_subjectmodel", "analysis.add_analysisrun")
def subject_model_profile(request, pk: int):
    """Start profiling: a CNN's units over a dataset, or a transformer's heads and neurons
    over a sequence task; `?from_run=<id>` starts from an earlier profiling run's settings."""
    model = get_or_404(selectors.subject_model_get, pk)
    earlier = _earlier_run(request, kind=AnalysisRun.Kind.PROFILE, subject_model=model)
    form_class = forms.TransformerProfileForm if model.is_transformer else forms.ProfileForm
    form = _run_settings_form(request, form_class, model, earlier)
    return run_form_page(
        request,
        form,
        start=lambda config: analysis_services.profile_request(
            actor=request.user, subject_model=model, config=config
        ),
        aliases=form.CONFIG_FIELDS,
        page={"title": f"Profile {model}", "cancel": model.get_absolute_url(),
              "submit": "Start profiling", **_from_run_intro(earlier)},
        queued="Profiling queued.",
    )  # fmt: skip


def _earlier_run(request, *, kind: str, **target) -> AnalysisRun | None:
    """The run of this kind on this target named by `?from_run=<id>`, if there is one (any
    other value starts the form from its defaults)."""
    raw = request.GET.get("from_run", "")
    if not raw.isdigit() or len(raw) > 18:
        return None
    return selectors.run_list().filter(pk=int(raw), kind=kind, **target).first()


def _run_settings_form(request, form_class, model: SubjectModel, earlier: AnalysisRun | None):
    """`form_class` bound to the request, starting from `earlier`'s frozen settings; a
    transformer's form is checked against the model's spec."""
    initial = form_class.initial_from_config(earlier.config) if earlier is not None else None
    if issubclass(form_class, forms.TransformerRunSettingsForm):
        return form_class(posted(request), initial=initial, spec=model.architecture_spec)
    return form_class(posted(request), initial=initial)


def _from_run_intro(earlier: AnalysisRun | None) -> dict:
    if earlier is None:
        return {}
    return {"intro": f"The form starts from the settings of run {earlier.pk}."}


@require_perm("kb.view_finding")
def finding_list(request):
    listing = list_filter(FindingFilter, request.GET, selectors.finding_list())
    context = {"page": paginate(request, listing.rows), "filters": listing}
    return render(request, "kb/finding_list.html", context)


@require_perm("kb.view_finding")
def finding_detail(request, pk: int):
    finding = get_or_404(selectors.finding_get, pk)
    return render(request, "kb/finding_detail.html", {"finding": finding})


@require_perm("kb.add_finding")
def finding_create(request):
    initial = {"subject_model": request.GET.get("model"), "layer_name": request.GET.get("layer")}
    form = forms.FindingForm(posted(request), initial=initial)
    return save_form_page(
        request,
        form,
        write=lambda: subjects.finding_create(actor=request.user, **form.cleaned_data),
        success="Finding recorded.",
        page={
            "title": "New finding",
            "cancel": reverse("finding-list"),
            "builtin_layers": _layer_hints(),
        },
    )


def _layer_hints() -> list[tuple[str, dict]]:
    return [(m.name, m.known_layer_widths()) for m in SubjectModel.objects.all()]


@require_perm("kb.change_finding")
def finding_update(request, pk: int):
    finding = get_or_404(selectors.finding_get, pk)
    form = forms.FindingForm(posted(request), instance=finding)
    return edit_form_page(
        request,
        form,
        success="Finding saved.",
        update=lambda data: subjects.finding_update(
            actor=request.user, finding=finding, data=data, expected_version=form.opened_version
        ),
    )


@require_perm("kb.delete_finding")
def finding_delete(request, pk: int):
    finding = get_or_404(selectors.finding_get, pk)
    return delete_page(request, finding, done=reverse("finding-list"))


@require_perm("kb.view_finding", "analysis.add_analysisrun")
def finding_ablate(request, pk: int):
    """Start an ablation of the finding's units (a transformer's heads or neurons);
    `?from_run=<id>` starts from an earlier ablation's settings."""
    finding = get_or_404(selectors.finding_get, pk)
    model = finding.subject_model
    earlier = _earlier_run(request, kind=AnalysisRun.Kind.ABLATION, finding=finding)
    form_class = forms.TransformerAblationForm if model.is_transformer else forms.AblationForm
    form = _run_settings_form(request, form_class, model, earlier)
    return run_form_page(
        request,
        form,
        start=lambda config: analysis_services.ablation_request(
            actor=request.user, finding=finding, config=config
        ),
        aliases=form.CONFIG_FIELDS,
        page={"title": f"Ablate {finding}", "cancel": finding.get_absolute_url(),
              "submit": "Start the ablation", **_from_run_intro(earlier)},
        queued="Ablation queued.",
    )  # fmt: skip
