"""Chat from memory (memkern.ops.chat), ``memkern chat`` and the LoCoMo answer run, against the loopback
FakeOpenAI server: every request goes through the real HTTP client."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from fake_openai import FakeOpenAI
from typer.testing import CliRunner

from memkern import MemOS
from memkern.bench.locomo import format_report, run_locomo
from memkern.cli.main import app
from memkern.errors import InvalidInputError, LLMError, LLMNotConfiguredError
from memkern.llm.http import OpenAICompatibleLLM
from memkern.prompts import NOT_AVAILABLE, ORGANISED_PROMPT_SHA256

NO_LLM = "set MEMKERN_LLM=openai with MEMKERN_LLM_BASE_URL and MEMKERN_LLM_MODEL, or MEMKERN_LLM=local"
_LINE = re.compile(r"^\[\d+\] (?:\((?P<meta>[^)]*)\) )?(?P<text>.*)$", re.MULTILINE)
_DAY = re.compile(r"^(?P<day>\d+ \w+ \d{4}), \w+ \(conversation [^)]*\):$", re.MULTILINE)


@pytest.fixture(autouse=True)
def _no_env_llm(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MEMKERN_LLM", "MEMKERN_LLM_BASE_URL", "MEMKERN_LLM_MODEL", "MEMKERN_LLM_CACHE"):
        monkeypatch.delenv(name, raising=False)


def answer(cube: Any, llm: Any, query: str, **options: Any) -> Any:
    """``cube.chat`` with ``llm`` as the kernel's model for this one call."""
    kernel = cube.session.kernel
    saved, kernel.llm = kernel.llm, llm
    try:
        return cube.chat(query, **options)
    finally:
        kernel.llm = saved


@pytest.fixture
def memos(tmp_path: Path, embedder: Any):
    with MemOS(tmp_path / "chat.db", embedder=embedder, llm=None) as mos:
        yield mos


def _fill(mos: MemOS, name: str = "friends") -> Any:
    cube = mos.create_cube(name)
    cube.add(messages=[
        {"role": "user", "name": "Caroline", "content": "I went to an LGBTQ support group yesterday, it was inspiring.",
         "time": datetime(2023, 5, 8, 13, 56, tzinfo=timezone.utc), "id": "D1:1"},
        {"role": "user", "name": "Melanie", "content": "I painted a lake sunrise, painting helps me relax.",
         "time": datetime(2023, 5, 8, 13, 58, tzinfo=timezone.utc), "id": "D1:2"},
    ], session_id="session_1")
    cube.add(messages=[
        {"role": "user", "name": "Caroline", "content": "I am researching adoption agencies.",
         "time": datetime(2023, 5, 25, 9, 0, tzinfo=timezone.utc), "id": "D2:1"},
    ], session_id="session_2")
    return cube


def _memory_lines(request: dict[str, Any]) -> list[tuple[str, str]]:
    user = request["messages"][-1]["content"]
    return [(m["meta"], m["text"]) for m in _LINE.finditer(user)]


def _grounded(request: dict[str, Any]) -> str:
    """Answer with the text of the memory that shares most words with the question."""
    user = request["messages"][-1]["content"]
    question = user.rsplit("Question:", 1)[1].split("\nAnswer:")[0].lower()
    words = set(re.findall(r"[a-z]{4,}", question))
    lines = _memory_lines(request)
    if not lines:
        return NOT_AVAILABLE
    best = max(lines, key=lambda line: len(words & set(re.findall(r"[a-z]{4,}", line[1].lower()))))
    return best[1]


