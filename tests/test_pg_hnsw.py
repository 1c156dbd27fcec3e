"""The database's own dense search on PostgreSQL (memkern.store.postgres.dense): a big cube's HNSW index.

Every test compares with the exact scan of the same vectors, on real PostgreSQL with pgvector
(run when ``MEMKERN_TEST_POSTGRES_DSN`` names a database); the switch point is lowered, or the
index built directly, so that a cube of a few thousand rows takes the database's path.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from store.conftest import _cleanup, make_store

from memkern.errors import StoreError
from memkern.models import CubeInfo, Filters, LifecycleState, MemoryItem, MemoryKind, Provenance
from memkern.retrieval.dense import dense_top
from memkern.retrieval.index import IndexCache
from memkern.retrieval.search import filter_mask

DSN = os.environ.get("MEMKERN_TEST_POSTGRES_DSN")
ROWS = 3000
DIM = 32
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def _unit(n: int, dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _turn(cube_id: str, i: int) -> MemoryItem:
    return MemoryItem(
        id=f"{cube_id}-{i}", cube_id=cube_id, owner="alice", kind=MemoryKind.TURN, text=f"message number {i}",
        provenance=Provenance(session_id=f"s{i // 20}", message_ids=[f"m{i}"], speaker="bob" if i % 2 else "ann"),
        event_time=T0 + timedelta(minutes=i),
    )


def _fill(store, cube_id: str, dim: int, seed: int, rows: int = ROWS) -> np.ndarray:
    store.create_cube(CubeInfo(id=cube_id, name=cube_id, owner="alice", embedder="test", dim=dim))
    vectors = _unit(rows, dim, seed)
    store.add_memories(cube_id, [_turn(cube_id, i) for i in range(rows)], vectors)
    return vectors


def _exact(vectors: np.ndarray, query: np.ndarray, count: int, keep: np.ndarray | None = None) -> list[int]:
    scores = vectors @ query
    if keep is not None:
        scores = np.where(keep, scores, -np.inf)
    order = np.argsort(-scores, kind="stable")[:count]
    return [int(i) for i in order if np.isfinite(scores[i])]


@pytest.fixture
def pg():
    if not DSN:
        pytest.skip("set MEMKERN_TEST_POSTGRES_DSN to test the PostgreSQL store")
    s = make_store("postgres", None)  # type: ignore[arg-type]
    try:
        yield s
    finally:
        s.drop_schema()


def _indexes(store) -> list[str]:
    rows = store._read("SELECT indexname FROM pg_indexes WHERE schemaname = %s AND indexname LIKE 'index_rows_hnsw_%%'",
                       (store.schema,))
    return sorted(name for (name,) in rows)


def test_sqlite_does_not_search_vectors_itself(tmp_path):
    store = make_store("sqlite", tmp_path)
    try:
        store.create_cube(CubeInfo(id="c1", name="c1", owner="alice", embedder="test", dim=DIM))
        assert store.dense_search("c1", _unit(1, DIM, 0)[0], 10, Filters()) is None
    finally:
        _cleanup(store)


def test_same_top_hits_as_the_exact_scan(pg):
    vectors = _fill(pg, "c1", DIM, seed=1)
    assert pg.dense_search("c1", vectors[0], 10, Filters()) is None  # below the switch point, no index
    assert pg.ensure_dense_index("c1", DIM)
    for query in _unit(20, DIM, seed=2):
        found = pg.dense_search("c1", query, 10, Filters())
        expected = _exact(vectors, query, 10)
        assert [memory_id for memory_id, _ in found] == [f"c1-{i}" for i in expected]
        assert np.allclose([score for _, score in found], vectors[expected] @ query, atol=1e-5)


def test_filters_and_changes_are_respected(pg):
    vectors = _fill(pg, "c1", DIM, seed=3)
    _fill(pg, "c2", DIM, seed=3)  # the same vectors in another cube: never returned
    assert pg.ensure_dense_index("c1", DIM) and pg.ensure_dense_index("c2", DIM)
    query = _unit(1, DIM, seed=4)[0]
    best = _exact(vectors, query, 40)
    deleted, updated, quarantined, archived = best[0], best[1], best[2], best[3]
    pg.delete_memory("c1", f"c1-{deleted}")
    old = pg.get_memories("c1", [f"c1-{updated}"])[f"c1-{updated}"]
    far = -query  # the new version points away: the superseded vector must not bring it back
    pg.update_memory("c1", old.model_copy(update={"version": 2, "text": "changed"}), far, expected_version=1)
    pg.set_state("c1", f"c1-{quarantined}", LifecycleState.QUARANTINED)
    pg.set_state("c1", f"c1-{archived}", LifecycleState.ARCHIVED)

    found = dict(pg.dense_search("c1", query, 20, Filters()))
    assert len(found) == 20 and all(memory_id.startswith("c1-") for memory_id in found)
    for gone in (deleted, updated, quarantined, archived):
        assert f"c1-{gone}" not in found
    keep = np.ones(ROWS, dtype=bool)
    keep[[deleted, updated, quarantined, archived]] = False
    assert list(found) == [f"c1-{i}" for i in _exact(vectors, query, 20, keep)]

    any_state = dict(pg.dense_search("c1", query, 20, Filters(state=None)))
    assert f"c1-{archived}" in any_state and f"c1-{quarantined}" not in any_state
    only_archived = pg.dense_search("c1", query, 5, Filters(state=LifecycleState.ARCHIVED))
    assert [memory_id for memory_id, _ in only_archived] == [f"c1-{archived}"]

    # Selective filters: the graph walk gives up (or, told how few rows they keep, is not tried),
    # and the database scans the allowed rows exactly.
    session_rows = np.zeros(ROWS, dtype=bool)
    session_rows[[i for i in range(140, 160) if i % 2]] = True
    session_rows &= keep
    expected = [f"c1-{i}" for i in _exact(vectors, query, 10, session_rows)]
    for share in (1.0, 10 / ROWS):
        in_session = pg.dense_search("c1", query, 10, Filters(session_id="s7", speaker="bob"), share)
        assert [memory_id for memory_id, _ in in_session] == expected
    since = T0 + timedelta(minutes=ROWS - 100)
    recent = pg.dense_search("c1", query, 10, Filters(since=since))
    assert [m for m, _ in recent] == [f"c1-{i}" for i in _exact(vectors, query, 10, np.arange(ROWS) >= ROWS - 100)]


def test_index_creation_is_idempotent_and_shared_by_nodes(pg):
    from memkern.store.postgres import PostgresStore

    vectors = _fill(pg, "c1", DIM, seed=5)
    assert pg.ensure_dense_index("c1", DIM)
    assert pg.ensure_dense_index("c1", DIM)
    assert len(_indexes(pg)) == 1
    other = PostgresStore(DSN, schema=pg.schema)  # another node, migrations already applied
    try:
        found = other.dense_search("c1", vectors[7], 3, Filters())
        assert found is not None and found[0][0] == "c1-7"
        assert other.ensure_dense_index("c1", DIM)
    finally:
        other.close()
    assert len(_indexes(pg)) == 1
    pg.delete_cube("c1")  # its index goes with it
    assert _indexes(pg) == []
    assert pg._read("SELECT count(*) FROM dense_indexes")[0][0] == 0


def test_cubes_of_two_dimensions_in_one_database(pg):
    small = _fill(pg, "c32", 32, seed=6, rows=1500)
    large = _fill(pg, "c48", 48, seed=7, rows=1500)
    assert pg.ensure_dense_index("c32", 32) and pg.ensure_dense_index("c48", 48)
    assert len(_indexes(pg)) == 2
    for vectors, cube_id in ((small, "c32"), (large, "c48")):
        for query in _unit(5, vectors.shape[1], seed=8):
            found = pg.dense_search(cube_id, query, 10, Filters())
            assert [m for m, _ in found] == [f"{cube_id}-{i}" for i in _exact(vectors, query, 10)]


def test_search_switches_to_the_database_past_the_switch_point(pg, monkeypatch):
    from memkern.store.postgres import dense

    monkeypatch.setattr(dense, "DENSE_MIN_ROWS", 1000)
    _fill(pg, "c1", DIM, seed=9)
    cache = IndexCache(pg)
    index = cache.get("c1", DIM)
    filters = Filters()
    mask = filter_mask(index, filters)
    query = _unit(1, DIM, seed=10)[0]
    in_process = index.dense_top(query, mask, 50)
    # The first search starts the build in the background and is answered from the copy.
    first = dense_top(index, pg, "c1", query, mask, filters, 50)
    assert np.array_equal(first[0], in_process[0])
    pg.wait_dense_builds()
    assert len(_indexes(pg)) == 1
    assert pg.dense_search("c1", query, 50, filters) is not None
    rows, cosines = dense_top(index, pg, "c1", query, mask, filters, 50)
    assert np.array_equal(rows, in_process[0]) and np.allclose(cosines, in_process[1], atol=1e-5)
    # A memory written after the snapshot is not in it: the database's hit is left out, not misplaced.
    pg.add_memories("c1", [_turn("c1", ROWS)], query[None, :])
    rows, _ = dense_top(index, pg, "c1", query, mask, filters, 50)
    assert np.array_equal(rows, in_process[0][:len(rows)]) and len(rows) == 49
    assert pg.dense_search("c1", query, 1, filters)[0][0] == f"c1-{ROWS}"

    # The copy drops its vectors (reloaded in the background).
    assert index.holds_vectors
    cache.get("c1", DIM)
    cache.wait_rebuilds()
    light = cache.get("c1", DIM)
    assert not light.holds_vectors and light.vectors.nbytes == 0 and len(light) == ROWS + 1
    rows, cosines = dense_top(light, pg, "c1", query, filter_mask(light, filters), filters, 50)
    assert int(rows[0]) == light.row_of[f"c1-{ROWS}"] and np.isclose(cosines[0], 1.0, atol=1e-5)
    assert [light.ids[r] for r in rows[1:]] == [index.ids[r] for r in in_process[0][:49]]
    pg.delete_memory("c1", "c1-1")
    with pytest.raises(StoreError):
        light.dense_top(query, filter_mask(light, filters), 10)
    # A new process loads the copy without vectors from the start.
    fresh = IndexCache(pg).get("c1", DIM)
    assert not fresh.holds_vectors and len(fresh) == ROWS  # c1-1 deleted


def test_search_end_to_end_through_the_database(pg, embedder):
    from memkern import MemOS

    texts = [f"{person} talked about {topic} on day {i}" for i, (person, topic) in enumerate(
        (p, t) for p in ("Alice", "Bruno", "Chloe", "Daniel") for t in
        ("kayaking", "ramen", "the museum", "a guitar", "gardening", "Lisbon", "a new job", "the dog",
         "pottery", "jazz", "chess", "the marathon", "baking bread", "a film camera", "birdwatching"))]
    with MemOS(store=pg, embedder=embedder) as mos:
        cube = mos.create_cube("e2e", owner="alice")
        cube.add(messages=[{"role": "user", "content": text} for text in texts], session_id="s1")
        questions = ["who went kayaking?", "pottery class", "a dog", "Lisbon trip", "chess game"]
        before = [[hit.memory.id for hit in cube.search(q, top_k=5)] for q in questions]
        assert pg.ensure_dense_index(cube.info.id, embedder.dim)
        after = [[hit.memory.id for hit in cube.search(q, top_k=5)] for q in questions]
        mos.kernel.indexes.wait_rebuilds()
        light = [[hit.memory.id for hit in cube.search(q, top_k=5)] for q in questions]
        assert not mos.kernel.indexes.get(cube.info.id, embedder.dim).holds_vectors
    assert before == after == light


def test_a_hostile_cube_id_is_quoted(pg):
    cube_id = "it's \"odd\"; DROP TABLE memories; --"
    vectors = _fill(pg, cube_id, DIM, seed=11, rows=300)
    assert pg.ensure_dense_index(cube_id, DIM)
    found = pg.dense_search(cube_id, vectors[3], 1, Filters())
    assert found is not None and found[0][0] == f"{cube_id}-3"
