"""Internal: build a scratch knowledge base and time the API against raw SQL (JSON out).

Run only by `manage.py benchmark api`, with DATABASE_URL pointing at a scratch SQLite file.
Prints one JSON line: a list of result rows for the benchmark command's table.
"""

import gc
import json
import statistics
import time
import tracemalloc

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token

from kb.models import ArchitectureChange, Finding, Insight, InsightFinding, Outcome, SubjectModel
from kb.roles import RESEARCHER, roles_ensure

INSIGHTS = 10_000
FINDINGS = 50_000
FINDINGS_PER_INSIGHT = 5
CHANGES = 1_000
PAGE = 100
BATCH = 5_000

# The page is cut first, so the nested subqueries run for its rows only (as the API does).
RAW_INSIGHT_PAGE = """
SELECT i.id, i.title, i.statement, i.understanding_level, i.relevance, i.status,
       i.created_by_id, i.created_at, i.updated_at,
       (SELECT json_group_array(json_object('finding', l.finding_id, 'title', f.title,
                                            'stance', l.stance))
          FROM kb_insightfinding l JOIN kb_finding f ON f.id = l.finding_id
         WHERE l.insight_id = i.id) AS findings,
       (SELECT json_group_array(json_object('id', c.id, 'operation', c.operation,
                                            'status', c.status, 'target_model', c.target_model_id))
          FROM kb_architecturechange c WHERE c.insight_id = i.id) AS changes
  FROM (SELECT * FROM kb_insight ORDER BY created_at DESC, id DESC LIMIT %s) i
 ORDER BY i.created_at DESC, i.id DESC
"""
RAW_FINDINGS = """
SELECT id, subject_model_id, title, description, kind, layer_name, unit_indices, concept,
       status, confidence, created_at, updated_at
  FROM kb_finding ORDER BY id
"""


