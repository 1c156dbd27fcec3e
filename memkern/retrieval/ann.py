"""Approximate dense search for cubes past the exact scan's range: an HNSW graph (usearch).

The exact scan reads every vector of the cube per query: 256 float32 values per row, about
7 ms at 100,000 rows and 65 ms at a million on this 2-core machine, bound by memory
bandwidth (numpy has no faster exact path: int8 and float16 scans measured no faster or far
slower). Past :data:`ANN_MIN_ROWS` rows a graph answers the dense half of a search instead:
about 1 ms, with the candidates it returns re-scored exactly from the float32 rows, so the
cosines a hit reports stay exact and only the candidate set is approximate.

One :class:`DenseAnn` belongs to one index writer (its row numbering) and is shared by every
snapshot that writer publishes. It covers rows ``[0, rows)``; rows written since are scanned
exactly by the search (the *tail*), and once the tail holds :data:`CATCH_UP_AT` rows a
background thread adds them. The first graph is built in the background too, while searches
keep using the exact scan: a graph is never waited for. Rows tombstoned later stay in the
graph and are filtered out by the snapshot's masks, which is why a search asks the graph for
more candidates than it keeps; a rebuild of the writer (when tombstones outnumber live rows)
starts a fresh graph.

The graph is saved with the cube's index copy (``memkern.retrieval.snapshot``) when every row it
covers is live, so that the saved file holds no vector of a row deleted or replaced. A process
that reads the copy maps that graph read-only instead of building one (a million rows: minutes of
building; 0.8 s to load it whole, during which usearch holds the GIL and every search waits, 0.1 s
to map it); the rows written since are scanned exactly until a catch-up is due, which copies the
mapped graph into memory once and adds them.

usearch is an optional dependency (``pip install 'memkern[scale]'``): without it every search
uses the exact scan, as it does below :data:`ANN_MIN_ROWS` rows.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: A writer's graph is built once its snapshot holds this many rows (below it the exact scan costs
#: under 4 ms; see docs/benchmarks.md for the measurement that set it).
ANN_MIN_ROWS = int(os.environ.get("MEMKERN_ANN_MIN_ROWS", "50000"))
#: Rows written since the graph's last extension that start a background catch-up.
CATCH_UP_AT = 2048
#: Graph parameters: neighbours per node, and the breadth of insertion and query walks.
CONNECTIVITY = 16
EXPANSION_ADD = 128
EXPANSION_SEARCH = 256


def _usearch() -> Any | None:
    try:
        from usearch.index import Index
    except ImportError:
        return None
    return Index


class DenseAnn:
    """An HNSW graph over the first ``rows`` rows of one writer's vectors, extended in the background."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.rows = 0
        self._graph: Any = None
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()
        self._index_class: Any = _usearch()
        #: A graph saved by an earlier process over the first rows, mapped by the first build instead.
        self._saved: tuple[Path, int] | None = None
        #: Whether ``_graph`` is that mapping (read-only: a catch-up copies it first).
        self._mapped = False
        self._saving = False

    @property
    def available(self) -> bool:
        """Whether usearch is installed (else this object never builds anything)."""
        return self._index_class is not None

    def follow(self, vectors: np.ndarray) -> None:
        """Start building or extending the graph in the background when ``vectors`` (a snapshot's rows,
        never rewritten) has enough rows past it; return at once."""
        n = len(vectors)
        if self._index_class is None or n < ANN_MIN_ROWS or n - self.rows < (CATCH_UP_AT if self.rows else 1):
            return
        with self._lock:
            if self._worker is not None or self._saving:
                return
            self._worker = threading.Thread(target=self._extend, args=(vectors,), daemon=True,
                                            name="memkern-ann")
            self._worker.start()

    def adopt(self, path: Path, rows: int) -> None:
        """Start from the graph saved at ``path`` over the first ``rows`` rows: the first build maps it
        (checked against its dimension and size; built anew if anything is wrong), and the first
        catch-up copies it into memory and adds the rest."""
        self._saved = (path, rows)

    def save(self, path: Path, rows: int) -> bool:
        """Write the graph to ``path`` if it covers exactly ``rows`` rows; False (nothing written) when
        it does not, or a build or catch-up is running. Searches go on meanwhile."""
        with self._lock:
            if self._worker is not None or self._graph is None or self.rows != rows:
                return False
            self._saving = True
        try:
            self._graph.save(str(path))
            return True
        finally:
            self._saving = False

    def wait(self, timeout_s: float | None = None) -> None:
        """Return once no build or catch-up is running (benchmarks and tests)."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout_s)

    def search(self, query_vector: np.ndarray, count: int, n: int) -> tuple[np.ndarray, int]:
        """Up to ``count`` rows nearest to ``query_vector`` by the graph (unordered), among the rows it
        covers below ``n``; and that number of covered rows (the search scans the rest exactly)."""
        covered = min(self.rows, n)  # read before the graph: rows past it may be mid-insertion
        graph = self._graph
        if graph is None or covered == 0:
            return np.zeros(0, dtype=np.int64), 0
        found = graph.search(query_vector, count, threads=1)
        rows = np.asarray(found.keys, dtype=np.int64)
        return rows[rows < covered], covered

    def _extend(self, vectors: np.ndarray) -> None:
        try:
            n = len(vectors)
            if self._graph is None and self._saved is not None:
                self._restore(n)
                if self._graph is not None and n - self.rows < CATCH_UP_AT:
                    return  # the rows written since the save are scanned exactly until a catch-up is due
            start, graph = self.rows, self._graph
            if graph is None:
                graph = self._index_class(ndim=self.dim, metric="cos", dtype="f16", connectivity=CONNECTIVITY,
                                          expansion_add=EXPANSION_ADD, expansion_search=EXPANSION_SEARCH)
            elif self._mapped:
                graph = graph.copy()  # a mapped saved graph cannot grow; searches use the mapping meanwhile
            if start < n:
                graph.add(np.arange(start, n, dtype=np.uint64), vectors[start:n], threads=os.cpu_count() or 1)
            self._graph, self.rows, self._mapped = graph, n, False
        except Exception:  # the exact scan keeps serving; the next search may try again
            log.exception("building the approximate dense index failed")
        finally:
            self._worker = None

    def _restore(self, n: int) -> None:
        """Map the adopted saved graph and publish it at once (its rows are searched by it from then on)."""
        path, rows = self._saved or (Path(), 0)
        self._saved = None
        try:
            graph = self._index_class.restore(str(path), view=True)
        except Exception as exc:  # unreadable: build anew
            log.warning("saved approximate index %s not used (%s): building one", path, exc)
            return
        if graph is None:  # a newer save or a delete removed it since the copy was read
            log.info("saved approximate index %s is gone: building one", path)
            return
        if graph.ndim != self.dim or len(graph) != rows or rows > n:
            log.warning("saved approximate index %s does not match the index copy: building one", path)
            return
        graph.expansion_add, graph.expansion_search = EXPANSION_ADD, EXPANSION_SEARCH
        self._graph, self.rows, self._mapped = graph, rows, True
