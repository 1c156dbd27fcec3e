"""What ranking works out from the texts of a cube index's rows, kept between searches.

Ranking reads the texts of its best few dozen candidates (the short-turn penalty and the reply
rule of ``memkern.retrieval.search``): their length, whether they ask, whom they speak of. On a
LoCoMo-size cube that store read was 0.5-0.9 ms of a 4-6.5 ms search, and the regular expressions
over it about 0.2 ms more; an agent's searches keep meeting the same memories. A row of the index
is one version of one memory and is never rewritten (``memkern.retrieval.index``: rows are only
appended), so what was worked out for it stays true for the row's life. Only that is kept, not
the text.

The cache is bounded (the rows kept longest go first), and a row's entry goes when the index
tombstones the row: once the index has learnt of a delete, nothing of the deleted memory is kept
here, and a search that read it just before cannot put it back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from itertools import islice
from typing import Generic, TypeVar

T = TypeVar("T")

#: Rows one index keeps values for: a few LoCoMo conversations, or a long agent session's hot set.
LIMIT = 4096


class RowTexts(Generic[T]):
    """Row -> what ranking worked out from its text, for one index writer and all its snapshots (thread-safe).

    ``is_live(row)``: whether the writer still holds the row live; the writer marks a row dead
    before it calls ``forget`` on it. None: every row is (an index no writer follows)."""

    def __init__(self, is_live: Callable[[int], bool] | None = None, limit: int = LIMIT) -> None:
        self._kept: dict[int, T] = {}
        self._is_live = is_live
        self._lock = threading.Lock()
        self._limit = limit

    def found(self, rows: Iterable[int]) -> dict[int, T]:
        """What is kept of ``rows`` (rows not kept are absent)."""
        get = self._kept.get
        return {row: value for row in rows if (value := get(row)) is not None}

    def keep(self, values: Mapping[int, T]) -> None:
        """Keep each row's value, except for rows tombstoned meanwhile (checked under the lock ``forget``
        takes, so that a row is either dropped by ``forget`` or never kept)."""
        with self._lock:
            for row, value in values.items():
                if self._is_live is None or self._is_live(row):
                    self._kept[row] = value
            over = len(self._kept) - self._limit
            for row in list(islice(self._kept, over)) if over > 0 else ():
                del self._kept[row]

    def forget(self, rows: Iterable[int]) -> None:
        """Drop what is kept of rows just tombstoned."""
        with self._lock:
            for row in rows:
                self._kept.pop(row, None)
