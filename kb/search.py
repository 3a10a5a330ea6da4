"""Ranked full-text search over every kind of record a user may see.

Both databases keep an index that the database itself maintains (migration 0009):
PostgreSQL a stored `search_vector` column per table ('english' configuration, GIN index),
SQLite an external-content FTS5 table per kind (porter tokenizer) kept in sync by triggers.
A query never computes a vector of every row, so no query can make the page slow for others.

A query is cut to MAX_QUERY_CHARS and to its first MAX_TERMS words; every word must match,
in any order, in any of its forms ("widen" finds "Widening"). Nothing a user types is passed
through as query syntax, so quotes, `*`, `NEAR`, `-` or brackets are just text.

Snippets are plain text (Markdown rendered, then its tags dropped) around the first word
that matches, with the matching words in <mark>.
"""

import html
import re
from collections.abc import Callable
from dataclasses import dataclass

import nh3
from django.db import connection, models
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from kb import selectors
from kb.markup import render_markdown
from kb.models import (
    ArchitectureChange,
    Finding,
    Highlight,
    Insight,
    Interview,
    Researcher,
    Theme,
)

MAX_QUERY_CHARS = 200
MAX_TERMS = 8
RESULTS_PER_KIND = 20
SNIPPET_RADIUS = 80
# How much of the text around a match is rendered to find the snippet's plain text.
WINDOW = 600
WORD = re.compile(r"\w+")
# Endings dropped before a query word is looked for in a snippet: the database matches word
# forms with a real stemmer; the snippet only has to mark the words it matched.
ENDINGS = ("ations", "ation", "ings", "ing", "ers", "er", "ies", "es", "ed", "ly", "s")


@dataclass(frozen=True)
class SearchKind:
    """One kind of record: its label, model, searched fields, the permission to see it, the
    joins its result label needs, what of it a user may see (a selector taking `user` and
    `queryset`; all by default), and the index's table name on SQLite."""

    label: str
    model: type[models.Model]
    fields: tuple[str, ...]
    permission: str
    joins: tuple[str, ...] = ()
    visible: Callable[..., models.QuerySet] | None = None

    @property
    def fts_table(self) -> str:
        return f"kb_search_{self.model._meta.model_name}"


SEARCH_KINDS = [
    SearchKind("Interviews", Interview, ("transcript", "summary"), "kb.view_interview",
               ("researcher",)),
    SearchKind("Highlights", Highlight, ("quote", "note"), "kb.view_highlight",
               ("interview__researcher",), selectors.highlights_visible),
    SearchKind("Themes", Theme, ("name", "description"), "kb.view_theme"),
    SearchKind("Findings", Finding, ("title", "concept", "description"), "kb.view_finding",
               ("subject_model",)),
    SearchKind("Insights", Insight, ("title", "statement"), "kb.view_insight"),
    SearchKind("Changes", ArchitectureChange, ("rationale", "expected_metric"),
               "kb.view_architecturechange", ("target_model",)),
    SearchKind("Researchers", Researcher,
               ("pseudonym", "full_name", "affiliation", "research_area"),
               "kb.view_researcher"),
]  # fmt: skip


def search_terms(query: str) -> list[str]:
    """The words of a query, lower-cased: at most MAX_TERMS from its first MAX_QUERY_CHARS
    characters; punctuation, operators and NUL bytes are separators."""
    return [word.lower() for word in WORD.findall(query[:MAX_QUERY_CHARS])][:MAX_TERMS]


def search(*, user, query: str) -> list[tuple[str, list]]:
    """[(label, records)] for every kind the user may see, each list ranked best first, at
    most RESULTS_PER_KIND long, each record with `snippet` (safe HTML). [] for a query
    without words."""
    terms = search_terms(query)
    if not terms:
        return []
    groups = []
    for kind in SEARCH_KINDS:
        if user.has_perm(kind.permission):
            groups.append((kind.label, _records(kind, terms, user)))
    return groups


