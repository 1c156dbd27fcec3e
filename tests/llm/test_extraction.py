"""LLM extraction through a real loopback OpenAI server (tests/fake_openai.py), never a mock.

The turns are stored before extraction runs, so every failure of the model (garbage,
hallucinated handles, an unreachable server) leaves them in place and is reported.
"""

from __future__ import annotations

import json
import re
import socket
from datetime import datetime, timedelta, timezone

import pytest
from fake_openai import FakeOpenAI

from memkern import MemOS
from memkern.llm.http import OpenAICompatibleLLM
from memkern.reader.llm_reader import ExtractedFact, load_json, parse_items

T0 = datetime(2023, 5, 8, 10, 0, tzinfo=timezone.utc)
FAST = {"backoff_s": 0.001, "max_backoff_s": 0.01, "timeout_s": 5}

CHAT = [
    {"role": "user", "name": "Alice", "content": "I moved to Lisbon last month, finally!", "id": "m1", "time": T0},
    {"role": "user", "name": "Bob", "content": "Nice! I adopted a cat named Miso yesterday.", "id": "m2",
     "time": T0 + timedelta(minutes=1)},
    {"role": "user", "name": "Alice", "content": "Cute. How are you?", "id": "m3", "time": T0 + timedelta(minutes=2)},
]


def fact(text, turns, kind="fact", subject=None, time_expression=None, date=None, confidence=0.9):
    return {"text": text, "kind": kind, "subject": subject, "time_expression": time_expression, "date": date,
            "confidence": confidence, "source_turns": turns}


def facts_json(*items) -> str:
    return json.dumps({"facts": list(items)})


def make_llm(server: FakeOpenAI, **kwargs) -> OpenAICompatibleLLM:
    return OpenAICompatibleLLM(server.base_url, "fake", **{**FAST, **kwargs})


@pytest.fixture
def open_mos(tmp_path, embedder):
    made = []

    def make(llm):
        mos = MemOS(tmp_path / f"m{len(made)}.db", embedder=embedder, llm=llm)
        made.append(mos)
        return mos

    yield make
    for mos in made:
        mos.close()


def stored_facts(cube):
    return cube.get_all(filters={"kind": ["fact", "event", "preference"]}).items


def test_valid_extraction_keeps_provenance_and_resolves_dates(open_mos):
    answer = facts_json(
        fact("Alice moved to Lisbon.", [1], kind="event", subject="Alice", time_expression="last month"),
        fact("Bob adopted a cat named Miso.", [2], kind="event", subject="Bob", time_expression="yesterday",
             date="2023-05-07", confidence=0.8),
    )
    with FakeOpenAI(script=[answer]) as server:
        cube = open_mos(make_llm(server)).create_cube("c")
        result = cube.add(CHAT, session_id="s1")
        sent = server.requests

    assert len(sent) == 1
    body = sent[0]
    assert body["response_format"]["type"] == "json_schema"
    assert "source_turns" in json.dumps(body["response_format"]["json_schema"]["schema"])
    prompt = body["messages"][-1]["content"]
    assert "[1] 2023-05-08 (Monday) Alice: I moved to Lisbon last month" in prompt
    assert "[3]" in prompt and "m1" not in prompt  # handles only, never ids

    report = result.extraction
    assert report.status == "ok" and report.llm_calls == 1 and report.turns == 3
    assert (report.facts_proposed, report.facts_accepted, report.facts_rejected) == (2, 2, 0)
    turns = [m for m in result.added if m.kind.value == "turn"]
    assert len(turns) == 3
    assert [d.action for d in result.decisions] == ["add", "add"]

    facts = {m.text: m for m in stored_facts(cube)}
    lisbon, miso = facts["Alice moved to Lisbon."], facts["Bob adopted a cat named Miso."]
    assert lisbon.provenance.message_ids == ["m1"] and lisbon.provenance.session_id == "s1"
    assert lisbon.provenance.speaker == "Alice"
    assert lisbon.metadata["subject"] == "Alice" and lisbon.metadata["extracted_by"] == "fake"
    assert lisbon.metadata["confidence"] == 0.9
    assert lisbon.metadata["source_memory_ids"] == [turns[0].id]
    # "last month" resolved by memkern.reader.temporal against the turn's date.
    assert lisbon.event_time == datetime(2023, 4, 1, tzinfo=timezone.utc) == lisbon.valid_from
    assert lisbon.metadata["time_source"] == "temporal"
    assert miso.event_time.date().isoformat() == "2023-05-07" and miso.provenance.message_ids == ["m2"]
    # Every fact write is in the operation log, by the model.
    ops = {(o.memory_id, o.op): o for o in cube.operations()}
    assert ops[(lisbon.id, "add")].actor == "llm:fake"
    # Facts are searchable like any memory.
    assert cube.search("Where does Alice live now?", top_k=10)[0].memory.kind.value in ("event", "turn")


