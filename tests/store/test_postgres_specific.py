"""What only the PostgreSQL store has: several nodes on one database, schemas, migrations.

The back-end-independent behaviour is the contract suite's job; these tests run only
when ``MEMKERN_TEST_POSTGRES_DSN`` names a database (``scripts/start_postgres.sh``
starts one). Each test uses a throwaway schema and drops it afterwards.
"""

from __future__ import annotations

import os
import threading
import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from memkern.errors import ConflictError, NotFoundError, StoreError
from memkern.models import CubeInfo, Filters, LifecycleState, MemoryItem, MemoryKind, Provenance

DSN = os.environ.get("MEMKERN_TEST_POSTGRES_DSN")
pytestmark = pytest.mark.skipif(not DSN, reason="set MEMKERN_TEST_POSTGRES_DSN to test the PostgreSQL store")

DIM = 8


@pytest.fixture
def schema():
    from memkern.store.postgres import drop_schema

    name = f"t_{uuid.uuid4().hex[:16]}"
    yield name
    drop_schema(DSN, name)


@pytest.fixture
def node(schema):
    """A function opening another 'node': a PostgresStore of its own on the same schema."""
    from memkern.store.postgres import PostgresStore

    opened = []

    def open_node():
        store = PostgresStore(DSN, schema=schema)
        opened.append(store)
        return store

    yield open_node
    for store in opened:
        store.close()


def _cube(store, cube_id: str = "c1") -> CubeInfo:
    return store.create_cube(CubeInfo(id=cube_id, name=f"cube-{cube_id}", owner="alice",
                                      embedder="test", dim=DIM))


def _turn(i: int, session: str = "s1", *, message_id: str | None = None, text: str | None = None) -> MemoryItem:
    return MemoryItem(
        id=uuid.uuid4().hex, cube_id="c1", owner="alice", kind=MemoryKind.TURN,
        text=text if text is not None else f"message number {i}",
        provenance=Provenance(session_id=session, message_ids=[message_id or f"msg-{i}"], speaker="bob"),
        event_time=datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=i),
    )


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def _run_threads(targets) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(targets))

    def wrap(fn):
        def run():
            try:
                barrier.wait()
                fn()
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
        return run

    threads = [threading.Thread(target=wrap(fn)) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors


def test_two_nodes_adding_the_same_messages_store_each_once(node):
    a, b = node(), node()
    _cube(a)
    messages = 60
    outcomes = {}

    def writer(name, store, seed):
        def run():
            # Each node builds its own items (fresh ids) for the same messages, in batches.
            items = [_turn(i) for i in range(messages)]
            result = []
            for start in range(0, messages, 7):
                batch = items[start:start + 7]
                result.append(store.add_memories("c1", batch, _vectors(len(batch), seed)))
            outcomes[name] = result
        return run

    _run_threads([writer("a", a, 1), writer("b", b, 2)])

    stored = a.list_memories("c1", Filters())
    assert len(stored) == messages
    assert sorted(m.provenance.message_ids[0] for m in stored) == sorted(f"msg-{i}" for i in range(messages))
    added = sum(len(o.added) for o in outcomes["a"] + outcomes["b"])
    dups = sum(len(o.duplicates) for o in outcomes["a"] + outcomes["b"])
    assert added == messages and dups == messages
    # every duplicate names a memory that exists
    ids = {m.id for m in stored}
    for o in outcomes["a"] + outcomes["b"]:
        assert set(o.duplicates.values()) <= ids
    # positions in the session are 0..n-1, each once
    assert sorted(m.provenance.position for m in stored) == list(range(messages))
    assert b.index_rows("c1", 0).count == messages


def test_concurrent_writers_to_one_session_get_distinct_positions(node):
    stores = [node() for _ in range(3)]
    _cube(stores[0])

    def writer(k, store):
        def run():
            for j in range(10):
                store.add_memories("c1", [_turn(100 * k + j, message_id=f"w{k}-{j}")], _vectors(1, k))
        return run

    _run_threads([writer(k, s) for k, s in enumerate(stores)])
    stored = stores[1].list_memories("c1", Filters())
    assert len(stored) == 30
    assert sorted(m.provenance.position for m in stored) == list(range(30))


def test_index_rows_of_another_node_are_seen_incrementally(node):
    from memkern.retrieval.index import IndexCache

    a, b = node(), node()
    _cube(a)
    cache = IndexCache(b)
    a.add_memories("c1", [_turn(i) for i in range(5)], _vectors(5))
    assert len(cache.get("c1", DIM)) == 5

    def writer(k):
        def run():
            for j in range(5):
                a.add_memories("c1", [_turn(1000 + 10 * k + j, message_id=f"x{k}-{j}")], _vectors(1))
        return run

    def reader():
        for _ in range(20):
            cache.get("c1", DIM)

    _run_threads([writer(0), writer(1), reader])
    index = cache.get("c1", DIM)
    assert len(index) == 15
    assert sorted(index.ids) == sorted(m.id for m in a.list_memories("c1", Filters()))
    # a state change on one node is noticed by the other's cache
    target = index.ids[0]
    a.set_state("c1", target, LifecycleState.ARCHIVED)
    index = cache.get("c1", DIM)
    assert index.states[index.row_of[target]] == "archived"


def test_stale_update_from_another_node_is_refused(node):
    a, b = node(), node()
    _cube(a)
    item = a.add_memories("c1", [_turn(0)], _vectors(1)).added[0]
    v2 = item.model_copy(update={"text": "changed by a", "version": 2, "supersedes": item.version_id})
    a.update_memory("c1", v2, _vectors(1)[0], expected_version=1)
    v2b = item.model_copy(update={"text": "changed by b", "version": 2, "supersedes": item.version_id})
    with pytest.raises(ConflictError):
        b.update_memory("c1", v2b, _vectors(1)[0], expected_version=1)
    assert [v.text for v in b.history("c1", item.id)] == [item.text, "changed by a"]


def test_a_newer_schema_version_is_refused(schema, node):
    import psycopg

    from memkern.store.postgres import SCHEMA_VERSION, PostgresStore

    node().close()
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f'UPDATE "{schema}".meta SET value = %s WHERE key = %s',
                     (str(SCHEMA_VERSION + 1), "schema_version"))
    with pytest.raises(StoreError, match="schema version"):
        PostgresStore(DSN, schema=schema)


