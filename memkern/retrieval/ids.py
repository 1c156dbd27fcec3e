"""Memory ids of a cube's index copy: the id each row holds, and the row that holds an id.

A copy read from a saved generation (``memkern.retrieval.snapshot``) holds up to a million ids.
Parsing them into Python strings and building a dict of ``id -> row`` took about 0.9 s of a new
process's first search at a million rows, so the saved ids stay in their files, mapped
(:class:`SavedIds`): one UTF-8 blob with the end offset of each id, and the ids' CRC-32 values
sorted, with the row of each. A row's id is a slice of the blob, an id's row a binary search.
Rows written after the copy was read live in ordinary Python structures beside them
(:class:`RowLookup`, :class:`IdColumn`).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

#: Ids whose hash is checked against the files when a saved copy is read (a spot check of a cache).
_SPOT_CHECKS = 64


def id_hashes(ids: Iterable[str]) -> np.ndarray:
    """CRC-32 of each id's UTF-8 bytes (stable across processes, unlike ``hash``)."""
    return np.fromiter((zlib.crc32(memory_id.encode("utf-8")) for memory_id in ids), dtype=np.uint32)


class SavedIds:
    """The ids of a saved copy's rows, in four arrays that are saved and mapped as they are.

    ``blob``: every id's UTF-8 bytes, concatenated; ``ends``: where each row's id ends in it;
    ``hashes``: the ids' :func:`id_hashes`, ascending; ``order``: the row of each of those hashes.
    """

    #: The arrays, by attribute name, with their types.
    ARRAYS = {"blob": np.uint8, "ends": np.int64, "hashes": np.uint32, "order": np.int64}

    def __init__(self, blob: np.ndarray, ends: np.ndarray, hashes: np.ndarray, order: np.ndarray) -> None:
        self.blob, self.ends, self.hashes, self.order = blob, ends, hashes, order

    @classmethod
    def of(cls, ids: Sequence[str]) -> SavedIds:
        """The arrays of ``ids`` in row order, built in memory (to be saved)."""
        encoded = [memory_id.encode("utf-8") for memory_id in ids]
        ends = np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), dtype=np.int64)
        hashes = id_hashes(ids)
        order = np.argsort(hashes, kind="stable").astype(np.int64)
        return cls(np.frombuffer(b"".join(encoded), dtype=np.uint8), ends, hashes[order], order)

    def check(self) -> None:
        """Raise ValueError unless the arrays are consistent: offsets in the blob, sorted hashes, rows
        in range, a sample of ids with their hashes, and no id twice (compared where hashes collide)."""
        for name, dtype in self.ARRAYS.items():
            array = getattr(self, name)
            if array.dtype != np.dtype(dtype) or array.ndim != 1:
                raise ValueError(f"the id {name} are {array.dtype} {array.shape}, not {np.dtype(dtype)} (rows,)")
        n = len(self.ends)
        if len(self.hashes) != n or len(self.order) != n:
            raise ValueError(f"the id arrays disagree on the row count ({n}, {len(self.hashes)}, {len(self.order)})")
        if not n:
            return
        if int(self.ends[0]) < 0 or np.any(self.ends[1:] < self.ends[:-1]) or int(self.ends[-1]) != len(self.blob):
            raise ValueError("the id offsets do not cover the id bytes in order")
        if np.any(self.hashes[1:] < self.hashes[:-1]) or int(self.order.min()) < 0 or int(self.order.max()) >= n:
            raise ValueError("the id hashes are not sorted, or point outside the rows")
        sample = np.linspace(0, n - 1, min(n, _SPOT_CHECKS)).astype(np.int64)
        if not np.array_equal(id_hashes(self[int(self.order[i])] for i in sample), self.hashes[sample]):
            raise ValueError("the id hashes do not match the ids")
        collided = np.flatnonzero(self.hashes[1:] == self.hashes[:-1])
        for i in collided.tolist():
            if self[int(self.order[i])] == self[int(self.order[i + 1])]:
                raise ValueError(f"the id {self[int(self.order[i])]!r} is saved twice")

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, row: int | np.integer) -> str:
        n = len(self.ends)
        row = int(row) + (n if row < 0 else 0)
        if not 0 <= row < n:
            raise IndexError(row)
        start = int(self.ends[row - 1]) if row else 0
        return self.blob[start:int(self.ends[row])].tobytes().decode("utf-8")

    def __iter__(self) -> Iterator[str]:
        return (self[row] for row in range(len(self)))

    def find(self, memory_id: str) -> int | None:
        """The row holding ``memory_id``, or None."""
        return self.find_all([memory_id])[0]

    def find_all(self, memory_ids: Sequence[str]) -> list[int | None]:
        """The row holding each id, or None: one binary search for all of them, then each id
        compared with the saved bytes of its candidate row (the next ones on a hash collision)."""
        wanted = id_hashes(memory_ids)
        n = len(self.hashes)
        starts = np.minimum(np.searchsorted(self.hashes, wanted), max(n - 1, 0))
        if not n:
            return [None] * len(memory_ids)
        candidates = self.order[starts]
        ends = self.ends[candidates]
        begins = np.where(candidates > 0, self.ends[np.maximum(candidates - 1, 0)], 0)
        same_hash = self.hashes[starts] == wanted
        blob = self.blob
        found: list[int | None] = []
        for memory_id, row, begin, end, hashed, start in zip(
                memory_ids, candidates.tolist(), begins.tolist(), ends.tolist(), same_hash.tolist(), starts.tolist()):
            if not hashed:
                found.append(None)
            elif blob[begin:end].tobytes() == memory_id.encode("utf-8"):
                found.append(row)
            else:
                found.append(self._after_collision(memory_id, start + 1))
        return found

    def _after_collision(self, memory_id: str, start: int) -> int | None:
        """The row of ``memory_id`` among the ids sharing its hash from position ``start`` on."""
        h = int(id_hashes([memory_id])[0])
        for i in range(start, len(self.hashes)):
            if int(self.hashes[i]) != h:
                break
            if self[int(self.order[i])] == memory_id:
                return int(self.order[i])
        return None


