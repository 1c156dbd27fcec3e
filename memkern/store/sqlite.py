"""The embedded default store: one SQLite file in WAL mode.

Several threads share one connection behind a lock; several processes share the file
through SQLite's own locking (``BEGIN IMMEDIATE`` takes the write lock up front, so a
writer waits instead of failing half way). Commits are ``synchronous=FULL``: when a
write returns, it survives a crash of the process or of the machine.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import numpy as np

from memkern.errors import ConflictError, NotFoundError, StoreError
from memkern.models import CubeInfo, Filters, LifecycleState, MemoryItem, MemoryKind, Operation, utcnow
from memkern.store.base import AddOutcome, IndexBatch, Store, dedup_keys
from memkern.store.sqlite_schema import MIGRATIONS, SCHEMA_VERSION

_MEMORY_COLUMNS = "seq, state, valid_to, expired_at, access_count, last_accessed_at, body"


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _fts_query(cube_id: str | None, terms: Sequence[str]) -> str:
    quoted = " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)
    words = f"{{text entities}} : ({quoted})"
    return f'cube : "{cube_id}" AND {words}' if cube_id else words


class SQLiteStore(Store):
    """``Store`` on one SQLite file (see the module docstring)."""

    def __init__(self, path: str | Path, *, timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(
                str(self.path), timeout=timeout_s, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open the store at {self.path}: {exc}") from exc
        self._lock = threading.RLock()
        #: Commits made through this connection (``PRAGMA data_version`` counts the others').
        self._commits = 0
        self._shares: dict[str, float] = {}
        self._shares_key: tuple[int, int] | None = None
        self._migrate()

    # -- plumbing ----------------------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken with the write lock so that it cannot fail half way."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StoreError(f"the store at {self.path} is locked by another writer: {exc}") from exc
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")
                self._commits += 1

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def _migrate(self) -> None:
        with self._write() as db:
            has_meta = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
            ).fetchone()
            version = 0
            if has_meta:
                row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the store at {self.path} has schema version {version}; this memkern "
                    f"understands up to {SCHEMA_VERSION}: upgrade memkern"
                )
            for step in range(version, SCHEMA_VERSION):
                for statement in _split_sql(MIGRATIONS[step]):
                    db.execute(statement)
                db.execute(
                    "INSERT INTO meta(key, value) VALUES('schema_version', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (str(step + 1),),
                )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @staticmethod
    def _log(db: sqlite3.Connection, cube_id: str, op: str, memory_id: str | None = None,
             version: int | None = None, actor: str | None = None, reason: str | None = None) -> None:
        db.execute(
            "INSERT INTO operations(at, cube_id, memory_id, version, op, actor, reason) VALUES (?,?,?,?,?,?,?)",
            (utcnow().isoformat(), cube_id, memory_id, version, op, actor, reason),
        )

    @staticmethod
    def _bump(db: sqlite3.Connection, cube_id: str) -> None:
        db.execute("UPDATE cubes SET revision = revision + 1 WHERE id = ?", (cube_id,))

    @staticmethod
    def _row_to_item(row: tuple) -> MemoryItem:
        _seq, state, valid_to, expired_at, access_count, last_accessed_at, body = row
        item = MemoryItem.model_validate_json(body)
        return item.model_copy(update={
            "state": LifecycleState(state),
            "valid_to": datetime.fromisoformat(valid_to) if valid_to else None,
            "expired_at": datetime.fromisoformat(expired_at) if expired_at else None,
            "access_count": access_count,
            "last_accessed_at": datetime.fromisoformat(last_accessed_at) if last_accessed_at else None,
        })

    def _insert_version(self, db: sqlite3.Connection, item: MemoryItem, vector: np.ndarray | None) -> int | None:
        """Write one version; returns its seq, or None when a current duplicate exists."""
        source_key, content_key = dedup_keys(item)
        is_current = item.expired_at is None
        cursor = db.execute(
            "INSERT INTO memories(cube_id, id, version, is_current, kind, session_id, position, speaker,"
            " event_time, state, source_key, content_key, valid_to, expired_at, access_count,"
            " last_accessed_at, body) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
            (
                item.cube_id, item.id, item.version, int(is_current), item.kind.value,
                item.provenance.session_id, item.provenance.position, item.provenance.speaker,
                _epoch(item.event_time),
                item.state.value, source_key, content_key, _iso(item.valid_to), _iso(item.expired_at),
                item.access_count, _iso(item.last_accessed_at), item.model_dump_json(),
            ),
        )
        if cursor.rowcount == 0:
            return None
        seq = int(cursor.lastrowid)
        if is_current and vector is not None:
            self._index(db, seq, item, vector)
        return seq

    @staticmethod
    def _index(db: sqlite3.Connection, seq: int, item: MemoryItem, vector: np.ndarray) -> None:
        db.execute(
            "INSERT INTO index_rows(memory_seq, cube_id, vector) VALUES (?,?,?)",
            (seq, item.cube_id, np.asarray(vector, dtype=np.float32).tobytes()),
        )
        db.execute(
            "INSERT INTO memory_fts(rowid, cube, text, entities) VALUES (?,?,?,?)",
            (seq, item.cube_id, item.text, " ".join(item.entities)),
        )

    @staticmethod
    def _unindex(db: sqlite3.Connection, seq: int) -> None:
        db.execute("DELETE FROM index_rows WHERE memory_seq = ?", (seq,))
        db.execute("DELETE FROM memory_fts WHERE rowid = ?", (seq,))

    def _current(self, db: sqlite3.Connection, cube_id: str, memory_id: str) -> tuple:
        row = db.execute(
            f"SELECT {_MEMORY_COLUMNS} FROM memories WHERE cube_id=? AND id=? AND is_current=1",
            (cube_id, memory_id),
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no memory {memory_id!r} in cube {cube_id!r}")
        return row

    # -- cubes -------------------------------------------------------------------------------------
    def create_cube(self, info: CubeInfo) -> CubeInfo:
        with self._write() as db:
            self._insert_cube(db, info)
        return info

    def _insert_cube(self, db: sqlite3.Connection, info: CubeInfo) -> None:
        try:
            db.execute(
                "INSERT INTO cubes(id, name, owner, body) VALUES (?,?,?,?)",
                (info.id, info.name, info.owner, info.model_dump_json()),
            )
        except sqlite3.IntegrityError as exc:
            raise ConflictError(f"a cube named {info.name!r} (or with id {info.id!r}) already exists") from exc
        self._log(db, info.id, "create_cube", actor=info.owner)

    def get_cube(self, name_or_id: str) -> CubeInfo:
        rows = self._read("SELECT body FROM cubes WHERE id = ? OR name = ?", (name_or_id, name_or_id))
        if not rows:
            raise NotFoundError(f"no cube named {name_or_id!r}")
        return CubeInfo.model_validate_json(rows[0][0])

    def list_cubes(self, owner: str | None = None) -> list[CubeInfo]:
        if owner is None:
            rows = self._read("SELECT body FROM cubes ORDER BY name")
        else:
            rows = self._read("SELECT body FROM cubes WHERE owner = ? ORDER BY name", (owner,))
        return [CubeInfo.model_validate_json(body) for (body,) in rows]

    def delete_cube(self, cube_id: str, actor: str | None = None) -> None:
        with self._write() as db:
            if db.execute("SELECT 1 FROM cubes WHERE id=?", (cube_id,)).fetchone() is None:
                raise NotFoundError(f"no cube with id {cube_id!r}")
            seqs = [s for (s,) in db.execute("SELECT seq FROM memories WHERE cube_id=?", (cube_id,))]
            db.executemany("DELETE FROM memory_fts WHERE rowid=?", [(s,) for s in seqs])
            db.execute("DELETE FROM index_rows WHERE cube_id=?", (cube_id,))
            db.execute("DELETE FROM memories WHERE cube_id=?", (cube_id,))
            db.execute("DELETE FROM cubes WHERE id=?", (cube_id,))
            self._log(db, cube_id, "delete_cube", actor=actor)

    def cube_revision(self, cube_id: str) -> int:
        rows = self._read("SELECT revision FROM cubes WHERE id=?", (cube_id,))
        if not rows:
            raise NotFoundError(f"no cube with id {cube_id!r}")
        return int(rows[0][0])

    # -- writes ------------------------------------------------------------------------------------
    def add_memories(self, cube_id: str, items: Sequence[MemoryItem], vectors: np.ndarray,
                     actor: str | None = None) -> AddOutcome:
        if len(items) != len(vectors):
            raise StoreError(f"{len(items)} memories but {len(vectors)} vectors")
        added: list[MemoryItem] = []
        duplicates: dict[int, str] = {}
        with self._write() as db:
            self._require_cube(db, cube_id)
            last_position: dict[str | None, int] = {}
            for index, (item, vector) in enumerate(zip(items, vectors)):
                item = self._place_turn(db, cube_id, item, last_position)
                if self._insert_version(db, item, vector) is None:
                    duplicates[index] = self._duplicate_of(db, item)
                    continue  # a duplicate takes no position: the session stays numbered 0, 1, 2, ...
                if item.kind is MemoryKind.TURN and item.provenance.session_id in last_position:
                    last_position[item.provenance.session_id] = max(
                        last_position[item.provenance.session_id], item.provenance.position)
                added.append(item)
                self._log(db, cube_id, "add", item.id, item.version, actor)
            if added:
                self._bump(db, cube_id)
        return AddOutcome(added=added, duplicates=duplicates)

    @staticmethod
    def _place_turn(db: sqlite3.Connection, cube_id: str, item: MemoryItem,
                    last_position: dict[str | None, int]) -> MemoryItem:
        """Number a new turn after the last one of its session, inside the write transaction
        so that concurrent writers to one session never take the same position.
        ``last_position`` caches the last position per session; the caller advances it only
        when the turn is actually stored."""
        if item.kind is not MemoryKind.TURN or item.provenance.position is not None:
            return item
        session = item.provenance.session_id
        if session not in last_position:
            row = db.execute(
                "SELECT max(position) FROM memories WHERE cube_id=? AND session_id IS ?",
                (cube_id, session),
            ).fetchone()
            last_position[session] = -1 if row[0] is None else int(row[0])
        provenance = item.provenance.model_copy(update={"position": last_position[session] + 1})
        return item.model_copy(update={"provenance": provenance})

    @staticmethod
    def _require_cube(db: sqlite3.Connection, cube_id: str) -> None:
        if db.execute("SELECT 1 FROM cubes WHERE id=?", (cube_id,)).fetchone() is None:
            raise NotFoundError(f"no cube with id {cube_id!r}")

    @staticmethod
    def _duplicate_of(db: sqlite3.Connection, item: MemoryItem) -> str:
        source_key, content_key = dedup_keys(item)
        row = db.execute(
            "SELECT id FROM memories WHERE cube_id=? AND is_current=1 AND (source_key=? OR content_key=?)",
            (item.cube_id, source_key, content_key),
        ).fetchone()
        if row is None:  # the conflict was on (cube, id, version): a caller reused an id
            raise ConflictError(f"memory id {item.id!r} already exists in cube {item.cube_id!r}")
        return str(row[0])

    def update_memory(self, cube_id: str, new_version: MemoryItem, vector: np.ndarray,
                      expected_version: int) -> MemoryItem:
        with self._write() as db:
            seq, *_ = current = self._current(db, cube_id, new_version.id)
            old = self._row_to_item(current)
            if old.version != expected_version:
                raise ConflictError(
                    f"memory {new_version.id!r} is at version {old.version}, not {expected_version}: "
                    "it changed since you read it"
                )
            # A new validity start means the world changed: the old version stops being true then.
            valid_to = new_version.valid_from if new_version.valid_from != old.valid_from else old.valid_to
            db.execute(
                "UPDATE memories SET is_current=0, expired_at=?, valid_to=? WHERE seq=?",
                (new_version.recorded_at.isoformat(), _iso(valid_to), seq),
            )
            self._unindex(db, seq)
            if self._insert_version(db, new_version, vector) is None:
                raise ConflictError(
                    f"the new text of {new_version.id!r} duplicates another current memory of the cube"
                )
            self._log(db, cube_id, "update", new_version.id, new_version.version,
                      new_version.changed_by, new_version.change_reason)
            self._bump(db, cube_id)
        return new_version

    def set_state(self, cube_id: str, memory_id: str, state: LifecycleState,
                  actor: str | None = None, reason: str | None = None) -> MemoryItem:
        if state is LifecycleState.DELETED:
            raise StoreError("use delete_memory to delete; it removes every version")
        with self._write() as db:
            seq, *_ = self._current(db, cube_id, memory_id)
            db.execute("UPDATE memories SET state=? WHERE seq=?", (state.value, seq))
            # Re-insert the index row under a new seq so that cached indexes notice the change.
            vector = db.execute("SELECT vector FROM index_rows WHERE memory_seq=?", (seq,)).fetchone()
            if vector is not None:
                db.execute("DELETE FROM index_rows WHERE memory_seq=?", (seq,))
                db.execute("INSERT INTO index_rows(memory_seq, cube_id, vector) VALUES (?,?,?)",
                           (seq, cube_id, vector[0]))
            self._log(db, cube_id, state.value, memory_id, None, actor, reason)
            self._bump(db, cube_id)
            return self._row_to_item(self._current(db, cube_id, memory_id))

    def delete_memory(self, cube_id: str, memory_id: str, actor: str | None = None,
                      reason: str | None = None) -> None:
        with self._write() as db:
            seqs = [s for (s,) in db.execute(
                "SELECT seq FROM memories WHERE cube_id=? AND id=?", (cube_id, memory_id))]
            if not seqs:
                raise NotFoundError(f"no memory {memory_id!r} in cube {cube_id!r}")
            for seq in seqs:
                self._unindex(db, seq)
            db.execute("DELETE FROM memories WHERE cube_id=? AND id=?", (cube_id, memory_id))
            self._log(db, cube_id, "delete", memory_id, None, actor, reason)
            self._bump(db, cube_id)

    def record_access(self, cube_id: str, memory_ids: Sequence[str], at: datetime) -> None:
        if not memory_ids:
            return
        with self._write() as db:
            db.executemany(
                "UPDATE memories SET access_count = access_count + 1, last_accessed_at = ?"
                " WHERE cube_id=? AND id=? AND is_current=1",
                [(at.isoformat(), cube_id, memory_id) for memory_id in memory_ids],
            )

    def import_cube(self, info: CubeInfo, versions: Sequence[MemoryItem], vectors: np.ndarray,
                    actor: str | None = None) -> CubeInfo:
        current = [v for v in versions if v.expired_at is None]
        if len(current) != len(vectors):
            raise StoreError(f"{len(current)} current memories but {len(vectors)} vectors")
        vector_of = {v.id: vectors[i] for i, v in enumerate(current)}
        with self._write() as db:
            self._insert_cube(db, info)
            for item in versions:
                if self._insert_version(db, item, vector_of.get(item.id) if item.expired_at is None else None) is None:
                    raise ConflictError(f"the cube holds {item.version_id} twice (or a duplicate memory)")
            self._log(db, info.id, "import", actor=actor, reason=f"{len(versions)} versions")
            self._bump(db, info.id)
        return info

    # -- reads -------------------------------------------------------------------------------------
    def get_memories(self, cube_id: str, memory_ids: Sequence[str]) -> dict[str, MemoryItem]:
        found: dict[str, MemoryItem] = {}
        ids = list(dict.fromkeys(memory_ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._read(
                f"SELECT {_MEMORY_COLUMNS} FROM memories WHERE cube_id=? AND is_current=1 AND id IN ({marks})",
                (cube_id, *chunk),
            ):
                item = self._row_to_item(row)
                found[item.id] = item
        return found

    def list_memories(self, cube_id: str, filters: Filters, limit: int | None = None,
                      offset: int = 0) -> list[MemoryItem]:
        where, params = ["cube_id=?", "is_current=1"], [cube_id]
        if filters.state is not None:
            where.append("state=?")
            params.append(filters.state.value)
        if (sessions := filters.session_ids()) is not None:
            where.append(f"session_id IN ({','.join('?' * len(sessions))})")
            params.extend(sessions)
        if (kinds := filters.kinds()) is not None:
            where.append(f"kind IN ({','.join('?' * len(kinds))})")
            params.extend(k.value for k in kinds)
        if filters.speaker is not None:
            where.append("speaker=?")
            params.append(filters.speaker)
        if filters.since is not None:
            where.append("event_time >= ?")
            params.append(filters.since.timestamp())
        if filters.until is not None:
            where.append("event_time <= ?")
            params.append(filters.until.timestamp())
        for tag in dict.fromkeys(filters.tags or []):  # in SQL, so that LIMIT/OFFSET count matching rows only
            where.append("EXISTS (SELECT 1 FROM json_each(memories.body, '$.tags') WHERE value = ?)")
            params.append(tag)
        sql = f"SELECT {_MEMORY_COLUMNS} FROM memories WHERE {' AND '.join(where)} ORDER BY seq"
        sql += f" LIMIT {int(limit) if limit is not None else -1} OFFSET {int(offset)}"
        return [self._row_to_item(row) for row in self._read(sql, params)]

    def history(self, cube_id: str, memory_id: str) -> list[MemoryItem]:
        rows = self._read(
            f"SELECT {_MEMORY_COLUMNS} FROM memories WHERE cube_id=? AND id=? ORDER BY version",
            (cube_id, memory_id),
        )
        if not rows:
            raise NotFoundError(f"no memory {memory_id!r} in cube {cube_id!r}")
        return [self._row_to_item(row) for row in rows]

    def export_versions(self, cube_id: str) -> tuple[list[MemoryItem], np.ndarray]:
        with self._lock:
            self._db.execute("BEGIN")  # one snapshot for versions and vectors
            try:
                rows = self._db.execute(
                    f"SELECT {_MEMORY_COLUMNS} FROM memories WHERE cube_id=? ORDER BY seq", (cube_id,)
                ).fetchall()
                blobs = self._db.execute(
                    "SELECT i.vector FROM index_rows i JOIN memories m ON m.seq = i.memory_seq"
                    " WHERE i.cube_id=? ORDER BY m.seq", (cube_id,)
                ).fetchall()
            finally:
                self._db.execute("COMMIT")
        dim = self.get_cube(cube_id).dim
        vectors = np.frombuffer(b"".join(b for (b,) in blobs), dtype=np.float32).reshape(-1, dim)
        return [self._row_to_item(row) for row in rows], vectors

    def operations(self, cube_id: str, memory_id: str | None = None,
                   limit: int | None = None) -> list[Operation]:
        sql = "SELECT seq, at, op, cube_id, memory_id, version, actor, reason FROM operations WHERE cube_id=?"
        params: list[object] = [cube_id]
        if memory_id is not None:
            sql += " AND memory_id=?"
            params.append(memory_id)
        sql += f" ORDER BY seq LIMIT {int(limit) if limit is not None else -1}"
        return [
            Operation(seq=r[0], at=datetime.fromisoformat(r[1]), op=r[2], cube_id=r[3], memory_id=r[4],
                      version=r[5], actor=r[6], reason=r[7])
            for r in self._read(sql, params)
        ]

    # -- search primitives -------------------------------------------------------------------------
    def index_rows(self, cube_id: str, after_seq: int) -> IndexBatch:
        with self._lock:
            self._db.execute("BEGIN")  # one snapshot for rows, count and revision
            try:
                rows = self._db.execute(
                    "SELECT i.seq, m.id, m.session_id, m.kind, m.speaker, m.event_time, m.state,"
                    " m.position, json_extract(m.body, '$.tags'), i.vector"
                    " FROM index_rows i JOIN memories m ON m.seq = i.memory_seq"
                    " WHERE i.cube_id=? AND i.seq > ? ORDER BY i.seq",
                    (cube_id, after_seq),
                ).fetchall()
                count = self._db.execute("SELECT count(*) FROM index_rows WHERE cube_id=?", (cube_id,)).fetchone()[0]
                revision = self._db.execute("SELECT revision FROM cubes WHERE id=?", (cube_id,)).fetchone()
            finally:
                self._db.execute("COMMIT")
        if revision is None:
            raise NotFoundError(f"no cube with id {cube_id!r}")
        batch = IndexBatch(count=int(count), revision=int(revision[0]))
        for seq, mid, session, kind, speaker, etime, state, position, tags, _ in rows:
            batch.seqs.append(seq)
            batch.ids.append(mid)
            batch.session_ids.append(session)
            batch.kinds.append(kind)
            batch.speakers.append(speaker)
            batch.event_times.append(etime)
            batch.states.append(state)
            batch.positions.append(position)
            batch.tags.append(json.loads(tags) if tags else [])
        if rows:
            blob = b"".join(row[-1] for row in rows)
            batch.vectors = np.frombuffer(blob, dtype=np.float32).reshape(len(rows), -1)
        return batch

    def _cube_share(self, cube_id: str) -> float:
        """Fraction of the lexical index that belongs to the cube, cached until the file changes."""
        with self._lock:
            key = (self._db.execute("PRAGMA data_version").fetchone()[0], self._commits)
            if key != self._shares_key:
                counts = self._db.execute("SELECT cube_id, count(*) FROM index_rows GROUP BY cube_id").fetchall()
                total = sum(count for _, count in counts) or 1
                self._shares = {cube: count / total for cube, count in counts}
                self._shares_key = key
            return self._shares.get(cube_id, 0.0)

    def lexical_search(self, cube_id: str, terms: Sequence[str], limit: int) -> list[tuple[str, float]]:
        if not terms:
            return []
        # Matching the cube's token restricts the search to the cube but costs a walk over
        # all its postings: worth it when the cube is a small part of the index, twice the
        # time of the search itself when the cube is most of it. The join filter below keeps
        # the result exact either way.
        share = self._cube_share(cube_id)
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
