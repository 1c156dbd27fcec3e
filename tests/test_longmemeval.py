"""``memkern bench longmemeval`` on a tiny LongMemEval-format file built here (real store, real embedder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memkern.bench.longmemeval import format_report, load_longmemeval, question_scores, run_longmemeval
from memkern.bench.metrics import RankedHit
from memkern.errors import InvalidInputError

FILLER = [
    [{"role": "user", "content": "Can you suggest a recipe for banana bread?"},
     {"role": "assistant", "content": "Mash three ripe bananas, mix with flour, sugar and butter, bake an hour."}],
    [{"role": "user", "content": "What are good stretches after running?"},
     {"role": "assistant", "content": "Try hamstring and calf stretches, holding each for thirty seconds."}],
    [{"role": "user", "content": "How do I repot a fern?"},
     {"role": "assistant", "content": "Choose a slightly larger pot and use peat-rich soil."}],
]


def _question(qid: str, qtype: str, question: str, evidence: list[list[dict]], answer_ids: list[str]) -> dict:
    sessions = FILLER + evidence
    ids = [f"filler_{i}" for i in range(len(FILLER))] + answer_ids
    dates = [f"2023/05/{10 + i:02d} (Wed) 10:00" for i in range(len(sessions))]
    return {"question_id": qid, "question_type": qtype, "question": question, "answer": "x",
            "question_date": "2023/06/01 (Thu) 09:00", "haystack_sessions": sessions,
            "haystack_session_ids": ids, "haystack_dates": dates, "answer_session_ids": answer_ids}


@pytest.fixture()
def data_file(tmp_path: Path) -> Path:
    dog = [{"role": "user", "content": "I adopted a greyhound named Biscuit last week.", "has_answer": True},
           {"role": "assistant", "content": "Congratulations on adopting Biscuit!"}]
    trips = [[{"role": "user", "content": "I went kayaking on Lake Tahoe in April.", "has_answer": True}],
             [{"role": "user", "content": "Kayaking again, this time on the Russian River.", "has_answer": True}]]
    items = [
        _question("q1", "single-session-user", "What is the name of my greyhound?", [dog], ["answer_dog"]),
        _question("q2", "multi-session", "Where did I go kayaking?", trips, ["answer_k1", "answer_k2"]),
        _question("q3_abs", "single-session-user", "What is my cat called?", [dog], ["answer_dog"]),
    ]
    path = tmp_path / "lme.json"
    path.write_text(json.dumps(items), encoding="utf-8")
    return path


def test_loader_reads_turn_labels_and_dates(data_file: Path) -> None:
    questions = load_longmemeval(data_file)
    assert [q.id for q in questions] == ["q1", "q2", "q3_abs"]
    first = questions[0]
    assert first.answer_turns == {"answer_dog#0"}
    assert first.conversation.sessions[0].time is not None and first.date is not None
    assert questions[2].abstention and not first.abstention


def test_scores_sessions_all_and_turns(data_file: Path) -> None:
    question = load_longmemeval(data_file)[1]
    hits = [RankedHit(("answer_k1#0",), "a b"), RankedHit(("filler_0#0",), "c"), RankedHit(("answer_k2#0",), "d")]
    scores = question_scores(hits, question, (1, 3))
    assert scores["session_any@1"] == 1.0 and scores["session_all@1"] == 0.0
    assert scores["session_all@3"] == 1.0 and scores["turn_any@1"] == 1.0
    assert 0.0 < scores["session_ndcg@10"] < 1.0
    assert scores["context_tokens@10"] == 4.0


def test_run_reports_system_and_bm25_per_type(data_file: Path) -> None:
    result = run_longmemeval(data_file, ks=(1, 3, 5, 10))
    for side in ("system", "baseline"):
        overall = result[side]["overall"]
        assert overall["n"] == 2 and overall["n_abstention"] == 1
        assert overall["session_any@5"] == 1.0
        assert set(result[side]) == {"multi-session", "single-session-user", "overall"}
    assert result["system"]["single-session-user"]["session_any@1"] == 1.0
    assert result["system"]["multi-session"]["session_all@5"] == 1.0
    assert result["timing"]["search_ms_p95"] is not None and result["timing"]["baseline"]["search_ms_p95"] is not None
    assert result["config"]["questions"]["total"] == 3
    assert "overall" in format_report(result)


def test_bad_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"question_id": "x"}]), encoding="utf-8")
    with pytest.raises(InvalidInputError, match="missing key"):
        load_longmemeval(path)


def test_question_date_anchors_a_week_ago(tmp_path: Path) -> None:
    """Asked "as of" a time (``until``), "a week ago" counts back from it, not from today."""
    from memkern import MemOS

    with MemOS(path=tmp_path / "w.db") as mos:
        cube = mos.create_cube("w", owner="bench")
        for day, text in ((1, "I went to a concert with friends."), (8, "I went to a pottery class."),
                          (14, "I went to the dentist.")):
            cube.add(messages=[{"role": "user", "content": text, "time": f"2023-05-{day:02d}T10:00:00Z"}],
                     session_id=f"s{day}")
        hits = cube.search("Where did I go a week ago?", top_k=3, filters={"until": "2023-05-15T12:00:00Z"})
        assert hits[0].memory.provenance.session_id == "s8"
        assert hits[0].parts.date > 0


def test_first_person_questions_prefer_the_user_and_questions_about_what_it_said_the_assistant(tmp_path: Path) -> None:
    """Turns stored without names carry their role: "I" in a question is the user; the assistant is meant when
    the question refers to what it said, not when "you" only addresses it ("Can you recommend...")."""
    from memkern import MemOS

    with MemOS(path=tmp_path / "r.db") as mos:
        cube = mos.create_cube("r", owner="bench")
        cube.add(messages=[
            {"role": "user", "content": "Tell me about sourdough bread, I bake sourdough bread every weekend."},
            {"role": "assistant", "content": "Sourdough bread needs a starter; sourdough bread rises slowly."},
        ], session_id="s1")
        mine = cube.search("What bread do I bake?", top_k=2)
        yours = cube.search("What did you say sourdough bread needs?", top_k=2)
        assert mine[0].memory.provenance.speaker == "user" and mine[0].parts.speaker > 0
        assert yours[0].memory.provenance.speaker == "assistant" and yours[0].parts.speaker > 0
        asked = cube.search("Can you recommend a sourdough bread recipe for me?", top_k=2)
        assert all(hit.parts.speaker == 0 for hit in asked if hit.memory.provenance.speaker == "assistant")
        assert any(hit.parts.speaker > 0 for hit in asked if hit.memory.provenance.speaker == "user")
