"""Exchange with qualitative tools: the page with the codebook and project exports (served by
the API, kb.api.exchange) and the import of REFI-QDA codebooks and projects."""

from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import render

from kb import forms
from kb.exchange import ExchangeFileRefused, read_upload, refuse_declared_request_too_large
from kb.services import exchange
from kb.services.exchange import IMPORT_PROJECT_PERMISSIONS, PROJECT_PERMISSIONS
from kb.views.base import form_write, require_perm


@require_perm("kb.view_theme")
def exchange_page(request):
    """GET: the exports the role may download, and the import form for those who may add
    themes. POST: import the file and show what it added; a refused file is shown next to
    the field (status 400), and nothing is written."""
    may_import = request.user.has_perm("kb.add_theme")
    if request.method == "POST" and not may_import:
        raise PermissionDenied
    if request.method == "POST":
        try:
            # Before the body is read: a declared length over the limit is not read at all.
            refuse_declared_request_too_large(request.META.get("CONTENT_LENGTH"))
        except ExchangeFileRefused as error:
            return _page(request, forms.ExchangeImportForm(), None, refused=error.messages)
    form = forms.ExchangeImportForm(
        request.POST if request.method == "POST" else None,
        request.FILES if request.method == "POST" else None,
    )
    report = form_write(form, lambda: _import(request, form))
    return _page(request, form if may_import else None, report)


def _page(request, form, report, refused: list[str] = ()):
    context = {
        "form": form,
        "report": report,
        "project_report": report is not None and form.kind == "project",
        "may_export_project": request.user.has_perms(PROJECT_PERMISSIONS),
        "refused": refused,
    }
    status = 400 if refused or (form is not None and form.is_bound and report is None) else 200
    return render(request, "kb/exchange_page.html", context, status=status)


def _import(request, form):
    data = form.cleaned_data
    if form.kind == "project" and not request.user.has_perms(IMPORT_PROJECT_PERMISSIONS):
        raise PermissionDenied
    try:
        content = read_upload(data["file"])
        if form.kind == "codebook":
            return exchange.codebook_import_qdc(actor=request.user, data=content)
        return exchange.project_import_qdpx(
            actor=request.user, data=content, researcher=data["researcher"]
        )
    except ExchangeFileRefused as error:
        raise ValidationError({"file": error.messages}) from None
