"""The in-memory index follows the store's change feed: every kind of write is patched in,
another process's writes are seen, and searches running during writes never fail.

Runs on SQLite and, when ``MEMKERN_TEST_POSTGRES_DSN`` is set, on PostgreSQL.
"""

from __future__ import annotations

import multiprocessing
import threading
import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from store.conftest import _cleanup, make_store

from memkern.models import CubeInfo, Filters, LifecycleState, MemoryItem, MemoryKind, Provenance
from memkern.retrieval import index as index_module
from memkern.retrieval.config import resolve_config
from memkern.retrieval.index import IndexCache
from memkern.retrieval.search import rank

DIM = 8
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    s = make_store(request.param, tmp_path)
    s.create_cube(CubeInfo(id="c1", name="c1", owner="alice", embedder="test", dim=DIM))
    try:
        yield s
    finally:
        _cleanup(s)


def _turn(i: int, text: str | None = None) -> MemoryItem:
    return MemoryItem(
        id=uuid.uuid4().hex, cube_id="c1", owner="alice", kind=MemoryKind.TURN,
        text=text or f"message number {i}",
        provenance=Provenance(session_id="s1", message_ids=[f"m{i}"], speaker="bob" if i % 2 else "ann"),
        event_time=T0 + timedelta(minutes=i),
    )


def _unit(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _live(index) -> dict[str, str]:
    """memory id -> state of every live row of a snapshot."""
    return {index.ids[r]: index.states[r] for r in np.flatnonzero(index.live)}


def _dense_top(store, cache, vector: np.ndarray) -> str:
    """The id ranked first by a dense-only search for ``vector``."""
    config = resolve_config(None).model_copy(update={
        "lexical_weight": 0.0, "date_weight": 0.0, "session_weight": 0.0, "neighbour_weight": 0.0,
        "speaker_weight": 0.0})
    index = cache.get("c1", DIM)
    ranked = rank(index, store, "c1", "", vector, Filters(), config, top_k=1)
    return index.ids[ranked[0][0]]


def test_every_kind_of_write_is_patched_in(store):
    cache = IndexCache(store)
    items = [_turn(i) for i in range(6)]
    vectors = _unit(6, 1)
    store.add_memories("c1", items, vectors)
    first = cache.get("c1", DIM)
    assert set(_live(first)) == {m.id for m in items}

    # a new version replaces the row: the new vector is searched, the old one is gone
    target = items[2]
    new_vector = _unit(1, 99)[0]
    store.update_memory("c1", target.model_copy(update={"version": 2, "text": "changed"}), new_vector, 1)
    after_update = cache.get("c1", DIM)
    assert _live(after_update)[target.id] == "active" and after_update.live_count == 6
    assert _dense_top(store, cache, new_vector) == target.id

    store.set_state("c1", items[3].id, LifecycleState.ARCHIVED)
    archived = cache.get("c1", DIM)
    assert _live(archived)[items[3].id] == "archived" and not archived.active[archived.row_of[items[3].id]]
    assert _dense_top(store, cache, vectors[3]) != items[3].id  # searches ask for active memories
    store.set_state("c1", items[3].id, LifecycleState.ACTIVE)
    assert _dense_top(store, cache, vectors[3]) == items[3].id

    store.delete_memory("c1", items[4].id)
    deleted = cache.get("c1", DIM)
    assert items[4].id not in _live(deleted) and items[4].id not in deleted.row_of
    assert deleted.live_count == 5
    assert _dense_top(store, cache, vectors[4]) != items[4].id

    # the snapshot taken before the writes still reads as it was
    assert set(_live(first)) == {m.id for m in items} and first.live_count == 6
    # patched, not rebuilt: rows were appended behind the old ones
    assert len(deleted) == 6 + 3 and deleted.ids.take(np.arange(6)) == first.ids.take(np.arange(len(first)))


def test_same_results_as_a_fresh_copy_after_many_writes(store):
    cache = IndexCache(store)
    rng = np.random.default_rng(5)
    items = [_turn(i) for i in range(40)]
    vectors = _unit(40, 2)
    store.add_memories("c1", items, vectors)
    cache.get("c1", DIM)
    alive = {m.id: m for m in items}
    for step in range(30):
        memory = alive[list(alive)[int(rng.integers(len(alive)))]]
        action = step % 3
        if action == 0:
            new = memory.model_copy(update={"version": memory.version + 1, "text": f"v{step}"})
            store.update_memory("c1", new, _unit(1, 100 + step)[0], memory.version)
            alive[memory.id] = new
        elif action == 1:
            store.set_state("c1", memory.id, LifecycleState.ARCHIVED)
        else:
            store.delete_memory("c1", memory.id)
            del alive[memory.id]
        if step % 4 == 0:
            cache.get("c1", DIM)
        extra = _turn(1000 + step)
        store.add_memories("c1", [extra], _unit(1, 500 + step))
        alive[extra.id] = extra
    patched = cache.get("c1", DIM)
    fresh = IndexCache(store).get("c1", DIM)
    assert _live(patched) == _live(fresh)
    for memory_id in _live(fresh):
        np.testing.assert_array_equal(patched.vectors[patched.row_of[memory_id]],
                                      fresh.vectors[fresh.row_of[memory_id]])
    assert patched.speaker_names() == fresh.speaker_names()


def _open_like(store):
    """Arguments that open the same store in another process (``_write_from_another_process``)."""
    if hasattr(store, "schema"):
        return ("postgres", store.dsn, store.schema)
    return ("sqlite", str(store.path), None)


def _write_from_another_process(kind: str, where: str, schema: str | None, count: int) -> None:
    if kind == "postgres":
        from memkern.store.postgres import PostgresStore

        other = PostgresStore(where, schema=schema)
    else:
        from memkern.store.sqlite import SQLiteStore

        other = SQLiteStore(where)
    try:
        other.add_memories("c1", [_turn(5000 + i) for i in range(count)], _unit(count, 7))
        first = other.index_rows("c1", 0).ids[0]
        other.delete_memory("c1", first)
    finally:
        other.close()


def test_writes_of_another_process_are_seen(store):
    store.add_memories("c1", [_turn(i) for i in range(3)], _unit(3, 3))
    cache = IndexCache(store)
    before = cache.get("c1", DIM)
    process = multiprocessing.get_context("spawn").Process(
        target=_write_from_another_process, args=(*_open_like(store), 4))
    process.start()
    process.join(120)
    assert process.exitcode == 0
    after = cache.get("c1", DIM)
    assert after.live_count == 3 + 4 - 1
    assert set(_live(after)) == set(store.index_rows("c1", 0).ids)
    assert before.ids[0] not in after.row_of  # the other process deleted the first memory


def test_rows_removed_without_a_removal_entry_trigger_a_background_rebuild(tmp_path, monkeypatch):
    """What cannot be patched (here rows removed behind the feed's back) is rebuilt while the old copy serves."""
    from memkern.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "s.db")
    try:
        store.create_cube(CubeInfo(id="c1", name="c1", owner="alice", embedder="test", dim=DIM))
        items = [_turn(i) for i in range(5)]
        store.add_memories("c1", items, _unit(5, 4))
        cache = IndexCache(store)
        assert cache.get("c1", DIM).live_count == 5
        with store._write() as db:  # a path that logs no removal, as an outside compaction would
            db.execute("DELETE FROM index_rows WHERE memory_seq = (SELECT min(memory_seq) FROM index_rows)")
            db.execute("UPDATE cubes SET revision = revision + 1")
        monkeypatch.setattr(index_module, "VERIFY_EVERY_S", 0.0)  # counted at the next patch
        served = cache.get("c1", DIM)  # patched as far as the feed goes, still serving
        assert served.live_count == 5
        cache.wait_rebuilds(30)
        rebuilt = cache.get("c1", DIM)
        assert rebuilt.live_count == 4 and items[0].id not in rebuilt.row_of
    finally:
        store.close()


