"""Answer conditions (organised, plain top-k, full history) and ``bench longmemeval --answer``, against the
loopback FakeOpenAI server: real store, real embedder, every model call over HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fake_openai import FakeOpenAI

from memkern import MemOS
from memkern.bench.conditions import DoesNotFit, answer_in_condition, parse_conditions
from memkern.bench.lme_qa import JUDGE_TEMPLATES, rule_correct, stratified_subset
from memkern.bench.locomo import format_report as locomo_report
from memkern.bench.locomo import run_locomo
from memkern.bench.locomo_data import Conversation, Session, Turn
from memkern.bench.longmemeval import format_report, load_longmemeval, run_longmemeval
from memkern.errors import InvalidInputError
from memkern.llm.http import OpenAICompatibleLLM
from memkern.prompts import NOT_AVAILABLE, organised_context, plain_messages


@pytest.fixture(autouse=True)
def _no_env_llm(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MEMKERN_LLM", "MEMKERN_LLM_BASE_URL", "MEMKERN_LLM_MODEL", "MEMKERN_LLM_CACHE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def moved(tmp_path: Path, embedder: Any) -> Any:
    """Alice lived in Paris, then moved to Lisbon (said twice); Bob's line is noise."""
    with MemOS(tmp_path / "moved.db", embedder=embedder, llm=None) as mos:
        cube = mos.create_cube("moved")
        cube.add(messages=[{"role": "user", "name": "Alice", "content": "I live in Paris.", "time": "2023-05-01T10:00"},
                           {"role": "user", "name": "Bob", "content": "Paris is lovely.", "time": "2023-05-01T10:01"}],
                 session_id="s1", infer=False)
        cube.add(messages=[{"role": "user", "name": "Alice", "content": "I moved to Lisbon.", "time": "2023-06-08T10:00"},
                           {"role": "user", "name": "Alice", "content": "I moved to Lisbon.", "time": "2023-06-08T10:05"}],
                 session_id="s2", infer=False)
        yield cube


def test_organised_context_is_dated_grouped_deduplicated_and_current_first(moved: Any) -> None:
    hits = moved.search("Where does Alice live?", top_k=10)
    context = organised_context(hits)
    lines = context.splitlines()
    assert lines[0] == "Current facts:" and "residence of Alice" in lines[1] and "Lisbon" in lines[1]
    june, may = context.index("8 June 2023, Thursday (conversation s2):"), context.index("1 May 2023, Monday")
    top_day = f"{hits[0].memory.event_time.day} {hits[0].memory.event_time:%B %Y}"
    assert (june < may) == (top_day == "8 June 2023")        # the group of the best-ranked hit first
    assert context.count("I moved to Lisbon.") == 1            # the repeat is dropped
    assert "[no longer true: residence of Alice changed to" in context
    plain = plain_messages("Where does Alice live?", hits)[1]["content"]
    assert plain.count("I moved to Lisbon.") == 2 and "no longer true" not in plain and "Current facts" not in plain
    assert len(context) < len(plain)


def test_lines_carry_their_date_only_for_a_question_about_time(moved: Any) -> None:
    hits = moved.search("Where does Alice live?", top_k=10)
    where = organised_context(hits, query="Where does Alice live?")
    when = organised_context(hits, query="When did Alice move to Lisbon?")
    assert "8 June 2023, Thursday (conversation s2):" in where and "(8 June 2023)" not in where
    assert "] Alice: I moved to Lisbon." in where or "] I moved to Lisbon." in where
    assert "(8 June 2023" in when                              # "when": the date beside the fact, to copy
    assert "(8 June 2023" in organised_context(hits)           # no question: dated, as before


