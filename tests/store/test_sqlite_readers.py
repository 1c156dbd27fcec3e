"""The SQLite store reads through a connection of its own: a search never waits for a write in progress.

With one connection behind one lock, every read of a search (its lexical query, the candidates' texts,
the hits) waited for whatever write transaction another thread held, including its fsync.
"""

from __future__ import annotations

import threading

import pytest

from memkern.store.sqlite import SQLiteStore

from .test_store_contract import add, cube_info, fact


@pytest.fixture
def store(tmp_path):
    opened = SQLiteStore(tmp_path / "store.db")
    yield opened
    opened.close()


def test_reads_go_on_while_another_thread_holds_a_write(store):
    cube = store.create_cube(cube_info("c"))
    first = add(store, cube.id, [fact(cube.id, "the blue bicycle")]).added[0]
    inside, release, done = threading.Event(), threading.Event(), threading.Event()

    def writer() -> None:
        with store._write() as db:  # a write transaction held open, uncommitted
            db.execute("UPDATE memories SET access_count = 99 WHERE id = ?", (first.id,))
            inside.set()
            release.wait(10)
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert inside.wait(10)
        # Each of these would wait for the write's lock with one connection; they read the last commit.
        assert store.lexical_search(cube.id, ["bicycle"], 5)[0][0] == first.id
        assert store.get_memories(cube.id, [first.id])[first.id].access_count == 0
        assert store.get_texts(cube.id, [first.id])[first.id].text == "the blue bicycle"
        assert store.index_rows(cube.id, 0).count == 1
        assert not done.is_set()  # all of it while the write was still open
    finally:
        release.set()
        thread.join()
    assert store.get_memories(cube.id, [first.id])[first.id].access_count == 99  # and then its commit


def test_the_reading_connection_never_writes(store):
    with pytest.raises(Exception, match="readonly|read-only|query_only|attempt to write"):
        store._read("CREATE TABLE scratch (x)")


def test_an_in_memory_store_reads_its_own_writes():
    store = SQLiteStore(":memory:")
    try:
        cube = store.create_cube(cube_info("c"))
        added = add(store, cube.id, [fact(cube.id, "kept in memory")]).added[0]
        assert store.get_texts(cube.id, [added.id])[added.id].text == "kept in memory"
    finally:
        store.close()


def test_access_counts_commit_without_an_fsync_and_every_other_write_with_one(store):
    """``record_access`` runs on the read path: its transaction is committed with ``synchronous=NORMAL``
    (no fsync); the connection is back to ``FULL`` for the next write, which is durable as before."""
    cube = store.create_cube(cube_info("c"))
    first = add(store, cube.id, [fact(cube.id, "the blue bicycle")]).added[0]
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    try:
        store.record_access(cube.id, [first.id, first.id], first.recorded_at)
        add(store, cube.id, [fact(cube.id, "the red kite")])
    finally:
        store._db.set_trace_callback(None)
    begins = [i for i, statement in enumerate(statements) if statement.startswith("BEGIN")]
    assert len(begins) == 2
    assert statements[begins[0] - 1] == "PRAGMA synchronous=NORMAL"
    assert "PRAGMA synchronous=FULL" in statements[begins[0]:begins[1]]
    assert "PRAGMA synchronous=NORMAL" not in statements[begins[1]:]
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store.get_memories(cube.id, [first.id])[first.id].access_count == 2
