"""The dense half of a search: the store's own vector search where it has one, else the index copy.

PostgreSQL searches a big cube's vectors itself (``Store.dense_search``, an HNSW index in the
database), so that several application nodes do not each scan, or need, every vector of it;
every other cube, and every SQLite cube, is scanned in the process's copy
(``CubeIndex.dense_top``: exact, or the in-process graph past ``memkern.retrieval.ann.ANN_MIN_ROWS``).
"""

from __future__ import annotations

import numpy as np

from memkern.models import Filters
from memkern.retrieval.index import CubeIndex
from memkern.store.base import Store


def dense_top(index: CubeIndex, store: Store, cube_id: str, query_vector: np.ndarray, mask: np.ndarray,
              filters: Filters, count: int, allowed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``count`` rows of ``index`` allowed by ``mask`` (which ``filters`` made) nearest to a unit
    query vector, best first, with their cosines; as ``CubeIndex.dense_top``.

    The store's hits are memory ids: each is kept only if the snapshot holds it live and the mask
    allows its row, so a memory written or changed since the snapshot was taken is left out, as the
    lexical half leaves it out."""
    if allowed is None:
        allowed = int(np.count_nonzero(mask))
    found = store.dense_search(cube_id, query_vector, count, filters, allowed / max(1, index.live_count))
    if found is None:
        return index.dense_top(query_vector, mask, count, allowed)
    rows: list[int] = []
    cosines: list[float] = []
    for memory_id, cosine in found:
        row = index.row_of.get(memory_id)
        if row is not None and mask[row]:
            rows.append(row)
            cosines.append(cosine)
    return np.asarray(rows, dtype=np.int64), np.asarray(cosines, dtype=np.float64)
