"""Writes for the codebook and for highlights."""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count

from kb import events, selectors
from kb.models import Answer, CodingRound, Highlight, Interview, Theme
from kb.services.records import record_create, record_delete, record_update


def theme_create(
    *, actor, name: str, parent: Theme | None = None, description: str = "", colour: str = "#4f6d7a"
) -> Theme:
    return record_create(
        Theme(name=name, parent=parent, description=description, colour=colour), actor=actor
    )


def theme_delete(*, actor, theme: Theme) -> None:
    """Delete a theme and its tags on highlights. Refused while it is the only theme of some
    highlight (every highlight keeps a theme) or the parent of others (they protect it)."""
    with transaction.atomic():
        # Counted apart from the join to this theme, which would count only this theme.
        only_theme_of = (
            Highlight.objects.filter(pk__in=theme.highlights.values("pk"))
            .annotate(theme_count=Count("themes"))
            .filter(theme_count=1)
            .count()
        )
        if only_theme_of:
            raise ValidationError(
                f"{theme} is the only theme of {only_theme_of} highlight"
                f"{'s' if only_theme_of != 1 else ''}; tag them with another theme first."
            )
        record_delete(theme, actor=actor)


def _refuse_revising_after_done(actor, interview_id: int) -> None:
    """A coder who marked their part of an open round done has seen the other coders' work:
    their coding on its interviews stays as it was until the round closes."""
    coding_round = selectors.coding_round_done_open(user=actor, interview_id=interview_id)
    if coding_round is not None:
        raise ValidationError(
            f"You marked your part of the coding round {coding_round} done and have seen the "
            "other coders' work: you may not add, change or delete highlights on its "
            "interviews until the round is closed."
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
    coder=None,
    consensus_of: CodingRound | None = None,
) -> Highlight:
    """Tag the passage [start, end) of a transcript (or of an answer) with themes.

    The quote must be exactly the text the offsets select; at least one theme is required.
    `coder` is whose coding this is: the signed-in actor unless given (an import, say).
    With `consensus_of` (kb.services.coding_rounds) it is that round's consensus version:
    no coder. Refused for a coder who marked their part of an open round on the interview
    done (nothing written).
    """
    signed_in = actor if actor is not None and actor.is_authenticated else None
    highlight = Highlight(
        interview=interview,
        answer=answer,
        start=start,
        end=end,
        quote=quote,
        note=note,
        source=Highlight.Source.ANSWER if answer is not None else Highlight.Source.TRANSCRIPT,
        created_by=signed_in,
        coder=None if consensus_of is not None else coder if coder is not None else signed_in,
        is_consensus=consensus_of is not None,
        coding_round=consensus_of,
    )
    if not themes:
        raise ValidationError({"themes": "Tag the highlight with at least one theme."})
    if consensus_of is None:
        _refuse_revising_after_done(actor, interview.pk)
    with transaction.atomic():
        record_create(highlight, actor=actor)
        highlight.themes.set(themes)
        events.record_linked(
            actor=actor, instance=highlight, relation="themes", ids=[t.pk for t in themes]
        )
    return highlight


def highlight_update(
    *, actor, highlight: Highlight, note: str | None = None, themes: list[Theme] | None = None
) -> Highlight:
    """Change a highlight's note and/or replace its themes (at least one theme remains). The
    quote and its offsets stay: they come from the selection it was made from. Refused for
    a coder who marked their part of an open round on the interview done."""
    if themes is not None and not themes:
        raise ValidationError({"themes": "Tag the highlight with at least one theme."})
    _refuse_revising_after_done(actor, highlight.interview_id)
    with transaction.atomic():
        if note is not None:
            record_update(highlight, actor=actor, data={"note": note})
        if themes is not None:
            ids = sorted(theme.pk for theme in themes)
            if ids != sorted(highlight.themes.values_list("pk", flat=True)):
                highlight.themes.set(themes)
                events.record_linked(actor=actor, instance=highlight, relation="themes", ids=ids)
    return highlight


def highlight_delete(*, actor, highlight: Highlight, expected_version: int | None = None) -> None:
    """Delete a highlight (records.record_delete). Refused for a coder who marked their part
    of an open round on the interview done (nothing written)."""
    _refuse_revising_after_done(actor, highlight.interview_id)
    record_delete(highlight, actor=actor, expected_version=expected_version)
