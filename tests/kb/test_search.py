"""Search: ranked full-text search kept by the database on SQLite (FTS5) and PostgreSQL alike,
word forms and any word order, every kind a role may see and no other, plain-text snippets,
and hostile queries that neither fail nor slow the page."""

import importlib
import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.urls import reverse

from kb import search
from kb.models import Highlight, Insight, Interview
from kb.services.backup import backup_import
from kb.services.codebook import highlight_create
from kb.services.coding_rounds import round_start
from kb.services.people import researcher_anonymise
from tests.factories import InsightFactory, InterviewFactory, ResearcherFactory, ThemeFactory

pytestmark = pytest.mark.django_db

index_migration = importlib.import_module("kb.migrations.0009_search_index")


def found(user, query: str) -> dict[str, list[int]]:
    return {label: [r.pk for r in rows] for label, rows in search.search(user=user, query=query)}


def test_word_forms_and_any_order_match(researcher_user):
    widen = InsightFactory(title="Widen a layer", statement="Add units where the concept lives.")
    InsightFactory(title="Prune heads", statement="Remove what nothing reads.")
    for query in ["widen", "Widening", "widened layers", "layers WIDEN", "concepts unit"]:
        assert found(researcher_user, query)["Insights"] == [widen.pk], query
    assert found(researcher_user, "widen heads")["Insights"] == []


def test_results_are_ranked_by_relevance(researcher_user):
    once = InsightFactory(title="A note", statement="Gradients " + "filler words " * 40)
    often = InsightFactory(title="Gradients", statement="Gradients and gradients again.")
    assert found(researcher_user, "gradient")["Insights"] == [often.pk, once.pk]


def test_each_role_searches_exactly_the_kinds_it_may_see(researcher_user, viewer_user):
    theme = ThemeFactory(name="Saliency doubts", description="")
    person = ResearcherFactory(pseudonym="Saliency Owl", research_area="saliency maps")
    interview = InterviewFactory(researcher=person, transcript="Saliency maps mislead us.")
    assert found(researcher_user, "saliency") == {
        "Interviews": [interview.pk],
        "Highlights": [],
        "Themes": [theme.pk],
        "Findings": [],
        "Insights": [],
        "Changes": [],
        "Researchers": [person.pk],
    }
    assert found(viewer_user, "saliency") == {
        "Themes": [theme.pk],
        "Findings": [],
        "Insights": [],
        "Changes": [],
    }


def test_the_viewers_search_page_names_no_researcher(client, viewer_user):
    ResearcherFactory(pseudonym="Hidden Heron", research_area="heron studies")
    client.force_login(viewer_user)
    body = client.get(reverse("search"), {"q": "heron"}).content.decode()
    assert "Hidden Heron" not in body and "Researchers" not in body


def test_snippets_are_plain_text_with_the_matches_marked(researcher_user):
    InsightFactory(
        title="Layer plan",
        statement="## Widen it\n- **Widen** the [conv layer](https://x.org) by `2` <b>units</b>",
    )
    (insight,) = dict(search.search(user=researcher_user, query="widen"))["Insights"]
    assert insight.snippet == "<mark>Widen</mark> it <mark>Widen</mark> the conv layer by 2 units"


def test_a_snippet_escapes_text_and_starts_near_the_match(researcher_user):
    text = "Intro words. " * 30 + "Then an <i>actionable</i> plan & more."
    InterviewFactory(researcher=ResearcherFactory(), transcript=text)
    (interview,) = dict(search.search(user=researcher_user, query="actionable"))["Interviews"]
    assert interview.snippet.startswith("…")
    assert "an <mark>actionable</mark> plan &amp; more." in interview.snippet
    assert len(interview.snippet) < 2 * search.SNIPPET_RADIUS + 60


def test_the_index_follows_every_write(researcher_user):
    insight = InsightFactory(title="Sparse probes", statement="Probe less.")
    Insight.objects.filter(pk=insight.pk).update(title="Dense probes")
    assert found(researcher_user, "sparse")["Insights"] == []
    assert found(researcher_user, "dense")["Insights"] == [insight.pk]
    insight.delete()
    assert found(researcher_user, "dense")["Insights"] == []


def test_a_long_transcript_of_distinct_tokens_is_stored_and_its_start_found(researcher_user):
    # 1.6 MB of distinct lexemes: more than one PostgreSQL tsvector can hold, so the index
    # covers the first POSTGRES_INDEXED_CHARACTERS characters and the save succeeds.
    tokens = " ".join(f"{index:06x}qz" for index in range(200_000))
    interview = InterviewFactory(transcript="Curvature detectors. " + tokens)
    assert len(interview.transcript) > 1_800_000
    assert found(researcher_user, "curvature detectors")["Interviews"] == [interview.pk]


@pytest.mark.skipif(connection.vendor != "sqlite", reason="FTS5 triggers exist on SQLite only")
def test_every_searched_table_has_its_three_triggers():
    """Django rebuilds an SQLite table for many migrations, dropping its triggers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        triggers = {row[0] for row in cursor.fetchall()}
    for kind in search.SEARCH_KINDS:
        for event in ("insert", "delete", "update"):
            assert f"{kind.fts_table}_{event}" in triggers


class _Editor:
    """What the migration's functions use of a schema editor."""

    connection = connection

    def execute(self, sql):
        with connection.cursor() as cursor:
            cursor.execute(sql)