def _records(kind: SearchKind, terms: list[str], user) -> list:
    if connection.vendor == "postgresql":
        ids = _ranked_ids_postgres(kind, terms)
    else:
        ids = _ranked_ids_sqlite(kind, terms)
    rows = kind.model._default_manager.select_related(*kind.joins)
    if kind.visible is not None:
        # Ranked before this filter: a list can come out shorter, never show too much.
        rows = kind.visible(user=user, queryset=rows)
    found = rows.in_bulk(ids)
    records = [found[pk] for pk in ids if pk in found]
    for record in records:
        record.snippet = search_snippet(
            [getattr(record, name) or "" for name in kind.fields], terms
        )
    return records


def _ranked_ids_postgres(kind: SearchKind, terms: list[str]) -> list[int]:
    table = connection.ops.quote_name(kind.model._meta.db_table)
    # plainto_tsquery: every word must match; it reads no operators.
    sql = (
        f"SELECT id FROM {table}, plainto_tsquery('english', %s) AS query "
        "WHERE search_vector @@ query "
        "ORDER BY ts_rank(search_vector, query) DESC, id DESC LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [" ".join(terms), RESULTS_PER_KIND])
        return [row[0] for row in cursor.fetchall()]


def _ranked_ids_sqlite(kind: SearchKind, terms: list[str]) -> list[int]:
    table = connection.ops.quote_name(kind.fts_table)
    # Each word quoted is a plain string to FTS5 (words hold no quotes); side by side they
    # must all match.
    match = " ".join(f'"{term}"' for term in terms)
    sql = f"SELECT rowid FROM {table} WHERE {table} MATCH %s ORDER BY rank, rowid DESC LIMIT %s"
    with connection.cursor() as cursor:
        cursor.execute(sql, [match, RESULTS_PER_KIND])
        return [row[0] for row in cursor.fetchall()]


# --- snippets ---------------------------------------------------------------------------------


def plain_text(markdown: str) -> str:
    """The text a reader sees of some Markdown: rendered, tags dropped, spaces collapsed."""
    text = html.unescape(nh3.clean(render_markdown(markdown), tags=set()))
    return " ".join(text.split())


def _stem(term: str) -> str:
    for ending in ENDINGS:
        if term.endswith(ending) and len(term) - len(ending) >= 3:
            return term[: -len(ending)]
    return term


def _matcher(terms: list[str]) -> re.Pattern:
    stems = sorted({_stem(term) for term in terms}, key=len, reverse=True)
    return re.compile(r"\b(?:" + "|".join(map(re.escape, stems)) + r")\w*", re.IGNORECASE)


def search_snippet(texts: list[str], terms: list[str]) -> SafeString:
    """About 2 * SNIPPET_RADIUS characters of plain text around the first matching word of
    the first text with one (else the start of the first text), matches in <mark>."""
    matcher = _matcher(terms)
    chosen = next((text for text in texts if matcher.search(text)), texts[0] if texts else "")
    found = matcher.search(chosen)
    start = found.start() if found else 0
    # Only a window around the match is rendered, so a long transcript costs no more.
    paragraph_end = chosen.find("\n\n", start)
    window_start = max(chosen.rfind("\n\n", 0, start) + 1, start - WINDOW, 0)
    window_end = min(start + WINDOW, paragraph_end if paragraph_end >= 0 else len(chosen))
    plain = plain_text(chosen[window_start:window_end])
    found = matcher.search(plain)
    position = found.start() if found else 0
    cut_start = max(0, position - SNIPPET_RADIUS)
    cut_end = position + 2 * SNIPPET_RADIUS if found else 2 * SNIPPET_RADIUS
    piece = plain[cut_start:cut_end]
    marked, last = [], 0
    for match in matcher.finditer(piece):
        marked += [escape(piece[last : match.start()]), f"<mark>{escape(match.group())}</mark>"]
        last = match.end()
    marked.append(escape(piece[last:]))
    prefix = "…" if cut_start else ""
    suffix = "…" if cut_end < len(plain) else ""
    return mark_safe(f"{prefix}{''.join(marked)}{suffix}")  # noqa: S308 - every part escaped
