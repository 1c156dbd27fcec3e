"""The approximate dense index (memkern.retrieval.ann) behind CubeIndex.dense_top.

The switch point is lowered so that a small cube takes the graph path; every test compares
with the exact scan of the same snapshot.
"""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from store.conftest import _cleanup, make_store

from memkern.models import CubeInfo, MemoryItem, MemoryKind, Provenance
from memkern.retrieval import ann as ann_module
from memkern.retrieval import index as index_module
from memkern.retrieval.index import IndexCache

pytest.importorskip("usearch")

DIM = 32
ROWS = 1500
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setattr(ann_module, "ANN_MIN_ROWS", 500)
    monkeypatch.setattr(ann_module, "CATCH_UP_AT", 64)
    s = make_store("sqlite", tmp_path)
    s.create_cube(CubeInfo(id="c1", name="c1", owner="alice", embedder="test", dim=DIM))
    try:
        yield s
    finally:
        _cleanup(s)


def _turn(i: int) -> MemoryItem:
    return MemoryItem(
        id=uuid.uuid4().hex, cube_id="c1", owner="alice", kind=MemoryKind.TURN, text=f"message number {i}",
        provenance=Provenance(session_id=f"s{i // 20}", message_ids=[f"m{i}"], speaker="bob" if i % 2 else "ann"),
        event_time=T0 + timedelta(minutes=i),
    )


def _unit(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _exact(index, query: np.ndarray, mask: np.ndarray, count: int) -> np.ndarray:
    scores = np.where(mask, index.vectors @ query, -np.inf)
    return np.argsort(-scores, kind="stable")[:count]


def _built(store) -> tuple[IndexCache, object]:
    cache = IndexCache(store)
    store.add_memories("c1", [_turn(i) for i in range(ROWS)], _unit(ROWS, 1))
    index = cache.get("c1", DIM)
    index.dense_top(_unit(1, 2)[0], index.active, 10)  # starts the build
    cache.wait_approximate()
    return cache, cache.get("c1", DIM)


def test_the_graph_finds_what_the_scan_finds_with_exact_cosines(store):
    _, index = _built(store)
    assert index.ann.rows == ROWS
    overlaps = []
    for query in _unit(40, 3):
        rows, cosines = index.dense_top(query, index.active, 20)
        assert np.allclose(cosines, index.vectors[rows] @ query, atol=1e-6)
        assert list(cosines) == sorted(cosines, reverse=True)
        overlaps.append(len(set(rows) & set(_exact(index, query, index.active, 20))) / 20)
    assert np.mean(overlaps) >= 0.9


def test_rows_written_after_the_graph_are_scanned_until_it_catches_up(store):
    cache, _ = _built(store)
    query = _unit(1, 4)[0]
    fresh = _turn(ROWS + 1)
    store.add_memories("c1", [fresh], query[None, :])
    index = cache.get("c1", DIM)
    rows, cosines = index.dense_top(query, index.active, 5)
    assert index.ids[rows[0]] == fresh.id and cosines[0] == pytest.approx(1.0, abs=1e-5)


def test_masked_rows_never_come_back_and_a_narrow_filter_scans(store):
    _, index = _built(store)
    bob = index.active & (index.speakers == "bob")
    one_session = index.active & (index.session_codes == index.session_codes[0])
    for query in _unit(10, 5):
        rows, _ = index.dense_top(query, bob, 30)
        assert bob[rows].all()
        rows, _ = index.dense_top(query, one_session, 5)
        assert list(rows) == list(_exact(index, query, one_session, 5))  # a fifth of the rows or fewer: exact


def test_without_usearch_every_search_scans(store, monkeypatch):
    monkeypatch.setattr(ann_module, "_usearch", lambda: None)
    cache = IndexCache(store)
    store.add_memories("c1", [_turn(i) for i in range(ROWS)], _unit(ROWS, 1))
    index = cache.get("c1", DIM)
    query = _unit(1, 6)[0]
    rows, _ = index.dense_top(query, index.active, 10)
    cache.wait_approximate()
    assert not index.ann.available and index.ann.rows == 0
    assert list(rows) == list(_exact(index, query, index.active, 10))


def test_searches_during_a_catch_up_raise_nothing(store):
    cache, _ = _built(store)
    errors: list[BaseException] = []
    done = threading.Event()

    def searcher(seed: int) -> None:
        try:
            for query in _unit(300, seed):
                if done.is_set():
                    return
                index = cache.get("c1", DIM)
                rows, _ = index.dense_top(query, index.active, 10)
                assert len(rows) == 10 and index.active[rows].all()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=searcher, args=(seed,)) for seed in (7, 8)]
    for thread in threads:
        thread.start()
    for batch in range(6):  # each batch passes CATCH_UP_AT: the graph is extended while they search
        store.add_memories("c1", [_turn(ROWS + 100 * batch + i) for i in range(100)], _unit(100, 50 + batch))
        index = cache.get("c1", DIM)
        index.dense_top(_unit(1, batch)[0], index.active, 10)
    cache.wait_approximate()
    done.set()
    for thread in threads:
        thread.join(60)
    assert not errors, errors[0]
    index = cache.get("c1", DIM)
    index.dense_top(_unit(1, 9)[0], index.active, 10)
    cache.wait_approximate()
    assert cache.get("c1", DIM).ann.rows == ROWS + 600


