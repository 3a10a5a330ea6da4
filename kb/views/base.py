"""What every page shares: permission checks, pagination, running a form's service, and the
page that confirms a deletion."""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.core.paginator import Page, Paginator
from django.http import Http404
from django.shortcuts import redirect, render

from kb import selectors
from kb.forms import form_add_service_errors
from kb.services import records

PAGE_SIZE = 25


def require_perm(*permissions: str):
    """Anonymous visitors go to the login page; signed-in users without every one of the
    permissions get 403. Staff (superusers) have every permission."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not request.user.has_perms(permissions):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def get_or_404(selector: Callable, pk: int, **filters):
    try:
        return selector(pk, **filters)
    except ObjectDoesNotExist:
        raise Http404 from None


def paginate(request, queryset) -> Page:
    return Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))


def form_write(form, write: Callable, aliases=None):
    """Validate the form and call `write()`; return the record it wrote, or None with the
    service's errors attached to the form (nothing is saved on error)."""
    if not form.is_bound or not form.is_valid():
        return None
    try:
        return write()
    except ValidationError as error:
        form_add_service_errors(form, error, aliases)
        return None


def rate_limited(request, *, scope: str, limit: int, window_seconds: int) -> bool:
    """Count this request against the client address's budget for `scope`; True once the
    address (kb.client_address, as login lockouts and API throttles count) has used more
    than `limit` requests in the current window."""
    from django.core.cache import cache

    from kb.client_address import client_address

    key = f"ratelimit:{scope}:{client_address(request) or 'unknown'}"
    # add() is a no-op when the key exists, so the window starts at the first request.
    cache.add(key, 0, timeout=window_seconds)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add() and incr()
        cache.set(key, 1, timeout=window_seconds)
        count = 1
    return count > limit


def form_page(
    request,
    form,
    *,
    title: str,
    cancel: str,
    submit: str = "Save",
    template: str = "kb/form.html",
    **context,
):
    """The generic form page: every field with its label, help and errors. `context` adds
    what a page's own template shows beside the form."""
    return render(
        request,
        template,
        {"form": form, "title": title, "cancel_url": cancel, "submit_label": submit, **context},
    )


def posted(request):
    """The submitted data, or None on GET: an empty POST must still bind (and fail) the form."""
    return request.POST if request.method == "POST" else None


def save_form_page(
    request,
    form,
    *,
    write: Callable,
    success: str | Callable[[Any], str],
    page: dict,
    aliases: dict | None = None,
):
    """A create or edit page: on a valid form `write()` saves through a service and the user
    goes to the record it returns, told `success` (or `success(record)`); otherwise the form
    again, with the service's errors next to the fields in `aliases`. `page` holds
    form_page's arguments."""
    saved = form_write(form, write, aliases=aliases)
    if saved:
        messages.success(request, success(saved) if callable(success) else success)
        return redirect(saved)
    return form_page(request, form, **page)


def edit_form_page(request, form, *, success: str, update: Callable | None = None):
    """The edit page of `form.instance`: its cleaned data go to `update(data)`, the record's
    own update service, or records.record_update for records without one."""
    record = form.instance
    if update is None:

        def update(data):
            return records.record_update(record, actor=request.user, data=data)

    return save_form_page(
        request,
        form,
        write=lambda: update(form.cleaned_data),
        success=success,
        page={"title": f"Edit {record}", "cancel": record.get_absolute_url()},
    )


def run_form_page(request, form, *, start: Callable, aliases: dict, page: dict, queued: str):
    """A page that starts a run: on a valid form `start(config)` queues it and the user goes
    to the run, told `queued`, or that it will start once the task queue answers again;
    otherwise the form, with service errors next to the fields in `aliases`."""

    def told(run) -> str:
        if run.waiting_for_queue:
            return (
                f"{queued} The task queue is not answering: the run is saved and will start "
                "when the queue is back."
            )
        return queued

    return save_form_page(
        request,
        form,
        write=lambda: start(form.config()),
        success=told,
        page=page,
        aliases=aliases,
    )


CONFIRMED = "confirmed"  # the field a confirmed POST carries (site.js adds it on "OK")


def confirmation_page(
    request, *, question: str, button: str, cancel: str, keep: tuple[str, ...] = ()
):
    """The confirmation of an action that undoes work, or None once it is confirmed. The
    action's button posts straight away; the page's script asks the browser's question first
    and, on yes, sends the POST confirmed. Without scripts, the unconfirmed POST gets this
    page (nothing written), whose button posts it again confirmed, with the posted fields
    named in `keep`."""
    if request.POST.get(CONFIRMED) == "yes":
        return None
    context = {
        "question": question,
        "button": button,
        "cancel_url": cancel,
        "kept": [(name, request.POST[name]) for name in keep if name in request.POST],
        "confirmed_field": CONFIRMED,
    }
    return render(request, "kb/confirm_action.html", context)


def delete_page(
    request,
    instance,
    *,
    done: str,
    cancel: str | None = None,
    hint: str = "",
    delete: Callable | None = None,
):
    """GET: what deleting `instance` also deletes, and what stops it. POST: delete it with
    `delete()` (by default records.record_delete) and go to `done`; a refusal is shown on the
    page with status 400. `hint` says what to do instead when the record cannot go."""
    label = f"{instance._meta.verbose_name} {instance}"
    error = None
    if request.method == "POST":
        try:
            if delete is None:
                records.record_delete(instance, actor=request.user)
            else:
                delete()
        except ValidationError as refusal:
            error = " ".join(refusal.messages)
        else:
            messages.success(request, f"Deleted the {label}.")
            return redirect(done)
    context = {
        "label": label,
        "preview": selectors.deletion_preview(instance),
        "error": error,
        "hint": hint,
        "cancel_url": cancel or instance.get_absolute_url(),
    }
    return render(request, "kb/confirm_delete.html", context, status=400 if error else 200)
