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
- the store's row count is checked with a patch at most every ``VERIFY_EVERY_S`` seconds
  (counting walks the whole cube, too much for every search after a write). A copy holding another number has missed something it cannot patch (another
  process compacted, a migration, rows removed by a path that logs no removal): it is
  rebuilt in the background while it keeps serving, as it is when tombstones outnumber
  live rows.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

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


def _slot_key(code: int, position: int) -> int:
    """(session code, position) packed in one int: a dict of a million tuples costs ~100 MB more."""
    return (code << 32) | position


class RowMap(Mapping[str, int]):
    """``memory id -> row`` as a snapshot sees it: rows appended after it, or dead in it, are absent."""

    def __init__(self, rows: dict[str, int], n: int, live: np.ndarray) -> None:
        self._rows, self._n, self._live = rows, n, live

    def get(self, key: object, default: int | None = None) -> int | None:  # type: ignore[override]
        row = self._rows.get(key)  # type: ignore[call-overload]
        return row if row is not None and row < self._n and self._live[row] else default

    def __getitem__(self, key: str) -> int:
        row = self.get(key)
        if row is None:
            raise KeyError(key)
        return row

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None

    def __iter__(self) -> Iterator[str]:
        return (key for key, row in list(self._rows.items()) if row < self._n and self._live[row])

    def __len__(self) -> int:
        return sum(1 for _ in self)


class SlotMap:
    """``(session code, position) -> row`` as a snapshot sees it, for neighbour lookups."""

    def __init__(self, slots: dict[int, int], n: int, live: np.ndarray) -> None:
        self._slots, self._n, self._live = slots, n, live

    def get(self, key: tuple[int, int], default: int | None = None) -> int | None:
        code, position = key
        if position < 0:
            return default
        row = self._slots.get((code << 32) | position)  # _slot_key, inlined: called per candidate twice
        return row if row is not None and row < self._n and self._live[row] else default


@dataclass(frozen=True)
class CubeIndex:
    """What one search reads: the first ``len(self)`` rows of a cube's index, fixed.

    Dead rows (deleted, or replaced by a newer row of the same memory) stay in the arrays
    with ``live`` (and ``active``) False, so every filter starts from one of those masks.
    """

    dim: int
    revision: int
    #: Memory id of each row (an object array of ``str``).
    ids: np.ndarray
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
    slot: SlotMap
    speakers_present: frozenset[str]
    #: Rows with a live memory.
    live_count: int

    def __len__(self) -> int:
        return len(self.live)

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


