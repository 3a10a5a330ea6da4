"""Writes for researchers (interviewees), and the erasure that anonymising one performs."""

import difflib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Concat
from django.utils import timezone

from kb import events
from kb.models import (
    Answer,
    Event,
    Highlight,
    InsightHighlight,
    Interview,
    Researcher,
    SurveyInvitation,
)
from kb.services.invitations import invitations_withdraw_waiting
from kb.services.records import record_create, record_update

PERSONAL_FIELDS = ("full_name", "affiliation", "contact_email")
REMOVED = "[removed]"
# Every scope but "no consent" covers keeping their words, at least for internal analysis;
# anonymising removes who said them, not what was said.
SCOPES_KEEPING_WORDS = frozenset(
    {
        Researcher.ConsentScope.INTERNAL,
        Researcher.ConsentScope.QUOTES,
        Researcher.ConsentScope.NAMED,
    }
)
# Where a name or an e-mail can be typed or logged: the knowledge base (history and event log
# included), its analyses, and the admin's log. User accounts belong to the team.
ERASURE_APPS = ("kb", "analysis", "admin")
# str(Highlight) shows a quote up to this many characters.
HIGHLIGHT_EXCERPT = 57


def researcher_create(*, actor, pseudonym: str, role: str, seniority: str, **fields) -> Researcher:
    return record_create(
        Researcher(pseudonym=pseudonym, role=role, seniority=seniority, **fields), actor=actor
    )


def researcher_update(*, actor, researcher: Researcher, data: dict) -> Researcher:
    return record_update(researcher, actor=actor, data=data)


def researcher_words_kept(researcher: Researcher) -> bool:
    """Whether their interviews, answers and quotes stay when they are anonymised."""
    return researcher.consent_scope in SCOPES_KEEPING_WORDS


def researcher_anonymise(*, actor, researcher: Researcher) -> Researcher:
    """Erase a researcher's personal data everywhere it can have landed; this is consent
    withdrawal, and it cannot be undone.

    - Their name, affiliation and e-mail are cleared and the pseudonym (which, chosen by
      hand, can identify someone) becomes a neutral label, in the edit history too.
    - Their name and e-mail are replaced by "[removed]" in every text and JSON column of the
      knowledge base, its edit history, its analyses, the event log and the admin's log.
      Their affiliation and old pseudonym, which identify them only next to their records,
      are replaced in those records, their history and the log entries about them.
    - Unless their consent allows using their words without their name
      (SCOPES_KEEPING_WORDS), their interviews, answers and quotes are deleted with every
      history row of them, and log entries about them keep only kind and id.
    - Their survey links that still work are withdrawn.
    The event log is otherwise never edited; this is its one exception (kb/events.py).
    """
    with transaction.atomic():
        # Locked: invitation_create checks anonymised_at under the same lock.
        Researcher.objects.select_for_update().filter(pk=researcher.pk).first()
        researcher.refresh_from_db()
        records = _TheirRecords.of(researcher)
        label = f"Anonymised researcher {researcher.pk}"
        identifying = {researcher.contact_email: REMOVED}
        if len(researcher.full_name.split()) >= 2:
            # A one-word name can be an ordinary word ("May"): only their records lose it.
            identifying[researcher.full_name] = REMOVED
        earlier_pseudonyms = researcher.history.values_list("pseudonym", flat=True)
        about_them = {
            **{pseudonym: label for pseudonym in earlier_pseudonyms},
            researcher.full_name: REMOVED,
            **identifying,
            researcher.affiliation: REMOVED,
            researcher.pseudonym: label,
        }
        for name in PERSONAL_FIELDS:
            setattr(researcher, name, "")
        researcher.pseudonym = label
        researcher.anonymised_at = timezone.now()
        researcher.save()
        researcher.history.all().update(pseudonym=label)
        invitations_withdraw_waiting(actor=actor, researcher=researcher)
        erased = 0 if researcher_words_kept(researcher) else _erase_interviews(records)
        quoted_texts = _highlighted_texts(about_them)
        _scrub(records.querysets(), about_them)
        _scrub(_every_table(), identifying)
        _highlights_follow(quoted_texts)
        events.record_anonymised(
            actor=actor,
            researcher=researcher,
            cleared=[*PERSONAL_FIELDS, "pseudonym"],
            interviews_erased=erased,
        )
    return researcher


