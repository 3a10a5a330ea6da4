"""Writes for the codebook and for highlights."""

from django.core.exceptions import ValidationError
from django.db import transaction

from kb import events
from kb.models import Answer, Highlight, Interview, Theme
from kb.services.records import record_create


def theme_create(
    *, actor, name: str, parent: Theme | None = None, description: str = "", colour: str = "#4f6d7a"
) -> Theme:
    return record_create(
        Theme(name=name, parent=parent, description=description, colour=colour), actor=actor
    )


def highlight_create(
    *,
    actor,
    interview: Interview,
    start: int,
    end: int,
    quote: str,
    themes: list[Theme],
    note: str = "",
    answer: Answer | None = None,
) -> Highlight:
    """Tag the passage [start, end) of a transcript (or of an answer) with themes.

    The quote must be exactly the text the offsets select; at least one theme is required.
    """
    highlight = Highlight(
        interview=interview,
        answer=answer,
        start=start,
        end=end,
        quote=quote,
        note=note,
        source=Highlight.Source.ANSWER if answer is not None else Highlight.Source.TRANSCRIPT,
        created_by=actor if actor is not None and actor.is_authenticated else None,
    )
    if not themes:
        raise ValidationError({"themes": "Tag the highlight with at least one theme."})
    with transaction.atomic():
        record_create(highlight, actor=actor)
        highlight.themes.set(themes)
        events.record_linked(
            actor=actor, instance=highlight, relation="themes", ids=[t.pk for t in themes]
        )
    return highlight
