"""The profile saved beside a large cube's index copy (``memkern.organize.profile``, ``IndexCache.keep_part``):
the next process starts from it and reads only the turns written since, gets the profile a fresh read
gives, never brings back a deleted turn's value, and reads the turns again when the file is unsound."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from memkern import MemOS
from memkern.retrieval import index as index_module
from memkern.store.sqlite import SQLiteStore


@pytest.fixture(autouse=True)
def save_small_copies(monkeypatch):
    """Copies this small are not saved by default (reading them from the store is fast)."""
    monkeypatch.setattr(index_module, "SAVE_MIN_ROWS", 1)
    monkeypatch.setattr(index_module, "SAVE_MIN_TAIL", 1)


@pytest.fixture
def texts_read(monkeypatch) -> list[int]:
    """How many memory texts each ``get_texts`` call asked the store for."""
    asked: list[int] = []
    original = SQLiteStore.get_texts

    def counting(self, cube_id, memory_ids):  # type: ignore[no-untyped-def]
        asked.append(len(memory_ids))
        return original(self, cube_id, memory_ids)

    monkeypatch.setattr(SQLiteStore, "get_texts", counting)
    return asked


def _say(cube, session: str, *turns: tuple[str, str, str]):  # type: ignore[no-untyped-def]
    return cube.add(messages=[{"role": "user", "name": name, "content": text, "time": f"{day}T10:00:00Z"}
                              for name, text, day in turns], session_id=session).added


def _values(cube) -> list[tuple]:  # type: ignore[no-untyped-def]
    return [(v.subject, v.slot, v.value, v.current, v.since, v.until, tuple(v.sources)) for v in cube.profile()]


def _filled(path: Path) -> list[tuple]:
    """A cube with a history of residences, its profile read (and so saved at close); its values."""
    with MemOS(path=path, llm=None) as mos:
        cube = mos.create_cube("p", owner="ann")
        _say(cube, "s1", ("Alice", "I live in Paris, in a small flat.", "2024-03-01"),
             ("Bob", "My dog Rex loves the park.", "2024-03-01"))
        _say(cube, "s2", ("Alice", "Big news: I now live in Alfama!", "2024-05-01"),
             ("Bob", "Congratulations, Alice.", "2024-05-01"))
        values = _values(cube)
    assert ("Alice", "residence", "Alfama", True) in [v[:4] for v in values]
    return values


def _part(path: Path) -> Path:
    [pointer] = list((path.parent / f"{path.name}-index").glob("*/current.json"))
    meta = json.loads(pointer.read_text())
    assert meta["parts"] == ["profile"]
    return pointer.parent / meta["generation"] / "part-profile.json"


def test_the_next_process_starts_from_the_saved_profile(tmp_path: Path, texts_read: list[int]) -> None:
    path = tmp_path / "p.db"
    values = _filled(path)
    assert _part(path).is_file()
    texts_read.clear()
    with MemOS(path=path, llm=None) as mos:
        cube = mos.get_cube("p")
        assert _values(cube) == values and sum(texts_read) == 0  # no turn read again
        _say(cube, "s3", ("Alice", "I moved to Porto last week.", "2024-07-01"))
        current = [v[2] for v in _values(cube) if v[1] == "residence" and v[3]]
        assert current == ["Porto"] and sum(texts_read) == 1  # the new turn only


def test_a_deleted_turns_value_does_not_come_back_from_a_saved_profile(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    _filled(path)
    with MemOS(path=path, llm=None) as mos:
        cube = mos.get_cube("p")
        [porto] = _say(cube, "s3", ("Alice", "I moved to Porto last week.", "2024-07-01"))
        cube.profile()
    with MemOS(path=path, llm=None) as mos:
        cube = mos.get_cube("p")
        assert "Porto" in [v[2] for v in _values(cube)]
        cube.delete(porto.id)
        assert "Porto" not in [v[2] for v in _values(cube)]
    files = b"".join(p.read_bytes() for p in (tmp_path / "p.db-index").rglob("*") if p.is_file())
    assert b"Porto" not in files
    with MemOS(path=path, llm=None) as mos:
        assert [v[2] for v in _values(mos.get_cube("p")) if v[1] == "residence" and v[3]] == ["Alfama"]


def test_an_unsound_saved_profile_is_read_from_the_turns_again(tmp_path: Path, texts_read: list[int], caplog) -> None:
    path = tmp_path / "p.db"
    values = _filled(path)
    _part(path).write_bytes(b'{"format": 1, "values": [["Alice", "residence", 7]]}')
    texts_read.clear()
    with caplog.at_level(logging.WARNING), MemOS(path=path, llm=None) as mos:
        assert _values(mos.get_cube("p")) == values and sum(texts_read) == 4
    assert "saved profile of cube" in caplog.text
