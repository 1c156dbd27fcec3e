"""Deletion that erases (issue 10, item 6).

SQLite: when ``delete`` (or ``delete_cube``) returns, the deleted text is in none of the
store's files: not in the database file (free pages included), not in the WAL, not in
the full-text index's segments. The test greps the files' bytes for a marker word.

PostgreSQL cannot promise that much (see ``PostgresStore.delete_memory``): when delete
returns, no row of any memkern table holds the text; the dead row versions stay in heap
pages and WAL segments until PostgreSQL reuses them. That is what its test checks.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _hash_embedder import main_embedder  # noqa: E402

from memkern import MemOS  # noqa: E402

MARKER = "zqxjvelmorphword"


def fill(cube, n: int = 150) -> None:
    for i in range(n):
        cube.add(text=f"Filler memory number {i} about tea, cats and the weather.", kind="summary")


def marked(cube) -> str:
    """A memory holding the marker in two versions (its id)."""
    item = cube.add(text=f"The secret word is {MARKER}, keep it.", kind="summary").added[0]
    cube.update(item.id, f"The secret word is still {MARKER}.")
    return item.id


def occurrences(directory: Path) -> dict[str, int]:
    """How often the marker's bytes occur in each store file (.db, -wal, -shm)."""
    return {f.name: f.read_bytes().count(MARKER.encode()) for f in sorted(directory.iterdir())
            if f.name.startswith("store.db")}


@pytest.fixture
def mos(tmp_path):
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    with MemOS(store_dir / "store.db", embedder=main_embedder()) as mos:
        yield mos


def test_delete_erases_the_text_from_every_file(mos, tmp_path):
    cube = mos.create_cube("c")
    fill(cube)
    memory_id = marked(cube)
    fill(cube, 20)
    before = occurrences(tmp_path / "store")
    assert sum(before.values()) > 0, before  # the test can see the text before the delete
    cube.delete(memory_id)
    after = occurrences(tmp_path / "store")
    assert set(after) >= {"store.db"} and sum(after.values()) == 0, after
    # The store still works, and searching finds the other memories, not the deleted one.
    assert cube.search("filler memory about tea", top_k=3)
    assert cube.search(MARKER, top_k=3, config="lexical") == []


def test_delete_cube_erases_the_text_from_every_file(mos, tmp_path):
    keep = mos.create_cube("keep")
    fill(keep, 50)
    doomed = mos.create_cube("doomed")
    fill(doomed, 50)
    marked(doomed)
    assert sum(occurrences(tmp_path / "store").values()) > 0
    mos.delete_cube("doomed")
    assert sum(occurrences(tmp_path / "store").values()) == 0
    assert keep.search("filler memory about tea", top_k=3)


def test_postgres_delete_leaves_no_row_holding_the_text(tmp_path):
    dsn = os.environ.get("MEMKERN_TEST_POSTGRES_DSN")
    if not dsn:
        pytest.skip("set MEMKERN_TEST_POSTGRES_DSN to test the PostgreSQL promise")
    import uuid

    import psycopg

    from memkern.store.postgres import PostgresStore, drop_schema

    schema = f"t_{uuid.uuid4().hex[:20]}"
    store = PostgresStore(dsn, schema=schema)
    try:
        with MemOS(store=store, embedder=main_embedder()) as mos:
            cube = mos.create_cube("c")
            fill(cube, 20)
            memory_id = marked(cube)

            def rows_with_marker() -> int:
                with psycopg.connect(dsn) as conn:
                    tables = [t for (t,) in conn.execute(
                        "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))]
                    return sum(conn.execute(f'SELECT count(*) FROM "{schema}"."{t}" AS r WHERE r::text LIKE %s',
                                            (f"%{MARKER}%",)).fetchone()[0] for t in tables)

            assert rows_with_marker() > 0
            cube.delete(memory_id)
            assert rows_with_marker() == 0
    finally:
        drop_schema(dsn, schema)