def test_concurrent_searches_and_writes_raise_nothing(store):
    cache = IndexCache(store)
    items = [_turn(i) for i in range(50)]
    store.add_memories("c1", items, _unit(50, 6))
    cache.get("c1", DIM)
    config = resolve_config(None)
    errors: list[BaseException] = []
    done = threading.Event()

    def searcher(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            while not done.is_set():
                index = cache.get("c1", DIM)
                for filters in (Filters(), Filters(state=None), Filters(speaker="bob")):
                    query = _unit(1, int(rng.integers(1 << 30)))[0]
                    for row, _, _ in rank(index, store, "c1", "message number", query, filters, config, 10):
                        assert index.live[row] and index.ids[row]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def writer() -> None:
        try:
            alive = list(items)
            for step in range(60):
                memory = alive[step % len(alive)]
                if step % 3 == 0:
                    store.delete_memory("c1", memory.id)
                    alive.remove(memory)
                elif step % 3 == 1:
                    new = memory.model_copy(update={"version": memory.version + 1, "text": f"new {step}"})
                    store.update_memory("c1", new, _unit(1, step)[0], memory.version)
                    alive[alive.index(memory)] = new
                else:
                    store.set_state("c1", memory.id, LifecycleState.ARCHIVED)
                fresh = _turn(2000 + step)
                store.add_memories("c1", [fresh], _unit(1, 3000 + step))
                alive.append(fresh)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            done.set()

    threads = [threading.Thread(target=searcher, args=(s,)) for s in range(2)] + [threading.Thread(target=writer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors[0]
    final = cache.get("c1", DIM)
    assert _live(final) == _live(IndexCache(store).get("c1", DIM))


def test_a_copy_loaded_in_chunks_equals_one_loaded_at_once(store, monkeypatch):
    items = [_turn(i) for i in range(40)]
    store.add_memories("c1", items, _unit(40, 8))
    store.update_memory("c1", items[3].model_copy(update={"version": 2, "text": "v2"}), _unit(1, 9)[0], 1)
    store.delete_memory("c1", items[5].id)
    whole = IndexCache(store).get("c1", DIM)
    monkeypatch.setattr(index_module, "LOAD_CHUNK", 7)
    chunked = IndexCache(store).get("c1", DIM)
    assert _live(chunked) == _live(whole) and chunked.live_count == 39
    for memory_id in _live(whole):
        np.testing.assert_array_equal(chunked.vectors[chunked.row_of[memory_id]],
                                      whole.vectors[whole.row_of[memory_id]])
