"""The index copy saved beside a SQLite store (``memkern.retrieval.snapshot``): a new process
reads it instead of every row, gets exactly the copy the store would give, ignores any copy
that is not sound, and no saved file outlives a delete."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from memkern.models import CubeInfo, LifecycleState, MemoryItem, MemoryKind, Provenance, User
from memkern.retrieval import index as index_module
from memkern.retrieval import snapshot
from memkern.retrieval.index import CubeIndex, IndexCache
from memkern.store.sqlite import SQLiteStore

DIM = 8
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def save_small_copies(monkeypatch):
    """Copies this small are not saved by default (reading them from the store is fast)."""
    monkeypatch.setattr(index_module, "SAVE_MIN_ROWS", 1)
    monkeypatch.setattr(index_module, "SAVE_MIN_TAIL", 1)


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "store.db")
    s.create_user(User(id="alice", name="alice"))
    s.create_cube(CubeInfo(id="c1", name="c1", owner="alice", embedder="test", dim=DIM))
    try:
        yield s
    finally:
        s.close()


def _item(i: int) -> MemoryItem:
    """Memories unlike each other in every field the index keeps."""
    return MemoryItem(
        id=uuid.uuid4().hex, cube_id="c1", owner="alice", kind=MemoryKind.TURN if i % 4 else MemoryKind.FACT,
        text=f'memory number {i} "tags":[]', tags=[f"t{i % 3}"] if i % 5 == 0 else [],
        metadata={"tags": []} if i % 7 == 0 else {},
        provenance=Provenance(session_id=None if i % 6 == 0 else f"s{i % 3}", message_ids=[f"m{i}"],
                              speaker=None if i % 3 == 0 else f"p{i % 2}"),
        event_time=None if i % 8 == 0 else T0 + timedelta(minutes=i),
    )


def _unit(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _filled(store: SQLiteStore, n: int = 60) -> list[MemoryItem]:
    items = [_item(i) for i in range(n)]
    store.add_memories("c1", items, _unit(n, 1))
    return items


def _content(index: CubeIndex) -> dict[str, tuple]:
    """Everything a search reads of each live row, by memory id (row numbers may differ)."""
    rows = {}
    for row in np.flatnonzero(index.live).tolist():
        memory_id = index.ids[row]
        session = index.session_names[index.session_codes[row]]
        position = int(index.positions[row])
        assert index.row_of[memory_id] == row
        rows[memory_id] = (session, position, float(index.event_times[row]), index.kinds[row], index.speakers[row],
                           index.states[row], bool(index.active[row]), tuple(index.tags[row]),
                           index.vectors[row].tobytes())
    return rows


def _same(first: CubeIndex, second: CubeIndex) -> None:
    a, b = _content(first), _content(second)
    assert a.keys() == b.keys()
    for memory_id in a:  # NaN event times compare unequal: compare as text
        assert repr(a[memory_id]) == repr(b[memory_id]), memory_id
    assert first.speakers_present == second.speakers_present and first.live_count == second.live_count


def _saved_and_reopened(store: SQLiteStore, monkeypatch) -> tuple[CubeIndex, IndexCache]:
    """A process that loads the cube and saves its copy, then another that must read that copy."""
    first = IndexCache(store)
    first.get("c1", DIM)
    first.wait_saves()
    second = IndexCache(store)
    monkeypatch.setattr(second, "_load", lambda *a: pytest.fail("read the store instead of the saved copy"))
    return second.get("c1", DIM), second


def _cache_dir(store: SQLiteStore, cube_id: str = "c1") -> Path:
    with store.index_cache(cube_id, create=True) as directory:
        assert directory is not None
        return directory


def test_a_saved_copy_reads_as_the_store_would_give_it(store, monkeypatch):
    items = _filled(store)
    store.update_memory("c1", items[1].model_copy(update={"version": 2, "text": "changed"}), _unit(1, 7)[0], 1)
    store.set_state("c1", items[2].id, LifecycleState.QUARANTINED)
    store.delete_memory("c1", items[3].id)
    from_copy, _ = _saved_and_reopened(store, monkeypatch)
    _same(from_copy, IndexCache(store).get("c1", DIM))
    assert from_copy.live_count == len(items) - 1


def test_writes_after_the_save_are_patched_in(store, monkeypatch):
    items = _filled(store)
    first = IndexCache(store)
    first.get("c1", DIM)
    first.wait_saves()
    store.add_memories("c1", [_item(100), _item(101)], _unit(2, 3))
    store.update_memory("c1", items[5].model_copy(update={"version": 2, "text": "again"}), _unit(1, 8)[0], 1)
    store.set_state("c1", items[6].id, LifecycleState.ARCHIVED)
    second = IndexCache(store)
    monkeypatch.setattr(second, "_load", lambda *a: pytest.fail("read the store instead of the saved copy"))
    _same(second.get("c1", DIM), IndexCache(store).get("c1", DIM))


def test_the_saved_copy_holds_no_text_and_only_live_rows(store, monkeypatch):
    items = _filled(store)
    store.update_memory("c1", items[1].model_copy(update={"version": 2, "text": "replaced"}), _unit(1, 9)[0], 1)
    _saved_and_reopened(store, monkeypatch)
    files = [p for p in _cache_dir(store).rglob("*") if p.is_file()]
    data = b"".join(p.read_bytes() for p in files)
    assert b"memory number" not in data and b"replaced" not in data
    meta = json.loads((_cache_dir(store) / snapshot.POINTER).read_text())
    assert meta["rows"] == len(items) and meta["format"] == snapshot.FORMAT
    old_vector = _unit(len(items), 1)[1].tobytes()  # the vector of the replaced version
    assert old_vector not in data


@pytest.mark.parametrize("how", ["delete", "delete_cube", "forget_user"])
def test_no_saved_file_outlives_a_delete(store, monkeypatch, how):
    items = _filled(store)
    _saved_and_reopened(store, monkeypatch)
    directory = _cache_dir(store)
    victim = items[10]
    vector = _unit(len(items), 1)[10].tobytes()
    assert directory.is_dir()
    if how == "delete":
        store.delete_memory("c1", victim.id)
    elif how == "delete_cube":
        store.delete_cube("c1")
    else:
        store.forget_user("alice")
    assert not directory.exists()
    leftover = b"".join(p.read_bytes() for p in directory.parent.rglob("*") if p.is_file())
    assert victim.id.encode() not in leftover and vector not in leftover


def test_a_save_never_writes_a_memory_deleted_since_its_snapshot(store):
    items = _filled(store)
    cache = IndexCache(store)
    cache.get("c1", DIM)
    cache.wait_saves()
    store.delete_memory("c1", items[0].id)  # committed; the copy has not seen it yet
    entry = cache._entries["c1"]
    cache._save(entry, "c1")  # what a save in flight at that moment does
    assert not _cache_dir(store).exists()
    # once the copy has followed the delete, the saved copy is written again (after the delay)
    entry.dropped_at = None
    cache.get("c1", DIM)
    assert cache._entries["c1"].dropped_at is not None
    cache._entries["c1"].dropped_at = 0.0
    store.add_memories("c1", [_item(200)], _unit(1, 4))
    cache.get("c1", DIM)
    cache.wait_saves()
    data = b"".join(p.read_bytes() for p in _cache_dir(store).rglob("*") if p.is_file())
    assert items[1].id.encode() in data and items[0].id.encode() not in data


def _corrupt_vectors(directory: Path) -> None:
    meta = json.loads((directory / snapshot.POINTER).read_text())
    path = directory / meta["generation"] / "vectors.npy"
    path.write_bytes(path.read_bytes()[:-DIM * 4])


def _reverse_id_hashes(directory: Path) -> None:
    meta = json.loads((directory / snapshot.POINTER).read_text())
    path = directory / meta["generation"] / "id_hashes.npy"
    np.save(path, np.load(path)[::-1].copy())


def _rewrite_pointer(key: str, value: object):
    def change(directory: Path) -> None:
        meta = json.loads((directory / snapshot.POINTER).read_text())
        meta[key] = value
        (directory / snapshot.POINTER).write_text(json.dumps(meta))
    return change


def _remove_a_row_without_logging_it(store: SQLiteStore) -> None:
    store._db.execute("DELETE FROM index_rows WHERE seq = (SELECT min(seq) FROM index_rows)")


@pytest.mark.parametrize("damage", [
    _corrupt_vectors,
    _reverse_id_hashes,
    lambda directory: (directory / snapshot.POINTER).write_text("{not json"),
    _rewrite_pointer("format", snapshot.FORMAT + 1),
    _rewrite_pointer("embedder", "another"),
    _rewrite_pointer("dim", DIM * 2),
    _rewrite_pointer("last_seq", 10_000),
    _rewrite_pointer("last_id", "someone else"),
    _rewrite_pointer("kinds", []),
    "store",
], ids=["truncated", "ids", "not-json", "format", "embedder", "dim", "ahead", "other-history", "codes", "count"])
def test_an_unsound_saved_copy_is_ignored(store, monkeypatch, caplog, damage):
    _filled(store)
    first = IndexCache(store)
    first.get("c1", DIM)
    first.wait_saves()
    if damage == "store":
        _remove_a_row_without_logging_it(store)
    else:
        damage(_cache_dir(store))
    with caplog.at_level(logging.INFO, logger="memkern.retrieval"):
        reopened = IndexCache(store).get("c1", DIM)
    assert "ignored" in caplog.text
    _same(reopened, IndexCache(store)._load("c1", DIM).snapshot())


def test_an_older_copy_never_replaces_a_newer_one(store):
    _filled(store)
    old = IndexCache(store)
    old.get("c1", DIM)
    old.wait_saves()
    store.add_memories("c1", [_item(300)], _unit(1, 5))
    new = IndexCache(store)
    new.get("c1", DIM)
    new.close()  # its copy lags the saved one by a row: saved at close
    newer = json.loads((_cache_dir(store) / snapshot.POINTER).read_text())
    old._save(old._entries["c1"], "c1")
    assert json.loads((_cache_dir(store) / snapshot.POINTER).read_text()) == newer
    assert len([p for p in _cache_dir(store).iterdir() if p.is_dir()]) == 1


def test_small_copies_are_not_saved(store, monkeypatch, tmp_path):
    monkeypatch.setattr(index_module, "SAVE_MIN_ROWS", 1000)
    _filled(store)
    cache = IndexCache(store)
    cache.get("c1", DIM)
    cache.wait_saves()
    cache.close()
    assert not (tmp_path / "store.db-index").exists()  # not even an empty directory beside the database


def test_a_copy_read_just_before_a_delete_removed_its_files_still_reads_whole(store):
    _filled(store)
    cache = IndexCache(store)
    expected = cache.get("c1", DIM)
    cache.wait_saves()
    directory = _cache_dir(store)
    saved = snapshot.read(directory, "c1", DIM, "test")
    assert saved is not None
    snapshot.remove(directory)  # as a delete does, after the files were mapped
    assert np.array_equal(saved.vectors[:len(saved)], expected.vectors[expected.live])


def test_rows_written_after_reading_a_copy_go_to_its_spare_rows_never_to_its_file(store):
    _filled(store, 80)
    first = IndexCache(store)
    first.get("c1", DIM)
    first.wait_saves()
    directory = _cache_dir(store)
    meta = json.loads((directory / snapshot.POINTER).read_text())
    path = directory / meta["generation"] / "vectors.npy"
    assert np.load(path, mmap_mode="r").shape == (80 + snapshot.spare_rows(80), DIM)
    before = path.read_bytes()
    second = IndexCache(store)  # a new process: reads the saved copy, maps its vectors
    second.get("c1", DIM)
    entry = second._entries["c1"]
    room = entry.writer.columns
    added = _item(500)
    store.add_memories("c1", [added], _unit(1, 9))
    index = second.get("c1", DIM)
    assert entry.writer.columns is room  # appended into the spare rows, no copy of the matrix
    assert np.allclose(index.vectors[index.row_of[added.id]], _unit(1, 9)[0])
    assert path.read_bytes() == before