@dataclass
class _TheirRecords:
    """The ids of a researcher's records of each kind, deleted ones included (from history)."""

    ids: dict[type[models.Model], set[int]] = field(default_factory=dict)

    @classmethod
    def of(cls, researcher: Researcher) -> "_TheirRecords":
        found = cls()
        found._add(Researcher, pk=researcher.pk)
        found._add(SurveyInvitation, researcher_id=researcher.pk)
        found._add(Interview, researcher_id=researcher.pk)
        # An interview once recorded under them, since moved to someone else, is not theirs.
        found.ids[Interview] -= set(
            Interview._base_manager.filter(pk__in=found.ids[Interview])
            .exclude(researcher_id=researcher.pk)
            .values_list("pk", flat=True)
        )
        interviews = found.ids[Interview]
        found._add(Answer, interview_id__in=interviews)
        found._add(Highlight, interview_id__in=interviews)
        found._add(InsightHighlight, highlight_id__in=found.ids[Highlight])
        return found

    def _add(self, model: type[models.Model], **filters) -> None:
        ids = set(model._base_manager.filter(**filters).values_list("pk", flat=True))
        if hasattr(model, "history"):
            history_filters = {("id" if k == "pk" else k): v for k, v in filters.items()}
            ids |= set(model.history.filter(**history_filters).values_list("id", flat=True))
        self.ids[model] = ids

    def querysets(self) -> list[models.QuerySet]:
        """Their rows, the history rows of them, and the event log's and the admin's entries
        about them."""
        found = []
        for model, ids in self.ids.items():
            content_type = ContentType.objects.get_for_model(model)
            found += [
                model._base_manager.filter(pk__in=ids),
                Event.objects.filter(target_type=content_type, target_id__in=ids),
                _log_entries(content_type, ids),
            ]
            if hasattr(model, "history"):
                found.append(model.history.filter(id__in=ids))
        return found


def _log_entries(content_type: ContentType, ids: Iterable[int]) -> models.QuerySet:
    return LogEntry.objects.filter(content_type=content_type, object_id__in=map(str, ids))


def _erase_interviews(records: _TheirRecords) -> int:
    """Delete their interviews with their answers, quotes and the quotes' links to insights,
    then every history row of them (deleting writes one more). Out: interviews deleted."""
    kinds = (InsightHighlight, Highlight, Answer, Interview)
    # The admin's log names a highlight, and a link to one, by the start of its quote.
    quoted = {
        text: REMOVED
        for quote in _quotes(records.ids[Highlight])
        for text in (quote, quote[:HIGHLIGHT_EXCERPT])
    }
    InsightHighlight.objects.filter(pk__in=records.ids[InsightHighlight]).delete()
    _, deleted = Interview.objects.filter(pk__in=records.ids[Interview]).delete()
    for model in kinds:
        _history_delete(model.history.filter(id__in=records.ids[model]))
        content_type = ContentType.objects.get_for_model(model)
        _log_entries(content_type, records.ids[model]).update(
            object_repr=Concat(
                Value(f"{model._meta.verbose_name} #"),
                F("object_id"),
                output_field=models.CharField(),
            ),
            change_message="",
        )
    _scrub([LogEntry.objects.all()], quoted)
    return deleted.get(Interview._meta.label, 0)


def _quotes(highlight_ids: set[int]) -> set[str]:
    """Every version of the quotes of these highlights."""
    live = Highlight.objects.filter(pk__in=highlight_ids).values_list("quote", flat=True)
    past = Highlight.history.filter(id__in=highlight_ids).values_list("quote", flat=True)
    return {*live, *past}


def _history_delete(history: models.QuerySet) -> None:
    """Delete history rows and the rows that record their many-to-many values."""
    for relation in history.model._meta.related_objects:
        relation.related_model.objects.filter(**{f"{relation.field.name}__in": history}).delete()
    history.delete()


def _every_table() -> list[models.QuerySet]:
    return [
        model._base_manager.all()
        for app in ERASURE_APPS
        for model in apps.get_app_config(app).get_models()
        if model._meta.managed and not model._meta.proxy
    ]


# --- replacing values in text and JSON columns ----------------------------------------------


def _text_fields(model: type[models.Model]) -> list[str]:
    return [
        f.name
        for f in model._meta.concrete_fields
        if isinstance(f, models.CharField | models.TextField | models.JSONField)
        and not f.primary_key
        and not f.choices
    ]


# Not inside a word; in JSON text a word may follow an escape such as \u201c or \n.
WORD_START = r"(?:(?<!\w)|(?<=\\u[0-9a-fA-F]{4})|(?<=\\[nrt]))"


