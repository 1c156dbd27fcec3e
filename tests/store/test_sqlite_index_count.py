"""The per-cube count of index rows the SQLite store keeps (migrations 4 -> 5 and 5 -> 6): added
rows counted once per write transaction, removed ones by a trigger.

A search index checks its copy against this count; it must equal a real count after every kind
of write and after an older store is upgraded in place.
"""

from __future__ import annotations

from contextlib import closing

import pytest

from memkern.errors import ConflictError
from memkern.models import LifecycleState
from memkern.store.sqlite import SQLiteStore, _split_sql, sqlite3
from memkern.store.sqlite_schema import MIGRATIONS

from .test_store_contract import add, cube_info, fact, next_version, unit_vectors


def _connect(path):
    """A connection through the SQLite library the store uses: two copies of SQLite in one process
    must not open one file, since closing a file in one drops the other's POSIX locks (a closing
    connection of the other library then checkpoints and deletes the WAL the store still writes to)."""
    return sqlite3.connect(path)


def _counts(path) -> dict[str, tuple[int, int]]:
    """Per cube: (the kept count, a real count of its index rows)."""
    with closing(_connect(path)) as db:
        return {cube: (kept, real) for cube, kept, real in db.execute(
            "SELECT id, indexed, (SELECT count(*) FROM index_rows r WHERE r.cube_id = cubes.id) FROM cubes")}


def test_the_count_follows_every_kind_of_write(tmp_path):
    path = tmp_path / "store.db"
    store = SQLiteStore(path)
    try:
        a, b = store.create_cube(cube_info("a")), store.create_cube(cube_info("b"))
        items = add(store, a.id, [fact(a.id, f"fact {i}") for i in range(6)]).added
        add(store, b.id, [fact(b.id, "other cube")])
        store.update_memory(a.id, next_version(items[0], text="fact 0, corrected"), unit_vectors(1)[0], 1)
        store.set_state(a.id, items[1].id, LifecycleState.ARCHIVED)
        store.delete_memory(a.id, items[2].id)
        assert store.index_rows(a.id, 0).count == 5
        assert _counts(path) == {a.id: (5, 5), b.id: (1, 1)}
        clash = fact(a.id, "same id, other text").model_copy(update={"id": items[3].id})
        with pytest.raises(ConflictError):  # rolled back after writing an index row: nothing counted
            store.add_memories(a.id, [fact(a.id, "fresh"), clash], unit_vectors(2))
        store.set_state(a.id, items[1].id, LifecycleState.ACTIVE)
        versions, vectors = store.export_versions(a.id)
        copy = cube_info("copy")
        store.import_cube(copy, [v.model_copy(update={"cube_id": copy.id}) for v in versions], vectors)
        assert _counts(path) == {a.id: (5, 5), b.id: (1, 1), copy.id: (5, 5)}
        store.delete_cube(a.id)
        assert _counts(path) == {b.id: (1, 1), copy.id: (5, 5)}
    finally:
        store.close()


def test_an_older_store_is_counted_when_upgraded(tmp_path):
    path = tmp_path / "old.db"
    with closing(_connect(path)) as db, db:  # a store as schema version 4 left it, with two cubes' rows
        for migration in MIGRATIONS[:4]:
            for statement in _split_sql(migration):
                db.execute(statement)
        db.execute("INSERT INTO meta(key, value) VALUES ('schema_version', '4')")
        for cube, rows in (("c1", 3), ("c2", 1)):
            db.execute("INSERT INTO cubes(id, name, owner, body) VALUES (?, ?, 'alice', '{}')", (cube, cube))
            for i in range(rows):
                seq = db.execute("INSERT INTO memories(cube_id, id, version, is_current, kind, state, content_key,"
                                 " body) VALUES (?, ?, 1, 1, 'fact', 'active', ?, '{}')",
                                 (cube, f"m{i}", f"k{i}")).lastrowid
                db.execute("INSERT INTO index_rows(memory_seq, cube_id, vector) VALUES (?, ?, x'00000000')",
                           (seq, cube))
    SQLiteStore(path).close()
    assert _counts(path) == {"c1": (3, 3), "c2": (1, 1)}
