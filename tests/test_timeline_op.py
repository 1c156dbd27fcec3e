"""The ``timeline`` operation: the tree's nodes with what they hold, zero-LLM, and summaries written by an
LLM (the loopback OpenAI server) from their parts, kept until what they were written from changes."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta, timezone

import pytest
from fake_openai import FakeOpenAI

from memkern import MemOS
from memkern.errors import InvalidInputError, LLMNotConfiguredError
from memkern.llm.http import OpenAICompatibleLLM
from memkern.mos import MemCube

#: s1 and s2 on Monday and Tuesday of ISO week 10, s3 in week 12: March 2024 has two weeks, W10 two days.
DAYS = {"s1": datetime(2024, 3, 4, 9, tzinfo=timezone.utc), "s2": datetime(2024, 3, 5, 9, tzinfo=timezone.utc),
        "s3": datetime(2024, 3, 20, 9, tzinfo=timezone.utc), "s4": datetime(2024, 4, 2, 9, tzinfo=timezone.utc)}
SAID = {"s1": ["I adopted a cat called Miso in Paris.", "Miso sleeps all day on Monday."],
        "s2": ["My sister Claire visits Paris next week.", "Claire loves the Louvre."],
        "s3": ["I started learning Portuguese for Lisbon."],
        "s4": ["I moved to Lisbon and Miso came with me."]}


def _fill(cube: MemCube) -> None:
    for session, texts in SAID.items():
        at = DAYS[session]
        messages = []
        for n, text in enumerate(texts):
            messages += [{"role": "user", "name": "Alice", "content": text, "time": at + timedelta(minutes=2 * n)},
                         {"role": "assistant", "content": "How nice! Tell me more.",
                          "time": at + timedelta(minutes=2 * n + 1)}]
        cube.add(messages, session_id=session, infer=False)


@pytest.fixture
def cube(mos: MemOS) -> MemCube:
    cube = mos.create_cube("t")
    _fill(cube)
    return cube


def test_each_level_groups_the_sessions_under_their_period(cube) -> None:
    assert [(n.key, n.sessions, n.memories) for n in cube.timeline()] == [
        ("2024-03", ["s1", "s2", "s3"], 10), ("2024-04", ["s4"], 2)]
    assert [(n.key, n.sessions) for n in cube.timeline("week")] == [
        ("2024-W10", ["s1", "s2"]), ("2024-W12", ["s3"]), ("2024-W14", ["s4"])]
    assert [n.key for n in cube.timeline("day")] == ["2024-03-04", "2024-03-05", "2024-03-20", "2024-04-02"]
    sessions = cube.timeline("session")
    assert [n.key for n in sessions] == ["s1", "s2", "s3", "s4"]
    assert sessions[0].start == DAYS["s1"] and sessions[0].end == DAYS["s1"] + timedelta(minutes=3)


def test_bounds_and_limit_pick_the_nodes(cube) -> None:
    assert [n.key for n in cube.timeline("day", since=date(2024, 3, 5), until=date(2024, 3, 20))] == [
        "2024-03-05", "2024-03-20"]
    assert [n.key for n in cube.timeline("day", limit=1)] == ["2024-03-04"]
    assert cube.timeline("day", since=date(2025, 1, 1)) == []


def test_a_node_says_what_it_is_about(cube) -> None:
    s1 = cube.timeline("session", limit=1)[0]
    assert s1.entities == ["Miso", "Paris"]  # said once each, in that order; not Alice (the speaker), not Monday
    assert [m.provenance.speaker for m in s1.representatives] == ["Alice"]  # not the assistant's question
    march = cube.timeline(limit=1)[0]
    assert {m.provenance.session_id for m in march.representatives} == {"s1", "s2", "s3"}
    assert march.entities[:3] == ["Paris", "Miso", "Claire"]  # Paris said twice ("Claire loves" opens a sentence)


def test_deleted_memories_leave_the_tree(cube) -> None:
    s3 = [m.id for m in cube.get_all(filters={"session_id": "s3"}).items]
    for memory_id in s3:
        cube.delete(memory_id)
    assert [n.key for n in cube.timeline("week")] == ["2024-W10", "2024-W14"]
    assert cube.timeline()[0].memories == 8


def test_summaries_need_an_llm_and_bad_levels_are_refused(cube) -> None:
    with pytest.raises(LLMNotConfiguredError):
        cube.timeline(summarize=True)
    with pytest.raises(InvalidInputError, match="level"):
        cube.timeline("year")


def _summariser(request_json: dict) -> str:
    """A summary naming what it was written from: the heading of the prompt and how many lines it had."""
    heading, lines = request_json["messages"][-1]["content"].split(":\n", 1)
    return f"Summary of {heading} ({len(lines.splitlines()) - 2} lines)."


def test_summaries_are_written_from_the_parts_and_kept_until_they_change(tmp_path, embedder, request) -> None:
    with FakeOpenAI(handler=_summariser) as server:
        llm = OpenAICompatibleLLM(server.base_url, "fake", timeout_s=5, retries=0)
        mos = MemOS(tmp_path / "m.db", embedder=embedder, llm=llm)
        request.addfinalizer(mos.close)
        cube = mos.create_cube("t")
        _fill(cube)
        march = cube.timeline(summarize=True, limit=1)[0]
        # 3 sessions; each day holds one session (its summary, no call); W10 from its 2 days; W12 is its
        # one day's; March from its 2 weeks.
        assert len(server.requests) == 5
        assert march.summary == "Summary of The weeks of 2024-03, in order (2 lines)." and march.summarized_by == "fake"
        days = server.requests[2]["messages"][-1]["content"]  # s1, s2, then W10 from them, s3, March
        assert days.startswith("The days of 2024-W10, in order:")
        assert "- 2024-03-04: Summary of Conversation s1 on 04 March 2024 (4 lines)." in days
        weeks = server.requests[4]["messages"][-1]["content"]
        assert "- 2024-W12: Summary of Conversation s3 on 20 March 2024 (2 lines)." in weeks  # the week's one day's one session
        session = server.requests[0]["messages"][-1]["content"]
        assert "Alice: I adopted a cat called Miso in Paris." in session

        assert cube.timeline(summarize=True, limit=1)[0].summary == march.summary
        assert len(server.requests) == 5  # nothing changed: no call

        cube.add([{"role": "user", "name": "Alice", "content": "Obrigada is thank you in Portuguese.",
                   "time": DAYS["s3"] + timedelta(hours=1)}], session_id="s3", infer=False)
        cube.timeline(summarize=True, limit=1)
        asked = [r["messages"][-1]["content"].split(":\n", 1)[0] for r in server.requests[5:]]
        assert asked == ["Conversation s3 on 20 March 2024", "The weeks of 2024-03, in order"]
        assert "Obrigada" in server.requests[5]["messages"][-1]["content"]


def test_the_timeline_over_rest_and_the_cli(cube, mos: MemOS, tmp_path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from memkern.cli.main import app
    from memkern.server import create_app

    with TestClient(create_app(mos, auth="off")) as api:
        weeks = api.get("/v1/cubes/t/timeline", params={"level": "week", "since": "2024-03-10"})
        bad = api.get("/v1/cubes/t/timeline", params={"level": "fortnight"})
    assert weeks.status_code == 200 and [n["key"] for n in weeks.json()] == ["2024-W12", "2024-W14"]
    assert bad.status_code == 422
    mos.close()
    shown = CliRunner().invoke(app, ["--db", str(tmp_path / "m.db"), "timeline", "t", "--level", "day"],
                               env={"COLUMNS": "140"})
    assert shown.exit_code == 0, shown.output
    assert re.search(r"2024-03-04\s+s1\s+Miso, Paris\s+Alice: ", shown.output)
    as_json = CliRunner().invoke(app, ["--db", str(tmp_path / "m.db"), "--json", "timeline", "t"])
    assert [n["key"] for n in json.loads(as_json.output)] == ["2024-03", "2024-04"]


def test_the_next_process_reads_the_summaries_and_a_delete_drops_them(tmp_path, embedder) -> None:
    with FakeOpenAI(handler=_summariser) as server:
        def opened() -> MemOS:
            return MemOS(tmp_path / "m.db", embedder=embedder,
                         llm=OpenAICompatibleLLM(server.base_url, "fake", timeout_s=5, retries=0))

        first = opened()
        _fill(first.create_cube("t"))
        first.get_cube("t").timeline("week", summarize=True)
        written = len(server.requests)
        first.close()
        saved = list(tmp_path.rglob("summaries.json"))
        assert len(saved) == 1 and "Summary of Conversation s1" in saved[0].read_text()

        second = opened()
        cube = second.get_cube("t")
        assert all(n.summary for n in cube.timeline("week", summarize=True))
        assert len(server.requests) == written  # read back, not written again
        cube.delete(cube.get_all(filters={"session_id": "s1"}).items[0].id)
        assert list(tmp_path.rglob("summaries.json")) == []  # the delete removed the file with the index copy
        cube.timeline("week", since=date(2024, 3, 10), summarize=True)
        assert len(server.requests) == written + 2  # W12 and W14 (one session each) written again, not kept
        second.close()
