"""The zero-LLM profile: slot values from first-person turns, superseded values kept, current value first in search."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from memkern import MemOS
from memkern.organize.profile import Profile, asked_slot, statements

DEMO = Path(__file__).resolve().parents[1] / "memkern" / "data" / "demo_conversation.json"


def _at(day: int) -> datetime:
    return datetime(2024, 3, day, tzinfo=timezone.utc)


def _say(cube, *turns: tuple[str, str, str]):  # type: ignore[no-untyped-def]
    """Add ``(speaker, text, ISO day)`` turns to session s1 of ``cube``; the added memories."""
    return cube.add(messages=[{"role": "user", "name": name, "content": text, "time": f"{day}T10:00:00Z"}
                              for name, text, day in turns], session_id="s1").added


@pytest.mark.parametrize(("text", "slot", "value"), [
    ("I live in Paris, in a small flat.", "residence", "Paris"),
    ("Hello! I moved here last week and I now live in Alfama, near the castle.", "residence", "Alfama"),
    ("So yes... I'm moving to Portugal!", "residence", "Portugal"),
    ("For my job I work as a data analyst at a bank.", "job", "data analyst at a bank"),
    ("Next month I start as a UX designer at Onda, a startup.", "job", "UX designer at Onda"),
    ("My cat Miso sleeps on my keyboard.", "pet", "cat Miso"),
    ("By the way, I'm vegetarian.", "diet", "vegetarian"),
    ("I moved to Lisbon last Saturday.", "residence", "Lisbon"),
    ("I moved to Berlin two years ago!", "residence", "Berlin"),
    ("I'm moving to Edinburgh soon and need help.", "residence", "Edinburgh"),
    ("I've been living in Austin since 2019.", "residence", "Austin"),
    ("I started as a nurse at the city clinic in March.", "job", "nurse at the city clinic"),
])
def test_statements(text: str, slot: str, value: str) -> None:
    assert [(s.slot, s.value) for s in statements(text)] == [(slot, value)]


def test_no_statement_without_a_place_or_first_person() -> None:
    assert statements("I'm moving to a new apartment next month.") == []
    assert statements("She lives in Rome.") == []


def test_later_value_supersedes_and_history_is_kept_in_valid_time_order() -> None:
    profile = Profile()
    profile.observe("m2", "Alice", "I now live in Lisbon.", _at(20))
    profile.observe("m1", "Alice", "I live in Paris.", _at(2))     # arrives late, said earlier
    profile.observe("m3", "Alice", "I live in Lisbon, by the river.", _at(25))
    history = profile.history("Alice", "residence")
    assert [(v.value, v.current) for v in history] == [("Paris", False), ("Lisbon", True)]
    assert history[0].until == _at(20) and history[0].superseded_by == "Lisbon"
    assert history[1].sources == ["m2", "m3"]
    assert [v.value for v in profile.current("Alice", "residence")] == ["Lisbon"]


def test_pets_accumulate() -> None:
    profile = Profile()
    profile.observe("m1", "Bo", "My cat Miso is asleep.", _at(1))
    profile.observe("m2", "Bo", "My dog Rex barked.", _at(2))
    assert {v.value for v in profile.current("Bo", "pet")} == {"cat Miso", "dog Rex"}


def test_asked_slot() -> None:
    assert asked_slot("Where does Alice live?") == "residence"
    assert asked_slot("What is Alice's job?") == "job"
    assert asked_slot("What did Alice paint?") is None


def test_demo_moved_and_changed_job_answered_with_the_current_value_first(tmp_path: Path) -> None:
    conversation = json.loads(DEMO.read_text(encoding="utf-8"))
    with MemOS(path=tmp_path / "demo.db") as mos:
        cube = mos.create_cube("demo", owner="Alice")
        for session in conversation["sessions"]:
            cube.add(messages=session["messages"], session_id=session["id"])
        lives = cube.search("Where does Alice live?", top_k=5)
        assert lives[0].memory.provenance.message_ids == ["s4-01"]
        assert lives[0].slot is not None and lives[0].slot.current and lives[0].slot.value == "Alfama"
        paris = next(hit for hit in lives if hit.memory.provenance.message_ids == ["s1-01"])
        assert paris.slot is not None and not paris.slot.current and paris.slot.until is not None
        job = cube.search("What is Alice's job?", top_k=5)
        assert job[0].memory.provenance.message_ids == ["s3-04"]
        # Only the session asked for: the profile respects filters.
        early = cube.search("Where does Alice live?", top_k=5, filters={"session_id": "s1"})
        assert all(hit.memory.provenance.session_id == "s1" for hit in early)
        assert early[0].memory.provenance.message_ids == ["s1-01"]
        # A query about no slot is ranked as before.
        assert all(hit.slot is None for hit in cube.search("What did Alice paint?", top_k=5))


def test_a_deleted_turn_no_longer_states_the_current_value(tmp_path: Path) -> None:
    with MemOS(path=tmp_path / "p.db") as mos:
        cube = mos.create_cube("p", owner="Bo")
        added = _say(cube, ("Bo", "I live in Oslo.", "2024-01-01"), ("Bo", "I now live in Bergen.", "2024-02-01"))
        assert cube.search("Where does Bo live?", top_k=2)[0].slot.value == "Bergen"  # type: ignore[union-attr]
        cube.delete(added[1].id)
        hits = cube.search("Where does Bo live?", top_k=2)
        assert hits[0].slot is not None and hits[0].slot.value == "Oslo" and hits[0].slot.current


def test_a_slot_said_many_times_lifts_and_reads_only_the_hits_asked_for(tmp_path: Path, monkeypatch) -> None:
    """A slot stated in many turns (a long-lived cube) puts its current and latest values first, reading no
    more of its turns than the search returns."""
    from memkern.store.sqlite import SQLiteStore

    with MemOS(path=tmp_path / "m.db") as mos:
        cube = mos.create_cube("m", owner="Bo")
        cities = ["Oslo", "Bergen", "Lisbon", "Porto", "Madrid", "Seville", "Paris", "Lyon", "Berlin", "Vienna"]
        _say(cube, *[("Bo", f"I now live in {city}.", f"2024-01-{day + 10:02d}") for day, city in enumerate(cities)])
        asked: list[int] = []
        original = SQLiteStore.get_memories

        def counting(self, cube_id, memory_ids):  # type: ignore[no-untyped-def]
            asked.append(len(memory_ids))
            return original(self, cube_id, memory_ids)

        monkeypatch.setattr(SQLiteStore, "get_memories", counting)
        hits = cube.search("Where does Bo live?", top_k=3)
        assert [hit.slot.value for hit in hits if hit.slot] == ["Vienna", "Berlin", "Lyon"]
        assert hits[0].slot is not None and hits[0].slot.current
        assert max(asked) <= 3


def test_questions_about_events_ask_no_slot() -> None:
    assert asked_slot("When did John get his dog Max?") is None
    assert asked_slot("How long have Mel and her husband been married?") is None
    assert asked_slot("What pets does Nate have?") == "pet"


def test_an_edited_turn_is_read_again_and_only_its_own_statement_changes(tmp_path: Path) -> None:
    with MemOS(path=tmp_path / "p.db") as mos:
        cube = mos.create_cube("p", owner="Bo")
        added = _say(cube, ("Bo", "I live in Oslo.", "2024-01-01"), ("Bo", "I work as a baker.", "2024-01-02"),
                     ("Bo", "I now live in Bergen.", "2024-02-01"))
        assert cube.search("Where does Bo live?", top_k=2)[0].slot.value == "Bergen"  # type: ignore[union-attr]
        cube.update(added[2].id, text="Bo: I now live in Trondheim.", reason="misheard")
        hits = cube.search("Where does Bo live?", top_k=3)
        assert hits[0].slot is not None and hits[0].slot.value == "Trondheim" and hits[0].slot.current
        assert {h.slot.value for h in hits if h.slot is not None} == {"Trondheim", "Oslo"}
        assert cube.search("What is Bo's job?", top_k=1)[0].slot.value == "baker"  # type: ignore[union-attr]


def test_the_profile_operation_shows_every_value_with_its_turns_on_every_surface(tmp_path: Path) -> None:
    with MemOS(path=tmp_path / "p.db") as mos:
        cube = mos.create_cube("p", owner="Bo")
        ids = [item.id for item in _say(cube, ("Bo", "I live in Oslo.", "2024-01-01"),
                                        ("Bo", "My cat Miso sleeps all day.", "2024-01-02"),
                                        ("Bo", "I moved to Bergen last week.", "2024-02-01"),
                                        ("Eve", "I work as a nurse.", "2024-02-02"))]
        values = cube.profile()
        assert [(v.subject, v.slot, v.value, v.current) for v in values] == [
            ("Bo", "pet", "cat Miso", True), ("Bo", "residence", "Oslo", False), ("Bo", "residence", "Bergen", True),
            ("Eve", "job", "nurse", True)]
        oslo = values[1]
        assert oslo.sources == [ids[0]] and oslo.superseded_by == "Bergen" and oslo.until == values[2].since
        assert [v.value for v in cube.profile(subject="eve")] == ["nurse"]
        assert cube.profile(subject="Nobody") == []
        # An archived turn states nothing any more.
        cube.archive(ids[3])
        assert cube.profile(subject="Eve") == []

        pytest.importorskip("fastapi")
        from fastapi.testclient import TestClient

        from memkern.server import create_app

        with TestClient(create_app(mos, auth="off")) as api:
            response = api.get("/v1/cubes/p/profile", params={"subject": "Bo"})
        assert response.status_code == 200
        assert [v["value"] for v in response.json()] == ["cat Miso", "Oslo", "Bergen"]