def test_each_condition_shows_its_own_context_and_full_history_that_does_not_fit_is_not_sent(moved: Any) -> None:
    conversation = Conversation(sample_id="c", speakers=["Alice", "Bob"], questions=[], sessions=[
        Session(id="s1", index=1, time=None, turns=[Turn(dia_id="s1#0", speaker="Alice", text="I live in Paris.")])])
    with FakeOpenAI(handler=lambda request: "Lisbon") as server:
        llm = OpenAICompatibleLLM(server.base_url, "fake-model")
        answers = {c: answer_in_condition(c, llm, "Where does Alice live?", moved, conversation, top_k=5)
                   for c in parse_conditions("organised,plain,full")}
        users = [r["messages"][-1]["content"] for r in server.requests]
        assert "Current facts:" in users[0] and users[1].startswith("Memories (most relevant first):")
        assert users[2].startswith("Conversations:") and "Alice: I live in Paris." in users[2]
        llm.n_ctx = 8  # type: ignore[attr-defined]  # a window the history cannot fit: no call is made
        with pytest.raises(DoesNotFit, match="tokens"):
            answer_in_condition("full", llm, "Where does Alice live?", moved, conversation, top_k=5)
        assert len(server.requests) == 3
    assert {a.answer for a in answers.values()} == {"Lisbon"} and all(a.usage.calls == 1 for a in answers.values())
    with pytest.raises(InvalidInputError):
        parse_conditions("organised,best")


# ------------------------------------------------------------------------------------- LongMemEval

def _session(*turns: tuple[str, str, bool]) -> list[dict[str, Any]]:
    return [{"role": role, "content": text, **({"has_answer": True} if evidence else {})}
            for role, text, evidence in turns]


def _question(qid: str, qtype: str, question: str, answer: str, evidence: list[dict[str, Any]]) -> dict[str, Any]:
    filler = _session(("user", "How do I repot a fern?", False), ("assistant", "Use a larger pot.", False))
    return {"question_id": qid, "question_type": qtype, "question": question, "answer": answer,
            "question_date": "2023/06/01 (Thu) 09:00", "haystack_sessions": [filler, evidence],
            "haystack_session_ids": [f"filler_{qid}", f"answer_{qid}"],
            "haystack_dates": ["2023/05/10 (Wed) 10:00", "2023/05/20 (Sat) 10:00"],
            "answer_session_ids": [f"answer_{qid}"]}


@pytest.fixture
def lme_file(tmp_path: Path) -> Path:
    dog = _session(("user", "I adopted a greyhound named Biscuit.", True), ("assistant", "Congratulations!", False))
    items = [
        _question("q1", "single-session-user", "What is the name of my greyhound?", "Biscuit", dog),
        _question("q2", "temporal-reasoning", "How many days ago did I adopt my greyhound?", "12 days", dog),
        _question("q3_abs", "single-session-user", "What is my cat called?", "You did not mention a cat", dog),
        _question("q4", "single-session-user", "What breed is my dog?", "greyhound", dog),
    ]
    path = tmp_path / "lme.json"
    path.write_text(json.dumps(items), encoding="utf-8")
    return path


def _answerer(request: dict[str, Any]) -> str:
    user = request["messages"][-1]["content"]
    if "cat" in user.split("Question:")[-1]:
        return NOT_AVAILABLE
    return "Biscuit" if "name" in user.split("Question:")[-1] else "I am not sure."


def test_longmemeval_answers_are_scored_by_containment_without_a_judge(lme_file: Path) -> None:
    with FakeOpenAI(handler=_answerer) as server:
        llm = OpenAICompatibleLLM(server.base_url, "fake-model")
        result = run_longmemeval(lme_file, answer_llm=llm, answer_conditions=("organised", "plain"))
        assert len(server.requests) == 8                       # 4 questions x 2 conditions
    assert set(result["qa"]) == {"organised", "plain"}
    for summary in result["qa"].values():
        overall = summary["types"]["overall"]
        assert overall["n"] == 4 and overall["n_correct"] == 2  # Biscuit, and the abstention
        assert summary["types"]["abstention"] == {**summary["types"]["abstention"], "n": 1, "n_correct": 1}
        assert summary["llm"]["tokens_per_question"] > 0
    assert "containment" in result["config"]["answer"]["scoring"]
    assert result["config"]["question_ids"] == ["q1", "q2", "q3_abs", "q4"]
    report = format_report(result)
    assert "organised" in report and "plain" in report and "(2/4)" in report
    json.dumps(result)