class RowLookup:
    """``memory id -> row`` for a copy's writer: a saved copy's ids (:class:`SavedIds`) under a dict
    of the rows written since, which wins where both hold an id (a newer row of the same memory).

    A row found may be dead (tombstoned): callers check the copy's ``live`` mask, as
    :class:`memkern.retrieval.index.RowMap` does.
    """

    def __init__(self, saved: SavedIds | None = None) -> None:
        self.saved = saved
        self.added: dict[str, int] = {}

    def get(self, memory_id: str) -> int | None:
        row = self.added.get(memory_id)
        if row is None and self.saved is not None:
            row = self.saved.find(memory_id)
        return row

    def get_all(self, memory_ids: Sequence[str]) -> list[int | None]:
        """:meth:`get` of each id, the saved ones found in one binary search."""
        rows: list[int | None] = [self.added.get(memory_id) for memory_id in memory_ids]
        if self.saved is not None:
            missing = [i for i, row in enumerate(rows) if row is None]
            if missing:
                for i, row in zip(missing, self.saved.find_all([memory_ids[i] for i in missing])):
                    rows[i] = row
        return rows

    def add(self, memory_ids: Iterable[str], rows: Iterable[int]) -> None:
        self.added.update(zip(memory_ids, rows))

    def forget(self, memory_id: str, row: int) -> None:
        """Drop ``memory_id`` if ``row`` is its newest row (a saved one is left: its row is dead)."""
        if self.added.get(memory_id) == row:
            del self.added[memory_id]


class IdColumn:
    """The memory id of each row of a snapshot: the saved copy's first rows from :class:`SavedIds`,
    the rest from the writer's object array (which holds None for the saved rows)."""

    def __init__(self, saved: SavedIds | None, written: np.ndarray) -> None:
        self._saved, self._written = saved, written
        self._first_written = 0 if saved is None else len(saved)

    def __len__(self) -> int:
        return len(self._written)

    def __getitem__(self, row: int | np.integer) -> str:
        row = int(row) + (len(self) if row < 0 else 0)
        if self._saved is not None and 0 <= row < self._first_written:
            return self._saved[row]
        return str(self._written[row])

    def take(self, rows: np.ndarray) -> list[str]:
        """The ids of ``rows``, in that order."""
        return [self[row] for row in rows.tolist()]
