"""Store contract, both back ends: the index cache directory a back end offers retrieval
(``Store.index_cache``), and the tags the index feed reads."""

from __future__ import annotations

import uuid

import numpy as np

from memkern.models import CubeInfo, MemoryItem, Provenance

DIM = 4


def _cube(store) -> str:
    return store.create_cube(CubeInfo(id=uuid.uuid4().hex, name="c", owner="alice", embedder="test", dim=DIM)).id


def test_only_sqlite_offers_an_index_cache(store, backend, tmp_path):
    cube_id = _cube(store)
    with store.index_cache(cube_id) as directory:
        assert directory is None  # none made yet: nothing to read, and nothing is created
    assert list(tmp_path.glob("*-index")) == []
    with store.index_cache(cube_id, create=True) as directory:
        if backend == "sqlite":
            # beside the database file, named so that no cube id can escape it
            assert directory is not None and directory.parent.parent == tmp_path
        else:  # several application nodes: the database searches, no node keeps a copy on disk
            assert directory is None


def test_the_feed_reads_the_item_s_own_tags(store):
    """Tags are the item's, whatever its text and metadata say about "tags"."""
    cube_id = _cube(store)
    cases = {
        "own tags, metadata with empty tags": ({"tags": []}, ["a", "b"]),
        'no tags, text with "tags":[] in it': ({}, []),
        "no tags, metadata with tags": ({"tags": ["x"], "other": {"tags": []}}, []),
        "tags, nested metadata": ({"deep": {"tags": []}}, ["c"]),
    }
    items = [MemoryItem(id=uuid.uuid4().hex, cube_id=cube_id, owner="alice", text=f'{name} "tags":[] {{"tags":[]}}',
                        tags=tags, metadata=metadata, provenance=Provenance(session_id="s"))
             for name, (metadata, tags) in cases.items()]
    store.add_memories(cube_id, items, np.ones((len(items), DIM), dtype=np.float32))
    batch = store.index_rows(cube_id, 0)
    assert dict(zip(batch.ids, batch.tags)) == {item.id: item.tags for item in items}
