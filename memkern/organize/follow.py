"""Derived data kept in step with a cube's search index, one look at a time.

The index (``memkern.retrieval.index.CubeIndex``) follows the store by appending rows and
marking replaced or deleted rows dead. Everything ``memkern.organize`` derives from it (the
profile, the timeline) is kept the same way: each look reads only the rows appended since the
last one, and, for what needs it, takes back the rows that died. Only a rebuilt index (its rows
renumbered) makes a follower start again, from an empty value or from one saved by an earlier
process beside the index copy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from memkern.retrieval.index import CubeIndex

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _State(Generic[T]):
    value: T
    #: Rows read so far, the id of the last one (to notice renumbering) and which were alive then.
    rows: int
    last_id: str | None
    live: np.ndarray


class IndexFollower(Generic[T]):
    """One derived value per cube: ``fresh()`` makes an empty one, ``grew(value, cube_id, index, start,
    stop)`` folds in rows ``start:stop``, and ``died(value, cube_id, index, rows)`` (optional) takes
    back rows that were alive at the last look and are dead now.

    ``saved(cube_id)`` (optional) gives a value an earlier process saved beside the cube's index copy,
    with the rows of this process's index it covers and the id of the last one
    (``memkern.retrieval.index.IndexCache.saved_part``): the first look starts from it instead of
    from an empty value, so a million turns are not read again in every process."""

    def __init__(self, fresh: Callable[[], T], grew: Callable[[T, str, CubeIndex, int, int], None],
                 died: Callable[[T, str, CubeIndex, np.ndarray], None] | None = None, *,
                 saved: Callable[[str], tuple[T, int, str | None] | None] | None = None) -> None:
        self._fresh, self._grew, self._died, self._saved = fresh, grew, died, saved
        self._states: dict[str, _State[T]] = {}
        self._lock = threading.Lock()

    def get(self, cube_id: str, index: CubeIndex) -> T:
        """The value for the cube whose index snapshot is ``index``."""
        with self._lock:
            state = self._states.get(cube_id)
            if state is None or not _continues(state, index):
                state = self._restored(cube_id, index) or _State(self._fresh(), 0, None, np.zeros(0, dtype=bool))
            return self._advance(state, cube_id, index)

    def holds(self, cube_id: str) -> bool:
        """Whether this process has a value for the cube (read or restored by some look)."""
        return cube_id in self._states

    def value_at(self, cube_id: str, index: CubeIndex, dump: Callable[[T], R]) -> R | None:
        """``dump`` of the value brought to exactly ``index``, for saving beside the index copy; None when
        this process holds none for the cube (and no saved one to start from: nothing is built for a
        save) or holds one past ``index``."""
        with self._lock:
            state = self._states.get(cube_id) or self._restored(cube_id, index)
            if state is None or not _continues(state, index):
                return None
            return dump(self._advance(state, cube_id, index))

    def _restored(self, cube_id: str, index: CubeIndex) -> _State[T] | None:
        found = None if self._saved is None else self._saved(cube_id)
        if found is None:
            return None
        value, rows, last_id = found
        state = _State(value, rows, last_id, np.ones(rows, dtype=bool))
        return state if _continues(state, index) else None

    def _advance(self, state: _State[T], cube_id: str, index: CubeIndex) -> T:
        n = len(index)
        if self._died is not None and state.rows:
            gone = np.flatnonzero(state.live & ~index.live[:state.rows])
            if len(gone):
                self._died(state.value, cube_id, index, gone)
        if n > state.rows:
            self._grew(state.value, cube_id, index, state.rows, n)
        state.rows, state.last_id = n, (str(index.ids[n - 1]) if n else None)
        if self._died is not None:
            state.live = index.live[:n].copy()
        self._states[cube_id] = state
        return state.value


def _continues(state: _State[T], index: CubeIndex) -> bool:
    """Whether ``index`` extends the rows ``state`` has read (else the index was rebuilt: rows renumbered)."""
    return state.rows <= len(index) and (not state.rows or index.ids[state.rows - 1] == state.last_id)
