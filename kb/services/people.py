"""Writes for researchers (interviewees)."""

from django.db import transaction
from django.utils import timezone

from kb import events
from kb.models import Researcher
from kb.services.invitations import invitations_withdraw_waiting
from kb.services.records import record_create, record_update

PERSONAL_FIELDS = ("full_name", "affiliation", "contact_email")


def researcher_create(*, actor, pseudonym: str, role: str, seniority: str, **fields) -> Researcher:
    return record_create(
        Researcher(pseudonym=pseudonym, role=role, seniority=seniority, **fields), actor=actor
    )


def researcher_update(*, actor, researcher: Researcher, data: dict) -> Researcher:
    return record_update(researcher, actor=actor, data=data)


def researcher_anonymise(*, actor, researcher: Researcher) -> Researcher:
    """Erase a researcher's personal data but keep their interviews and coded quotes.

    The pseudonym is replaced by a neutral label, and the history rows' pseudonyms too,
    because a pseudonym chosen by hand can identify someone. Personal fields never enter
    the history or the event log, so nothing else needs erasing. Their survey links that
    still work are withdrawn: no more answers are collected from them.
    """
    with transaction.atomic():
        for name in PERSONAL_FIELDS:
            setattr(researcher, name, "")
        researcher.pseudonym = f"Anonymised researcher {researcher.pk}"
        researcher.anonymised_at = timezone.now()
        researcher.save()
        researcher.history.all().update(pseudonym=researcher.pseudonym)
        invitations_withdraw_waiting(actor=actor, researcher=researcher)
        events.record_anonymised(
            actor=actor, researcher=researcher, cleared=[*PERSONAL_FIELDS, "pseudonym"]
        )
    return researcher