def test_chat_answers_from_the_memories_and_lists_them(memos: MemOS) -> None:
    cube = _fill(memos)
    with FakeOpenAI(handler=_grounded) as server:
        llm = OpenAICompatibleLLM(server.base_url, "fake-model")
        result = answer(cube, llm, "Where did Caroline go for the support group?", top_k=3)
        assert len(server.requests) == 1
        request = server.requests[0]
    assert "support group" in result.answer                  # the fake answered from the prompt's memories
    assert result.model == "fake-model"
    assert 1 <= len(result.hits) <= 3
    assert any("support group" in hit.text for hit in result.hits)
    assert result.usage.calls == 1 and result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0
    assert result.prompt_sha256 == ORGANISED_PROMPT_SHA256
    assert result.stored == [] and result.session_id is None
    # The prompt: the instructions, and every hit under its day and conversation (the organised context).
    system, user = request["messages"][0]["content"], request["messages"][-1]["content"]
    assert "only from the memories" in system.lower() and NOT_AVAILABLE in system
    for hit in result.hits:
        assert hit.text in user
    assert "8 May 2023, Monday (conversation session_1):" in user and "Caroline: I went" in user
    assert '"yesterday" = 7 May 2023' in user                 # the resolved relative date
    assert "Question: Where did Caroline go for the support group?" in user
    # The best-ranked hit's group first (small models answer from what they read first).
    days = [m["day"] for m in _DAY.finditer(user)]
    top = result.hits[0].memory.event_time
    assert days and days[0] == f"{top.day} {top:%B %Y}"
    json.loads(result.model_dump_json())


def test_the_turns_around_the_best_hits_join_the_context(memos: MemOS) -> None:
    cube = _fill(memos)
    with FakeOpenAI(handler=_grounded) as server:
        result = answer(cube, OpenAICompatibleLLM(server.base_url, "fake-model"), "What did Melanie paint?", top_k=1)
        user = server.requests[0]["messages"][-1]["content"]
    assert [hit.text for hit in result.hits] == ["Melanie: I painted a lake sunrise, painting helps me relax.",
                                                 "Caroline: I went to an LGBTQ support group yesterday, it was inspiring."]
    assert result.hits[0].score > 0 and result.hits[1].score == 0  # the turn said before it: not a search hit
    for hit in result.hits:
        assert hit.text in user


def test_write_back_stores_the_exchange_as_two_turns(memos: MemOS) -> None:
    cube = _fill(memos)
    with FakeOpenAI(script=["Adoption agencies."]) as server:
        llm = OpenAICompatibleLLM(server.base_url, "fake-model")
        result = answer(cube, llm, "What is Caroline researching?", write_back=True, session_id="chat-1")
    assert result.answer == "Adoption agencies."
    assert result.session_id == "chat-1"
    assert [m.provenance.speaker for m in result.stored] == ["user", "assistant"]
    stored = cube.get_all({"session_id": "chat-1"})
    assert [m.text for m in stored] == ["user: What is Caroline researching?", "assistant: Adoption agencies."]
    assert all(m.kind.value == "turn" for m in stored)
    assert stored[0].event_time <= stored[1].event_time
    # Without a session, one per UTC day.
    with FakeOpenAI(script=["Painting."]) as server:
        result = answer(cube, OpenAICompatibleLLM(server.base_url, "fake-model"), "What relaxes Melanie?",
                        write_back=True)
    assert result.session_id and result.session_id.startswith("chat-") and len(result.stored) == 2


def test_no_llm_is_a_clear_error(memos: MemOS) -> None:
    cube = _fill(memos)
    with pytest.raises(LLMNotConfiguredError, match=re.escape(NO_LLM)):
        answer(cube, None, "What is Caroline researching?")


def test_empty_cube_answers_not_available_without_a_call(memos: MemOS) -> None:
    cube = memos.create_cube("empty")
    with FakeOpenAI() as server:
        result = answer(cube, OpenAICompatibleLLM(server.base_url, "fake-model"), "Anything?")
        assert server.requests == []
    assert result.answer == NOT_AVAILABLE and result.hits == [] and result.usage.calls == 0


def test_a_failing_model_raises_and_writes_nothing(memos: MemOS) -> None:
    cube = _fill(memos)
    with FakeOpenAI(script=[{"status": 400}]) as server:
        llm = OpenAICompatibleLLM(server.base_url, "fake-model", retries=0)
        with pytest.raises(LLMError):
            answer(cube, llm, "What is Caroline researching?", write_back=True, session_id="chat-x")
    assert cube.get_all({"session_id": "chat-x"}).items == []


