"""What every page shares: permission checks, pagination, and running a form's service."""

from collections.abc import Callable
from functools import wraps

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.core.paginator import Page, Paginator
from django.http import Http404
from django.shortcuts import redirect, render

from kb.forms import form_add_service_errors

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


def get_or_404(selector: Callable, pk: int):
    try:
        return selector(pk)
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
    address has used more than `limit` requests in the current window."""
    from django.core.cache import cache

    key = f"ratelimit:{scope}:{request.META.get('REMOTE_ADDR', 'unknown')}"
    # add() is a no-op when the key exists, so the window starts at the first request.
    cache.add(key, 0, timeout=window_seconds)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add() and incr()
        cache.set(key, 1, timeout=window_seconds)
        count = 1
    return count > limit


def form_page(request, form, *, title: str, cancel: str, submit: str = "Save"):
    """The generic form page: every field with its label, help and errors."""
    return render(
        request,
        "kb/form.html",
        {"form": form, "title": title, "cancel_url": cancel, "submit_label": submit},
    )


def posted(request):
    """The submitted data, or None on GET: an empty POST must still bind (and fail) the form."""
    return request.POST if request.method == "POST" else None


def run_form_page(request, form, *, start: Callable, aliases: dict, page: dict, queued: str):
    """A page that starts a run: on a valid form `start(config)` queues it and the user goes
    to the run; otherwise the form, with service errors next to the fields in `aliases`.
    `page` holds form_page's title, cancel and submit."""
    run = form_write(form, lambda: start(form.config()), aliases=aliases)
    if run:
        messages.success(request, queued)
        return redirect(run)
    return form_page(request, form, **page)
