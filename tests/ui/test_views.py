"""The pure parts of the UI: filters from a form, grouping a timeline, the version chart, counts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from memkern.errors import InvalidInputError
from memkern.models import CubeStats, LifecycleState, MemoryItem, MemoryKind, Provenance, ScoreParts
from memkern.ui import views

T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)


def item(id: str, kind: MemoryKind = MemoryKind.TURN, session: str | None = "s1", **kw) -> MemoryItem:
    return MemoryItem(id=id, cube_id="c", owner="o", kind=kind, text=id,
                      provenance=Provenance(session_id=session, message_ids=kw.pop("messages", [])), **kw)


def test_filters_from_a_form_and_back():
    filters = views.parse_filters({"session": "s1", "kind": ["turn", "fact"], "speaker": " Ann ",
                                   "since": "2024-05-01", "tags": "a, b", "state": "any"})
    assert filters.session_id == "s1" and filters.kinds() == [MemoryKind.TURN, MemoryKind.FACT]
    assert filters.speaker == "Ann" and filters.tags == ["a", "b"] and filters.state is None
    assert filters.since == T0
    assert views.parse_filters(views.filter_query(filters)) == filters
    assert views.parse_filters({}).state is LifecycleState.ACTIVE
    with pytest.raises(InvalidInputError, match="kind"):
        views.parse_filters({"kind": ["nonsense"]})


def test_a_derived_memory_sits_beside_its_source_turn_on_the_page():
    turn_a, turn_b = item("a", messages=["m1"]), item("b", messages=["m2"])
    by_id = item("f1", MemoryKind.FACT, metadata={"source_memory_ids": ["b"]})
    by_message = item("f2", MemoryKind.FACT, messages=["m1"])
    orphan = item("f3", MemoryKind.FACT, metadata={"source_memory_ids": ["elsewhere"]})
    other = item("t2", session="s2")
    groups = views.timeline([turn_a, turn_b, other, by_id, by_message, orphan])
    assert [g.session_id for g in groups] == ["s1", "s2"]
    rows = groups[0].rows
    assert [(r.turn.id if r.turn else None, [d.id for d in r.derived]) for r in rows] == \
        [("a", ["f2"]), ("b", ["f1"]), (None, ["f3"])]


def test_version_chart_has_a_valid_and_a_recorded_bar_per_version():
    v1 = item("m", valid_from=T0, recorded_at=T0, expired_at=T0 + timedelta(days=10),
              valid_to=T0 + timedelta(days=5))
    v2 = item("m", version=2, valid_from=T0 + timedelta(days=5), recorded_at=T0 + timedelta(days=10))
    chart = views.version_chart([v1, v2], now=T0 + timedelta(days=20), width=200)
    valid1, recorded1, valid2, recorded2 = chart.bars
    assert (valid1.x, valid1.width) == (0, 50) and (recorded1.x, recorded1.width) == (0, 100)
    assert valid2.x == 50 and valid2.open and recorded2.x == 100 and recorded2.width == 100
    assert not valid1.open and chart.height == 4 * 14


def test_tally_is_the_cube_stats():
    stats = CubeStats(cube_id="c", total=25, by_kind={"turn": 25}, by_state={"active": 25},
                      by_session={"s0": 9, "": 16})
    counts = views.tally(stats)
    assert counts.counted == 25 and counts.by_kind["turn"] == 25 and counts.by_session["(none)"] == 16


def test_score_bars_share_one_scale():
    bars = views.score_bars(ScoreParts(lexical=0.5, dense=0.25, recency=-0.1), scale=0.5, full=100)
    widths = {b.name: b.width for b in bars}
    assert widths["lexical"] == 100 and widths["dense"] == 50 and widths["recency"] == 0
    assert [b.name for b in bars] == list(views.SCORE_PARTS)
