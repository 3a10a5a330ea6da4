"""Assertions shared by tests."""

from contextlib import contextmanager

from django.apps import apps


def _row_counts() -> dict[str, int]:
    return {
        model._meta.label: model.objects.count()
        for app in ("kb", "analysis")
        for model in apps.get_app_config(app).get_models()
    }


@contextmanager
def nothing_written():
    """Fail if any knowledge-base, history or event row appears inside the block."""
    before = _row_counts()
    yield
    after = _row_counts()
    assert after == before, {k: (before[k], after[k]) for k in before if before[k] != after[k]}
