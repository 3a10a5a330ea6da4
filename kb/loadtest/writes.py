"""Read the scratch database back after a load run: is every write the server acknowledged
there, and how far did the workers get with the runs?

Queried with psycopg rather than the ORM: the command's own database connection points at
the project's database, not at the scratch one. Tables and columns come from the models."""

import psycopg
from psycopg import sql

from analysis.models import AnalysisRun
from kb.loadtest.clients import Write
from kb.models import Finding, Highlight

# Write kind -> (model, the field whose value the client wrote and records as the marker)
WRITTEN_FIELDS = {
    "highlight": (Highlight, "note"),
    "finding": (Finding, "title"),
    "run": (AnalysisRun, "subject_model"),
}


def lost_writes(database_url: str, writes: list[Write]) -> list[Write]:
    """The acknowledged writes whose row is missing or does not hold what was written (an
    answer without an id counts as lost: nothing can show that it was kept)."""
    lost = [write for write in writes if write.id is None]
    with psycopg.connect(database_url) as connection:
        for kind, (model, field_name) in WRITTEN_FIELDS.items():
            wanted = [write for write in writes if write.kind == kind and write.id is not None]
            query = sql.SQL("SELECT id, {} FROM {} WHERE id = ANY(%s)").format(
                sql.Identifier(model._meta.get_field(field_name).column),
                sql.Identifier(model._meta.db_table),
            )
            rows = connection.execute(query, [[write.id for write in wanted]])
            stored = {row_id: str(value) for row_id, value in rows}
            lost += [write for write in wanted if stored.get(write.id) != write.marker]
    return lost


def run_statuses(database_url: str) -> dict[str, int]:
    """How many runs ended in each status (queued, running, succeeded, ...)."""
    query = sql.SQL("SELECT status, count(*) FROM {} GROUP BY status").format(
        sql.Identifier(AnalysisRun._meta.db_table)
    )
    with psycopg.connect(database_url) as connection:
        return dict(sorted(connection.execute(query).fetchall()))