def test_the_migration_indexes_rows_written_before_it(researcher_user):
    index_migration.drop(None, _Editor())
    interview = InterviewFactory(researcher=ResearcherFactory(), transcript="Older dropout talk.")
    if connection.vendor == "postgresql":
        # As migrate runs it: no deferred foreign-key check pending before the ALTER TABLE.
        _Editor().execute("SET CONSTRAINTS ALL IMMEDIATE")
    index_migration.create(None, _Editor())
    assert found(researcher_user, "dropout")["Interviews"] == [interview.pk]


HOSTILE = [
    '"unbalanced',
    "a* OR b*",
    "widen NEAR layer",
    "-widen",
    "((widen",
    "widen)) AND (",
    "NOT",
    "x\x00y",
    "\x00",
    "'; DROP TABLE kb_insight; --",
    "^col:widen",
    "title:widen",
    "🙂 widen",
    "widen " * 2000,
    "w" * 10_000,
]


@pytest.mark.parametrize("query", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_queries_answer_quickly_as_plain_words(client_r, query):
    insight = InsightFactory(title="Widen a layer")
    started = time.perf_counter()
    response = client_r.get(reverse("search"), {"q": query})
    assert time.perf_counter() - started < 2
    assert response.status_code == 200
    groups = dict(response.context["groups"])
    words = search.search_terms(query)
    assert len(words) <= search.MAX_TERMS
    if words and all(word.startswith("widen") for word in words):
        assert [row.pk for row in groups["Insights"]] == [insight.pk]
    assert Insight.objects.count() == 1


def test_a_query_without_words_shows_no_groups(client_r):
    response = client_r.get(reverse("search"), {"q": "*** -- ()"})
    assert response.status_code == 200
    assert response.context["groups"] == []


def test_search_page_lists_groups_with_marked_matches(world, client_r):
    groups = dict(client_r.get(reverse("search"), {"q": "actionable"}).context["groups"])
    assert [row.pk for row in groups["Interviews"]] == [world.interview.pk]
    assert [row.pk for row in groups["Highlights"]] == [world.highlight.pk]
    assert groups["Findings"] == []
    assert "<mark>actionable</mark>" in groups["Interviews"][0].snippet
    assert Highlight.objects.count() == 1 and Interview.objects.count() == 1


@pytest.mark.skipif(connection.vendor != "sqlite", reason="FTS5 keeps deleted words on SQLite")
def test_an_anonymised_researchers_words_leave_the_index(researcher_user):
    """FTS5 keeps a replaced row's words in its index until it merges; anonymising merges."""
    person = ResearcherFactory(full_name="Zebulon Quaxworth", affiliation="Quaxology")
    InterviewFactory(researcher=person, transcript="Zebulon Quaxworth on probes.")

    def blocks_naming_them() -> int:
        with connection.cursor() as cursor:
            return sum(
                cursor.execute(
                    f"SELECT COUNT(*) FROM {kind.fts_table}_data "
                    "WHERE instr(block, CAST('quax' AS BLOB)) > 0"
                ).fetchone()[0]
                for kind in search.SEARCH_KINDS
            )

    assert blocks_naming_them() == 2
    researcher_anonymise(actor=researcher_user, researcher=person)
    assert blocks_naming_them() == 0
    assert found(researcher_user, "quaxworth") == {
        label: [] for label in found(researcher_user, "x")
    }


def test_a_blind_coder_finds_no_other_coders_highlights(researcher_user, django_user_model):
    other = django_user_model.objects.create_user("otto")
    other.groups.set(researcher_user.groups.all())
    interview = InterviewFactory(researcher=ResearcherFactory(), transcript="Probes lie. Probes.")
    theme = ThemeFactory()
    mine, theirs = (
        highlight_create(
            actor=user,
            coder=user,
            interview=interview,
            start=start,
            end=start + 6,
            quote="Probes",
            themes=[theme],
        )  # fmt: skip
        for user, start in [(researcher_user, 0), (other, 12)]
    )
    assert found(researcher_user, "probes")["Highlights"] == [theirs.pk, mine.pk]
    round_start(
        actor=researcher_user, name="R1", interviews=[interview], coders=[researcher_user, other]
    )
    assert found(researcher_user, "probes")["Highlights"] == [mine.pk]
    assert found(other, "probes")["Highlights"] == [theirs.pk]


def test_a_restored_backup_is_searchable_as_before(researcher_user, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    insight = InsightFactory(title="Widen a layer")
    interview = InterviewFactory(researcher=ResearcherFactory(), transcript="Widening helped.")
    before = found(researcher_user, "widen")
    archive = tmp_path / "kb.zip"
    call_command("export_kb", archive, stdout=StringIO())
    connection.check_constraints()  # TRUNCATE refuses pending deferred checks
    call_command("flush", interactive=False, verbosity=0)
    assert found(researcher_user, "widen")["Insights"] == []
    backup_import(archive)
    after = found(researcher_user, "widen")
    assert after == before
    assert after["Insights"] == [insight.pk] and after["Interviews"] == [interview.pk]
