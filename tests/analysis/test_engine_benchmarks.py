"""The benchmark harness's bookkeeping (the real measurements run via the CLI)."""

import tests.analysis.engine_helpers  # noqa: F401  (one torch thread)
from analysis.engine.benchmarks import compare_timings


def test_compare_timings_reports_medians_and_verdict():
    calls = []
    result = compare_timings(
        "demo",
        lambda: calls.append("reference"),
        lambda: calls.append("subject"),
        repeats=4,
        target=10.0,
    )
    assert calls.count("reference") == calls.count("subject") == 5
    assert calls[2:4] == ["reference", "subject"] and calls[4:6] == ["subject", "reference"]
    assert set(result) == {
        "name", "reference_s", "subject_s", "ratio", "ratio_of_pair_medians",
        "ratio_of_minimums", "target", "higher_is_better", "ok", "repeats",
    }  # fmt: skip
    assert (result["name"], result["target"], result["repeats"]) == ("demo", 10.0, 4)
    assert result["higher_is_better"] is False
    assert result["ok"] is (result["ratio"] <= 10.0)
