"""Zero-LLM organisation: the temporal tree, named entities, and the deep path of search."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from memkern import MemOS
from memkern.models import Filters
from memkern.mos import MemCube
from memkern.organize.deep import content_query, needs_deep
from memkern.organize.entities import entities
from memkern.organize.profile import Profile
from memkern.organize.timeline import Timeline, TimelineCache, spans, without_spans
from memkern.retrieval.config import SearchConfig
from memkern.retrieval.index import CubeIndex
from memkern.retrieval.search import search as hybrid_search


def _ts(day: date, hour: int = 12) -> float:
    return datetime(day.year, day.month, day.day, hour, tzinfo=timezone.utc).timestamp()


def _cube_index(mos: MemOS, cube_id: str) -> CubeIndex:
    info = mos.get_cube(cube_id).info
    return mos.kernel.indexes.get(info.id, info.dim)


def test_timeline_places_sessions_under_days_weeks_and_months() -> None:
    tree = Timeline()
    tree.add(0, 7, _ts(date(2024, 3, 29)))
    tree.add(1, 7, _ts(date(2024, 3, 29), 13))
    tree.add(2, 8, _ts(date(2024, 4, 2)))
    tree.add(3, 9, float("nan"))  # a session without a time is kept, out of the calendar
    assert tree.sessions[7].rows == [0, 1]
    assert tree.days[date(2024, 3, 29)] == {7}
    assert tree.weeks[(2024, 14)] == {date(2024, 4, 2)}
    assert (2024, 13) in tree.months[(2024, 3)] and (2024, 14) in tree.months[(2024, 4)]
    assert tree.sessions_between(date(2024, 3, 1), date(2024, 4, 30)) == [7, 8]
    assert tree.sessions_between(date(2024, 4, 1), date(2024, 4, 30)) == [8]
    assert tree.undated == {9}


def test_spans_end_when_the_question_is_asked() -> None:
    asked = datetime(2023, 6, 1, tzinfo=timezone.utc)
    assert spans("the trips I took in the past three months", asked) == [(date(2023, 3, 1), date(2023, 6, 1))]
    assert spans("in the last 2 weeks", asked) == [(date(2023, 5, 18), date(2023, 6, 1))]
    assert spans("what did I do last month?", asked) == []  # a calendar month, not a span
    assert without_spans("the trips I took in the past three months, in order") == "the trips I took , in order"


def test_entities_are_names_and_titles_not_sentence_openers() -> None:
    found = entities('What did I tell you? I met Dr. Smith in Lisbon, then read "Sapiens" with Alice.')
    assert found == {"dr. smith", "lisbon", "sapiens", "alice"}
    assert entities("Thanks! Sounds great. Lisbon is lovely, The Louvre too.") == {"louvre"}


def test_a_replaced_value_points_to_what_replaced_it_and_pets_accumulate() -> None:
    profile = Profile()
    profile.observe("m1", "Bo", "I live in Oslo.", datetime(2024, 1, 1, tzinfo=timezone.utc))
    profile.observe("m2", "Bo", "I now live in Bergen.", datetime(2024, 2, 1, tzinfo=timezone.utc))
    profile.observe("m3", "Bo", "My cat Miso is asleep.", datetime(2024, 2, 2, tzinfo=timezone.utc))
    profile.observe("m4", "Bo", "My dog Rex too.", datetime(2024, 2, 3, tzinfo=timezone.utc))
    [oslo, bergen] = profile.history("Bo", "residence")
    assert (oslo.superseded_by, oslo.sources, bergen.current, bergen.sources) == ("Bergen", ["m1"], True, ["m2"])
    assert all(value.current for value in profile.history("Bo", "pet"))  # a dog does not replace a cat


def _add_day(cube: MemCube, session: str, day: str, texts: list[str]) -> None:
    cube.add(messages=[{"role": "user" if i % 2 == 0 else "assistant", "content": text, "time": f"{day}T10:0{i}:00Z"}
                       for i, text in enumerate(texts)], session_id=session, infer=False)


def test_rows_placed_a_session_at_a_time_give_the_tree_row_by_row_placement_gives() -> None:
    rng = np.random.default_rng(5)
    n = 3000
    codes = rng.integers(0, 120, n)
    times = np.array([_ts(date(2024, 1, 1) + timedelta(days=int(d)), int(h))
                      for d, h in zip(rng.integers(0, 200, n), rng.integers(0, 24, n))])
    times[rng.random(n) < 0.1] = np.nan
    times[codes % 17 == 0] = np.nan  # sessions with no time at all
    by_row, by_session = Timeline(), Timeline()
    for row in range(n):
        by_row.add(row, int(codes[row]), float(times[row]))
    for start, stop in ((0, 1000), (1000, 1001), (1001, n)):  # as a follower's looks would
        by_session.add_rows(np.arange(start, stop), codes[start:stop], times[start:stop])
    assert {c: (s.rows, s.start, s.end) for c, s in by_row.sessions.items()} == \
        {c: (s.rows, s.start, s.end) for c, s in by_session.sessions.items()}
    assert by_row.undated == by_session.undated
    assert {d: c for d, c in by_row.days.items() if c} == {d: c for d, c in by_session.days.items() if c}
    for first, last in ((date(2024, 1, 1), date(2024, 12, 31)), (date(2024, 2, 10), date(2024, 3, 5)),
                        (date(2024, 5, 1), date(2024, 5, 1))):
        assert by_row.sessions_between(first, last) == by_session.sessions_between(first, last)


def test_the_timeline_follows_writes_without_a_rebuild(tmp_path: Path) -> None:
    with MemOS(path=tmp_path / "o.db", llm=None) as mos:
        cube = mos.create_cube("o", owner="ann")
        _add_day(cube, "s1", "2024-03-01", ["I visited Lisbon with Marta.", "Yes, Lisbon is lovely in spring."])
        timelines = TimelineCache()
        index = _cube_index(mos, cube.info.id)
        tree = timelines.get(cube.info.id, index)
        first_session = dict(tree.sessions)
        _add_day(cube, "s2", "2024-04-10", ["Back in Lisbon again.", "Welcome back!"])
        index = _cube_index(mos, cube.info.id)
        # The same object, extended by the new rows only: the earlier session node is untouched.
        assert timelines.get(cube.info.id, index) is tree
        assert tree.sessions == {**first_session, **{code: node for code, node in tree.sessions.items()
                                                     if code not in first_session}}
        assert len(tree.sessions) == 2 and len(tree.months) == 2
        # A deleted turn leaves the session's live rows when read, without rebuilding the tree.
        code = next(code for code in tree.sessions if code not in first_session)
        last = index.ids[tree.live_rows(code, index.live)[-1]]
        cube.delete(last)
        index = _cube_index(mos, cube.info.id)
        assert timelines.get(cube.info.id, index) is tree
        assert last not in {index.ids[row] for row in tree.live_rows(code, index.live)}


@pytest.mark.parametrize(("query", "deep"), [
    ("How many different types of food delivery services have I used?", True),
    ("When did Caroline go to the support group?", True),
    ("What is the order of the trips I took?", True),
    ("Which did I visit first, Lisbon or Porto?", True),
    ("Where do I live now?", True),
    ("Did Marta meet Jonas in Lisbon?", True),
    ("What did Caroline paint?", False),
    ("Can you recommend a show for tonight?", False),
])
def test_the_cheap_classifier(query: str, deep: bool) -> None:
    assert needs_deep(query) is deep


def test_content_query_drops_the_form_of_the_answer_and_keeps_dates() -> None:
    assert content_query("How many different types of food delivery services have I used recently?") == \
        "food delivery services have I used recently?"
    assert content_query("What is the order of the trips I took last month, from earliest to latest?") == \
        "the trips I took last month, ?"
    assert content_query("How many?") == "How many?"


def test_deep_path_finds_every_session_of_a_gathered_answer(tmp_path: Path) -> None:
    """Each evidence session mentions its delivery service once; distractors talk about "different types"."""
    with MemOS(path=tmp_path / "d.db", llm=None) as mos:
        cube = mos.create_cube("d", owner="ann")
        _add_day(cube, "e1", "2024-05-01", ["Any lunch ideas? I've been ordering from a food delivery service, "
                                            "Domino's, a lot.", "Try a salad bowl."])
        _add_day(cube, "e2", "2024-05-08", ["Quick dinner ideas? Uber Eats food delivery saved my weekend.",
                                            "Try a stir fry."])
        for n in range(6):
            _add_day(cube, f"x{n}", f"2024-05-1{n}", [
                f"Give me different types of questions about topic {n}, with different types of answers.",
                f"Here are different types of questions about topic {n}: several types, many kinds."])
        query = "How many different types of food delivery services have I used?"
        plain = cube.search(query, top_k=4, config=SearchConfig(deep=False))
        deep = cube.search(query, top_k=4)
        assert {hit.memory.provenance.session_id for hit in deep[:2]} == {"e1", "e2"}
        assert {hit.memory.provenance.session_id for hit in plain[:2]} != {"e1", "e2"}  # crowded out by the form


def test_plain_queries_rank_as_hybrid_retrieval(tmp_path: Path) -> None:
    with MemOS(path=tmp_path / "p.db", llm=None) as mos:
        cube = mos.create_cube("p", owner="ann")
        _add_day(cube, "s1", "2024-03-01", ["I painted a sunrise over the lake.", "That sounds beautiful."])
        _add_day(cube, "s2", "2024-03-05", ["My sister paints portraits.", "Nice!"])
        query = "What did I paint?"
        assert not needs_deep(query)
        kernel = mos.kernel
        index = _cube_index(mos, cube.info.id)
        expected = hybrid_search(kernel.store, index, kernel.embedder, cube.info.id, query, top_k=3,
                                 filters=Filters(), config=SearchConfig())
        assert [hit.id for hit in cube.search(query, top_k=3)] == [hit.id for hit in expected]


def test_deep_path_lifts_the_span_a_question_names(tmp_path: Path) -> None:
    with MemOS(path=tmp_path / "t.db", llm=None) as mos:
        cube = mos.create_cube("t", owner="ann")
        _add_day(cube, "old", "2023-01-10", ["I went hiking in the Alps, a long trip.", "Sounds great."])
        _add_day(cube, "new", "2023-05-20", ["We took a trip to the coast.", "Lovely."])
        until = datetime(2023, 6, 1, tzinfo=timezone.utc)
        hits = cube.search("Which trip did I take in the past two weeks?", top_k=2, filters={"until": until})
        assert hits[0].memory.provenance.session_id == "new" and hits[0].parts.date > 0


def test_a_deep_slot_question_still_gets_the_current_value_first(tmp_path: Path) -> None:
    demo = Path(__file__).resolve().parents[1] / "memkern" / "data" / "demo_conversation.json"
    conversation = json.loads(demo.read_text(encoding="utf-8"))
    with MemOS(path=tmp_path / "demo.db", llm=None) as mos:
        cube = mos.create_cube("demo", owner="Alice")
        for session in conversation["sessions"]:
            cube.add(messages=session["messages"], session_id=session["id"], infer=False)
        query = "Where does Alice live now?"
        assert needs_deep(query)
        hits = cube.search(query, top_k=5)
        assert hits[0].slot is not None and hits[0].slot.current and hits[0].slot.value == "Alfama"
