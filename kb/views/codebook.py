"""The codebook: the theme tree with prevalence statistics, theme pages, the CSV export."""

import csv

from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import render
from django.urls import reverse

from kb import forms, selectors
from kb.services import codebook
from kb.views.base import (
    delete_page,
    edit_form_page,
    get_or_404,
    posted,
    require_perm,
    save_form_page,
)


@require_perm("kb.view_theme")
def theme_list(request):
    """The codebook with its statistics, over every coder's highlights, one coder's
    (?coder=<user id>, for roles that read highlights) or the consensus (?version=consensus)."""
    scope = forms.ThemeStatisticsScopeForm(
        request.GET if request.GET.keys() & {"coder", "version"} else None
    )
    valid = scope.is_bound and scope.is_valid()
    coder = scope.cleaned_data.get("coder") if valid else None
    if coder is not None and not request.user.has_perm("kb.view_highlight"):
        raise PermissionDenied
    stats = selectors.theme_prevalence(
        user=request.user,
        coder_id=coder.pk if coder else None,
        consensus=valid and scope.cleaned_data.get("version") == "consensus",
    )
    chart_rows = [
        ("  " * row["depth"] + row["theme"].name, row["overall"]) for row in stats["rows"]
    ]
    context = {"stats": stats, "chart_rows": chart_rows, "scope": scope}
    status = 400 if scope.is_bound and not valid else 200
    return render(request, "kb/theme_list.html", context, status=status)


@require_perm("kb.view_theme")
def theme_detail(request, pk: int):
    theme = get_or_404(selectors.theme_get, pk)
    stats = selectors.theme_prevalence(user=request.user)
    row = next(row for row in stats["rows"] if row["theme"].pk == theme.pk)
    highlights = (
        selectors.theme_highlights(theme, user=request.user)[:50]
        if request.user.has_perm("kb.view_highlight")
        else []
    )
    context = {"theme": theme, "row": row, "roles": stats["roles"], "highlights": highlights}
    return render(request, "kb/theme_detail.html", context)


@require_perm("kb.add_theme")
def theme_create(request):
    form = forms.ThemeForm(posted(request), initial={"parent": request.GET.get("parent")})
    return save_form_page(
        request,
        form,
        write=lambda: codebook.theme_create(actor=request.user, **form.cleaned_data),
        success=lambda theme: f"Theme {theme} added to the codebook.",
        page={"title": "New theme", "cancel": reverse("theme-list")},
    )


@require_perm("kb.change_theme")
def theme_update(request, pk: int):
    theme = get_or_404(selectors.theme_get, pk)
    form = forms.ThemeForm(posted(request), instance=theme)
    return edit_form_page(request, form, success="Theme saved.")


@require_perm("kb.delete_theme")
def theme_delete(request, pk: int):
    theme = get_or_404(selectors.theme_get, pk)
    return delete_page(
        request,
        theme,
        done=reverse("theme-list"),
        delete=lambda: codebook.theme_delete(actor=request.user, theme=theme),
    )


# Pseudonyms head the columns, so the export needs the right to see researchers.
@require_perm("kb.view_theme", "kb.view_researcher", "kb.view_highlight")
def theme_researcher_csv(request):
    researchers, rows = selectors.theme_researcher_matrix(user=request.user)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="themes-by-researcher.csv"'
    writer = csv.writer(response)
    writer.writerow(["theme", "parent", *[r.pseudonym for r in researchers], "researchers"])
    for theme, counts in rows:
        parent = theme.parent.name if theme.parent_id else ""
        writer.writerow([theme.name, parent, *counts, sum(1 for c in counts if c)])
    return response