def test_longmemeval_judge_gets_the_prompt_of_the_question_type(lme_file: Path) -> None:
    def judge(request: dict[str, Any]) -> str:
        return "Yes." if "Biscuit" in request["messages"][-1]["content"].split("Model Response:")[-1] else "no"

    with FakeOpenAI(handler=_answerer) as answers, FakeOpenAI(handler=judge) as judging:
        result = run_longmemeval(lme_file, answer_llm=OpenAICompatibleLLM(answers.base_url, "fake-model"),
                                 judge_llm=OpenAICompatibleLLM(judging.base_url, "judge-model"), stratified=3)
        prompts = [r["messages"][-1]["content"] for r in judging.requests]
    assert result["config"]["question_ids"] == ["q1", "q2", "q3_abs"]  # one per stratum, file order
    assert any("off-by-one errors" in p for p in prompts)              # the temporal-reasoning template
    assert any("unanswerable question" in p for p in prompts)          # the abstention template
    overall = result["qa"]["organised"]["types"]["overall"]
    assert overall["n"] == 3 and overall["n_correct"] == 1             # the judge said yes to Biscuit only
    assert "judge-model" in result["config"]["answer"]["scoring"] and len(result["config"]["prompts"]["judge"]) == 64


def test_stratified_subset_and_rule(lme_file: Path) -> None:
    questions = load_longmemeval(lme_file)
    assert [q.id for q in stratified_subset(questions, 2)] == ["q1", "q3_abs"]  # strata in name order
    assert [q.id for q in stratified_subset(questions, 10)] == ["q1", "q2", "q3_abs", "q4"]
    assert rule_correct("It is Biscuit.", "Biscuit", False) and not rule_correct("Biscuits", "Biscuit", False)
    assert rule_correct("That is not mentioned.", "", True) and not rule_correct("Biscuit", "", True)
    assert set(JUDGE_TEMPLATES) >= {"single-session-preference", "knowledge-update", "abstention"}


# ------------------------------------------------------------------------------------------ LoCoMo

def test_locomo_conditions_in_one_run(tmp_path: Path) -> None:
    from test_bench_locomo import synthetic_locomo

    path = tmp_path / "locomo.json"
    path.write_text(json.dumps(synthetic_locomo()), encoding="utf-8")
    with FakeOpenAI(handler=lambda request: "violin") as server:
        llm = OpenAICompatibleLLM(server.base_url, "fake-model")
        llm.n_ctx = 30  # type: ignore[attr-defined]  # the full history does not fit this window
        result = run_locomo(path, workdir=tmp_path / "store", answer_llm=llm, limit_questions=3,
                            answer_conditions=["organised", "plain", "full"])
        assert len(server.requests) == 6                       # full sent nothing
    runs = result["qa_conditions"]
    assert [runs[c]["questions_answered"] for c in ("organised", "plain", "full")] == [3, 3, 0]
    assert runs["full"]["did_not_fit"]["n"] == 3 and runs["full"]["did_not_fit"]["context_window"] == 30
    assert result["qa"] == runs["organised"] and result["config"]["answer"]["conditions"] == ["organised", "plain",
                                                                                               "full"]
    report = locomo_report(result)
    assert "did not fit" in report and "f1 of 1-4" in report and " - " not in report.split("f1 of 1-4")[1].splitlines()[3]


def test_cli_longmemeval_answer_with_a_stratified_limit(lme_file: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from memkern.cli.main import app

    with FakeOpenAI(handler=_answerer) as server:
        monkeypatch.setenv("MEMKERN_LLM", "openai")
        monkeypatch.setenv("MEMKERN_LLM_BASE_URL", server.base_url)
        monkeypatch.setenv("MEMKERN_LLM_MODEL", "fake-model")
        out = tmp_path / "lme-qa.json"
        result = CliRunner().invoke(app, ["bench", "longmemeval", "--data", str(lme_file), "--limit", "2", "--answer",
                                          "--conditions", "organised,plain", "--json", str(out)])
        assert result.exit_code == 0, result.output
        assert len(server.requests) == 4
    assert "questions (2): q1, q3_abs" in result.output and "correct answers per type" in result.output
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert saved["config"]["question_ids"] == ["q1", "q3_abs"] and set(saved["qa"]) == {"organised", "plain"}
    refused = CliRunner().invoke(app, ["bench", "longmemeval", "--data", str(lme_file), "--conditions", "plain"])
    assert refused.exit_code == 2 and "--answer" in refused.output