def test_bad_input_is_refused_before_any_call(memos: MemOS) -> None:
    cube = _fill(memos)
    with FakeOpenAI() as server:
        llm = OpenAICompatibleLLM(server.base_url, "fake-model")
        with pytest.raises(InvalidInputError):
            answer(cube, llm, "   ")
        with pytest.raises(InvalidInputError):
            answer(cube, llm, "q", top_k=0)
        assert server.requests == []


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_chat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedder: Any) -> None:
    db = tmp_path / "cli.db"
    runner = CliRunner()
    result = runner.invoke(app, ["--db", str(db), "chat", "friends", "What is Caroline researching?"])
    assert result.exit_code == 1
    assert NO_LLM in result.output

    with FakeOpenAI(handler=_grounded) as server:
        monkeypatch.setenv("MEMKERN_LLM", "openai")
        monkeypatch.setenv("MEMKERN_LLM_BASE_URL", server.base_url)
        monkeypatch.setenv("MEMKERN_LLM_MODEL", "fake-model")
        with MemOS(db, llm=None) as mos:
            _fill(mos)
        result = runner.invoke(app, ["--db", str(db), "--json", "chat", "friends", "What is Caroline researching?",
                                     "--top-k", "2", "--write-back", "--session", "cli-chat"])
        assert result.exit_code == 0, result.output
        payload = json.loads(result.output)
        assert "adoption agencies" in payload["answer"]
        searched, around = payload["hits"][:2], payload["hits"][2:]  # the 2 hits, then the turns around them
        assert all(hit["score"] > 0 for hit in searched) and all(hit["score"] == 0 for hit in around)
        assert payload["model"] == "fake-model"
        assert payload["session_id"] == "cli-chat" and len(payload["stored"]) == 2
        result = runner.invoke(app, ["--db", str(db), "chat", "friends", "What did Melanie say about painting?"])
        assert result.exit_code == 0, result.output
        assert "lake sunrise" in result.output and "memories used" in result.output


# ------------------------------------------------------------------------------------- LoCoMo answers


def _locomo_handler(request: dict[str, Any]) -> str:
    """Plays every role of a LoCoMo run: extraction, update decisions, answers and the judge."""
    system = request["messages"][0]["content"]
    user = request["messages"][-1]["content"]
    if system.startswith("You grade answers"):
        return json.dumps({"verdict": "CORRECT" if "violin" in user.lower() else "WRONG"})
    if system.startswith("You extract"):
        facts = []
        for match in re.finditer(r"^\[(\d+)\] \S+ \(\w+\) (\w+): (.*)$", user, re.MULTILINE):
            facts.append({"text": f"{match.group(2)} said: {match.group(3)}", "kind": "fact",
                          "subject": match.group(2), "source_turns": [int(match.group(1))]})
        return json.dumps({"facts": facts})
    if system.startswith("You keep a memory store"):
        numbers = re.findall(r"^Fact (\d+)", user, re.MULTILINE)
        return json.dumps({"decisions": [{"fact": int(n), "decision": "ADD", "target": None, "reason": "new"}
                                         for n in numbers]})
    if "puppy" in user.lower() and "breed" in user.lower():
        return "Not mentioned in the conversation."
    return _grounded(request)


@pytest.fixture
def locomo_file(tmp_path: Path) -> Path:
    from test_bench_locomo import synthetic_locomo

    raw = synthetic_locomo()
    raw[0]["observation"] = {"session_1_observation": {
        "Bob": [["Bob practised the violin for hours.", "D1:2"]],
        "Alice": [["Alice has a new dachshund puppy.", ["D1:3"]]],
    }}
    path = tmp_path / "locomo-synthetic.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    return path