@pytest.mark.parametrize("answer", [
    # Prose around the object: the back end refuses it as JSON; the reader digs the object out.
    'Sure! Here you go: {"facts": [{"text": "Alice moved to Lisbon.", "kind": "event", "source_turns": [1]}]}',
    # Valid JSON, one invalid item: the item is dropped and counted.
    facts_json(fact("Alice moved to Lisbon.", [1]), {"kind": "opinion", "source_turns": [2]}),
    # A bare list instead of the object.
    json.dumps([fact("Alice moved to Lisbon.", ["[1]"])]),
])
def test_malformed_output_is_repaired_without_a_retry(open_mos, answer):
    with FakeOpenAI(script=[answer]) as server:
        cube = open_mos(make_llm(server)).create_cube("c")
        result = cube.add(CHAT, session_id="s1")
        calls = len(server.requests)
    report = result.extraction
    assert calls == 1 and report.llm_calls == 1
    assert report.status == "repaired", report
    assert report.facts_accepted == 1
    assert [m.text for m in stored_facts(cube)] == ["Alice moved to Lisbon."]
    if '"opinion"' in answer:
        assert report.facts_rejected == 1 and any("invalid item" in r for r in report.rejections)


def test_invalid_answer_is_retried_once_with_the_validation_error(open_mos):
    script = ['{"facts": "none of them"}', facts_json(fact("Bob adopted a cat named Miso.", [2]))]
    with FakeOpenAI(script=script) as server:
        cube = open_mos(make_llm(server)).create_cube("c")
        result = cube.add(CHAT, session_id="s1")
        sent = server.requests
    assert len(sent) == 2
    retry = sent[1]["messages"]
    assert retry[-2] == {"role": "assistant", "content": '{"facts": "none of them"}'}
    assert "not valid" in retry[-1]["content"] and "must be a list" in retry[-1]["content"]
    assert result.extraction.status == "retried" and result.extraction.llm_calls == 2
    assert [m.text for m in stored_facts(cube)] == ["Bob adopted a cat named Miso."]


def test_garbage_twice_falls_back_and_the_turns_stay(open_mos):
    with FakeOpenAI(script=["garbage", {"raw": "garbage"}, facts_json()]) as server:
        cube = open_mos(make_llm(server, retries=0)).create_cube("c")
        result = cube.add(CHAT, session_id="s1")
        calls = len(server.requests)
    assert calls == 2  # one try, one retry, then give up: no third call
    report = result.extraction
    assert report.status == "fallback" and report.llm_calls == 2
    assert report.error and "twice" in report.error
    assert report.batches[0].status == "fallback"
    assert len(result.added) == 3 and result.decisions == []
    assert len(cube.get_all(filters={"kind": "turn"})) == 3
    assert stored_facts(cube) == []
    assert cube.search("Lisbon", top_k=3)[0].memory.provenance.message_ids == ["m1"]


