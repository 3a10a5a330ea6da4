"""Writes for coding rounds: start one, a coder marks their part done, close it, and build
the consensus version of the round's coding from the researchers' decisions.

Blind coding itself is a read rule (kb.selectors.highlight_visibility); these services only
move a round through its states: open with coders still coding -> every coder done ->
closed. Each state change is one conditional UPDATE, so two clicks change it once.
"""

from collections import defaultdict

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from kb import agreement, events, selectors
from kb.models import CodingRound, CodingRoundCoder, Highlight, Interview, Theme
from kb.services.codebook import highlight_create
from kb.services.records import record_create, record_delete

CODING_PERMISSION = "kb.add_highlight"
MIN_CODERS = 2


def round_start(*, actor, name: str, interviews: list[Interview], coders: list) -> CodingRound:
    """Start a round in which `coders` (users who may create highlights; at least two) code
    `interviews` (at least one) blind until each marks their part done."""
    errors = {}
    if not interviews:
        errors["interviews"] = "Choose at least one interview."
    coders = list({user.pk: user for user in coders}.values())
    if len(coders) < MIN_CODERS:
        errors["coders"] = f"Choose at least {MIN_CODERS} coders."
    elif cannot := sorted(u.get_username() for u in coders if not u.has_perm(CODING_PERMISSION)):
        errors["coders"] = f"These users may not code (create highlights): {', '.join(cannot)}."
    if errors:
        raise ValidationError(errors)
    signed_in = actor if actor is not None and actor.is_authenticated else None
    with transaction.atomic():
        coding_round = record_create(CodingRound(name=name, created_by=signed_in), actor=actor)
        coding_round.interviews.set(interviews)
        CodingRoundCoder.objects.bulk_create(
            CodingRoundCoder(coding_round=coding_round, coder=user) for user in coders
        )
        interview_ids = sorted(i.pk for i in interviews)
        events.record_linked(
            actor=actor, instance=coding_round, relation="interviews", ids=interview_ids
        )
        events.record_linked(
            actor=actor, instance=coding_round, relation="coders", ids=sorted(u.pk for u in coders)
        )
    return coding_round


def round_mark_done(*, actor, coding_round: CodingRound) -> CodingRoundCoder:
    """The signed-in coder marks their part of an open round done: from now on they see the
    other coders' highlights on its interviews. Refused for a non-coder, a closed round or a
    part already done (nothing written)."""
    part = CodingRoundCoder.objects.filter(
        coding_round=coding_round, coder_id=getattr(actor, "pk", None)
    ).first()
    if part is None:
        raise ValidationError("You are not a coder in this round.")
    with transaction.atomic():
        changed = CodingRoundCoder.objects.filter(
            pk=part.pk, done_at__isnull=True, coding_round__closed_at__isnull=True
        ).update(done_at=timezone.now())
        if changed != 1:
            if CodingRound.objects.filter(pk=coding_round.pk, closed_at__isnull=False).exists():
                raise ValidationError("This round is closed.")
            raise ValidationError("You have already marked your part done.")
        part.refresh_from_db()
        events.record_status_changed(actor=actor, instance=part, old="coding", new="done")
    return part


def round_close(*, actor, coding_round: CodingRound) -> CodingRound:
    """Close an open round: blind coding ends for every coder. Refused when already closed."""
    with transaction.atomic():
        changed = CodingRound.objects.filter(pk=coding_round.pk, closed_at__isnull=True).update(
            closed_at=timezone.now()
        )
        if changed != 1:
            raise ValidationError("This round is already closed.")
        coding_round.refresh_from_db()
        events.record_status_changed(actor=actor, instance=coding_round, old="open", new="closed")
    return coding_round


def round_consensus_build(*, actor, coding_round: CodingRound, decisions: dict[str, str]) -> dict:
    """Write the consensus version of the round's transcripts from `decisions`, passage key
    (kb.selectors.passage_key) -> a choice of kb.agreement.decision_choices, one for every
    passage where the coders differ; passages they agree on are taken as they are.

    Consensus highlights have no coder, `is_consensus` set and belong to the round (another
    round's consensus on a shared interview is left alone); one per consensus span, with
    every theme given that span. The round's earlier consensus highlights are kept where they
    still hold, the others deleted. Two builds of one round take turns (row lock). Refused,
    with errors keyed by passage and nothing written, until every coder has marked their
    part done or the round is closed, and when a decision is missing or not one of the
    choices. Out: {"created", "deleted", "kept"} counts.
    """
    with transaction.atomic():
        # Two builds of one round at once take turns: each reads what the other wrote.
        CodingRound.objects.select_for_update().filter(pk=coding_round.pk).first()
        coding_round = selectors.coding_round_get(coding_round.pk)
        if coding_round.is_open and any(p.done_at is None for p in coding_round.coders.all()):
            raise ValidationError("Every coder must mark their part done before the consensus.")
        wanted, errors = _consensus_wanted(coding_round, decisions)
        if errors:
            raise ValidationError(errors)
        return _consensus_write(actor, coding_round, wanted)


def _consensus_wanted(coding_round: CodingRound, decisions: dict[str, str]):
    """(interview, start, end) -> theme ids of the consensus, and errors keyed by passage."""
    wanted: dict[tuple[int, int, int], set[int]] = defaultdict(set)
    errors, known = {}, set()
    for (interview, theme), passages in selectors.round_passages(coding_round).items():
        for passage in passages:
            key = selectors.passage_key(interview, theme, passage)
            known.add(key)
            try:
                spans = agreement.consensus_spans(passage, decisions.get(key))
            except ValueError:
                errors[key] = (
                    "Pick a coder's version, keep or drop."
                    if not decisions.get(key)
                    else f"Not a choice here: {decisions[key]}."
                )
                continue
            for start, end in spans:
                wanted[interview, start, end].add(theme)
    for key in sorted(set(decisions) - known):
        errors[key] = "No such passage in this round (the coding changed?); reload the page."
    return wanted, errors


def _consensus_write(actor, coding_round: CodingRound, wanted: dict) -> dict:
    """Replace the round's consensus highlights (and only this round's) with `wanted`."""
    existing = {
        (h.interview_id, h.start, h.end): h
        for h in Highlight.objects.filter(
            coding_round=coding_round, is_consensus=True, source=Highlight.Source.TRANSCRIPT
        ).prefetch_related("themes")
    }
    counts = {"created": 0, "deleted": 0, "kept": 0}
    for key, highlight in existing.items():
        if set(wanted.get(key, ())) == {t.pk for t in highlight.themes.all()}:
            counts["kept"] += 1
        else:
            record_delete(highlight, actor=actor)
            counts["deleted"] += 1
    interviews = {interview.pk: interview for interview in coding_round.interviews.all()}
    themes = Theme.objects.in_bulk({theme for ids in wanted.values() for theme in ids})
    for (interview, start, end), theme_ids in sorted(wanted.items()):
        old = existing.get((interview, start, end))
        if old is not None and {t.pk for t in old.themes.all()} == theme_ids:
            continue
        highlight_create(
            actor=actor,
            interview=interviews[interview],
            start=start,
            end=end,
            quote=interviews[interview].transcript[start:end],
            themes=[themes[pk] for pk in sorted(theme_ids)],
            consensus_of=coding_round,
        )
        counts["created"] += 1
    return counts
