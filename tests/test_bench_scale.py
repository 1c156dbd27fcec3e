"""``memkern bench scale``: the first search of a new process (without and with the saved index
copy), and a kept store reused by a later run instead of ingesting again."""

from __future__ import annotations

import pytest

from memkern.bench.scale import format_report, run_scale
from memkern.errors import InvalidInputError


def test_a_kept_store_is_reused_and_fresh_processes_are_timed(tmp_path):
    first = run_scale(items=300, queries=5, store_dir=tmp_path)
    assert not first["reused_store"] and (tmp_path / "scale.db").is_file()
    for probe in ("cold", "warm"):
        assert first["fresh_process"][probe]["first_search_ms"] > 0
        assert first["fresh_process"][probe]["memory"]["rss_mb"] > 0
        assert first["fresh_process"][probe]["first_slot_question_ms"] > 0
    again = run_scale(items=300, queries=5, store_dir=tmp_path)
    assert again["reused_store"] and again["ingest_s"] == first["ingest_s"] and again["items"] == 300
    assert "store reused" in format_report(again) and "new process, warm" in format_report(again)
    organisation = again["organisation"]
    assert organisation["links_timed"] > 0 and organisation["links_per_memory"] > 0
    assert set(organisation["timeline_ms"]) == {"month", "week", "day", "session"}
    assert "links           p50" in format_report(again) and "timeline        100 nodes" in format_report(again)
    with pytest.raises(InvalidInputError, match="no complete ingestion"):
        run_scale(items=301, queries=5, store_dir=tmp_path)
