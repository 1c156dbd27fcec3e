"""In-memory copy of a cube's search index: vectors plus the fields filters need.

Dense search is an exact scan over float32 rows. Measured at a million 256-d rows on the
2-core machine (busy with other work): dense-only search p50 70 ms / p95 92 ms, lexical-only
(FTS5) p50 62 / p95 151 ms, hybrid p50 78 / p95 179 ms. The lexical half, not the scan, sets
the hybrid time there, so an approximate vector index alone would not bring it under 100 ms
and none is built; past about a million rows per cube the scan itself nears that budget.

The copy follows the store's change feed (``Store.index_rows``) instead of reloading:

- rows are only ever appended. A new memory is a new row; a new version or a state change
  appends the memory's new row and tombstones its old one; a delete tombstones it. Vectors
  and per-row fields live in arrays with spare capacity that double when full, so a write
  costs what it writes, not the size of the cube;
- searches read a ``CubeIndex``: an immutable snapshot holding views of the first ``n``
  rows and its own liveness masks. A patch writes only past ``n`` or into fresh copies of
  the two boolean masks (one byte per row), so a search running during a write never sees
  half of it. Lookups by id or by (session, position) may miss a row changed after the
  snapshot was taken, exactly as the store's lexical results, read later, may name it;
- the store's row count is checked with a patch at most every ``VERIFY_EVERY_S`` seconds (SQLite
  keeps the count in the cube's row, but PostgreSQL counts by walking the whole cube, too much for
  every search after a write). A copy holding another number has missed something it cannot patch (another
  process compacted, a migration, rows removed by a path that logs no removal): it is
  rebuilt in the background while it keeps serving, as it is when tombstones outnumber
  live rows.

A process's first search reads the whole copy. Read through SQL, a million rows took 19 s; so
where the store offers a directory for it (``Store.index_cache``: SQLite, not PostgreSQL, where
several application nodes would each hold every vector), a copy of ``SAVE_MIN_ROWS`` rows or
more is saved there in the background (``memkern.retrieval.snapshot``): after a load from the
store, once the feed since the last save reaches a twentieth of the rows, and at ``close``.
The next process reads it, checks it against the store and patches in the feed since, like
any batch; a copy that does not check out is ignored (logged) and the store is read instead.
A delete makes the store remove the saved copy, which is saved again later without the row.

Where the store searches a cube's vectors itself (``Store.dense_search_ready``: PostgreSQL past its
switch point, ``memkern.store.postgres.dense``), the copy holds every field but the vectors: it maps
the store's hits to rows and filters them. A copy loaded before that point is reloaded without
them in the background, like a rebuild, once the store says so.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from memkern.errors import NotFoundError, StoreError
from memkern.retrieval import snapshot as saved_files
from memkern.retrieval.ann import DenseAnn
from memkern.retrieval.ids import IdColumn, RowLookup, SavedIds
from memkern.retrieval.row_texts import RowTexts
from memkern.retrieval.snapshot import SavedIndex
from memkern.store.base import IndexBatch, Store

log = logging.getLogger(__name__)

#: Rows a fresh column set holds before its first growth.
_MIN_CAPACITY = 1024
#: A copy is rebuilt when it holds more tombstones than this and than live rows.
_MIN_GARBAGE = 4096
#: Seconds between two checks of a copy's row count against the store's.
VERIFY_EVERY_S = 5.0
#: Rows read per query when a copy is loaded whole.
LOAD_CHUNK = 50_000
#: A copy is saved for the next process (``memkern.retrieval.snapshot``) from this many live rows:
#: below it, reading the rows from the store takes a fraction of a second anyway.
SAVE_MIN_ROWS = 20_000
#: A saved copy is refreshed once the feed since it (rows written, removals) reaches this many
#: entries or a twentieth of the live rows, whichever is more: a new process patches in that tail.
SAVE_MIN_TAIL = 10_000
#: Seconds after a delete removed the saved copy (``Store.index_cache``) before it is saved again:
#: an agent deleting every few turns would otherwise rewrite it each time.
RESAVE_AFTER_DELETE_S = 60.0


class RowMap:
    """``memory id -> row`` as a snapshot sees it: rows appended after it, or dead in it, are absent."""

    def __init__(self, rows: RowLookup, n: int, live: np.ndarray) -> None:
        self._rows, self._n, self._live = rows, n, live

    def _seen(self, row: int | None) -> int | None:
        return row if row is not None and row < self._n and self._live[row] else None

    def get(self, memory_id: str) -> int | None:
        return self._seen(self._rows.get(memory_id))

    def get_all(self, memory_ids: Sequence[str]) -> list[int | None]:
        """:meth:`get` of each id at once (a search maps its lexical hits this way)."""
        return [self._seen(row) for row in self._rows.get_all(memory_ids)]

    def __getitem__(self, memory_id: str) -> int:
        row = self.get(memory_id)
        if row is None:
            raise KeyError(memory_id)
        return row

    def __contains__(self, memory_id: str) -> bool:
        return self.get(memory_id) is not None


@dataclass(frozen=True)
class CubeIndex:
    """What one search reads: the first ``len(self)`` rows of a cube's index, fixed.

    Dead rows (deleted, or replaced by a newer row of the same memory) stay in the arrays
    with ``live`` (and ``active``) False, so every filter starts from one of those masks.
    """

    dim: int
    revision: int
    #: Memory id of each row.
    ids: IdColumn
    row_of: RowMap
    session_codes: np.ndarray
    session_names: list[str | None]
    positions: np.ndarray
    event_times: np.ndarray
    kinds: np.ndarray
    speakers: np.ndarray
    states: np.ndarray
    #: Rows holding a memory's current index row.
    live: np.ndarray
    #: ``live & (states == "active")``, kept ready because almost every search asks for it.
    active: np.ndarray
    #: Tags of each row; a list shared with later snapshots, so it may run past ``len(self)``.
    tags: list[tuple[str, ...]]
    vectors: np.ndarray
    speakers_present: frozenset[str]
    #: Rows with a live memory.
    live_count: int
    #: The writer's approximate dense index (``memkern.retrieval.ann``), shared by its snapshots.
    ann: DenseAnn | None = None
    #: What ranking worked out from rows' texts (``memkern.retrieval.row_texts``), shared by the writer's snapshots.
    texts: RowTexts[Any] = field(default_factory=RowTexts)

    def __len__(self) -> int:
        return len(self.live)

    @property
    def holds_vectors(self) -> bool:
        """False for a cube the store searches itself (``Store.dense_search_ready``): the copy keeps
        every field but the vectors, which would cost each application node the cube's whole matrix."""
        return self.vectors.shape[1] == self.dim

    def speaker_names(self) -> set[str]:
        return set(self.speakers_present)

    def dense_scores(self, query_vector: np.ndarray) -> np.ndarray:
        """Cosine of every row with a unit query vector: one exact scan on this thread.

        ``einsum`` rather than ``@``: BLAS spreads a matrix-vector product over threads
        that, on a busy 2-core machine, wait for a core (measured at 10,000 rows: 31 ms
        p50 for ``@`` against 0.8 ms here), while the search's lexical half already runs
        on the other core. Past ~100,000 rows both are bound by memory bandwidth alike.
        """
        return np.einsum("ij,j->i", self.vectors, query_vector.astype(np.float32, copy=False))

    def dense_top(self, query_vector: np.ndarray, mask: np.ndarray, count: int, allowed: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
        """The ``count`` rows allowed by ``mask`` nearest to a unit query vector, best first, with their cosines
        (``allowed``: the number of rows ``mask`` keeps, when the caller has counted them).

        Exact scan, or past ``memkern.retrieval.ann.ANN_MIN_ROWS`` rows the graph's candidates plus the rows
        written since it was extended, re-scored exactly. The graph is asked for more rows than kept, in
        proportion to the share of rows the mask drops (tombstones, filters); when filters leave too few
        rows for that to be reliable, or the graph returns fewer allowed rows than asked, the scan decides.
        """
        if not self.holds_vectors:
            raise StoreError("the store searches this cube's vectors (Store.dense_search); its index copy holds none")
        query = query_vector.astype(np.float32, copy=False)
        n = len(self)
        if self.ann is not None:
            self.ann.follow(self.vectors)
            if allowed is None:
                allowed = int(np.count_nonzero(mask))
            if allowed >= count and allowed * _ANN_MIN_SHARE >= n:
                rows, covered = self.ann.search(query, min(n, count * _ANN_FETCH * n // allowed), n)
                if covered:
                    candidates = np.concatenate([rows, np.arange(covered, n, dtype=np.int64)])
                    candidates = candidates[mask[candidates]]
                    if len(candidates) >= count:
                        cosine = self.vectors[candidates] @ query
                        best = _best(cosine, count)
                        return candidates[best], cosine[best]
        cosine = np.where(mask, self.dense_scores(query), -np.inf)
        best = _best(cosine, count)
        return best, cosine[best]


#: The graph is used only when the mask keeps at least 1 / this of the rows (else the scan decides).
_ANN_MIN_SHARE = 5
#: Candidates asked of the graph per row kept, before scaling by the share of rows the mask drops.
_ANN_FETCH = 2


def _best(scores: np.ndarray, count: int) -> np.ndarray:
    """Indexes of the ``count`` largest finite scores, best first."""
    finite = np.flatnonzero(np.isfinite(scores))
    if len(finite) <= count:
        return finite[np.argsort(-scores[finite], kind="stable")]
    part = np.argpartition(-scores, count)[:count]
    return part[np.argsort(-scores[part], kind="stable")]


class _Columns:
    """Per-row arrays with spare capacity. Rows below the used length are never rewritten,
    so a snapshot's views of them stay valid while later rows are written."""

    def __init__(self, dim: int, capacity: int, vectors: np.ndarray | None = None) -> None:
        self.capacity = capacity
        # dim 0: the copy holds no vectors. ``vectors``: a matrix of ``capacity`` rows to write into (a
        # saved copy's file, mapped with spare rows: ``memkern.retrieval.snapshot``).
        self.vectors = np.empty((capacity, dim), dtype=np.float32) if vectors is None else vectors
        self.ids = np.empty(capacity, dtype=object)
        self.session_codes = np.empty(capacity, dtype=np.int64)
        self.positions = np.empty(capacity, dtype=np.int64)
        self.event_times = np.empty(capacity, dtype=np.float64)
        self.kinds = np.empty(capacity, dtype=object)
        self.speakers = np.empty(capacity, dtype=object)
        self.states = np.empty(capacity, dtype=object)
        self.live = np.zeros(capacity, dtype=bool)
        self.active = np.zeros(capacity, dtype=bool)

    def grown(self, used: int, needed: int) -> _Columns:
        """A copy of the first ``used`` rows with room for at least ``needed`` (twice the old room)."""
        bigger = _Columns(self.vectors.shape[1], max(needed, 2 * self.capacity, _MIN_CAPACITY))
        for name in ("vectors", "ids", "session_codes", "positions", "event_times", "kinds", "speakers", "states",
                     "live", "active"):
            getattr(bigger, name)[:used] = getattr(self, name)[:used]
        return bigger


class _IndexWriter:
    """The mutable side of one cube's copy; only ``IndexCache`` calls it, one patch at a time."""

    def __init__(self, dim: int, capacity: int = 0, *, holds_vectors: bool = True) -> None:
        self.dim = dim
        #: False where the store searches the cube's vectors itself: the copy holds none.
        self.holds_vectors = holds_vectors
        self.columns = _Columns(dim if self.holds_vectors else 0, max(capacity, _MIN_CAPACITY))
        self.ann = DenseAnn(dim)
        self.texts: RowTexts[Any] = RowTexts(lambda row: bool(self.columns.live[row]))
        self.n = 0
        self.live_count = 0
        self.tags: list[tuple[str, ...]] = []
        self.row_of = RowLookup()
        #: The saved copy's ids, when the writer starts from one: its rows' ids are read from them.
        self.saved_ids: SavedIds | None = None
        self.session_names: list[str | None] = []
        self.session_code: dict[str | None, int] = {}
        self.speaker_rows: dict[str, int] = {}
        self.interned: dict[str, str] = {}
        self.revision = -1
        self.last_seq = 0
        self.removal_seq = 0
        #: Feed entries (rows and removals) applied so far: what a saved copy lags behind.
        self.fed = 0

    @classmethod
    def from_saved(cls, saved: SavedIndex) -> _IndexWriter:
        """A writer holding a saved copy's rows, live, at the copy's feed position (checked by the caller)."""
        n = len(saved)
        writer = cls(saved.dim)
        # The saved file's mapping is the matrix, its spare rows the room for the first writes (as
        # ``IndexCache._load`` leaves an eighth more): no copy of every vector.
        columns = writer.columns = _Columns(saved.dim, len(saved.vectors), vectors=saved.vectors)
        writer.saved_ids = saved.ids
        writer.row_of = RowLookup(saved.ids)
        columns.session_codes[:n] = saved.session_codes
        columns.positions[:n] = saved.positions
        columns.event_times[:n] = saved.event_times
        for name, table, codes in (("kinds", saved.kinds, saved.kind_codes),
                                   ("speakers", saved.speakers, saved.speaker_codes),
                                   ("states", saved.states, saved.state_codes)):
            interned = np.empty(len(table), dtype=object)
            interned[:] = writer._interned(table)
            getattr(columns, name)[:n] = interned[codes]
        columns.active[:n] = np.asarray([state == "active" for state in saved.states], dtype=bool)[saved.state_codes]
        writer.session_names = list(saved.session_names)
        writer.session_code = {session: code for code, session in enumerate(writer.session_names)}
        if len(writer.session_code) != len(writer.session_names):
            raise ValueError("a saved index copy holds a session twice")
        counts = np.bincount(saved.speaker_codes, minlength=len(saved.speakers))
        writer.speaker_rows = {speaker: int(count) for speaker, count in zip(saved.speakers, counts.tolist())
                               if speaker and count}
        tag_sets = [tuple(tags) for tags in saved.tag_sets]
        writer.tags = list(map(tag_sets.__getitem__, saved.tag_codes.tolist()))
        columns.live[:n] = True
        writer.n = writer.live_count = writer.fed = n
        writer.revision, writer.last_seq, writer.removal_seq = saved.revision, saved.last_seq, saved.removal_seq
        if saved.ann_path is not None:
            writer.ann.adopt(saved.ann_path, saved.ann_rows)
        return writer

    @property
    def garbage(self) -> int:
        return self.n - self.live_count

    def apply(self, batch: IndexBatch) -> None:
        """Patch in a batch of the feed: removals first, then the rows (new or replacing)."""
        dead = [row for row in self.row_of.get_all([*batch.removed, *batch.ids]) if row is not None]
        if dead:
            self._tombstone(dead)
        if batch.ids:
            self._append(batch)
            self.last_seq = batch.seqs[-1]
        self.removal_seq = max(self.removal_seq, batch.removal_seq)
        self.revision = batch.revision
        self.fed += len(batch.ids) + len(batch.removed)

    def _tombstone(self, rows: list[int]) -> None:
        columns = self.columns
        # Copy-on-write: published snapshots keep the masks they were given.
        columns.live, columns.active = columns.live.copy(), columns.active.copy()
        for row in rows:
            if not columns.live[row]:
                continue
            columns.live[row] = columns.active[row] = False
            self.live_count -= 1
            self.row_of.forget(self._id_of(row), row)
            speaker = columns.speakers[row]
            if speaker:
                self.speaker_rows[speaker] -= 1
                if not self.speaker_rows[speaker]:
                    del self.speaker_rows[speaker]
        self.texts.forget(rows)  # once the rows are marked dead, which ``RowTexts.keep`` checks

    def _id_of(self, row: int) -> str:
        saved = self.saved_ids
        return saved[row] if saved is not None and row < len(saved) else str(self.columns.ids[row])

    def _interned(self, values: Sequence[str | None]) -> list[str | None]:
        """``values`` with one string object per distinct kind, state or speaker, not one per row."""
        known = self.interned
        for value in set(values):
            if value is not None and value not in known:
                known[value] = sys.intern(value)
        return [None if value is None else known[value] for value in values]

    def _append(self, batch: IndexBatch) -> None:
        """Write the batch's rows past the used length, then make them live (a cube's first
        load is one batch of every row: per-row Python work is kept to comprehensions)."""
        start, count = self.n, len(batch.ids)
        end = start + count
        if end > self.columns.capacity:
            self.columns = self.columns.grown(start, end)
        columns = self.columns
        for session in dict.fromkeys(batch.session_ids):
            if session not in self.session_code:
                self.session_code[session] = len(self.session_names)
                self.session_names.append(session)
        code_of = self.session_code
        codes = np.fromiter((code_of[s] for s in batch.session_ids), dtype=np.int64, count=count)
        positions = np.fromiter((-1 if p is None else p for p in batch.positions), dtype=np.int64, count=count)
        states = self._interned(batch.states)
        speakers = self._interned(batch.speakers)
        columns.session_codes[start:end] = codes
        columns.positions[start:end] = positions
        columns.event_times[start:end] = np.fromiter(
            (np.nan if t is None else t for t in batch.event_times), dtype=np.float64, count=count)
        columns.kinds[start:end] = self._interned(batch.kinds)
        columns.speakers[start:end] = speakers
        columns.states[start:end] = states
        columns.active[start:end] = [s == "active" for s in states]
        if batch.vectors is not None and self.holds_vectors:
            columns.vectors[start:end] = batch.vectors
        rows = range(start, end)
        self.row_of.add(batch.ids, rows)
        for speaker, n in Counter(s for s in speakers if s).items():
            self.speaker_rows[speaker] = self.speaker_rows.get(speaker, 0) + n
        columns.ids[start:end] = batch.ids
        self.tags.extend(tuple(t) if t else () for t in batch.tags)
        # Written last: a row becomes live once everything about it is in place.
        columns.live[start:end] = True
        self.n = end
        self.live_count += count

    def snapshot(self) -> CubeIndex:
        columns, n = self.columns, self.n
        live = columns.live[:n]
        return CubeIndex(
            dim=self.dim, revision=self.revision, ids=IdColumn(self.saved_ids, columns.ids[:n]),
            row_of=RowMap(self.row_of, n, live),
            session_codes=columns.session_codes[:n], session_names=self.session_names,
            positions=columns.positions[:n], event_times=columns.event_times[:n], kinds=columns.kinds[:n],
            speakers=columns.speakers[:n], states=columns.states[:n], live=live, active=columns.active[:n],
            tags=self.tags, vectors=columns.vectors[:n],
            speakers_present=frozenset(self.speaker_rows), live_count=self.live_count, ann=self.ann,
            texts=self.texts,
        )


def _saved_copy_of(index: CubeIndex, cube_id: str, embedder: str, last_seq: int, removal_seq: int,
                   revision: int) -> SavedIndex:
    """What ``memkern.retrieval.snapshot`` saves of a search snapshot: its live rows only (no
    tombstoned row's id or vector), at the feed position the caller read with it."""
    n = len(index)
    rows = np.flatnonzero(index.live)
    kind_codes, kinds = _codes(index.kinds[rows].tolist())
    speaker_codes, speakers = _codes(index.speakers[rows].tolist())
    state_codes, states = _codes(index.states[rows].tolist())
    tag_codes, tag_sets = _codes([index.tags[row] for row in rows.tolist()])
    session_codes = index.session_codes[rows]
    last_live = n > 0 and bool(index.live[n - 1])
    return SavedIndex(
        cube_id=cube_id, embedder=embedder, dim=index.dim, last_seq=last_seq, removal_seq=removal_seq,
        revision=revision, last_id=str(index.ids[n - 1]) if last_live else None, ids=SavedIds.of(index.ids.take(rows)),
        vectors=index.vectors, vector_rows=None if len(rows) == n else rows, session_codes=session_codes,
        positions=index.positions[rows], event_times=index.event_times[rows], kind_codes=kind_codes,
        speaker_codes=speaker_codes, state_codes=state_codes, tag_codes=tag_codes,
        session_names=list(index.session_names[:int(session_codes.max()) + 1 if len(rows) else 0]),
        kinds=kinds, speakers=speakers, states=states, tag_sets=[list(tags) for tags in tag_sets],
    )


def _graph_rows(index: CubeIndex) -> int:
    """Rows of the snapshot's approximate index that a saved copy may keep: all it covers when every one
    of them is live (so the file holds no vector of a deleted or replaced row), else 0."""
    rows = 0 if index.ann is None else index.ann.rows
    return rows if 0 < rows <= len(index) and bool(index.live[:rows].all()) else 0


def _codes(values: Sequence[Any]) -> tuple[np.ndarray, list[Any]]:
    """``values`` as int32 codes into a table of the distinct values (in order of first appearance)."""
    table: list[Hashable] = list(dict.fromkeys(values))
    code = {value: number for number, value in enumerate(table)}
    return np.fromiter(map(code.__getitem__, values), dtype=np.int32, count=len(values)), table


class _Entry:
    """One cube's copy: its writer, the snapshot searches read, a rebuild or a save in flight."""

    def __init__(self, writer: _IndexWriter, embedder: str, saved_fed: int | None = None) -> None:
        self.writer = writer
        self.snapshot = writer.snapshot()
        self.lock = threading.Lock()
        self.rebuild: threading.Thread | None = None
        self.verified_at = time.monotonic()
        #: Name of the embedder that made the cube's vectors, written in a saved copy.
        self.embedder = embedder
        #: False once the store said it keeps no index cache for the cube (``Store.index_cache``).
        self.cacheable = True
        #: ``writer.fed`` when the copy saved on disk was taken; None when there is none.
        self.saved_fed = saved_fed
        #: Rows of the approximate index saved with that copy (0: none), and the derived parts it holds.
        self.saved_ann_rows = 0
        self.saved_parts: set[str] = set()
        #: Parts of the saved copy this writer was read from, by name: (file, rows it covers, id of the
        #: last one). Their rows are this writer's first rows until a rebuild renumbers them.
        self.read_parts: dict[str, tuple[Path, int, str | None]] = {}
        #: When a delete removed the saved copy (``time.monotonic()``); None if none did.
        self.dropped_at: float | None = None
        self.save: threading.Thread | None = None


class IndexCache:
    """One index copy per cube, patched from the store's change feed when its revision moves."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        #: Values derived from a cube's rows and saved with its copy (``keep_part``), by name.
        self._parts: dict[str, tuple[Callable[[str, CubeIndex], bytes | None], Callable[[str], bool]]] = {}

    def keep_part(self, name: str, dump: Callable[[str, CubeIndex], bytes | None], holds: Callable[[str], bool]) -> None:
        """Save a derived value with each copy: ``dump(cube_id, snapshot)`` gives it as of the snapshot being
        saved (None: none to save), ``holds(cube_id)`` says whether this process has one (then a copy saved
        without it is saved again at close). The next process reads it back with :meth:`saved_part`."""
        self._parts[name] = (dump, holds)

    def saved_part(self, cube_id: str, name: str) -> tuple[bytes, int, str | None] | None:
        """The part ``name`` of the saved copy the cube's writer was read from, with the rows of the writer it
        covers and the id of the last one; None if there is none (or a delete has removed the files since)."""
        entry = self._entries.get(cube_id)
        found = None if entry is None else entry.read_parts.get(name)
        if found is None:
            return None
        path, rows, last_id = found
        try:
            return path.read_bytes(), rows, last_id
        except OSError:
            return None

    def get(self, cube_id: str, dim: int) -> CubeIndex:
        revision = self._store.cube_revision(cube_id)
        entry = self._entries.get(cube_id)
        if entry is not None and entry.writer.holds_vectors and entry.writer.dim == dim:
            self._drop_vectors_if_searched(entry, cube_id)
        if entry is not None and entry.snapshot.revision == revision and entry.writer.dim == dim:
            return entry.snapshot
        with self._lock:
            entry = self._entries.get(cube_id)
            if entry is None or entry.writer.dim != dim:
                entry = self._entries[cube_id] = self._open(cube_id, dim)
                with entry.lock:
                    self._save_if_due(entry, cube_id)
                return entry.snapshot
        with entry.lock:
            if entry.writer.revision != revision:
                self._patch(entry, cube_id)
            return entry.snapshot

    def _drop_vectors_if_searched(self, entry: _Entry, cube_id: str) -> None:
        """Once the store searches the cube's vectors itself (``Store.dense_search_ready``: its HNSW index
        became valid), reload the copy without them in the background; the old copy serves meanwhile."""
        if entry.rebuild is not None or not self._store.dense_search_ready(cube_id, entry.writer.dim):
            return
        with entry.lock:
            if entry.rebuild is None and entry.writer.holds_vectors:
                log.info("the store searches the vectors of cube %s: its index copy drops them", cube_id)
                entry.rebuild = threading.Thread(target=self._rebuild, args=(entry, cube_id),
                                                 name=f"memkern-index-{cube_id[:8]}", daemon=True)
                entry.rebuild.start()

    def forget(self, cube_id: str) -> None:
        with self._lock:
            self._entries.pop(cube_id, None)

    def wait_rebuilds(self, timeout_s: float | None = None) -> None:
        """Return once no background rebuild is running (tests and benchmarks)."""
        for entry in list(self._entries.values()):
            thread = entry.rebuild
            if thread is not None:
                thread.join(timeout_s)

    def wait_approximate(self, timeout_s: float | None = None) -> None:
        """Return once no approximate dense index is being built or extended (benchmarks and tests)."""
        for entry in list(self._entries.values()):
            entry.writer.ann.wait(timeout_s)

    def wait_saves(self, timeout_s: float | None = None) -> None:
        """Return once no background save of a copy is running (tests and benchmarks)."""
        for entry in list(self._entries.values()):
            thread = entry.save
            if thread is not None:
                thread.join(timeout_s)

    def close(self) -> None:
        """Before the store closes: let running saves finish, and save the copies whose saved copy a
        delete removed, or lags them by ``SAVE_MIN_TAIL`` feed entries or more (a million rows: about
        a second each), so that the next process reads them instead of the store."""
        self.wait_saves()
        for cube_id, entry in list(self._entries.items()):
            writer = entry.writer
            stale = (entry.saved_fed is None or writer.fed - entry.saved_fed >= SAVE_MIN_TAIL
                     or _graph_rows(entry.snapshot) > entry.saved_ann_rows
                     or any(holds(cube_id) and name not in entry.saved_parts for name, (_, holds) in self._parts.items()))
            if entry.cacheable and writer.live_count >= SAVE_MIN_ROWS and stale:
                self._save(entry, cube_id)

    def _open(self, cube_id: str, dim: int) -> _Entry:
        """The cube's copy for this process: its saved copy if there is a sound one, else read from the store."""
        embedder = self._store.get_cube(cube_id).embedder
        found = self._saved_copy(cube_id, dim, embedder)
        if found is not None:
            writer, saved_fed, saved = found
            entry = _Entry(writer, embedder, saved_fed)
            entry.saved_ann_rows, entry.saved_parts = saved.ann_rows, set(saved.part_paths)
            last_id = str(saved.ids[-1]) if len(saved) else None
            entry.read_parts = {name: (path, len(saved), last_id) for name, path in saved.part_paths.items()}
            return entry
        return _Entry(self._load(cube_id, dim), embedder)

    def _saved_copy(self, cube_id: str, dim: int, embedder: str) -> tuple[_IndexWriter, int, SavedIndex] | None:
        """The copy saved by an earlier process, checked against the store and patched with the feed
        since it was saved; with ``writer.fed`` as saved and the copy as read. None (logged) if there is
        none or it is unsound."""
        with self._store.index_cache(cube_id) as directory:  # a delete cannot remove it half read
            saved = None if directory is None else saved_files.read(directory, cube_id, dim, embedder)
        if saved is None:
            return None
        started = time.perf_counter()
        try:
            writer = _IndexWriter.from_saved(saved)
            saved_fed = writer.fed
            problem = self._catch_up(writer, cube_id, saved)
        except ValueError as exc:
            problem = str(exc)
        if problem is not None:
            log.warning("saved index copy of cube %s ignored (%s): reading the store", cube_id, problem)
            return None
        log.info("index of cube %s read from its saved copy (%d rows, %d feed entries since) in %.2f s", cube_id,
                 len(saved), writer.fed - saved_fed, time.perf_counter() - started)
        return writer, saved_fed, saved

    def _catch_up(self, writer: _IndexWriter, cube_id: str, saved: SavedIndex) -> str | None:
        """Patch a writer made from ``saved`` with the feed since; what is wrong with it, or None.

        The copy must be behind the store (not a copy of another history, such as a newer file
        restored from a backup: the row at its last seq must be the memory it holds there), and
        hold the store's row count once patched."""
        probe = self._store.index_rows(cube_id, saved.last_seq - 1, None, count=False, limit=1)
        if probe.revision < saved.revision or probe.removal_seq < saved.removal_seq:
            return (f"saved at revision {saved.revision} and removal {saved.removal_seq}, the store is at "
                    f"{probe.revision} and {probe.removal_seq}")
        if probe.seqs and probe.seqs[0] == saved.last_seq and probe.ids[0] != saved.last_id:
            return f"row {saved.last_seq} is memory {probe.ids[0]!r} in the store, {saved.last_id!r} in the copy"
        if saved.last_id is not None and not probe.seqs and probe.removal_seq == saved.removal_seq:
            return f"row {saved.last_seq} is in the copy, and neither in the store nor replaced or removed there"
        while True:
            batch = self._store.index_rows(cube_id, writer.last_seq, writer.removal_seq, limit=LOAD_CHUNK)
            writer.apply(batch)
            if len(batch.ids) < LOAD_CHUNK:
                break
        if writer.live_count != batch.count:
            return f"patched, it holds {writer.live_count} rows and the store {batch.count}"
        return None

    def _save_if_due(self, entry: _Entry, cube_id: str) -> None:
        """Start saving the copy in the background when there is none on disk (after a delete removed
        it, ``RESAVE_AFTER_DELETE_S`` later) or the one there lags by a twentieth of the rows (in the feed, or
        in the approximate index built since)."""
        writer = entry.writer
        if not entry.cacheable or entry.save is not None or writer.live_count < SAVE_MIN_ROWS or not writer.holds_vectors:
            return
        if entry.saved_fed is None:
            due = entry.dropped_at is None or time.monotonic() - entry.dropped_at >= RESAVE_AFTER_DELETE_S
        else:
            lag = max(SAVE_MIN_TAIL, writer.live_count // 20)
            due = (writer.fed - entry.saved_fed >= lag
                   or _graph_rows(entry.snapshot) >= entry.saved_ann_rows + lag)  # a graph built since
        if due:
            entry.save = threading.Thread(target=self._save, args=(entry, cube_id),
                                          name=f"memkern-index-save-{cube_id[:8]}", daemon=True)
            entry.save.start()

    def _save(self, entry: _Entry, cube_id: str) -> None:
        """Save the entry's current snapshot for the next process (``memkern.retrieval.snapshot``).

        Written under the store's index cache lock, and only if the store has logged no removal since
        the snapshot: a delete committed before the check is seen by it, one committed after it
        waits for the lock and then removes what was written. A deleted memory never stays in a file.
        """
        try:
            with entry.lock:
                writer, index = entry.writer, entry.snapshot
                last_seq, removal_seq, revision, fed = writer.last_seq, writer.removal_seq, writer.revision, writer.fed
            saved = _saved_copy_of(index, cube_id, entry.embedder, last_seq, removal_seq, revision)
            saved.ann_rows = _graph_rows(index)
            parts = {name: data for name, (dump, _) in self._parts.items() if (data := dump(cube_id, index)) is not None}
            ann = index.ann
            save_graph = None if ann is None else (lambda path: ann.save(path, saved.ann_rows))
            with self._store.index_cache(cube_id, create=True) as directory:
                if directory is None:
                    entry.cacheable = False
                    return
                if self._store.index_rows(cube_id, last_seq, None, count=False, limit=0).removal_seq != removal_seq:
                    return  # a delete since the snapshot; the copy is saved again later
                saved_files.write(directory, saved, save_graph, parts)
            with entry.lock:
                if entry.writer is writer and writer.removal_seq == removal_seq:
                    entry.saved_fed, entry.saved_ann_rows, entry.saved_parts = fed, saved.ann_rows, set(parts)
        except NotFoundError:  # the cube was deleted meanwhile
            pass
        except Exception:  # the copy keeps serving; the next process reads the store
            log.exception("saving the index copy of cube %s failed", cube_id)
        finally:
            entry.save = None

    def _load(self, cube_id: str, dim: int) -> _IndexWriter:
        """A fresh copy of the cube's whole index, read ``LOAD_CHUNK`` rows at a time.

        In one read, a million rows held every vector three times at once (the rows, their
        joined bytes, the matrix): 7.2 GB at the peak. Chunks are patched in like any feed
        batch, so writes landing between two chunks are followed too.
        """
        first = self._store.index_rows(cube_id, 0, limit=LOAD_CHUNK)
        # Spare room (an eighth more, as a saved copy has): the first writes after a load must not copy every vector
        # (a million rows: a 1 GB copy inside some search) before capacity doubling takes over.
        searched = self._store.dense_search_ready(cube_id, dim)  # then the store reads the vectors, not us
        writer = _IndexWriter(dim, capacity=first.count + saved_files.spare_rows(first.count), holds_vectors=not searched)
        writer.apply(first)
        batch = first
        while len(batch.ids) == LOAD_CHUNK:
            batch = self._store.index_rows(cube_id, writer.last_seq, writer.removal_seq, count=False,
                                           limit=LOAD_CHUNK)
            writer.apply(batch)
        return writer

    def _patch(self, entry: _Entry, cube_id: str) -> None:
        """Apply the feed since the entry's position and publish; start a rebuild if it cannot be patched."""
        writer = entry.writer
        verify = time.monotonic() - entry.verified_at >= VERIFY_EVERY_S
        batch = self._store.index_rows(cube_id, writer.last_seq, writer.removal_seq, count=verify)
        writer.apply(batch)
        entry.snapshot = writer.snapshot()
        if batch.removed:  # the store removed the saved copy with the deleted memories
            entry.saved_fed, entry.dropped_at = None, time.monotonic()
        self._save_if_due(entry, cube_id)
        if verify:
            entry.verified_at = time.monotonic()
        missed = verify and writer.live_count != batch.count
        if (missed or writer.garbage > max(_MIN_GARBAGE, writer.live_count)) and entry.rebuild is None:
            if missed:
                log.info("index of cube %s holds %d rows, the store %d: rebuilding", cube_id,
                         writer.live_count, batch.count)
            entry.rebuild = threading.Thread(target=self._rebuild, args=(entry, cube_id),
                                             name=f"memkern-index-{cube_id[:8]}", daemon=True)
            entry.rebuild.start()

    def _rebuild(self, entry: _Entry, cube_id: str) -> None:
        """Load a fresh copy while the old one serves, catch it up with the feed, swap it in."""
        try:
            fresh = self._load(cube_id, entry.writer.dim)
            with entry.lock:
                fresh.apply(self._store.index_rows(cube_id, fresh.last_seq, fresh.removal_seq))
                entry.writer, entry.snapshot = fresh, fresh.snapshot()
                entry.saved_fed = None  # the saved copy may be what could not be patched: replace it
                entry.read_parts = {}  # rows renumbered: the saved parts no longer match them
                self._save_if_due(entry, cube_id)
        except Exception:  # the old copy keeps serving; the next mismatch tries again
            log.exception("background rebuild of the index of cube %s failed", cube_id)
        finally:
            entry.rebuild = None
