"""The store interface every back end implements.

The store owns durability: cubes, every version of every memory, their vectors, the
lexical index and the operation log. Retrieval and the cube API sit above it and never
speak SQL. A back end is one module (``sqlite``, later ``postgres``) implementing
``Store``; the shared test suite in ``tests/store`` runs against each of them.

Rules every implementation keeps:
- each method that writes is one transaction: it lands whole or not at all;
- only the current version of a memory is in the lexical and vector indexes;
- a delete removes every version, vector and index entry, leaving an id-only log entry;
- two writers adding the same message never create two memories (``dedup_keys``).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from memkern.errors import StoreError
from memkern.models import (
    ApiKey,
    AuditEntry,
    CubeInfo,
    Filters,
    Grant,
    LifecycleState,
    MemoryItem,
    MemoryKind,
    Operation,
    User,
)
from memkern.store.queue import JobQueue


@dataclass(frozen=True)
class MemoryText:
    """What the zero-LLM organisation reads of a memory (``memkern.organize``): its text, who said it and
    when, and whether it is active. Decoding a whole ``MemoryItem`` per turn cost most of building the
    profile of a large cube."""

    id: str
    text: str
    speaker: str | None
    role: str | None
    said_at: datetime | None
    state: LifecycleState


@dataclass
class IndexBatch:
    """The change feed of a cube's search index since some point.

    Retrieval keeps an in-memory copy of the index per cube and asks only for what changed
    since its copy. Every change to an indexed memory (add, new version, state change)
    writes its index row anew under a higher ``seq``, so the rows above the copy's last
    seq are the memories to add or replace; a delete leaves no row, so it is logged as a
    removal (``removed``, above the copy's last removal seq). ``count`` is the number of
    rows of the whole index: a copy that holds another number after patching has missed
    something (a log pruned, rows removed by another path) and must be rebuilt.
    """

    seqs: list[int] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    session_ids: list[str | None] = field(default_factory=list)
    positions: list[int | None] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    speakers: list[str | None] = field(default_factory=list)
    event_times: list[float | None] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    tags: list[list[str]] = field(default_factory=list)
    vectors: np.ndarray | None = None
    #: Number of rows in the whole index of the cube, not just this batch (-1: not counted).
    count: int = 0
    revision: int = 0
    #: Ids removed from the index after the removal seq asked for (oldest first).
    removed: list[str] = field(default_factory=list)
    #: The cube's highest removal seq at the time of the batch (0 if none).
    removal_seq: int = 0


@dataclass
class AddOutcome:
    """What ``add_memories`` wrote, and which inputs matched memories already stored."""

    added: list[MemoryItem]
    #: For each duplicate input (by its position in the batch), the id of the existing memory.
    duplicates: dict[int, str]


def dedup_keys(item: MemoryItem) -> tuple[str | None, str]:
    """Keys under which an item may exist only once among current versions of a cube.

    The source key names the message a turn came from (session + message id). The
    content key covers what arrives without an id: same kind, text, time and session.
    A message id is part of the content key too, so that two different messages with
    the same words ("Thanks!" twice in one session) are both kept.
    """
    source_key = None
    message_id = item.provenance.message_ids[0] if item.provenance.message_ids else ""
    if item.kind is MemoryKind.TURN and message_id:
        source_key = f"{item.provenance.session_id or ''}\x1f{message_id}"
    time = item.event_time.isoformat() if item.event_time else ""
    raw = "\x1f".join([item.kind.value, item.text, time, item.provenance.session_id or "", message_id])
    return source_key, hashlib.sha256(raw.encode("utf-8")).hexdigest()


class Store(ABC):
    """Durable home of cubes and plaintext memories (see the module docstring)."""

    # -- lifecycle ---------------------------------------------------------------------------------
    @abstractmethod
    def close(self) -> None: ...

    def job_queue(self) -> JobQueue:
        """The scheduler's durable job queue, in the store's own database."""
        raise StoreError(f"{type(self).__name__} has no job queue: the scheduler needs the SQLite or PostgreSQL store")

    @contextmanager
    def index_cache(self, cube_id: str, create: bool = False) -> Iterator[Path | None]:
        """A directory (perhaps not created yet) where retrieval may keep a copy of the cube's
        search index for the next process, or None (this default) where it should keep none;
        also None, unless ``create``, where no copy of any cube was ever kept (nothing to read).

        A cache, never a source of truth. The block holds a lock that the store's deletes take
        too: when a memory of the cube is deleted, or the cube deleted or purged, the store
        removes the directory under that lock after committing, before the call returns, so
        that no file keeps a deleted memory's id or vector. A writer of the directory checks,
        inside the block, that the store has logged no removal since the copy it writes.
        """
        yield None

    # -- cubes -------------------------------------------------------------------------------------
    @abstractmethod
    def create_cube(self, info: CubeInfo) -> CubeInfo:
        """Create a cube; ``ConflictError`` if the name is taken."""

    @abstractmethod
    def get_cube(self, name_or_id: str) -> CubeInfo:
        """``NotFoundError`` if neither a name nor an id matches."""

    @abstractmethod
    def list_cubes(self, owner: str | None = None) -> list[CubeInfo]: ...

    @abstractmethod
    def delete_cube(self, cube_id: str, actor: str | None = None) -> None:
        """Remove the cube with every memory, version, vector and index entry."""

    @abstractmethod
    def cube_revision(self, cube_id: str) -> int:
        """A number that changes whenever the cube's search index changes."""

    # -- writes ------------------------------------------------------------------------------------
    @abstractmethod
    def add_memories(self, cube_id: str, items: Sequence[MemoryItem], vectors: np.ndarray,
                     actor: str | None = None) -> AddOutcome:
        """Insert new memories (version 1) with their vectors, skipping duplicates (``dedup_keys``)."""

    @abstractmethod
    def update_memory(self, cube_id: str, new_version: MemoryItem, vector: np.ndarray,
                      expected_version: int) -> MemoryItem:
        """Close the current version and write ``new_version`` (its ``version`` is current + 1).

        ``ConflictError`` if the current version is no longer ``expected_version``:
        someone else updated it first and this update would silently overwrite theirs.
        """

    @abstractmethod
    def set_state(self, cube_id: str, memory_id: str, state: LifecycleState,
                  actor: str | None = None, reason: str | None = None) -> MemoryItem:
        """Move a memory to another lifecycle state (archive, restore); logged."""

    @abstractmethod
    def delete_memory(self, cube_id: str, memory_id: str, actor: str | None = None,
                      reason: str | None = None) -> None:
        """Remove every version and index entry; ``NotFoundError`` if absent."""

    @abstractmethod
    def record_access(self, cube_id: str, memory_ids: Sequence[str], at: datetime) -> None:
        """Count a read of these memories (drives reinforcement and archiving).

        Statistics, not memories: a back end may commit them without waiting for the disk (a power
        cut may lose the last counts, as a crash loses those still buffered in memory), so that a
        search that flushes them does not wait for an fsync."""

    @abstractmethod
    def import_cube(self, info: CubeInfo, versions: Sequence[MemoryItem], vectors: np.ndarray,
                    actor: str | None = None) -> CubeInfo:
        """Create a cube holding exactly these versions (current ones paired with ``vectors``
        in order). Used by ``load``: all or nothing."""

    # -- reads -------------------------------------------------------------------------------------
    @abstractmethod
    def get_memories(self, cube_id: str, memory_ids: Sequence[str]) -> dict[str, MemoryItem]:
        """Current versions of the given ids that exist; missing ids are simply absent."""

    @abstractmethod
    def get_texts(self, cube_id: str, memory_ids: Sequence[str]) -> dict[str, MemoryText]:
        """The text, speaker, time and state of the current versions of the given ids (missing ids absent)."""

    @abstractmethod
    def list_memories(self, cube_id: str, filters: Filters, limit: int | None = None,
                      offset: int = 0) -> list[MemoryItem]:
        """Current versions in insertion order."""

    @abstractmethod
    def history(self, cube_id: str, memory_id: str) -> list[MemoryItem]:
        """Every version of a memory, oldest first; ``NotFoundError`` if none."""

    @abstractmethod
    def export_versions(self, cube_id: str) -> tuple[list[MemoryItem], np.ndarray]:
        """Every version of every memory, and the vectors of the current ones in order."""

    @abstractmethod
    def operations(self, cube_id: str, memory_id: str | None = None,
                   limit: int | None = None) -> list[Operation]: ...

    # -- search primitives -------------------------------------------------------------------------
    @abstractmethod
    def index_rows(self, cube_id: str, after_seq: int, removals_after: int | None = None, *,
                   count: bool = True, limit: int | None = None) -> IndexBatch:
        """Index rows with sequence number above ``after_seq`` (the first ``limit`` of them if
        given), the cube's row count (-1 unless ``count``: counting walks the whole cube) and,
        in the same snapshot, the ids removed after removal seq ``removals_after`` (none asked
        when it is None; ``removal_seq`` is filled either way)."""

    @abstractmethod
    def lexical_search(self, cube_id: str, terms: Sequence[str], limit: int) -> list[tuple[str, float]]:
        """BM25 over current memories of the cube: ``(id, score)``, best first, score > 0.

        ``terms`` are already normalised words; a memory matches if it has any of them.
        """

    def dense_search(self, cube_id: str, query_vector: np.ndarray, limit: int, filters: Filters,
                     share: float = 1.0) -> list[tuple[str, float]] | None:
        """The ``limit`` current memories of the cube allowed by ``filters`` (as
        ``memkern.retrieval.search.filter_mask`` reads them) nearest to a unit query vector, as
        ``(id, inner product)`` best first; or None (this default) when the store does not search
        the cube's vectors itself and the caller scans its in-memory copy (``memkern.retrieval.index``).
        ``share`` is the fraction of the cube's memories the filters keep, when the caller knows it:
        the store may scan so few rows exactly rather than walk a graph for them.

        PostgreSQL answers for cubes with an HNSW index (``memkern.store.postgres.dense``), so that
        application nodes need not each hold a big cube's vectors."""
        return None

    def dense_search_ready(self, cube_id: str, dim: int) -> bool:
        """Whether ``dense_search`` answers for the cube's ``dim``-dimensional vectors from now on in
        this process (False, this default: never). Retrieval's index copy then holds no vectors."""
        return False

    # -- governance (users, keys, grants, audit; see memkern.governance) ---------------------------
    @abstractmethod
    def create_user(self, user: User) -> User:
        """``ConflictError`` if the id is taken."""

    @abstractmethod
    def get_user(self, user_id: str) -> User:
        """``NotFoundError`` if there is no such user."""

    @abstractmethod
    def list_users(self) -> list[User]: ...

    @abstractmethod
    def delete_user(self, user_id: str) -> None:
        """Remove a user with their keys and grants (not their cubes: see ``forget_user``)."""

    @abstractmethod
    def add_api_key(self, key: ApiKey) -> None:
        """Store a key record (its hash, never the key); ``ConflictError`` on a taken prefix."""

    @abstractmethod
    def get_api_key(self, prefix: str) -> ApiKey | None: ...

    @abstractmethod
    def list_api_keys(self, user_id: str | None = None) -> list[ApiKey]: ...

    @abstractmethod
    def revoke_api_key(self, prefix: str, at: datetime | None = None) -> None:
        """Mark a key revoked (idempotent); ``NotFoundError`` if no key has that prefix."""

    @abstractmethod
    def set_grant(self, grant: Grant) -> None:
        """Give (or change) a user's permission on a cube; ``NotFoundError`` for an unknown cube or user."""

    @abstractmethod
    def delete_grant(self, cube_id: str, user_id: str) -> bool:
        """Remove a grant; False if there was none."""

    @abstractmethod
    def list_grants(self, cube_id: str | None = None, user_id: str | None = None) -> list[Grant]: ...

    @abstractmethod
    def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        """Append entries to the audit log (ids only, never memory text or keys)."""

    @abstractmethod
    def query_audit(self, cube_id: str | None = None, user_id: str | None = None,
                    since: datetime | None = None, limit: int | None = None) -> list[AuditEntry]:
        """Audit entries matching every given filter, newest first."""

    @abstractmethod
    def set_cube_metadata(self, cube_id: str, metadata: dict) -> CubeInfo:
        """Replace a cube's metadata (where its policy lives); ``NotFoundError`` if absent."""

    @abstractmethod
    def forget_user(self, user_id: str, actor: str | None = None) -> list[str]:
        """Purge everything of a user in one transaction: the cubes they own with every memory,
        version, vector, index entry, operation and audit entry; their grants, keys and user
        row; their own audit entries. Leaves one id-level audit entry ``forget_user``.
        Returns the ids of the purged cubes; ``NotFoundError`` if the id names nothing."""
