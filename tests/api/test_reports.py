"""The outcomes CSV carries the settings each outcome was measured with; undefined numbers
are empty cells."""

import csv
import io

import pytest

from kb.models import Outcome

pytestmark = pytest.mark.django_db


def test_the_outcomes_csv_shows_the_settings_beside_the_numbers(api, kb, viewer_user):
    run = kb["run"]
    measured = Outcome.objects.create(
        change=kb["change"], metric="test_accuracy", baseline_values=[0.5, 0.5, 0.5],
        variant_values=[0.6, 0.6, 0.6], effect=0.1, verdict="inconclusive",
        source=Outcome.Source.ANALYSIS_RUN, analysis_run=run,
    )  # fmt: skip
    response = api(viewer_user).get("/api/export/outcomes.csv")
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    by_id = {int(row["id"]): row for row in rows}
    row = by_id[measured.pk]
    assert (row["dataset"], row["dataset_size"], row["epochs"], row["seed_list"]) == (
        "shapes", "2000", "1", "0 1 2"
    )  # fmt: skip
    assert row["run_url"] == f"http://testserver/api/runs/{run.pk}/"
    # a constant difference has no interval or p-value: empty, not 0
    assert (row["ci_low"], row["ci_high"], row["p_value"]) == ("", "", "")
    manual = by_id[kb["outcome"].pk]
    assert [manual[column] for column in ("dataset", "epochs", "seed_list", "run_url")] == [""] * 4
