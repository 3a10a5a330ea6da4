# The full-text search index (issue 15), kept by the database itself (kb/search.py reads it).
#
# PostgreSQL: a stored, generated `search_vector` column ('english') with a GIN index on each
# searched table; existing rows get their vector when the column is added.
# SQLite: an external-content FTS5 table per searched table (porter stemming), kept in sync by
# triggers and filled from the existing rows by 'rebuild'. FTS5 keeps a deleted row's words in
# its index until segments merge, so when a researcher is anonymised (the 'anonymised' event is
# the last write of researcher_anonymise) or deleted, every index is merged ('optimize') and
# none of their words stays behind.
#
# Django rebuilds an SQLite table for many column changes, which drops its triggers: a later
# migration that alters one of these tables must run this migration's SQL for it again
# (tests/kb/test_search.py fails if a trigger is missing).
from django.db import migrations

SEARCHED = {
    "kb_interview": ["transcript", "summary"],
    "kb_highlight": ["quote", "note"],
    "kb_theme": ["name", "description"],
    "kb_finding": ["title", "concept", "description"],
    "kb_insight": ["title", "statement"],
    "kb_architecturechange": ["rationale", "expected_metric"],
    "kb_researcher": ["pseudonym", "full_name", "affiliation", "research_area"],
}


def fts_table(table: str) -> str:
    return table.replace("kb_", "kb_search_", 1)


def sqlite_create(table: str, fields: list[str]) -> list[str]:
    index = fts_table(table)
    columns = ", ".join(fields)
    new = ", ".join(f"new.{name}" for name in fields)
    old = ", ".join(f"old.{name}" for name in fields)
    insert = f"INSERT INTO {index}(rowid, {columns}) VALUES (new.id, {new});"
    delete = f"INSERT INTO {index}({index}, rowid, {columns}) VALUES ('delete', old.id, {old});"
    return [
        f"CREATE VIRTUAL TABLE {index} USING fts5({columns}, content='{table}', "
        "content_rowid='id', tokenize='porter unicode61 remove_diacritics 2')",
        f"CREATE TRIGGER {index}_insert AFTER INSERT ON {table} BEGIN {insert} END",
        f"CREATE TRIGGER {index}_delete AFTER DELETE ON {table} BEGIN {delete} END",
        f"CREATE TRIGGER {index}_update AFTER UPDATE OF {columns} ON {table} "
        f"BEGIN {delete} {insert} END",
        f"INSERT INTO {index}({index}) VALUES ('rebuild')",
    ]


def sqlite_forget() -> list[str]:
    optimize = " ".join(
        f"INSERT INTO {fts_table(t)}({fts_table(t)}) VALUES ('optimize');" for t in SEARCHED
    )
    return [
        "CREATE TRIGGER kb_search_forget_anonymised AFTER INSERT ON kb_event "
        f"WHEN new.action = 'anonymised' BEGIN {optimize} END",
        "CREATE TRIGGER kb_search_forget_deleted AFTER DELETE ON kb_researcher "
        f"BEGIN {optimize} END",
    ]


# A tsvector holds at most 1 MB of lexemes: a long transcript of distinct tokens (hex strings,
# CJK pairs) would make its INSERT fail. The first 200,000 characters (about three hours of
# talk) measured at most 0.93 MB with such text; the rest of a longer record is not indexed.
POSTGRES_INDEXED_CHARACTERS = 200_000


def postgres_create(table: str, fields: list[str]) -> list[str]:
    text = " || ' ' || ".join(f"coalesce({name}, '')" for name in fields)
    return [
        f"ALTER TABLE {table} ADD COLUMN search_vector tsvector GENERATED ALWAYS AS "
        f"(to_tsvector('english'::regconfig, left({text}, {POSTGRES_INDEXED_CHARACTERS}))) "
        "STORED",
        f"CREATE INDEX {table}_search_idx ON {table} USING GIN (search_vector)",
    ]


def create(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        statements = [s for t, f in SEARCHED.items() for s in sqlite_create(t, f)]
        statements += sqlite_forget()
    elif vendor == "postgresql":
        statements = [s for t, f in SEARCHED.items() for s in postgres_create(t, f)]
    else:
        return
    for statement in statements:
        schema_editor.execute(statement)


def drop(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        statements = [
            "DROP TRIGGER IF EXISTS kb_search_forget_anonymised",
            "DROP TRIGGER IF EXISTS kb_search_forget_deleted",
        ]
        for table in SEARCHED:
            index = fts_table(table)
            events = ("insert", "delete", "update")
            statements += [f"DROP TRIGGER IF EXISTS {index}_{event}" for event in events]
            statements.append(f"DROP TABLE IF EXISTS {index}")
    elif vendor == "postgresql":
        statements = [f"ALTER TABLE {t} DROP COLUMN IF EXISTS search_vector" for t in SEARCHED]
    else:
        return
    for statement in statements:
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("kb", "0008_coding_rounds")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