def test_reopening_keeps_data_and_schemas_are_isolated(schema, node):
    from memkern.store.postgres import PostgresStore

    a = node()
    _cube(a)
    a.add_memories("c1", [_turn(0)], _vectors(1))
    a.close()
    again = node()
    assert len(again.list_memories("c1", Filters())) == 1

    other = PostgresStore(DSN, schema=f"{schema}_other")
    try:
        assert other.list_cubes() == []
        with pytest.raises(NotFoundError):
            other.get_cube("c1")
        _cube(other)  # the same cube id in another schema is another cube
        assert len(other.list_memories("c1", Filters())) == 0
    finally:
        other.drop_schema()


def test_nodes_starting_together_migrate_once(schema):
    from memkern.store.postgres import PostgresStore

    stores = []
    lock = threading.Lock()

    def start():
        s = PostgresStore(DSN, schema=schema)
        with lock:
            stores.append(s)

    try:
        _run_threads([start for _ in range(4)])
        _cube(stores[0])
        assert [s.list_cubes()[0].id for s in stores] == ["c1"] * 4
    finally:
        for s in stores:
            s.close()


def test_values_postgres_text_cannot_hold_and_huge_texts(node):
    s = node()
    _cube(s)
    nul = _turn(0, session="s\x00nul", message_id="m\x00", text="zero\x00byte inside")
    long_id = _turn(1, session="x" * 5000, message_id="y" * 5000, text="a long session id")
    words = "filler words repeated " * 45_000 + "needleword"  # ~1M characters
    huge = _turn(2, text=words)
    distinct = " ".join(f"w{i:06d}" for i in range(120_000))  # ~1M characters, all distinct
    huge_distinct = _turn(3, text=distinct)
    out = s.add_memories("c1", [nul, long_id, huge, huge_distinct], _vectors(4))
    assert len(out.added) == 4
    assert [mid for mid, _ in s.lexical_search("c1", ["w000001"], 5)] == [huge_distinct.id]
    got = s.get_memories("c1", [nul.id, long_id.id, huge.id, huge_distinct.id])
    assert got[huge_distinct.id].text == distinct
    assert got[nul.id].text == "zero\x00byte inside"
    assert got[nul.id].provenance.session_id == "s\x00nul"
    assert got[long_id.id].provenance.session_id == "x" * 5000
    assert got[huge.id].text == words
    assert [mid for mid, _ in s.lexical_search("c1", ["needleword"], 5)] == [huge.id]
    assert [m.id for m in s.list_memories("c1", Filters(session_id="x" * 5000))] == [long_id.id]
    # the same messages again are duplicates
    again = s.add_memories("c1", [_turn(0, session="s\x00nul", message_id="m\x00", text="zero\x00byte inside"),
                                  _turn(1, session="x" * 5000, message_id="y" * 5000, text="a long session id")],
                           _vectors(2))
    assert again.added == [] and set(again.duplicates.values()) == {nul.id, long_id.id}


