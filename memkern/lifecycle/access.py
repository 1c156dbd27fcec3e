"""Access statistics, recorded cheaply: reads are counted in memory and written in batches.

``search`` and ``get`` note the ids they return; the counts reach the store
(``Store.record_access``: ``access_count``, ``last_accessed_at``) when ``flush_every``
ids are waiting, when ``flush_after_s`` passed since the last write, before the
scheduler plans a promotion or demotion, and when the ``MemOS`` closes. A read therefore
costs a dictionary update, not a write transaction. Counts buffered by a process that
crashes are lost, and the store commits them without waiting for the disk (a power cut may
lose the last batch: ``Store.record_access``); that only makes a memory look a little colder
than it was. Written on the read path by the search that crosses the threshold, they cost
that search no fsync. Written in a background thread instead, they cost the next searches
more (their Python holds the GIL): measured and not done.

Internal reads (the update decisions looking for candidates, an update reading the
version it replaces) are not recalls: operations read the store directly for them
(``memkern.ops.search.find``, ``memkern.ops.versions.current``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from datetime import datetime

from memkern.models import utcnow
from memkern.store.base import Store


class AccessRecorder:
    def __init__(self, store: Store, *, flush_every: int = 256, flush_after_s: float = 2.0) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._pending: dict[str, dict[str, int]] = {}
        self._latest: dict[str, datetime] = {}
        self._count = 0
        self._last_flush = time.monotonic()
        self.flush_every = flush_every
        self.flush_after_s = flush_after_s
        self.enabled = True

    def note(self, cube_id: str, memory_ids: Iterable[str]) -> None:
        if not self.enabled:
            return
        ids = list(memory_ids)
        if not ids:
            return
        with self._lock:
            counts = self._pending.setdefault(cube_id, {})
            for memory_id in ids:
                counts[memory_id] = counts.get(memory_id, 0) + 1
            self._latest[cube_id] = utcnow()
            self._count += len(ids)
            due = self._count >= self.flush_every or time.monotonic() - self._last_flush >= self.flush_after_s
        if due:
            self.flush()

    def flush(self) -> int:
        """Write what is buffered; returns the number of reads written."""
        with self._lock:
            pending, latest = self._pending, self._latest
            self._pending, self._latest, self._count = {}, {}, 0
            self._last_flush = time.monotonic()
        written = 0
        for cube_id, counts in pending.items():
            ids = [memory_id for memory_id, n in counts.items() for _ in range(n)]
            try:
                self._store.record_access(cube_id, ids, latest.get(cube_id) or utcnow())
                written += len(ids)
            except Exception:  # noqa: BLE001 - statistics never fail a read (a deleted cube, a closed store)
                continue
        return written
