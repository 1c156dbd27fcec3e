"""``memkern bench mixed`` runs the agent loop end to end on a tiny cube (numbers are not checked: no timed tests)."""

from __future__ import annotations

from memkern.bench.mixed import OPERATIONS, format_report, run_mixed


def test_mixed_reports_every_operation_and_the_ratios(tmp_path, embedder):
    result = run_mixed(items=60, rounds=3, workdir=tmp_path, embedder=embedder)
    assert result["items"] == 60 and result["rounds"] == 3
    assert set(result["operations"]) == set(OPERATIONS)
    for name in ("search_after_add", "search_after_update", "search_after_delete"):
        assert result["operations"][name]["p50_ratio"] is not None
    assert result["memory"]["peak_rss_mb"] > 0
    report = format_report(result)
    assert "search_after_delete" in report and "p50 x" in report
