"""The texts of a cube index's rows, kept between searches.

Ranking reads the texts of its best few dozen candidates (the short-turn penalty and the reply
rule of ``memkern.retrieval.search``). On a LoCoMo-size cube that store read was 0.5-0.9 ms of a
4-6.5 ms search, and an agent's searches keep meeting the same memories. A row of the index is one
version of one memory and is never rewritten (``memkern.retrieval.index``: rows are only
appended), so what was read for it stays true for the row's life.

The cache is bounded (the rows kept longest go first), and a row's entry goes when the index
tombstones the row: once the index has learnt of a delete, the deleted memory's text is not kept
here, and a search that read it just before cannot put it back.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from itertools import islice

from memkern.store.base import MemoryText

#: Rows whose texts one index keeps: a few LoCoMo conversations, or a long agent session's hot set.
LIMIT = 4096


class RowTexts:
    """Row -> ``MemoryText`` for one index writer and all its snapshots (thread-safe)."""

    def __init__(self, limit: int = LIMIT) -> None:
        self._texts: dict[int, MemoryText] = {}
        #: Rows tombstoned: never kept again (row numbers are not reused within a writer).
        self._gone: set[int] = set()
        self._lock = threading.Lock()
        self._limit = limit

    def found(self, rows: Iterable[int]) -> dict[int, MemoryText]:
        """The kept texts of ``rows`` (rows not kept are absent)."""
        get = self._texts.get
        return {row: text for row in rows if (text := get(row)) is not None}

    def keep(self, texts: Mapping[int, MemoryText]) -> None:
        """Keep these rows' texts, except rows tombstoned meanwhile."""
        with self._lock:
            for row, text in texts.items():
                if row not in self._gone:
                    self._texts[row] = text
            over = len(self._texts) - self._limit
            for row in list(islice(self._texts, over)) if over > 0 else ():
                del self._texts[row]

    def forget(self, rows: Iterable[int]) -> None:
        """Drop tombstoned rows, now and for good."""
        with self._lock:
            for row in rows:
                self._gone.add(row)
                self._texts.pop(row, None)