class Command(BaseCommand):
    help = "Internal: the API benchmark's measuring side, on a scratch database."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--quick", action="store_true")

    def handle(self, *args, quick: bool, **options) -> None:
        if not settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
            raise CommandError("run through `manage.py benchmark api` (scratch SQLite only)")
        started = time.perf_counter()
        _create_scratch_tables()
        client = _signed_in_client()
        model = SubjectModel.objects.create(name="bench-model", kind="external")
        # Peak memory is measured on the way up (tracing is slow, so --quick uses smaller sizes).
        sizes = (FINDINGS // 4, FINDINGS // 2) if quick else (FINDINGS // 2, FINDINGS)
        _build_findings(model, 0, sizes[0])
        _api_export(client)  # imports and caches are not the export's memory
        peaks = [_export_peak_bytes(client)]
        _build_findings(model, sizes[0], sizes[1])
        peaks.append(_export_peak_bytes(client))
        _build_findings(model, sizes[1], FINDINGS)
        _build_insights(model)
        results = [
            _list_vs_raw(client, 9 if quick else 31),
            _export_vs_raw(client, 2 if quick else 7),
            _export_memory(dict(zip(sizes, peaks, strict=True))),
            _queries_per_request(client),
        ]
        self.stderr.write(f"benchmark_api_child: {time.perf_counter() - started:.1f}s")
        self.stdout.write(json.dumps(results))


def _create_scratch_tables() -> None:
    """Tables straight from the models, without replaying migrations."""
    from django.apps import apps

    settings.MIGRATION_MODULES = {app.label: None for app in apps.get_app_configs()}
    call_command("migrate", run_syncdb=True, verbosity=0)
    roles_ensure()


def _signed_in_client() -> Client:
    user = User.objects.create_user("bench", password="unused-bench-password")
    user.groups.add(Group.objects.get(name=RESEARCHER))
    token = Token.objects.create(user=user)
    return Client(HTTP_AUTHORIZATION=f"Token {token.key}")


def _build_findings(model: SubjectModel, start: int, stop: int) -> None:
    for low in range(start, stop, BATCH):
        Finding.objects.bulk_create(
            Finding(
                subject_model=model, title=f"Finding {i}", layer_name=f"layer{i % 12}",
                unit_indices=[i % 64, (i + 1) % 64], concept="curvature",
                description="Units that respond to curves.", confidence=0.5,
            )
            for i in range(low, min(stop, low + BATCH))
        )  # fmt: skip


def _build_insights(model: SubjectModel) -> None:
    for low in range(0, INSIGHTS, BATCH):
        Insight.objects.bulk_create(
            Insight(title=f"Insight {i}", statement="Widen where the concept lives.")
            for i in range(low, min(INSIGHTS, low + BATCH))
        )
    insight_ids = list(Insight.objects.order_by("pk").values_list("pk", flat=True))
    finding_ids = list(Finding.objects.order_by("pk").values_list("pk", flat=True))
    links = [
        InsightFinding(insight_id=insight_id, finding_id=finding_ids[(n * 5 + k) % FINDINGS])
        for n, insight_id in enumerate(insight_ids)
        for k in range(FINDINGS_PER_INSIGHT)
    ]
    InsightFinding.objects.bulk_create(links, batch_size=BATCH)
    # The newest insights carry changes with outcomes, so the first page nests them too.
    changes = ArchitectureChange.objects.bulk_create(
        ArchitectureChange(insight_id=insight_id, target_model=model, operation="manual")
        for insight_id in insight_ids[-CHANGES:]
    )
    Outcome.objects.bulk_create(
        Outcome(change=change, metric="test_accuracy", baseline_values=[0.8],
                variant_values=[0.82], effect=0.02, verdict="inconclusive")
        for change in changes
    )  # fmt: skip


def _timed(function) -> float:
    gc.collect()
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def _api_list(client: Client) -> None:
    response = client.get("/api/insights/", {"page_size": PAGE})
    assert response.status_code == 200, response.content[:500]
    assert len(json.loads(response.content)["results"]) == PAGE


def _raw_list() -> None:
    with connection.cursor() as cursor:
        cursor.execute(RAW_INSIGHT_PAGE, [PAGE])
        columns = [column[0] for column in cursor.description]
        rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    for row in rows:
        row["findings"] = json.loads(row["findings"])
        row["changes"] = json.loads(row["changes"])
    assert len(json.dumps(rows, default=str)) > 0


def _ratio_row(name: str, raw: list[float], api: list[float], target: float, **extra) -> dict:
    reference, subject = statistics.median(raw), statistics.median(api)
    ratio = subject / reference
    return {
        "name": name, "reference_s": round(reference, 6), "subject_s": round(subject, 6),
        "ratio": round(ratio, 3), "target": target, "ok": ratio <= target, **extra,
    }  # fmt: skip


def _list_vs_raw(client: Client, repeats: int) -> dict:
    _api_list(client), _raw_list()  # warm caches and imports
    raw, api = [], []
    for _ in range(repeats):
        raw.append(_timed(_raw_list))
        api.append(_timed(lambda: _api_list(client)))
    return _ratio_row("list_vs_raw", raw, api, 4.0, repeats=repeats, page_size=PAGE)


def _api_export(client: Client) -> int:
    response = client.get("/api/export/", {"sections": "findings"})
    assert response.status_code == 200
    return sum(len(chunk) for chunk in response.streaming_content)


def _raw_export() -> int:
    size = 0
    with connection.cursor() as cursor:
        cursor.execute(RAW_FINDINGS)
        columns = [column[0] for column in cursor.description]
        while chunk := cursor.fetchmany(2000):
            rows = [dict(zip(columns, row, strict=True)) for row in chunk]
            for row in rows:
                row["unit_indices"] = json.loads(row["unit_indices"])
            size += len(json.dumps(rows, default=str))
    return size


def _export_vs_raw(client: Client, repeats: int) -> dict:
    _api_export(client), _raw_export()
    raw, api = [], []
    for _ in range(repeats):
        raw.append(_timed(_raw_export))
        api.append(_timed(lambda: _api_export(client)))
    return _ratio_row("export_vs_raw", raw, api, 2.0, repeats=repeats, rows=FINDINGS)


def _export_peak_bytes(client: Client) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        _api_export(client)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _export_memory(peaks: dict[int, int]) -> dict:
    """Flat means doubling the rows grows the peak by well under half as much again."""
    (small, small_peak), (large, large_peak) = sorted(peaks.items())
    growth = large_peak / small_peak
    return {
        "name": "export_peak_memory",
        "value": {str(rows): peak for rows, peak in peaks.items()},
        "summary": f"{small} rows: {small_peak / 2**20:.1f} MiB peak, "
        f"{large} rows: {large_peak / 2**20:.1f} MiB peak (x{growth:.2f})",
        "ok": growth < 1.5,
    }


def _queries_per_request(client: Client) -> dict:
    with CaptureQueriesContext(connection) as queries:
        _api_list(client)
    count = len(queries.captured_queries)
    return {
        "name": "queries_per_request",
        "value": count,
        "summary": f"{count} queries for GET /api/insights/?page_size={PAGE}",
        "ok": True,
    }
