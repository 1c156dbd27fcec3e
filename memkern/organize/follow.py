"""Derived data kept in step with a cube's search index, one look at a time.

The index (``memkern.retrieval.index.CubeIndex``) follows the store by appending rows and
marking replaced or deleted rows dead. Everything ``memkern.organize`` derives from it (the
profile, the timeline, the entity links) is kept the same way: each look reads only the rows
appended since the last one, and, for what needs it, takes back the rows that died. Only a
rebuilt index (its rows renumbered) makes a follower start again from an empty value.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from memkern.retrieval.index import CubeIndex

T = TypeVar("T")


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
    back rows that were alive at the last look and are dead now."""

    def __init__(self, fresh: Callable[[], T], grew: Callable[[T, str, CubeIndex, int, int], None],
                 died: Callable[[T, str, CubeIndex, np.ndarray], None] | None = None) -> None:
        self._fresh, self._grew, self._died = fresh, grew, died
        self._states: dict[str, _State[T]] = {}
        self._lock = threading.Lock()

    def get(self, cube_id: str, index: CubeIndex) -> T:
        """The value for the cube whose index snapshot is ``index``."""
        with self._lock:
            state = self._states.get(cube_id)
            n = len(index)
            if state is None or state.rows > n or (state.rows and index.ids[state.rows - 1] != state.last_id):
                state = _State(self._fresh(), 0, None, np.zeros(0, dtype=bool))
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