class _Replacer:
    """Finds values as whole words, whatever their case and spacing, also as escaped inside
    JSON text, and replaces each with its replacement."""

    def __init__(self, replacements: dict[str, str]):
        # A value without a letter (empty, a number) names no one and would shred text.
        wanted = {v.strip(): r for v, r in replacements.items() if any(c.isalpha() for c in v)}
        forms = {form: r for v, r in wanted.items() for form in (v, json.dumps(v)[1:-1])}
        self.replacement_of = {self._key(form): r for form, r in forms.items()}
        # The longest first, so a value inside a longer one goes with the longer one.
        alternatives = sorted(forms, key=len, reverse=True)
        self.pattern = (
            re.compile(
                WORD_START + "(?:" + "|".join(map(self._spaced, alternatives)) + r")(?!\w)",
                re.IGNORECASE,
            )
            if forms
            else None
        )
        # What the database is asked for first: each form's longest word.
        self.needles = sorted({max(form.split(), key=len) for form in forms})

    @staticmethod
    def _key(text: str) -> str:
        return " ".join(text.split()).lower()

    @staticmethod
    def _spaced(form: str) -> str:
        return r"\s+".join(map(re.escape, form.split()))

    def text(self, value: str) -> str:
        return self.pattern.sub(lambda m: self.replacement_of.get(self._key(m[0]), REMOVED), value)

    def value(self, value: Any) -> Any:
        """A column's value with every occurrence replaced, JSON structures walked."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(item) for item in value]
        if isinstance(value, dict):
            # Keys are field names and ids, never a person's words.
            return {key: self.value(item) for key, item in value.items()}
        return value


def _highlighted_texts(replacements: dict[str, str]) -> dict[int, str]:
    """The text under each highlight that a scrub with these values may change, by id."""
    needles = _Replacer(replacements).needles
    if not needles:
        return {}
    mentions = Q(
        *(Q(interview__transcript__icontains=n) | Q(answer__text__icontains=n) for n in needles),
        _connector=Q.OR,
    )
    highlights = Highlight.objects.filter(mentions).select_related("interview", "answer")
    return {highlight.pk: highlight.source_text() for highlight in highlights}


def _highlights_follow(texts_before: dict[int, str]) -> None:
    """Move each highlight onto the same passage of its scrubbed text, so that a quote that
    named them keeps its place (its quote becomes the scrubbed passage)."""
    highlights = Highlight.objects.filter(pk__in=texts_before).select_related("interview", "answer")
    for highlight in highlights:
        before, after = texts_before[highlight.pk], highlight.source_text()
        if before == after:
            continue
        matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
        start = _moved_offset(matcher, highlight.start, end=False)
        end = max(_moved_offset(matcher, highlight.end, end=True), start + 1)
        Highlight.objects.filter(pk=highlight.pk).update(
            start=start, end=end, quote=after[start:end]
        )


def _moved_offset(matcher: difflib.SequenceMatcher, offset: int, *, end: bool) -> int:
    """Where an offset of the old text lies in the new one; inside a replaced span, at its
    start (a highlight's start) or end (its end)."""
    for tag, old_start, old_end, new_start, new_end in matcher.get_opcodes():
        if old_start <= offset < old_end or (offset == old_end and end):
            if tag == "equal":
                return new_start + offset - old_start
            return new_end if end else new_start
    return len(matcher.b)


def _scrub(querysets: Iterable[models.QuerySet], replacements: dict[str, str]) -> None:
    """Replace the values (keys of `replacements`) in every text and JSON column of the rows.
    Rows are rewritten with UPDATE, so no history row or event is written about it."""
    replacer = _Replacer(replacements)
    if replacer.pattern is None:
        return
    for queryset in querysets:
        names = _text_fields(queryset.model)
        if not names:
            continue
        mentions = Q(
            *(Q(**{f"{name}__icontains": n}) for name in names for n in replacer.needles),
            _connector=Q.OR,
        )
        for row in queryset.filter(mentions).values("pk", *names).iterator():
            changed = {
                name: new for name in names if (new := replacer.value(row[name])) != row[name]
            }
            if changed:
                if _is_versioned(queryset.model):
                    # An edit form opened before would otherwise save the old text back.
                    changed["version"] = F("version") + 1
                queryset.model._base_manager.filter(pk=row["pk"]).update(**changed)


def _is_versioned(model: type[models.Model]) -> bool:
    """A record whose saves check a version (records.record_is_versioned); its history
    rows copy the field but are never saved from a form."""
    names = {f.name for f in model._meta.concrete_fields}
    return "version" in names and "history_id" not in names