def test_vectors_round_trip_exactly(node):
    s = node()
    _cube(s)
    vectors = _vectors(4, seed=7)
    vectors[0] = 0.0
    vectors[1, 0] = np.float32(1e-38)
    items = [_turn(i) for i in range(4)]
    s.add_memories("c1", items, vectors)
    batch = s.index_rows("c1", 0)
    assert batch.vectors.dtype == np.float32
    np.testing.assert_array_equal(batch.vectors, vectors)
    _, exported = s.export_versions("c1")
    np.testing.assert_array_equal(exported, vectors)


def test_memos_end_to_end_on_postgres(schema, tmp_path):
    from _embedders import HashingEmbedder

    from memkern import MemOS
    from memkern.store.postgres import PostgresStore

    with MemOS(store=PostgresStore(DSN, schema=schema), embedder=HashingEmbedder()) as mos:
        cube = mos.create_cube("travel", owner="alice")
        result = cube.add([
            {"role": "user", "content": "I am flying to Lisbon next week", "id": "1"},
            {"role": "assistant", "content": "Lisbon is lovely in spring", "id": "2"},
            {"role": "user", "content": "My cat Miso needs a sitter while I travel", "id": "3"},
        ], session_id="chat-1")
        assert len(result.added) == 3
        assert cube.add([{"role": "user", "content": "I am flying to Lisbon next week", "id": "1"}],
                        session_id="chat-1").duplicates == [result.added[0].id]

        hits = cube.search("who looks after the cat", top_k=2)
        assert hits and hits[0].id == result.added[2].id

        updated = cube.update(result.added[0].id, "I am flying to Porto next week", reason="plans changed")
        assert updated.version == 2
        assert [v.text for v in cube.history(updated.id)] == [result.added[0].text, "I am flying to Porto next week"]
        assert cube.search("Porto", top_k=1)[0].id == updated.id

        cube.archive(result.added[1].id)
        assert result.added[1].id not in [h.id for h in cube.search("Lisbon spring", top_k=5)]
        cube.restore(result.added[1].id)

        cube.delete(result.added[2].id)
        assert result.added[2].id not in [h.id for h in cube.search("cat sitter", top_k=5)]
        with pytest.raises(NotFoundError):
            cube.get(result.added[2].id)
        ops = [(o.op, o.memory_id) for o in cube.operations()]
        assert ("delete", result.added[2].id) in ops

        # another node sees the same cube
        with MemOS(store=PostgresStore(DSN, schema=schema), embedder=HashingEmbedder()) as other:
            assert other.get_cube("travel").get(updated.id).text == "I am flying to Porto next week"
            assert other.get_cube("travel").search("Porto", top_k=1)[0].id == updated.id

        path = cube.dump(tmp_path / "travel.cube")
        loaded = mos.load_cube(path, name="travel-copy")
        assert {m.text for m in loaded.get_all()} == {m.text for m in cube.get_all()}
        mos.delete_cube("travel")
        assert [c.name for c in mos.list_cubes()] == ["travel-copy"]


def test_an_application_role_without_create_privilege_opens_an_existing_schema(schema, node):
    """Operators create the schema once; the nodes then run as a role that may only use it."""
    import psycopg
    from psycopg import sql as pgsql

    from memkern.store.postgres import PostgresStore

    node().close()  # migrated by the owner
    role = f"app_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(DSN, autocommit=True) as admin:
        admin.execute(pgsql.SQL("CREATE ROLE {} LOGIN").format(pgsql.Identifier(role)))
        admin.execute(pgsql.SQL("REVOKE CREATE ON DATABASE {} FROM PUBLIC").format(
            pgsql.Identifier(admin.info.dbname)))
        admin.execute(pgsql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
            pgsql.Identifier(schema), pgsql.Identifier(role)))
        admin.execute(pgsql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {} TO {}").format(
            pgsql.Identifier(schema), pgsql.Identifier(role)))
    try:
        dsn = psycopg.conninfo.make_conninfo(DSN, user=role)
        store = PostgresStore(dsn, schema=schema)
        try:
            _cube(store)
            store.add_memories("c1", [_turn(0)], _vectors(1))
            assert len(store.list_memories("c1", Filters())) == 1
        finally:
            store.close()
    finally:
        with psycopg.connect(DSN, autocommit=True) as admin:
            admin.execute(pgsql.SQL("GRANT CREATE ON DATABASE {} TO PUBLIC").format(
                pgsql.Identifier(admin.info.dbname)))
            admin.execute(pgsql.SQL("DROP OWNED BY {}").format(pgsql.Identifier(role)))
            admin.execute(pgsql.SQL("DROP ROLE {}").format(pgsql.Identifier(role)))