def test_run_locomo_with_answers_and_a_judge(locomo_file: Path, tmp_path: Path) -> None:
    with FakeOpenAI(handler=_locomo_handler) as server:
        answerer = OpenAICompatibleLLM(server.base_url, "answer-model")
        judge = OpenAICompatibleLLM(server.base_url, "judge-model")
        result = run_locomo(locomo_file, workdir=tmp_path / "store", answer_llm=answerer, judge_llm=judge)
    assert {"system", "baseline", "timing", "config", "ratios", "qa"} <= set(result)
    assert "ingest_llm" not in result and "extraction_quality" not in result
    qa = result["qa"]
    assert set(qa["categories"]) == {"1", "2", "3", "4", "5", "1-4", "all"}
    for entry in qa["categories"].values():
        assert {"n", "f1", "j", "n_judged", "n_failed"} <= set(entry)
    assert qa["categories"]["all"]["n"] == qa["questions_answered"] == 8
    assert qa["categories"]["5"]["f1"] == 1.0 and qa["categories"]["5"]["j"] is None   # "Not mentioned"
    assert qa["categories"]["4"]["n_judged"] == 3 and 0 < qa["categories"]["4"]["j"] < 1
    assert 0 < qa["categories"]["4"]["f1"] <= 1
    assert qa["llm"]["model"] == "answer-model" and qa["llm"]["calls"] == 8
    assert qa["llm"]["tokens_per_question"] > 0 and qa["llm"]["calls_per_question"] == 1.0
    assert qa["judge"]["model"] == "judge-model" and qa["judge"]["calls"] == 7 and qa["judge"]["failures"] == 0
    assert qa["latency_ms_p50"] > 0 and qa["latency_ms_p95"] >= qa["latency_ms_p50"]
    assert len(qa["answers"]) == 8 and {"question", "gold", "answer", "f1", "j"} <= set(qa["answers"][0])
    config = result["config"]
    assert config["models"]["answer_llm"] == "answer-model" and config["models"]["judge_llm"] == "judge-model"
    assert len(config["prompts"]["answer"]) == 64 and len(config["prompts"]["judge"]) == 64
    assert config["answer"]["top_k"] == 10
    assert config["git_commit"] is None or len(config["git_commit"]) == 40
    report = format_report(result)
    assert "answers: model answer-model" in report and "F1" in report
    json.dumps(result)


def test_run_locomo_with_llm_ingestion_and_a_question_limit(locomo_file: Path, tmp_path: Path) -> None:
    with FakeOpenAI(handler=_locomo_handler) as server:
        llm = OpenAICompatibleLLM(server.base_url, "fake-model")
        result = run_locomo(locomo_file, workdir=tmp_path / "store", answer_llm=llm, ingest_llm=llm,
                            limit_questions=3)
    assert result["qa"]["questions_answered"] == 3 and "judge" not in result["qa"]
    assert "j" not in result["qa"]["categories"]["1-4"]
    ingest = result["ingest_llm"]
    assert ingest["model"] == "fake-model" and ingest["turns"] == 9
    assert ingest["calls"] >= 4 and ingest["calls_per_turn"] > 0 and ingest["tokens_per_turn"] > 0
    assert "extract" in ingest["by_operation"] and "chat" not in ingest["by_operation"]
    quality = result["extraction_quality"]
    assert quality["observations"] == 2 and quality["facts"] > 0
    assert quality["method"]["recall_cosine_threshold"] == 0.75
    assert "is >= 0.5" in quality["method"]["support"] and "50%" in quality["method"]["support"]
    assert quality["support"] == 1.0          # every fact repeats the turn it cites
    assert 0.0 <= quality["recall"] <= 1.0
    assert result["config"]["models"]["ingest_llm"] == "fake-model"
    assert "extraction" in format_report(result)


def test_long_neighbours_stay_out_of_the_context() -> None:
    from memkern.models import Hit, LinkKind, MemoryItem, MemoryLink, ScoreParts
    from memkern.ops.chat import NEIGHBOUR_CHARS, with_conversation_links

    def item(memory_id: str, text: str) -> MemoryItem:
        return MemoryItem(id=memory_id, cube_id="c", owner="o", text=text)

    hit = Hit(memory=item("h", "Bob: Yes, twice!"), score=1.0, parts=ScoreParts())
    around = {"h": [MemoryLink(kind=LinkKind.FOLLOWS, memory=item("q", "Alice: Did you run the Lisbon race?")),
                    MemoryLink(kind=LinkKind.FOLLOWED_BY, memory=item("long", "x" * (NEIGHBOUR_CHARS + 1)))]}
    shown = with_conversation_links([hit], lambda memory: around[memory.id])
    assert [h.id for h in shown] == ["h", "q"] and shown[1].score == 0
