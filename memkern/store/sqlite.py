"""The embedded default store: one SQLite file in WAL mode.

Threads write through one connection behind a lock and read through a second one behind
another, so that a search never waits for a write transaction (a WAL reader sees the last
commit). With one connection for both, a search while another thread ingested into the same
store waited for each of its transactions: p50 37-40 ms against 11-14 ms now
(``scripts/measure_concurrent_search.py``).
Several processes share the file through SQLite's own locking (``BEGIN IMMEDIATE`` takes
the write lock up front, so a writer waits instead of failing half way). Commits are
``synchronous=FULL``: when a write returns, it survives a crash of the process or of the
machine. An in-memory database (``:memory:``) is one connection, used for both.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import sys

try:  # SQLite 3.44 or later, where the wheel exists: its FTS5 erases a deleted row's words at once (_scrub)
    from pysqlite3 import dbapi2 as sqlite3
except ImportError:  # elsewhere, Python's own SQLite (erasure then merges the whole index)
    import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import numpy as np

from memkern.errors import StoreError
from memkern.governance.sqlstore import GovernanceSQL
from memkern.models import CubeInfo, Filters, LifecycleState, MemoryItem, Operation, utcnow
from memkern.store import sql
from memkern.store.base import AddOutcome, IndexBatch, MemoryText, Store
from memkern.store.dialect import SQLITE
from memkern.store.queue import SQLJobQueue
from memkern.store.sql import VERSION_COLUMNS, row_to_item
from memkern.store.sqlite_schema import MIGRATIONS, SCHEMA_VERSION

log = logging.getLogger(__name__)

#: Whether FTS5 can remove a deleted row's words from its index segments at once (SQLite 3.44+).
FTS5_SECURE_DELETE = sqlite3.sqlite_version_info >= (3, 44, 0)

#: Renders the statements shared with PostgreSQL (``memkern.store.sql``).
_q = SQLITE.sql

#: A cube's index rows: counted as they are written (``SQLiteStore._add_index_rows``) and as they go
#: (the schema's trigger, ``sqlite_schema``).
_INDEX_COUNT = "SELECT indexed FROM cubes WHERE id = ?"
#: Seconds a cube's share of the lexical index is reused after writes (``_cube_share``).
_SHARE_TTL_S = 5.0
#: Past this many rows in the lexical index, a query's terms that occur in more than
#: ``COMMON_TERM_SHARE`` of them are left out of its lexical query, and a query of only such terms
#: has no lexical half. BM25 gives such a term little weight, yet scoring every row it matches is
#: most of the query's time: at 100,000 synthetic turns a name in a third of them made one query
#: 55 ms, at a million "job" alone (in 5.7 % of the rows) 80-110 ms, to rank its rows by little more
#: than their length. The dense half still reads every word. Smaller indexes (a conversation, a
#: LongMemEval haystack) are unchanged.
PRUNE_FROM_ROWS = 20_000
COMMON_TERM_SHARE = 0.05
#: Past ``PRUNE_FROM_ROWS``, the terms kept are also the rarest whose rows add up to at most this
#: many (the rarest always stays). FTS5 scores every row a term matches (1.4-2 microseconds each
#: here): at a million turns a question of six words each in 1-4 % of the rows scored 140,000 rows
#: (150-250 ms); the words left out are the query's most common ones, which BM25 weighs least.
#: 45,000 rather than 60,000 took the million-turn hybrid p95 from 110-127 to 83-84 ms with the same
#: hits (``memkern bench scale``'s questions, at 100,000 and at a million turns).
POSTINGS_BUDGET = 45_000


def _cache_name(cube_id: str) -> str:
    """A cube's directory in the index cache: its id hashed, a safe file name whatever the id."""
    return hashlib.sha256(cube_id.encode("utf-8")).hexdigest()[:32]


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created if missing), across threads and processes."""
    import fcntl  # POSIX only: the index cache is off elsewhere (``SQLiteStore._index_cache_root``)

    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fts_query(cube_id: str | None, terms: Sequence[str]) -> str:
    quoted = " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)
    words = f"{{text entities}} : ({quoted})"
    return f'cube : "{cube_id}" AND {words}' if cube_id else words


class SQLiteStore(GovernanceSQL, Store):
    """``Store`` on one SQLite file (see the module docstring)."""

    # -- governance hooks (memkern.governance.sqlstore) ----------------------------------------------
    _gov_dialect = SQLITE

    def _gov_tx(self):
        return self._write()

    def _gov_read(self, query: str, params: Sequence[object] = ()) -> list[tuple]:
        return self._read(query, params)

    def _gov_purge_cube(self, db: sqlite3.Connection, cube_id: str) -> None:
        self._unindex_cube(db, cube_id)
        for statement in sql.PURGE_CUBE:
            db.execute(_q(statement), (cube_id,))

    def _gov_after_forget(self) -> None:
        self._drop_index_caches()
        self._scrub()

    def _scrub(self) -> None:
        """Make deleted text unrecoverable from the files once a delete returns.

        The deleted rows were overwritten with zeros (``secure_delete`` is on for every
        connection). The full-text index keeps a deleted row's words in its older segments:
        with SQLite 3.44 or later its ``secure-delete`` option (set when the store opens)
        removes them at once; before that, merging the whole index (``optimize``, whose cost
        grows with the index) rewrites the segments without them, and the freed pages are
        zeroed. Last, the WAL, which still holds the pages as they were before, is copied
        into the database and truncated to nothing.
        """
        if not FTS5_SECURE_DELETE:
            with self._write() as db:
                db.execute("INSERT INTO memory_fts(memory_fts) VALUES('optimize')")
        with self._lock:  # waits (busy_timeout) for other connections' readers to move past the WAL
            busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:  # the delete itself is committed: say so, rather than fail it
            log.warning("deleted text is gone from every table of %s, but its WAL could not be truncated while "
                        "other connections kept reading; the next delete or checkpoint will", self.path)

    def __init__(self, path: str | Path, *, timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._connect(timeout_s)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            # Deleted text is overwritten with zeros, not left in free pages of the file.
            self._db.execute("PRAGMA secure_delete=ON")
            self._db.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open the store at {self.path}: {exc}") from exc
        self._lock = threading.RLock()
        #: Commits made through the writing connection (``PRAGMA data_version`` counts the others').
        self._commits = 0
        self._shares: dict[str, float] = {}
        self._shares_key: tuple[int, int] | None = None
        self._shares_at = 0.0
        self._index_rows = 0
        #: Index rows the open write transaction added, per cube: ``cubes.indexed`` grows by them once
        #: at its end. A trigger per row, as removals have, was 8 % of LoCoMo ingestion.
        self._index_rows_added: Counter[str] = Counter()
        #: Share of the lexical index each query term occurs in, forgotten when the shares are recounted.
        self._term_shares: dict[str, float] = {}
        self._migrate()
        if FTS5_SECURE_DELETE:  # a persistent option of the index; see _scrub
            with self._write() as db:
                db.execute("INSERT INTO memory_fts(memory_fts, rank) VALUES('secure-delete', 1)")
        # Reads go through their own connection (opened on the migrated schema), which never writes.
        self._reader, self._read_lock = self._db, self._lock
        if str(self.path) != ":memory:":  # a second connection to ":memory:" would be another database
            try:
                self._reader = self._connect(timeout_s)
                self._reader.execute("PRAGMA query_only=ON")
            except sqlite3.DatabaseError as exc:
                self._db.close()
                raise StoreError(f"cannot open the store at {self.path} for reading: {exc}") from exc
            self._read_lock = threading.RLock()

    def _connect(self, timeout_s: float) -> sqlite3.Connection:
        return sqlite3.connect(str(self.path), timeout=timeout_s, isolation_level=None, check_same_thread=False)

    # -- plumbing ----------------------------------------------------------------------------------
    @contextmanager
    def _write(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken with the write lock so that it cannot fail half way.

        ``durable=False`` commits without waiting for the disk (``synchronous=NORMAL`` for this
        transaction): still atomic and never corrupting, but a power cut may take it back. Only for
        what may be lost, as the store's access statistics may (``record_access``)."""
        with self._lock, self._synchronous(durable):
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StoreError(f"the store at {self.path} is locked by another writer: {exc}") from exc
            try:
                yield self._db
                for cube_id, added in self._index_rows_added.items():
                    self._db.execute("UPDATE cubes SET indexed = indexed + ? WHERE id = ?", (added, cube_id))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")
                self._commits += 1
            finally:
                self._index_rows_added.clear()

    @contextmanager
    def _synchronous(self, durable: bool) -> Iterator[None]:
        """A block of the writing connection: at ``synchronous=NORMAL`` unless ``durable``, then ``FULL`` again."""
        if durable:
            yield
            return
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            yield
        finally:
            self._db.execute("PRAGMA synchronous=FULL")

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        """Rows of one read, as of the last commit, without waiting for a write in progress."""
        with self._read_lock:
            return self._reader.execute(sql, params).fetchall()

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """Several reads from one snapshot (a read transaction on the reading connection)."""
        with self._read_lock:
            self._reader.execute("BEGIN")
            try:
                yield self._reader
            finally:
                self._reader.execute("COMMIT")

    def _migrate(self) -> None:
        with self._write() as db:
            has_meta = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
            ).fetchone()
            version = 0
            if has_meta:
                row = db.execute(_q(sql.SCHEMA_VERSION_READ)).fetchone()
                version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the store at {self.path} has schema version {version}; this memkern "
                    f"understands up to {SCHEMA_VERSION}: upgrade memkern"
                )
            for step in range(version, SCHEMA_VERSION):
                for statement in _split_sql(MIGRATIONS[step]):
                    db.execute(statement)
                db.execute(_q(sql.SCHEMA_VERSION_WRITE), (str(step + 1),))

    def job_queue(self) -> SQLJobQueue:
        """The scheduler's job queue in this database."""
        return SQLJobQueue(self._write, self._read, SQLITE)

    def close(self) -> None:
        with self._lock, self._read_lock:
            self._reader.close()
            self._db.close()

    # -- index cache (``Store.index_cache``) --------------------------------------------------------
    def _index_cache_root(self) -> Path | None:
        """``<file>-index/`` beside the database: one directory per cube and a lock file. None for an
        in-memory database, and on Windows (no ``flock`` for the lock deletes take)."""
        if str(self.path) == ":memory:" or sys.platform == "win32":
            return None
        return self.path.with_name(self.path.name + "-index")

    @contextmanager
    def index_cache(self, cube_id: str, create: bool = False) -> Iterator[Path | None]:
        root = self._index_cache_root()
        if root is None or not (create or root.is_dir()):
            yield None
            return
        root.mkdir(exist_ok=True)
        with _file_lock(root / "lock"):
            yield root / _cache_name(cube_id)

    def _drop_index_caches(self, cube_id: str | None = None) -> None:
        """Remove the index cache of ``cube_id`` (None: of every cube that no longer exists), once a
        delete has committed (see ``Store.index_cache``)."""
        root = self._index_cache_root()
        if root is None or not root.is_dir():
            return
        existing = {_cache_name(c) for (c,) in self._read("SELECT id FROM cubes")} if cube_id is None else set()
        with _file_lock(root / "lock"):
            names = [_cache_name(cube_id)] if cube_id is not None else [
                entry.name for entry in root.iterdir() if entry.is_dir() and entry.name not in existing]
            for name in names:
                try:
                    shutil.rmtree(root / name)
                except FileNotFoundError:
                    pass
                except OSError as exc:  # the delete is committed: say so loudly rather than fail it
                    log.error("the index cache %s of a deleted memory or cube could not be removed: %s",
                              root / name, exc)

    @staticmethod
    def _log(db: sqlite3.Connection, cube_id: str, op: str, memory_id: str | None = None,
             version: int | None = None, actor: str | None = None, reason: str | None = None) -> None:
        db.execute(_q(sql.LOG_OPERATION), (utcnow().isoformat(), cube_id, memory_id, version, op, actor, reason))

    @staticmethod
    def _bump(db: sqlite3.Connection, cube_id: str) -> None:
        db.execute(_q(sql.BUMP_REVISION), (cube_id,))

    @staticmethod
    def _insert_version(db: sqlite3.Connection, item: MemoryItem) -> int | None:
        """Write one version (its index rows are ``_index``'s); returns its seq, or None when a current
        duplicate exists."""
        cursor = db.execute(
            f"INSERT INTO memories({VERSION_COLUMNS}, body) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT DO NOTHING",
            (*sql.version_values(item), item.model_dump_json()),
        )
        return None if cursor.rowcount == 0 else int(cursor.lastrowid)

    def _add_index_rows(self, db: sqlite3.Connection, rows: Sequence[tuple[int, str, bytes]]) -> None:
        """The one way index rows (seq, cube id, vector) are written: counted for each cube's ``indexed``
        (see ``_write``)."""
        db.executemany(_q(sql.INSERT_INDEX_ROW), rows)
        self._index_rows_added.update(cube_id for _, cube_id, _ in rows)

    def _index(self, db: sqlite3.Connection, written: Sequence[tuple[int, MemoryItem, np.ndarray | None]]) -> None:
        """Make the current versions among ``written`` (seq, version, vector) searchable: their vectors
        and their words, a statement each for the whole write."""
        current = [(seq, item, vector) for seq, item, vector in written if item.expired_at is None and vector is not None]
        self._add_index_rows(db, [(seq, item.cube_id, np.asarray(vector, dtype=np.float32).tobytes())
                                  for seq, item, vector in current])
        db.executemany("INSERT INTO memory_fts(rowid, cube, text, entities) VALUES (?,?,?,?)",
                       [(seq, item.cube_id, item.text, " ".join(item.entities)) for seq, item, _ in current])

    @staticmethod
    def _unindex(db: sqlite3.Connection, seq: int) -> None:
        db.execute(_q(sql.DELETE_INDEX_ROW), (seq,))
        db.execute("DELETE FROM memory_fts WHERE rowid = ?", (seq,))

    @staticmethod
    def _unindex_cube(db: sqlite3.Connection, cube_id: str) -> None:
        """Remove a cube's words from the full-text index (before its versions go)."""
        seqs = [s for (s,) in db.execute("SELECT seq FROM memories WHERE cube_id=?", (cube_id,))]
        db.executemany("DELETE FROM memory_fts WHERE rowid=?", [(s,) for s in seqs])

    def _current(self, db: sqlite3.Connection, cube_id: str, memory_id: str) -> tuple:
        row = db.execute(_q(sql.CURRENT_VERSION), (cube_id, memory_id)).fetchone()
        if row is None:
            raise sql.no_memory(cube_id, memory_id)
        return row

    # -- cubes -------------------------------------------------------------------------------------
    def create_cube(self, info: CubeInfo) -> CubeInfo:
        with self._write() as db:
            self._insert_cube(db, info)
        return info

    def _insert_cube(self, db: sqlite3.Connection, info: CubeInfo) -> None:
        try:
            db.execute(_q(sql.INSERT_CUBE), (info.id, info.name, info.owner, info.model_dump_json()))
        except sqlite3.IntegrityError as exc:
            raise sql.cube_exists(info) from exc
        self._log(db, info.id, "create_cube", actor=info.owner)

    def get_cube(self, name_or_id: str) -> CubeInfo:
        rows = self._read(_q(sql.CUBE_BY_NAME_OR_ID), (name_or_id,) * 3)
        return sql.cube_from_rows(rows, name_or_id)

    def list_cubes(self, owner: str | None = None) -> list[CubeInfo]:
        rows = self._read(_q(sql.LIST_CUBES_OF), (owner,)) if owner is not None else self._read(_q(sql.LIST_CUBES))
        return [CubeInfo.model_validate_json(body) for (body,) in rows]

    def delete_cube(self, cube_id: str, actor: str | None = None) -> None:
        with self._write() as db:
            self._require_cube(db, cube_id)
            self._unindex_cube(db, cube_id)
            for statement in sql.DELETE_CUBE:
                db.execute(_q(statement), (cube_id,))
            self._log(db, cube_id, "delete_cube", actor=actor)
        self._drop_index_caches(cube_id)
        self._scrub()

    def cube_revision(self, cube_id: str) -> int:
        return sql.revision_from_rows(self._read(_q(sql.CUBE_REVISION), (cube_id,)), cube_id)

    # -- writes ------------------------------------------------------------------------------------
    def add_memories(self, cube_id: str, items: Sequence[MemoryItem], vectors: np.ndarray,
                     actor: str | None = None) -> AddOutcome:
        sql.check_batch(items, vectors)
        added: list[MemoryItem] = []
        duplicates: dict[int, str] = {}
        with self._write() as db:
            self._require_cube(db, cube_id)
            last_position: dict[str | None, int] = {}
            written: list[tuple[int, MemoryItem, np.ndarray]] = []
            for index, (item, vector) in enumerate(zip(items, vectors)):
                item = self._place_turn(db, cube_id, item, last_position)
                seq = self._insert_version(db, item)
                if seq is None:
                    duplicates[index] = self._duplicate_of(db, item)
                    continue  # a duplicate takes no position: the session stays numbered 0, 1, 2, ...
                sql.advance_position(item, last_position)
                written.append((seq, item, vector))
                added.append(item)
            if added:
                self._index(db, written)
                at = utcnow().isoformat()
                db.executemany(_q(sql.LOG_OPERATION),
                               [(at, cube_id, item.id, item.version, "add", actor, None) for item in added])
                self._bump(db, cube_id)
        return AddOutcome(added=added, duplicates=duplicates)

    @staticmethod
    def _place_turn(db: sqlite3.Connection, cube_id: str, item: MemoryItem,
                    last_position: dict[str | None, int]) -> MemoryItem:
        """Number a new turn (``sql.place_turn``) inside the write transaction, so that
        concurrent writers to one session never take the same position."""
        return sql.place_turn(item, last_position, lambda session: db.execute(
            *sql.last_position_query(SQLITE, cube_id, session)).fetchone()[0])

    @staticmethod
    def _require_cube(db: sqlite3.Connection, cube_id: str) -> None:
        if db.execute(_q(sql.CUBE_EXISTS), (cube_id,)).fetchone() is None:
            raise sql.no_cube(cube_id)

    @staticmethod
    def _duplicate_of(db: sqlite3.Connection, item: MemoryItem) -> str:
        return sql.duplicate_id(db.execute(*sql.duplicate_query(SQLITE, item)).fetchone(), item)

    def update_memory(self, cube_id: str, new_version: MemoryItem, vector: np.ndarray,
                      expected_version: int) -> MemoryItem:
        with self._write() as db:
            seq, *_ = current = self._current(db, cube_id, new_version.id)
            old = row_to_item(current)
            valid_to = sql.closing_valid_to(old, new_version, expected_version)
            db.execute(
                "UPDATE memories SET is_current=0, expired_at=?, valid_to=? WHERE seq=?",
                (new_version.recorded_at.isoformat(), valid_to, seq),
            )
            self._unindex(db, seq)
            new_seq = self._insert_version(db, new_version)
            if new_seq is None:
                raise sql.update_duplicates(new_version)
            self._index(db, [(new_seq, new_version, vector)])
            self._log(db, cube_id, "update", new_version.id, new_version.version,
                      new_version.changed_by, new_version.change_reason)
            self._bump(db, cube_id)
        return new_version

    def set_state(self, cube_id: str, memory_id: str, state: LifecycleState,
                  actor: str | None = None, reason: str | None = None) -> MemoryItem:
        sql.check_settable(state)
        with self._write() as db:
            seq, *_ = self._current(db, cube_id, memory_id)
            db.execute(_q(sql.SET_STATE), (state.value, seq))
            # Re-insert the index row under a new seq so that cached indexes notice the change.
            vector = db.execute("SELECT vector FROM index_rows WHERE memory_seq=?", (seq,)).fetchone()
            if vector is not None:
                db.execute(_q(sql.DELETE_INDEX_ROW), (seq,))
                self._add_index_rows(db, [(seq, cube_id, vector[0])])
            self._log(db, cube_id, state.value, memory_id, None, actor, reason)
            self._bump(db, cube_id)
            return row_to_item(self._current(db, cube_id, memory_id))

    def delete_memory(self, cube_id: str, memory_id: str, actor: str | None = None,
                      reason: str | None = None) -> None:
        with self._write() as db:
            seqs = [s for (s,) in db.execute(
                "SELECT seq FROM memories WHERE cube_id=? AND id=?", (cube_id, memory_id))]
            if not seqs:
                raise sql.no_memory(cube_id, memory_id)
            for seq in seqs:
                self._unindex(db, seq)
            db.execute(_q(sql.DELETE_VERSIONS), (cube_id, memory_id))
            db.execute(_q(sql.LOG_REMOVAL), (cube_id, memory_id))
            self._log(db, cube_id, "delete", memory_id, None, actor, reason)
            self._bump(db, cube_id)
        self._drop_index_caches(cube_id)
        self._scrub()

    def record_access(self, cube_id: str, memory_ids: Sequence[str], at: datetime) -> None:
        if not memory_ids:
            return
        # One update per memory, counted as often as it was read (a batch repeats the ids searched often).
        # Statistics, written on the read path: committed without an fsync (``Store.record_access``).
        with self._write(durable=False) as db:
            db.executemany(
                "UPDATE memories SET access_count = access_count + ?, last_accessed_at = ?"
                " WHERE cube_id=? AND id=? AND is_current=1",
                [(n, at.isoformat(), cube_id, memory_id) for memory_id, n in Counter(memory_ids).items()],
            )

    def import_cube(self, info: CubeInfo, versions: Sequence[MemoryItem], vectors: np.ndarray,
                    actor: str | None = None) -> CubeInfo:
        vector_of = sql.import_vectors(versions, vectors)
        with self._write() as db:
            self._insert_cube(db, info)
            written = []
            for item in versions:
                seq = self._insert_version(db, item)
                if seq is None:
                    raise sql.import_duplicates(item)
                written.append((seq, item, vector_of(item)))
            self._index(db, written)
            self._log(db, info.id, "import", actor=actor, reason=f"{len(versions)} versions")
            self._bump(db, info.id)
        return info

    # -- reads -------------------------------------------------------------------------------------
    def _current_rows(self, cube_id: str, memory_ids: Sequence[str], columns: str = sql.MEMORY_COLUMNS) -> list[tuple]:
        rows: list[tuple] = []
        for query, params in sql.current_versions_queries(SQLITE, cube_id, memory_ids, columns):
            rows += self._read(query, params)
        return rows

    def get_memories(self, cube_id: str, memory_ids: Sequence[str]) -> dict[str, MemoryItem]:
        return sql.items_by_id(self._current_rows(cube_id, memory_ids))

    def get_texts(self, cube_id: str, memory_ids: Sequence[str]) -> dict[str, MemoryText]:
        return sql.texts_by_id(self._current_rows(cube_id, memory_ids, sql.TEXT_COLUMNS))

    def list_memories(self, cube_id: str, filters: Filters, limit: int | None = None,
                      offset: int = 0) -> list[MemoryItem]:
        query, params = sql.list_memories_query(SQLITE, cube_id, filters, limit, offset)
        return [row_to_item(row) for row in self._read(query, params)]

    def history(self, cube_id: str, memory_id: str) -> list[MemoryItem]:
        rows = self._read(_q(sql.HISTORY), (cube_id, memory_id))
        return sql.history_items(rows, cube_id, memory_id)

    def export_versions(self, cube_id: str) -> tuple[list[MemoryItem], np.ndarray]:
        with self._snapshot() as db:  # one snapshot for versions and vectors
            rows = db.execute(_q(sql.CUBE_VERSIONS), (cube_id,)).fetchall()
            blobs = db.execute(_q(sql.CUBE_VECTORS), (cube_id,)).fetchall()
        dim = self.get_cube(cube_id).dim
        vectors = np.frombuffer(b"".join(b for (b,) in blobs), dtype=np.float32).reshape(-1, dim)
        return [row_to_item(row) for row in rows], vectors

    def operations(self, cube_id: str, memory_id: str | None = None,
                   limit: int | None = None) -> list[Operation]:
        return [sql.row_to_operation(row)
                for row in self._read(*sql.operations_query(SQLITE, cube_id, memory_id, limit))]

    # -- search primitives -------------------------------------------------------------------------
    def index_rows(self, cube_id: str, after_seq: int, removals_after: int | None = None, *,
                   count: bool = True, limit: int | None = None) -> IndexBatch:
        with self._snapshot() as db:  # one snapshot for rows, count, revision and removals
            rows = db.execute(_q(sql.INDEX_FEED) + sql.limit_clause(SQLITE, limit), (cube_id, after_seq)).fetchall()
            counted = db.execute(_INDEX_COUNT, (cube_id,)).fetchone() if count else (-1,)
            rows_in_cube = 0 if counted is None else counted[0]  # no cube: its revision query says so
            revision = db.execute(_q(sql.CUBE_REVISION), (cube_id,)).fetchone()
            removals = [] if removals_after is None else db.execute(
                _q(sql.REMOVALS_AFTER), (cube_id, removals_after)).fetchall()
            removal_seq = db.execute(_q(sql.LAST_REMOVAL), (cube_id,)).fetchone()[0]
        return sql.index_batch(rows, rows_in_cube, revision, cube_id, lambda blobs: np.frombuffer(
            b"".join(blobs), dtype=np.float32).reshape(len(blobs), -1), removals, removal_seq)

    def _cube_share(self, cube_id: str) -> float:
        """Fraction of the lexical index that belongs to the cube, cached until the file changes,
        and then for up to ``_SHARE_TTL_S``: the cubes' counts are one row each, but recounting
        them drops the terms' shares (``_selective``), which take a full-text count each, and
        shares move slowly."""
        with self._read_lock:
            key = (self._reader.execute("PRAGMA data_version").fetchone()[0], self._commits)
            now = time.monotonic()
            if key != self._shares_key and (now - self._shares_at >= _SHARE_TTL_S or cube_id not in self._shares):
                counts = self._reader.execute("SELECT id, indexed FROM cubes").fetchall()
                total = sum(count for _, count in counts) or 1
                self._shares = {cube: count / total for cube, count in counts}
                self._shares_key, self._shares_at = key, now
                self._index_rows, self._term_shares = total, {}
            return self._shares.get(cube_id, 0.0)

    def lexical_search(self, cube_id: str, terms: Sequence[str], limit: int) -> list[tuple[str, float]]:
        if not terms:
            return []
        # Matching the cube's token restricts the search to the cube but costs a walk over
        # all its postings: worth it when the cube is a small part of the index, twice the
        # time of the search itself when the cube is most of it. The join filter below keeps
        # the result exact either way.
        share = self._cube_share(cube_id)
        terms = self._selective(terms)
        if not terms:
            return []
        if share < 0.5:
            rows = self._read(
                "SELECT m.id, s.score FROM (SELECT rowid AS seq, -bm25(memory_fts, 0.0, 1.0, 0.5) AS score"
                " FROM memory_fts WHERE memory_fts MATCH ? ORDER BY score DESC LIMIT ?) AS s"
                " JOIN memories m ON m.seq = s.seq WHERE m.cube_id = ? ORDER BY s.score DESC",
                (_fts_query(cube_id, terms), int(limit), cube_id),
            )
        else:
            # Unscoped, some of the best rows belong to other cubes: ask for as many more
            # as their share of the index suggests, then keep this cube's.
            rows = self._read(
                "SELECT m.id, s.score FROM (SELECT rowid AS seq, -bm25(memory_fts, 0.0, 1.0, 0.5) AS score"
                " FROM memory_fts WHERE memory_fts MATCH ? ORDER BY score DESC LIMIT ?) AS s"
                " JOIN memories m ON m.seq = s.seq WHERE m.cube_id = ? ORDER BY s.score DESC LIMIT ?",
                (_fts_query(None, terms), int(limit / share) + 1, cube_id, int(limit)),
            )
        return [(mid, float(score)) for mid, score in rows]

    def _selective(self, terms: Sequence[str]) -> Sequence[str]:
        """``terms`` without those common in a large index (see ``COMMON_TERM_SHARE`` and ``POSTINGS_BUDGET``);
        none if every one is common."""
        total = self._index_rows
        if total < PRUNE_FROM_ROWS:
            return terms
        shares = {}
        for term in terms:
            share = self._term_shares.get(term)
            if share is None:
                # Counting a term's rows walks its postings without scoring them: ~1 ms for a
                # term in a third of 100,000 rows; then cached until the shares are recounted.
                (count,) = self._read("SELECT count(*) FROM memory_fts WHERE memory_fts MATCH ?",
                                      (_fts_query(None, [term]),))[0]
                share = self._term_shares[term] = count / total
            shares[term] = share
        rarest_first = sorted(terms, key=shares.__getitem__)
        if shares[rarest_first[0]] > COMMON_TERM_SHARE:
            return []
        kept, rows = {rarest_first[0]}, shares[rarest_first[0]] * total
        for term in rarest_first[1:]:
            rows += shares[term] * total
            if shares[term] > COMMON_TERM_SHARE or rows > POSTINGS_BUDGET:
                break
            kept.add(term)
        return [term for term in terms if term in kept]


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements (``executescript`` would commit our transaction)."""
    statements, current = [], []
    for line in script.splitlines():
        current.append(line)
        if sqlite3.complete_statement("\n".join(current)):
            statement = "\n".join(current).strip()
            if statement:
                statements.append(statement)
            current = []
    return statements
