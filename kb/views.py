"""Pages. Each view checks the role's model permission, reads through a selector and renders."""

from django.apps import apps
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, render

from kb import selectors


@login_required
def dashboard(request):
    context = {
        "counts": selectors.dashboard_counts(user=request.user),
        "events": selectors.event_list_recent(),
        "runs": selectors.run_list_in_progress(),
    }
    return render(request, "kb/dashboard.html", context)


# Read-only pages that give every record a canonical URL (the admin's "view on site").
HIDDEN_FIELDS = {"kb.researcher": {"full_name", "affiliation", "contact_email"}}


@login_required
def record_detail(request, pk: int, *, model_label: str):
    """Show one record's fields, if the user's role may view that kind of record."""
    model = apps.get_model(model_label)
    opts = model._meta
    if not request.user.has_perm(f"{opts.app_label}.view_{opts.model_name}"):
        raise PermissionDenied
    record = get_object_or_404(model, pk=pk)
    hidden = HIDDEN_FIELDS.get(opts.label_lower, set())
    if request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}"):
        hidden = set()
    fields = [
        (field.verbose_name, _display(record, field))
        for field in opts.concrete_fields
        if field.name not in hidden and not field.primary_key
    ]
    return render(
        request, "kb/record_detail.html", {"record": record, "opts": opts, "fields": fields}
    )


def _display(record, field) -> str:
    getter = getattr(record, f"get_{field.name}_display", None)
    value = getter() if getter else getattr(record, field.name)
    return "" if value is None else value