class _Columns:
    """Per-row arrays with spare capacity. Rows below the used length are never rewritten,
    so a snapshot's views of them stay valid while later rows are written."""

    def __init__(self, dim: int, capacity: int) -> None:
        self.capacity = capacity
        self.vectors = np.empty((capacity, dim), dtype=np.float32)
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

    def __init__(self, dim: int, capacity: int = 0) -> None:
        self.dim = dim
        self.columns = _Columns(dim, max(capacity, _MIN_CAPACITY))
        self.n = 0
        self.live_count = 0
        self.tags: list[tuple[str, ...]] = []
        self.row_of: dict[str, int] = {}
        self.slots: dict[int, int] = {}
        self.session_names: list[str | None] = []
        self.session_code: dict[str | None, int] = {}
        self.speaker_rows: dict[str, int] = {}
        self.interned: dict[str, str] = {}
        self.revision = -1
        self.last_seq = 0
        self.removal_seq = 0

    @property
    def garbage(self) -> int:
        return self.n - self.live_count

    def apply(self, batch: IndexBatch) -> None:
        """Patch in a batch of the feed: removals first, then the rows (new or replacing)."""
        dead = [row for memory_id in [*batch.removed, *batch.ids]
                if (row := self.row_of.get(memory_id)) is not None]
        if dead:
            self._tombstone(dead)
        if batch.ids:
            self._append(batch)
            self.last_seq = batch.seqs[-1]
        self.removal_seq = max(self.removal_seq, batch.removal_seq)
        self.revision = batch.revision

    def _tombstone(self, rows: list[int]) -> None:
        columns = self.columns
        # Copy-on-write: published snapshots keep the masks they were given.
        columns.live, columns.active = columns.live.copy(), columns.active.copy()
        for row in rows:
            if not columns.live[row]:
                continue
            columns.live[row] = columns.active[row] = False
            self.live_count -= 1
            memory_id = columns.ids[row]
            if self.row_of.get(memory_id) == row:
                del self.row_of[memory_id]
            position = int(columns.positions[row])
            if position >= 0:
                key = _slot_key(int(columns.session_codes[row]), position)
                if self.slots.get(key) == row:
                    del self.slots[key]
            speaker = columns.speakers[row]
            if speaker:
                self.speaker_rows[speaker] -= 1
                if not self.speaker_rows[speaker]:
                    del self.speaker_rows[speaker]

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
        if batch.vectors is not None:
            columns.vectors[start:end] = batch.vectors
        rows = range(start, end)
        self.row_of.update(zip(batch.ids, rows))
        placed = positions >= 0
        self.slots.update(zip(((codes[placed] << 32) | positions[placed]).tolist(),
                              (np.flatnonzero(placed) + start).tolist()))
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
            dim=self.dim, revision=self.revision, ids=columns.ids[:n], row_of=RowMap(self.row_of, n, live),
            session_codes=columns.session_codes[:n], session_names=self.session_names,
            positions=columns.positions[:n], event_times=columns.event_times[:n], kinds=columns.kinds[:n],
            speakers=columns.speakers[:n], states=columns.states[:n], live=live, active=columns.active[:n],
            tags=self.tags, vectors=columns.vectors[:n], slot=SlotMap(self.slots, n, live),
            speakers_present=frozenset(self.speaker_rows), live_count=self.live_count,
        )


class _Entry:
    """One cube's copy: its writer, the snapshot searches read, and a rebuild in flight."""

    def __init__(self, writer: _IndexWriter) -> None:
        self.writer = writer
        self.snapshot = writer.snapshot()
        self.lock = threading.Lock()
        self.rebuild: threading.Thread | None = None
        self.verified_at = time.monotonic()


class IndexCache:
    """One index copy per cube, patched from the store's change feed when its revision moves."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def get(self, cube_id: str, dim: int) -> CubeIndex:
        revision = self._store.cube_revision(cube_id)
        entry = self._entries.get(cube_id)
        if entry is not None and entry.snapshot.revision == revision and entry.writer.dim == dim:
            return entry.snapshot
        with self._lock:
            entry = self._entries.get(cube_id)
            if entry is None or entry.writer.dim != dim:
                entry = self._entries[cube_id] = _Entry(self._load(cube_id, dim))
                return entry.snapshot
        with entry.lock:
            if entry.writer.revision != revision:
                self._patch(entry, cube_id)
            return entry.snapshot

    def forget(self, cube_id: str) -> None:
        with self._lock:
            self._entries.pop(cube_id, None)

    def wait_rebuilds(self, timeout_s: float | None = None) -> None:
        """Return once no background rebuild is running (tests and benchmarks)."""
        for entry in list(self._entries.values()):
            thread = entry.rebuild
            if thread is not None:
                thread.join(timeout_s)

    def _load(self, cube_id: str, dim: int) -> _IndexWriter:
        """A fresh copy of the cube's whole index, read ``LOAD_CHUNK`` rows at a time.

        In one read, a million rows held every vector three times at once (the rows, their
        joined bytes, the matrix): 7.2 GB at the peak. Chunks are patched in like any feed
        batch, so writes landing between two chunks are followed too.
        """
        first = self._store.index_rows(cube_id, 0, limit=LOAD_CHUNK)
        # Room for an eighth more: the first writes after a load must not copy every vector
        # (a million rows: a 1 GB copy inside some search) before capacity doubling takes over.
        writer = _IndexWriter(dim, capacity=first.count + first.count // 8)
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
        except Exception:  # the old copy keeps serving; the next mismatch tries again
            log.exception("background rebuild of the index of cube %s failed", cube_id)
        finally:
            entry.rebuild = None
