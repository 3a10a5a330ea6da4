"""Stored files (run figures, model weights), streamed from storage to users who may see the
record they belong to. Nothing under MEDIA_URL is served publicly: every file goes through
one of these views."""

from django.core.files.storage import default_storage
from django.http import FileResponse

from kb import selectors
from kb.selectors import StoredFile
from kb.views.base import get_or_404, require_perm


@require_perm("analysis.view_analysisrun")
def run_figure(request, pk: int, name: str):
    """One of the figures the run's result lists, by its name there."""
    return _stream(get_or_404(selectors.run_figure_file, pk, name=name))


@require_perm("kb.view_subjectmodel")
def subject_model_weights(request, pk: int):
    """The model's weights file, as a download."""
    return _stream(get_or_404(selectors.subject_model_weights_file, pk))


def _stream(stored: StoredFile) -> FileResponse:
    # Opened through the storage API, so another storage backend (S3) needs no change here.
    response = FileResponse(
        default_storage.open(stored.path, "rb"),
        content_type=stored.content_type,
        as_attachment=stored.as_attachment,
        filename=stored.filename,
    )
    response["X-Content-Type-Options"] = "nosniff"
    # Private: a shared cache must never hand a permission-checked file to someone else.
    response["Cache-Control"] = "private, max-age=3600"
    return response
