"""The LoCoMo benchmark harness: loader quirks, metric arithmetic, the BM25 baseline, the runner's JSON.

Everything runs on a tiny synthetic conversation written in LoCoMo's format; the real data set is
never needed (nor copied) here.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from memkern.bench.bm25 import BM25Adapter, BM25Index, tokenize
from memkern.bench.locomo import format_report, run_locomo, search_enough
from memkern.bench.locomo_data import load_locomo, normalise_turn_id, parse_locomo, parse_session_time
from memkern.bench.metrics import MetricAccumulator, RankedHit, question_scores
from memkern.errors import InvalidInputError

KS = (1, 3, 5, 10, 25)


def _turn(dia_id: str, speaker: str, text: str, **extra: object) -> dict[str, object]:
    return {"speaker": speaker, "dia_id": dia_id, "text": text, **extra}


def synthetic_locomo() -> list[dict[str, object]]:
    """Two small conversations with every quirk of the real file."""
    conv_a = {
        "speaker_a": "Alice",
        "speaker_b": "Bob",
        "session_1_date_time": "1:56 pm on 8 May, 2023",
        "session_1": [
            _turn("D1:1", "Alice", "Hi Bob! How was your weekend?"),
            _turn("D1:2", "Bob", "Great, I practised the violin for hours."),
            _turn("D1:3", "Alice", "Look at my new puppy!", img_url=["https://example.invalid/x.jpg"],
                  blip_caption="a photo of a small brown dachshund on a sofa", query="puppy"),
        ],
        "session_2_date_time": "10:37 am on 27 June, 2023",
        "session_2": [
            _turn("D2:1", "Alice", "I started pottery classes in 2022."),
            _turn("D2:2", "Bob", "Nice, I went hiking in the Alps last week."),
        ],
        "session_3_date_time": "7:02 pm on 3 July, 2023",
        "session_3": [
            _turn("D3:1", "Bob", "My sister moved to Lisbon."),
            _turn("D3:2", "Alice", "I finished my first vase, it is blue."),
        ],
        # More date keys than sessions, as in the real file.
        "session_4_date_time": "9:00 am on 1 August, 2023",
        "session_5_date_time": "9:00 am on 2 August, 2023",
    }
    qa_a = [
        {"question": "What did Bob play for hours?", "answer": "violin", "evidence": ["D1:2"], "category": 4},
        {"question": "When did Alice start pottery?", "answer": 2022, "evidence": ["D2:1; D3:2"], "category": 2},
        {"question": "What did Alice make in pottery?", "answer": "a blue vase", "evidence": ["D:3:2", "D02:01"],
         "category": 1},
        {"question": "What breed is Bob's puppy?", "adversarial_answer": "dachshund", "evidence": ["D1:3"],
         "category": 5},
        {"question": "Would Bob enjoy a music festival?", "answer": "Likely yes", "evidence": [], "category": 3},
        {"question": "Where does Bob's sister live?", "answer": "Lisbon", "evidence": ["D9:9", "D", "D3:1"],
         "category": 4},
    ]
    conv_b = {
        "speaker_a": "Carol",
        "speaker_b": "Dan",
        "session_1_date_time": "8:15 am on 1 March, 2023",
        "session_1": [
            _turn("D1:1", "Carol", "I adopted a grey cat named Miso."),
            _turn("D1:2", "Dan", "I am training for the Berlin marathon."),
        ],
    }
    qa_b = [
        {"question": "What is the name of Carol's cat?", "answer": "Miso", "evidence": ["D1:1"], "category": 4},
        {"question": "Which marathon is Dan training for?", "answer": "Berlin", "evidence": ["D1:2"], "category": 1},
    ]
    return [
        {"sample_id": "conv-a", "conversation": conv_a, "qa": qa_a, "observation": {}, "session_summary": {},
         "event_summary": {}},
        {"sample_id": "conv-b", "conversation": conv_b, "qa": qa_b},
    ]


@pytest.fixture
def locomo_file(tmp_path: Path) -> Path:
    path = tmp_path / "locomo-synthetic.json"
    path.write_text(json.dumps(synthetic_locomo()), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------- loader


def test_loader_parses_sessions_turns_and_times(locomo_file: Path) -> None:
    data = load_locomo(locomo_file)
    assert [c.sample_id for c in data.conversations] == ["conv-a", "conv-b"]
    conv = data.conversations[0]
    assert conv.speakers == ["Alice", "Bob"]
    # Sessions are the session_N lists, not the (more numerous) date keys.
    assert [s.id for s in conv.sessions] == ["session_1", "session_2", "session_3"]
    assert [s.index for s in conv.sessions] == [1, 2, 3]
    assert conv.sessions[0].time == datetime(2023, 5, 8, 13, 56)
    assert conv.sessions[1].time == datetime(2023, 6, 27, 10, 37)
    image_turn = conv.sessions[0].turns[2]
    assert image_turn.dia_id == "D1:3"
    assert image_turn.image_caption == "a photo of a small brown dachshund on a sofa"
    assert image_turn.render() == ("Alice: Look at my new puppy! a photo of a small brown dachshund on a sofa")
    assert conv.sessions[0].turns[0].image_caption is None
    assert data.n_turns == 9


def test_loader_survives_question_quirks(locomo_file: Path) -> None:
    data = load_locomo(locomo_file)
    q = data.conversations[0].questions
    assert q[0].answer == "violin" and q[0].evidence == ["D1:2"] and q[0].category == 4
    assert q[1].answer == "2022"                                  # integer answer -> str
    assert q[1].evidence == ["D2:1", "D3:2"]                      # "D2:1; D3:2" split in two
    assert q[2].evidence == ["D3:2", "D2:1"]                      # "D:3:2" and "D02:01" normalised
    assert q[3].answer == "" and q[3].adversarial_answer == "dachshund" and q[3].category == 5
    assert q[4].evidence == []                                    # empty evidence is kept empty
    assert q[5].evidence == ["D3:1"]                              # "D9:9" (no such turn) and "D" dropped
    assert q[5].raw_evidence == ["D9:9", "D", "D3:1"]
    assert data.dropped_evidence == 2
    assert sorted(data.dropped_details) == [("conv-a", "D"), ("conv-a", "D9:9")]


@pytest.mark.parametrize("raw, expected", [
    ("D3:7", "D3:7"), ("D:11:26", "D11:26"), ("D30:05", "D30:5"), (" D1:2 ", "D1:2"),
    ("D", None), ("3:7", None), ("D3", None), ("session_3", None),
])
def test_normalise_turn_id(raw: str, expected: str | None) -> None:
    assert normalise_turn_id(raw) == expected


def test_session_time_formats() -> None:
    assert parse_session_time("1:56 pm on 8 May, 2023") == datetime(2023, 5, 8, 13, 56)
    assert parse_session_time("12:09 am on 13 September, 2023") == datetime(2023, 9, 13, 0, 9)
    with pytest.raises(InvalidInputError, match="session date"):
        parse_session_time("yesterday-ish")


@pytest.mark.parametrize("payload", [
    {"sample_id": "x"},                                           # an object, not a list
    [],                                                           # empty
    ["not a conversation"],
    [{"sample_id": "x", "conversation": {}}],                     # no qa
    [{"sample_id": "x", "conversation": {"speaker_a": "A"}, "qa": []}],   # no session lists
    [{"sample_id": "x", "conversation": {"session_1": "oops"}, "qa": []}],
    [{"sample_id": "x", "conversation": {"session_1": [{"text": "no id"}]}, "qa": []}],
    [{"sample_id": "x", "conversation": {"session_1": [{"speaker": "A", "dia_id": "D1:1", "text": "hi"}]},
      "qa": [{"question": "q?", "category": "multi-hop"}]}],
])
def test_not_locomo_shaped_raises_invalid_input(payload: object) -> None:
    with pytest.raises(InvalidInputError):
        parse_locomo(payload)


def test_unreadable_files_raise_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_locomo(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="not a JSON file"):
        load_locomo(broken)


# ---------------------------------------------------------------------------------------------- metrics


def test_a_hit_covering_several_turns_spends_several_of_k() -> None:
    hits = [RankedHit(("D1:1", "D1:2", "D1:3"), "one two three"), RankedHit(("D2:5",), "four five")]
    s = question_scores(hits, ["D2:5"], ks=(1, 3, 4, 10))
    assert [s[f"turn_any@{k}"] for k in (1, 3, 4, 10)] == [0.0, 0.0, 1.0, 1.0]
    # Tokens of the hits consumed until k distinct turns are reached (all of them when fewer exist).
    assert [s[f"context_tokens@{k}"] for k in (1, 3, 4, 10)] == [3.0, 3.0, 5.0, 5.0]
    # Sessions in order of first appearance: 1, then 2.
    assert s["session_any@1"] == 0.0 and s["session_any@3"] == 1.0


def test_turn_all_needs_every_evidence_turn_and_duplicates_spend_nothing() -> None:
    hits = [
        RankedHit(("D1:1",), "a"),
        RankedHit(("D1:1",), "a again"),              # adds no turn, its text is still handed back
        RankedHit(("D4:2", "D1:1"), "b c d"),
        RankedHit(("D5:1",), "e"),
    ]
    s = question_scores(hits, ["D1:1", "D5:1"], ks=(1, 2, 3))
    assert (s["turn_any@1"], s["turn_all@1"]) == (1.0, 0.0)
    assert (s["turn_any@2"], s["turn_all@2"]) == (1.0, 0.0)
    assert (s["turn_any@3"], s["turn_all@3"]) == (1.0, 1.0)
    assert s["context_tokens@1"] == 1.0
    assert s["context_tokens@2"] == 1.0 + 2.0 + 3.0
    assert s["context_tokens@3"] == 1.0 + 2.0 + 3.0 + 1.0
    assert s["session_any@1"] == 1.0


def test_session_any_counts_first_k_distinct_sessions() -> None:
    hits = [RankedHit((f"D{session}:{turn}",), "x") for session, turn in [(1, 1), (1, 2), (2, 1), (3, 1), (7, 4)]]
    s = question_scores(hits, ["D7:1"], ks=(1, 3, 4))
    assert s["turn_any@4"] == 0.0                     # D7:1 itself is never retrieved
    assert s["session_any@3"] == 0.0                  # sessions 1, 2, 3
    assert s["session_any@4"] == 1.0                  # session 7 is the fourth distinct one


def test_no_hits_scores_zero() -> None:
    s = question_scores([], ["D1:1"], ks=(1, 5))
    assert s == {"turn_any@1": 0.0, "turn_all@1": 0.0, "session_any@1": 0.0, "context_tokens@1": 0.0,
                 "turn_any@5": 0.0, "turn_all@5": 0.0, "session_any@5": 0.0, "context_tokens@5": 0.0}


def test_accumulator_groups_categories_and_skips_empty_evidence() -> None:
    acc = MetricAccumulator((1,))
    good, bad = [RankedHit(("D1:1",), "a b")], [RankedHit(("D2:1",), "c")]
    acc.add(1, good, ["D1:1"])
    acc.add(2, bad, ["D1:1"])
    acc.add(2, good, ["D1:1"])
    assert acc.add(3, good, []) is None               # counted, not averaged
    acc.add(5, good, ["D1:1"])
    summary = acc.summary()
    assert summary["1"]["n"] == 1 and summary["1"]["turn_any@1"] == 1.0
    assert summary["2"]["n"] == 2 and summary["2"]["turn_any@1"] == 0.5
    assert summary["3"]["n"] == 0 and summary["3"]["n_no_evidence"] == 1 and summary["3"]["turn_any@1"] is None
    assert summary["4"]["n"] == 0
    assert summary["5"]["n"] == 1
    all4 = summary["1-4"]
    assert all4["n"] == 3 and all4["n_no_evidence"] == 1
    assert all4["turn_any@1"] == round(2 / 3, 4)
    assert all4["context_tokens@1"] == round((2 + 1 + 2) / 3, 4)


class _MultiTurnSystem:
    """Returns hits that all cover the same two turns, then new ones: the runner must ask for more."""

    name = "fake"

    def __init__(self) -> None:
        self.asked: list[int] = []

    def search(self, question: str, top_k: int) -> list[RankedHit]:
        self.asked.append(top_k)
        repeated = [RankedHit(("D1:1", "D1:2"), "x")] * 30
        fresh = [RankedHit((f"D2:{i}",), "y") for i in range(1, 100)]
        return (repeated + fresh)[:top_k]


def test_search_asks_for_more_until_the_largest_k_is_filled() -> None:
    system = _MultiTurnSystem()
    hits = search_enough(system, "q", max_k=10)
    assert system.asked == [20, 40]
    assert len({t for h in hits for t in h.turn_ids}) >= 10


# ---------------------------------------------------------------------------------------------- BM25


def test_tokenize_lowercases_and_drops_stopwords() -> None:
    assert tokenize("What did Bob PLAY at the concert?")[:1] == ["bob"]
    assert "the" not in tokenize("the violin") and "what" not in tokenize("What?")


def test_bm25_ranks_the_obviously_matching_turn_first(locomo_file: Path) -> None:
    conv = load_locomo(locomo_file).conversations[0]
    bm25 = BM25Adapter()
    bm25.ingest(conv)
    assert bm25.search("violin", top_k=3)[0].turn_ids == ("D1:2",)
    assert bm25.search("Where does Bob's sister live now?", top_k=3)[0].turn_ids == ("D3:1",)
    # The image caption is part of the turn's text.
    first = bm25.search("dachshund sofa", top_k=3)[0]
    assert first.turn_ids == ("D1:3",) and "dachshund" in first.text
    assert bm25.search("zeppelin", top_k=3) == []


def test_bm25_scores_follow_okapi() -> None:
    index = BM25Index(["apple banana", "apple apple cherry", "durian"])
    scores = index.scores("apple")
    assert scores[2] == 0.0
    assert scores[1] > scores[0] > 0.0                # higher term frequency wins
    assert [doc for doc, _ in index.top("apple durian", top_k=2)] == [2, 1]   # rare term weighs more


# ---------------------------------------------------------------------------------------------- runner


def _expected_metric_keys() -> set[str]:
    return {f"{name}@{k}" for k in KS for name in ("turn_any", "turn_all", "session_any", "context_tokens")}


def _check_result_shape(result: dict) -> None:
    assert set(result) == {"system", "baseline", "timing", "config", "ratios"}
    for side in ("system", "baseline"):
        assert set(result[side]) == {"1", "2", "3", "4", "5", "1-4"}
        for entry in result[side].values():
            assert set(entry) == _expected_metric_keys() | {"n", "n_no_evidence"}
    timed = {"ingest_turns_per_s", "search_ms_p50", "search_ms_p95", "search_top10_ms_p50", "search_top10_ms_p95"}
    assert set(result["timing"]) == timed | {"baseline"}
    assert set(result["timing"]["baseline"]) == timed
    assert set(result["ratios"]) == _expected_metric_keys()
    config = result["config"]
    for key in ("models", "memkern_version", "git_commit", "data_path", "data_sha256", "ks", "questions",
                "dropped_evidence_ids"):
        assert key in config
    assert set(config["models"]) == {"embedder", "dim"}
    assert config["ks"] == list(KS)
    assert config["questions"] == {"1": 2, "2": 1, "3": 1, "4": 3, "5": 1, "total": 8, "no_evidence": 1}
    assert config["dropped_evidence_ids"] == 2
    assert len(config["data_sha256"]) == 64
    json.dumps(result)                                # JSON-ready as it is


def test_runner_with_bm25_as_the_system(locomo_file: Path) -> None:
    calls: list[tuple[str, int, int]] = []
    result = run_locomo(locomo_file, ks=KS, progress=lambda *args: calls.append(args), system=BM25Adapter())
    _check_result_shape(result)
    system, baseline = result["system"], result["baseline"]
    assert system == baseline
    assert all(v == 1.0 for v in result["ratios"].values() if v is not None)
    assert system["1-4"]["n"] == 6 and system["1-4"]["n_no_evidence"] == 1
    assert system["5"]["n"] == 1
    assert system["1-4"]["turn_any@25"] == 1.0        # the conversations are smaller than 25 turns
    assert system["4"]["turn_any@1"] == 1.0           # violin, sister, cat: the obvious turn comes first
    # Progress: per side, from 0 to turns + questions, never backwards.
    for label in ("system", "baseline"):
        done = [d for lbl, d, _ in calls if lbl == label]
        totals = {t for lbl, _, t in calls if lbl == label}
        assert done[0] == 0 and done == sorted(done) and totals == {9 + 8} and done[-1] == 17

    report = format_report(result)
    for text in ("turn_any@10", "turn_all@10", "session_any@5", "context_tokens@10", "multi-hop",
                 "categories 1-4", "search ms p95", "ingest turns/s"):
        assert text in report


def test_runner_rejects_bad_ks_and_unknown_samples(locomo_file: Path) -> None:
    with pytest.raises(InvalidInputError, match="ks"):
        run_locomo(locomo_file, ks=(0, 5), system=BM25Adapter())
    with pytest.raises(InvalidInputError, match="conv-zz"):
        run_locomo(locomo_file, system=BM25Adapter(), sample_ids=["conv-zz"])


def test_runner_with_the_memkern_system(locomo_file: Path, tmp_path: Path) -> None:
    pytest.importorskip("memkern.mos")
    result = run_locomo(locomo_file, ks=KS, workdir=tmp_path / "store")
    _check_result_shape(result)
    assert result["config"]["system"]["name"] == "memkern"
    assert result["config"]["models"]["embedder"] and result["config"]["models"]["dim"] > 0
    assert result["system"]["1-4"]["n"] == 6
    assert result["system"]["1-4"]["turn_any@25"] == 1.0   # every turn fits in 25: all evidence is found
    assert result["timing"]["ingest_turns_per_s"] > 0
    assert "memkern" in format_report(result)