# -- the graph saved with the index copy (memkern.retrieval.snapshot) ---------------------------------
def _counting_builds(monkeypatch) -> list[int]:
    """Make every graph built from scratch append to the returned list (a restored one does not)."""
    from usearch.index import Index

    built: list[int] = []

    class Counting(Index):
        def __init__(self, *args, **kwargs):
            built.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(ann_module, "_usearch", lambda: Counting)
    return built


def _current_generation(store) -> tuple[dict, object]:
    import json

    with store.index_cache("c1") as directory:
        meta = json.loads((directory / "current.json").read_text())
        return meta, directory / meta["generation"]


def _first_search(cache: IndexCache):
    index = cache.get("c1", DIM)
    index.dense_top(_unit(1, 2)[0], index.active, 10)  # starts the build (or the load of a saved graph)
    cache.wait_approximate()
    return cache.get("c1", DIM)


@pytest.fixture
def saving(monkeypatch):
    monkeypatch.setattr(index_module, "SAVE_MIN_ROWS", 100)


def test_the_next_process_loads_the_saved_graph_instead_of_building_one(store, saving, monkeypatch):
    first, _ = _built(store)
    first.close()  # saves the copy with the graph built since the first save
    meta, generation = _current_generation(store)
    assert meta["ann_rows"] == ROWS and (generation / "ann.usearch").is_file()

    built = _counting_builds(monkeypatch)
    second = IndexCache(store)
    store.add_memories("c1", [_turn(ROWS + i) for i in range(100)], _unit(100, 9))  # past CATCH_UP_AT
    index = _first_search(second)
    assert built == [] and index.ann.rows == ROWS + 100  # loaded, then the rows written since added
    overlaps = []
    for query in _unit(20, 3):
        rows, cosines = index.dense_top(query, index.active, 20)
        assert np.allclose(cosines, index.vectors[rows] @ query, atol=1e-6)
        overlaps.append(len(set(rows) & set(_exact(index, query, index.active, 20))) / 20)
    assert np.mean(overlaps) >= 0.9


def test_the_saved_graph_is_mapped_and_the_rows_written_since_scanned_until_a_catch_up(store, saving, monkeypatch):
    first, _ = _built(store)
    first.close()
    built = _counting_builds(monkeypatch)
    second = IndexCache(store)
    written = [_turn(ROWS + i) for i in range(10)]  # fewer than CATCH_UP_AT
    store.add_memories("c1", written, _unit(10, 9))
    index = _first_search(second)
    assert built == [] and index.ann.rows == ROWS  # mapped as saved, nothing copied or added yet
    for position, query in enumerate(_unit(10, 9)):
        rows, _ = index.dense_top(query, index.active, 5)
        assert index.ids[rows[0]] == written[position].id  # a row written since is found by the exact tail scan
    store.add_memories("c1", [_turn(ROWS + 10 + i) for i in range(64)], _unit(64, 10))
    index = _first_search(second)
    assert built == [] and index.ann.rows == ROWS + 74  # the catch-up copied the mapping and added the rows


def test_no_graph_is_saved_over_a_deleted_or_replaced_row(store, saving):
    cache, index = _built(store)
    store.delete_memory("c1", str(index.ids[5]))  # removes the saved copy; the graph still holds the row
    _first_search(cache)
    cache.close()
    meta, generation = _current_generation(store)
    assert meta["ann_rows"] == 0 and not (generation / "ann.usearch").exists()
    assert meta["rows"] == ROWS - 1


def test_a_damaged_saved_graph_is_built_anew(store, saving, monkeypatch, caplog):
    first, _ = _built(store)
    first.close()
    _, generation = _current_generation(store)
    (generation / "ann.usearch").write_bytes(b"not a graph" * 100)
    built = _counting_builds(monkeypatch)
    index = _first_search(IndexCache(store))
    assert built == [1] and index.ann.rows == ROWS
    assert "not used" in caplog.text