def test_hallucinated_or_missing_source_handles_are_rejected(open_mos):
    answer = facts_json(
        fact("Alice moved to Lisbon.", [1]),
        fact("Alice has three brothers.", [7]),
        fact("Bob is a pilot.", []),
        fact("Bob adopted a cat named Miso.", [2, 9]),  # one valid handle: kept, citing it only
    )
    with FakeOpenAI(script=[answer]) as server:
        cube = open_mos(make_llm(server)).create_cube("c")
        result = cube.add(CHAT, session_id="s1")
    report = result.extraction
    assert (report.facts_proposed, report.facts_accepted, report.facts_rejected) == (4, 2, 2)
    assert any("[7]" in r for r in report.rejections)
    assert any("cited none" in r for r in report.rejections)
    texts = {m.text: m for m in stored_facts(cube)}
    assert set(texts) == {"Alice moved to Lisbon.", "Bob adopted a cat named Miso."}
    assert texts["Bob adopted a cat named Miso."].provenance.message_ids == ["m2"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_llm_never_fails_the_add(open_mos):
    llm = OpenAICompatibleLLM(f"http://127.0.0.1:{_free_port()}/v1", "fake", retries=1, **FAST)
    cube = open_mos(llm).create_cube("c")
    messages = [{"role": "user", "content": f"Turn number {i} about hiking.", "id": f"t{i}",
                 "time": T0 + timedelta(minutes=i)} for i in range(30)]
    result = cube.add(messages, session_id="s1")
    assert len(result.added) == 30
    assert len(cube.get_all(filters={"kind": "turn"})) == 30
    report = result.extraction
    assert report.status == "fallback"
    assert "could not be reached" in report.error
    # The second window is not sent to a server that just failed.
    assert report.llm_calls == 1 and len(report.batches) == 2
    assert report.batches[1].error.startswith("skipped")
    assert llm.usage.as_dict()["extract"]["failures"] == 1


def test_infer_false_and_infer_true_without_llm(open_mos):
    with FakeOpenAI(script=[]) as server:
        cube = open_mos(make_llm(server)).create_cube("c")
        result = cube.add(CHAT, session_id="s1", infer=False)
        assert server.requests == []
    assert result.extraction is None and len(result.added) == 3
    plain = open_mos(None).create_cube("p")
    from memkern.errors import LLMNotConfiguredError

    with pytest.raises(LLMNotConfiguredError, match="infer=True needs an LLM"):
        plain.add(CHAT, session_id="s1", infer=True)
    assert plain.get_all().items == []


def test_thirty_turns_cost_at_most_one_call_per_ten_turns(open_mos):
    def answer(request):
        system = request["messages"][0]["content"]
        user = request["messages"][-1]["content"]
        if system.startswith("You extract"):
            handles = [int(h) for h in re.findall(r"^\[(\d+)\]", user, re.MULTILINE)]
            first = re.search(r"^\[1\] \S+ \(\w+\) (\w+): Turn (\d+)", user, re.MULTILINE)
            return facts_json(
                fact(f"{first.group(1)} described hike number {first.group(2)}.", [1], kind="event"),
                fact(f"Hike {first.group(2)} ended at a lake.", [handles[-1]], kind="event"),
            )
        facts = re.findall(r"^Fact (\d+)", user, re.MULTILINE)
        return json.dumps({"decisions": [{"fact": int(n), "decision": "ADD", "target": None, "reason": "new"}
                                         for n in facts]})

    messages = [{"role": "user", "name": "Alice" if i % 2 else "Bob", "content": f"Turn {i}: we walked on.",
                 "id": f"t{i}", "time": T0 + timedelta(minutes=i)} for i in range(30)]
    with FakeOpenAI(handler=answer) as server:
        llm = make_llm(server)
        cube = open_mos(llm).create_cube("c")
        result = cube.add(messages, session_id="s1")
        calls = len(server.requests)
    assert result.extraction.turns == 30 and result.extraction.status == "ok"
    assert [b.turns for b in result.extraction.batches] == [15, 15]
    assert calls <= 30 / 10, calls
    assert llm.usage.as_dict()["extract"]["calls"] == 2
    assert len(stored_facts(cube)) == 4


def test_json_repair_helpers():
    assert load_json('{"a": 1}') == ({"a": 1}, False)
    assert load_json('```json\n{"a": 1}\n```') == ({"a": 1}, True)
    assert load_json('noise {"a": [1, {"b": 2}]} trailing {"c": 3}') == ({"a": [1, {"b": 2}]}, True)
    with pytest.raises(ValueError):
        load_json("no json here")
    items, repaired, dropped = parse_items('{"facts": [{"text": " x ", "kind": "Fact", "confidence": 85,'
                                           ' "date": "sometime", "source_turns": "[2], [3]"}]}',
                                           "facts", ExtractedFact)
    assert not repaired and dropped == []
    assert (items[0].text, items[0].kind, items[0].confidence, items[0].date, items[0].source_turns) == \
        ("x", "fact", 0.85, None, [2, 3])
    with pytest.raises(ValueError, match="no valid item"):
        parse_items('{"facts": [{"kind": "fact"}]}', "facts", ExtractedFact)


def test_an_answer_cut_off_while_repeating_keeps_its_whole_items_without_a_retry(open_mos):
    """A small model that starts repeating runs into max_tokens: the whole items before the cut are
    kept, the repeats are dropped, and no second call is spent on a retry."""
    first = fact("Alice moved to Lisbon.", [1], kind="event")
    repeat = fact("Bob adopted a cat named Miso.", [2], kind="event")
    cut = facts_json(first, repeat, repeat, repeat)[:-40]  # ... mid-way through the last item
    with FakeOpenAI(script=[cut]) as server:
        cube = open_mos(make_llm(server)).create_cube("c")
        result = cube.add(CHAT, session_id="s1")
        calls = len(server.requests)
        budget = server.requests[0]["max_tokens"]
    assert calls == 1 and budget == 256 + 64 * len(CHAT)
    assert result.extraction.status == "repaired"
    assert sorted(m.text for m in stored_facts(cube)) == ["Alice moved to Lisbon.", "Bob adopted a cat named Miso."]
    assert any(r.startswith("repeated item") for r in result.extraction.rejections)


def test_a_fact_citing_the_wrong_turn_is_pinned_on_the_turn_that_says_it(open_mos):
    # The model cites Alice's turn [1] for what Bob said in [2]: the speaker would be wrong.
    answer = facts_json(fact("Bob adopted a cat named Miso yesterday.", [1], kind="event"),
                        fact("Alice is doing well.", [3]))  # a paraphrase with little overlap keeps its citation
    with FakeOpenAI(script=[answer]) as server:
        cube = open_mos(make_llm(server)).create_cube("c")
        cube.add(CHAT, session_id="s1")
    found = {m.text: m for m in stored_facts(cube)}
    miso = found["Bob adopted a cat named Miso yesterday."]
    assert miso.provenance.message_ids == ["m2"] and miso.provenance.speaker == "Bob"
    assert miso.metadata["cited_turns"] == [1]
    assert found["Alice is doing well."].provenance.message_ids == ["m3"]


def test_salvage_list_takes_only_whole_items():
    from memkern.reader.llm_reader import salvage_list

    assert salvage_list('{"facts": [{"a": 1}, {"b": [2, 3]}, {"c": "unfinish', "facts") == [{"a": 1}, {"b": [2, 3]}]
    assert salvage_list('{"facts": [{"a": ', "facts") is None
    assert salvage_list('{"other": [1, 2', "facts") is None
    with pytest.raises(ValueError, match="no JSON"):
        parse_items('{"facts": [{"te', "facts", ExtractedFact)


def test_a_time_expression_the_turns_never_said_is_not_used_to_date_the_fact(open_mos):
    answer = facts_json(
        fact("Bob adopted a cat named Miso.", [2], kind="event", time_expression="yesterday", date="2023-05-07"),
        # copied from the prompt's examples: neither the words nor the date come from turn [1]
        fact("Alice moved to Lisbon.", [1], kind="event", time_expression="in May 2022", date="2022-05-01"))
    with FakeOpenAI(script=[answer]) as server:
        cube = open_mos(make_llm(server)).create_cube("c")
        cube.add(CHAT, session_id="s1")
    found = {m.text: m for m in stored_facts(cube)}
    assert found["Bob adopted a cat named Miso."].event_time.date().isoformat() == "2023-05-07"
    lisbon = found["Alice moved to Lisbon."]
    assert lisbon.event_time == T0 and "time_expression" not in lisbon.metadata  # the turn's own time


def test_cli_add_reports_extraction_and_decisions(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from memkern.cli.main import app

    messages = tmp_path / "chat.json"
    messages.write_text(json.dumps([{**m, "time": m["time"].isoformat()} for m in CHAT]))
    answer = facts_json(fact("Alice moved to Lisbon.", [1], kind="event"))
    with FakeOpenAI(script=[answer]) as server:
        for name, value in (("MEMKERN_LLM", "openai"), ("MEMKERN_LLM_BASE_URL", server.base_url),
                            ("MEMKERN_LLM_MODEL", "fake")):
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("MEMKERN_LLM_CACHE", raising=False)
        db = str(tmp_path / "cli.db")
        runner = CliRunner()
        assert runner.invoke(app, ["--db", db, "cube", "create", "c"]).exit_code == 0
        result = runner.invoke(app, ["--db", db, "--json", "add", "c", "--messages", str(messages), "--session", "s1"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["extraction"]["llm_calls"] == 1 and payload["extraction"]["facts_accepted"] == 1
    assert [d["action"] for d in payload["decisions"]] == ["add"]
