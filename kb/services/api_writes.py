"""Writes the API needs that the other service modules do not offer yet."""

from django.core.exceptions import ValidationError
from django.db import transaction

from kb import events
from kb.models import Highlight, Theme
from kb.services.records import record_update


def highlight_update(
    *, actor, highlight: Highlight, note: str | None = None, themes: list[Theme] | None = None
) -> Highlight:
    """Change a highlight's note and/or replace its themes (at least one theme remains)."""
    if themes is not None and not themes:
        raise ValidationError({"themes": "Tag the highlight with at least one theme."})
    with transaction.atomic():
        if note is not None:
            record_update(highlight, actor=actor, data={"note": note})
        if themes is not None:
            ids = sorted(theme.pk for theme in themes)
            if ids != sorted(highlight.themes.values_list("pk", flat=True)):
                highlight.themes.set(themes)
                events.record_linked(actor=actor, instance=highlight, relation="themes", ids=ids)
    return highlight
