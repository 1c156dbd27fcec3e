"""The shared store: PostgreSQL with pgvector, for many application nodes on one database.

It behaves exactly like the SQLite store (same tables, dedup keys, logging and revision
bumps); what differs is how it stays correct when several processes on several machines
write at once, where SQLite relies on one file lock:

- Every write is one transaction on a pooled connection (``psycopg_pool``): threads of one
  node do not queue behind a single connection, and a connection broken by a server
  restart is replaced instead of failing every later call.
- A write that changes a cube's index first locks the cube's row (``FOR NO KEY UPDATE``,
  the lock its final revision bump needs anyway). Writers to one cube are therefore
  serialized, so index rows become visible in ``seq`` order: a reader that has seen row
  ``n`` can never later meet a committed row below ``n``, which is what lets
  ``IndexCache`` follow the store incrementally. Writers to different cubes do not wait
  for each other.
- Duplicates are refused by partial unique indexes over current versions with
  ``ON CONFLICT DO NOTHING``: the database, not a read-then-write check, decides, so two
  nodes adding the same message cannot both win.
- Turn positions are computed under a transaction-level advisory lock per (cube, session),
  so that the "max + 1" read and the insert are atomic across nodes without locking the
  table; the lock goes away with the transaction, even if the client dies.
- Migrations run under a global advisory lock, so nodes starting together upgrade once.
  Everything lives in one schema (``schema=``), which lets tests use a throwaway schema
  each and lets several deployments share a database.

Representation choices:
- Vectors are a ``vector`` column without a fixed dimension: cubes have embedders of
  different dimensions in one table. Retrieval scans vectors in memory (see
  ``memkern.retrieval.index``), so no ANN index is built. The column is read and written
  in pgvector's binary format by two small adapters, decoded straight into numpy (no
  per-float Python objects, and no client package beyond psycopg).
- Lexical search is a ``tsvector`` column on current, indexed versions only: English
  snowball stemming like SQLite's porter tokenizer and, like it, no stop words, so that
  any word can be searched. Text is weighted A and entities B (1.0 and 0.5, as in
  SQLite's bm25 column weights). Ranking is BM25-shaped: the sum over query terms of the
  term's IDF in the cube times ``ts_rank`` (saturating in frequency, normalised by
  length); ``ts_rank`` alone has no IDF, and a memory repeating a common word would beat
  the one holding the rare word the query is about. A very long text is indexed by its
  distinct words in order, as many as keep the tsvector under PostgreSQL's 1 MB limit: a
  text of ~1M distinct tokens is stored whole, but only its first ~60k distinct words
  are searchable lexically (dense search sees it all).
- PostgreSQL text cannot hold NUL: NULs in values that go into columns are replaced by
  U+FFFD (the JSON body, where the item is stored exactly, escapes them). Keys that may be
  long (the source key, built from caller-given ids) are stored hashed, and the session
  index is a hash index, so no caller-given string can exceed a btree row's size limit.
- Times are ISO strings and event times epoch seconds, as in SQLite, so both stores give
  back exactly what was stored.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import numpy as np

try:
    import psycopg
    from psycopg import sql
    from psycopg.adapt import Dumper, Loader
    from psycopg.conninfo import conninfo_to_dict
    from psycopg.pq import Format
    from psycopg_pool import ConnectionPool
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "the PostgreSQL store needs psycopg 3 and psycopg-pool: pip install 'psycopg[binary]' psycopg-pool"
    ) from exc

from memkern.errors import ConflictError, NotFoundError, StoreError
from memkern.models import CubeInfo, Filters, LifecycleState, MemoryItem, MemoryKind, Operation, utcnow
from memkern.store.base import AddOutcome, IndexBatch, Store, dedup_keys

#: Each entry brings a schema from version ``i`` to ``i + 1``, in its own transaction. They
#: run with ``search_path`` set to the store's schema (then pgvector's), so names are
#: unqualified.
MIGRATIONS: list[str] = [
    # 0 -> 1: cubes, versioned memories, vectors, lexical index, operation log.
    """
    CREATE TABLE meta (
        key   text PRIMARY KEY,
        value text NOT NULL
    );

    -- English stemming without a stop-word list: like SQLite's porter tokenizer, every
    -- word is searchable ("the", "and"); IDF keeps common words from mattering.
    CREATE TEXT SEARCH DICTIONARY memkern_english_stem (TEMPLATE = snowball, LANGUAGE = english);
    CREATE TEXT SEARCH CONFIGURATION memkern_english (COPY = pg_catalog.english);
    ALTER TEXT SEARCH CONFIGURATION memkern_english
        ALTER MAPPING REPLACE english_stem WITH memkern_english_stem;

    CREATE TABLE cubes (
        id       text PRIMARY KEY,
        name     text NOT NULL UNIQUE,
        owner    text NOT NULL,
        body     text NOT NULL,                 -- CubeInfo as JSON
        revision bigint NOT NULL DEFAULT 0
    );

    -- One row per version. Immutable content lives in ``body`` (MemoryItem JSON); the
    -- columns are what filters need and what changes in place on the current version.
    CREATE TABLE memories (
        seq              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        cube_id          text NOT NULL REFERENCES cubes(id) ON DELETE CASCADE,
        id               text NOT NULL,
        version          integer NOT NULL,
        is_current       boolean NOT NULL,
        kind             text NOT NULL,
        session_id       text,
        position         integer,
        speaker          text,
        event_time       double precision,
        state            text NOT NULL,
        source_key       text,                  -- sha256 of dedup_keys()[0]
        content_key      text NOT NULL,
        valid_to         text,
        expired_at       text,
        access_count     integer NOT NULL DEFAULT 0,
        last_accessed_at text,
        tags             text NOT NULL,         -- JSON list, for index rows
        tag_list         text[] NOT NULL,       -- the same, for filters
        body             text NOT NULL,
        tsv              tsvector,              -- set while the version is indexed
        UNIQUE (cube_id, id, version)
    );
    CREATE INDEX memories_current ON memories (cube_id, seq) WHERE is_current;
    CREATE INDEX memories_by_id ON memories (cube_id, id);
    CREATE INDEX memories_session ON memories USING hash (session_id);
    CREATE UNIQUE INDEX memories_source_key ON memories (cube_id, source_key)
        WHERE is_current AND source_key IS NOT NULL;
    CREATE UNIQUE INDEX memories_content_key ON memories (cube_id, content_key)
        WHERE is_current;
    CREATE INDEX memories_tsv ON memories USING gin (tsv);

    -- Search index rows: current versions only. A change to a row deletes and re-inserts
    -- it under a new ``seq`` so that readers detect it by a count mismatch.
    CREATE TABLE index_rows (
        seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        memory_seq bigint NOT NULL UNIQUE REFERENCES memories(seq) ON DELETE CASCADE,
        cube_id    text NOT NULL,
        vector     vector NOT NULL
    );
    CREATE INDEX index_rows_cube ON index_rows (cube_id, seq);

    -- Append-only, ids only: survives deletion of what it names.
    CREATE TABLE operations (
        seq       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at        text NOT NULL,
        cube_id   text NOT NULL,
        memory_id text,
        version   integer,
        op        text NOT NULL,
        actor     text,
        reason    text
    );
    CREATE INDEX operations_memory ON operations (cube_id, memory_id, seq);
    CREATE INDEX operations_cube ON operations (cube_id, seq);
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)

_TABLES = ("operations", "index_rows", "memories", "cubes")
_MEMORY_COLUMNS = "seq, state, valid_to, expired_at, access_count, last_accessed_at, body"
#: ts_rank weights for labels D, C, B, A: text is A, entities B.
_RANK_WEIGHTS = "{0.1, 0.2, 0.5, 1.0}"
#: Texts longer than this are lexically indexed by their distinct words (tsvector <= 1 MB).
_FTS_FULL_CHARS = 100_000
_FTS_BUDGET_BYTES = 900_000
#: Key of the advisory lock taken while migrating (any schema).
_MIGRATE_LOCK = "memkern:migrate"


# -- pgvector's binary format: uint16 dim, uint16 unused, dim big-endian float32 ---------------------
class _VectorDumper(Dumper):
    format = Format.BINARY
    oid = 0  # set per database by _register_vector

    def dump(self, obj: Any) -> bytes:
        values = np.ascontiguousarray(np.asarray(obj, dtype=np.float32).reshape(-1), dtype=">f4")
        return struct.pack(">HH", values.shape[0], 0) + values.tobytes()


class _VectorBinaryLoader(Loader):
    format = Format.BINARY

    def load(self, data: Any) -> np.ndarray:
        return np.frombuffer(bytes(data), dtype=">f4", offset=4).astype(np.float32)


class _VectorTextLoader(Loader):
    format = Format.TEXT

    def load(self, data: Any) -> np.ndarray:
        text = bytes(data).decode("ascii").strip("[]")
        return np.array([float(v) for v in text.split(",")] if text else [], dtype=np.float32)


def _register_vector(conn: psycopg.Connection, oid: int) -> None:
    dumper = type("_VectorDumperOid", (_VectorDumper,), {"oid": oid})
    conn.adapters.register_dumper(np.ndarray, dumper)
    conn.adapters.register_loader(oid, _VectorBinaryLoader)
    conn.adapters.register_loader(oid, _VectorTextLoader)


# -- values ----------------------------------------------------------------------------------------
def _clean(value: Any) -> Any:
    """PostgreSQL text cannot hold NUL; replace it (strings, and lists of strings)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _params(values: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(_clean(v) for v in values)


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _hashed(key: str | None) -> str | None:
    return hashlib.sha256(key.encode("utf-8")).hexdigest() if key is not None else None


def _fts_text(text: str) -> str:
    """What to feed ``to_tsvector``: the text, or for a very long one its distinct words in
    order of first use, up to a budget that keeps the tsvector under PostgreSQL's 1 MB."""
    if len(text) <= _FTS_FULL_CHARS:
        return text
    kept, used = [], 0
    for word in dict.fromkeys(text.split()):
        size = len(word.encode("utf-8"))
        cost = 2 * size + 12 if not word.isalnum() else size + 6  # lexeme + positions; compounds split
        if used + cost > _FTS_BUDGET_BYTES:
            break
        kept.append(word)
        used += cost
    return " ".join(kept)


def _lock_key(*parts: str | None) -> str:
    return "\x1f".join("\x1e" if p is None else p for p in parts)


def _safe_dsn(dsn: str) -> str:
    """The DSN without its password, for error messages."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "<unparsable DSN>"
    parts.pop("password", None)
    return " ".join(f"{k}={v}" for k, v in parts.items())


def drop_schema(dsn: str, schema: str) -> None:
    """Drop a store's schema with everything in it, without opening (or migrating) the store."""
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    except psycopg.Error as exc:
        raise StoreError(f"cannot drop schema {schema!r} ({_safe_dsn(dsn)}): {exc}") from exc


class PostgresStore(Store):
    """``Store`` on a PostgreSQL database with pgvector (see the module docstring).

    ``dsn`` is a libpq connection string or URL; ``schema`` is where the tables live
    (created if missing); ``pool_size`` bounds the connections this store opens.
    """

    def __init__(self, dsn: str, *, schema: str = "memkern", pool_size: int = 4,
                 timeout_s: float = 60.0) -> None:
        if not schema or not isinstance(schema, str) or "\x00" in schema:
            raise StoreError(f"invalid schema name {schema!r}")
        self.dsn = dsn
        self.schema = schema
        self._timeout_s = timeout_s
        self._closed = False
        ext_schema, self._vector_oid = self._migrate()
        path = [schema] if ext_schema == schema else [schema, ext_schema]
        self._search_path = sql.SQL("SET search_path TO {}").format(
            sql.SQL(", ").join(sql.Identifier(s) for s in path))
        # The pool checks a connection before lending it, so that one broken by a server
        # restart or a network cut is replaced rather than failing the caller's request.
        self._pool = ConnectionPool(
            dsn, min_size=1, max_size=max(1, pool_size), configure=self._configure,
            check=ConnectionPool.check_connection, timeout=timeout_s, num_workers=1,
            name=f"memkern-{schema}", open=False,
        )
        try:
            self._pool.open(wait=True, timeout=timeout_s)
        except Exception as exc:  # PoolTimeout is not a psycopg.Error
            self._pool.close()
            raise StoreError(f"cannot connect to PostgreSQL ({_safe_dsn(dsn)}): {exc}") from exc

    # -- plumbing ----------------------------------------------------------------------------------
    def _connect(self, **kwargs: Any) -> psycopg.Connection:
        try:
            return psycopg.connect(self.dsn, connect_timeout=max(1, int(self._timeout_s)), **kwargs)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL ({_safe_dsn(self.dsn)}): {exc}") from exc

    def _configure(self, conn: psycopg.Connection) -> None:
        conn.execute(self._search_path)
        conn.commit()
        _register_vector(conn, self._vector_oid)

    def _migrate(self) -> tuple[str, int]:
        """Create or upgrade the schema; returns pgvector's schema and the vector type's oid."""
        with self._connect() as conn:
            try:
                with conn.transaction(), conn.cursor() as cur:
                    cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (_MIGRATE_LOCK,))
                    cur.execute("SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'vector'")
                    row = cur.fetchone()
                    if row is None:
                        try:
                            with conn.transaction():
                                cur.execute("CREATE EXTENSION IF NOT EXISTS vector")
                        except psycopg.Error as exc:
                            raise StoreError(
                                "the pgvector extension is not enabled in this database and could not be "
                                f"created: {exc}; run CREATE EXTENSION vector as a superuser"
                            ) from exc
                        cur.execute("SELECT extnamespace::regnamespace::text FROM pg_extension"
                                    " WHERE extname = 'vector'")
                        row = cur.fetchone()
                    ext_schema = str(row[0]).strip('"')
                    cur.execute("SELECT t.oid FROM pg_type t JOIN pg_extension e ON e.extnamespace = t.typnamespace"
                                " WHERE e.extname = 'vector' AND t.typname = 'vector'")
                    vector_oid = int(cur.fetchone()[0])

                    cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
                    path = [self.schema] if ext_schema == self.schema else [self.schema, ext_schema]
                    cur.execute(sql.SQL("SET LOCAL search_path TO {}").format(
                        sql.SQL(", ").join(sql.Identifier(s) for s in path)))
                    cur.execute("SELECT to_regclass(format('%%I.meta', %s::text))", (self.schema,))
                    version = 0
                    if cur.fetchone()[0] is not None:
                        cur.execute("SELECT value FROM meta WHERE key = 'schema_version'")
                        found = cur.fetchone()
                        version = int(found[0]) if found else 0
                    if version > SCHEMA_VERSION:
                        raise StoreError(
                            f"the store in schema {self.schema!r} has schema version {version}; this "
                            f"memkern understands up to {SCHEMA_VERSION}: upgrade memkern"
                        )
                    for step in range(version, SCHEMA_VERSION):
                        with conn.transaction():
                            cur.execute(MIGRATIONS[step])
                            cur.execute(
                                "INSERT INTO meta(key, value) VALUES ('schema_version', %s)"
                                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                                (str(step + 1),),
                            )
            except psycopg.Error as exc:
                raise StoreError(f"cannot prepare schema {self.schema!r}: {exc}") from exc
        return ext_schema, vector_oid

    @contextmanager
    def _tx(self, *, snapshot: bool = False) -> Iterator[psycopg.Cursor]:
        """One transaction: committed if the block returns, rolled back if it raises."""
        if self._closed:
            raise StoreError("the store is closed")
        try:
            with self._pool.connection() as conn, conn.transaction(), conn.cursor(binary=True) as cur:
                if snapshot:  # one consistent view for several queries
                    cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                yield cur
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL store ({self.schema}): {exc}") from exc
        except Exception as exc:
            if type(exc).__module__.startswith("psycopg_pool"):  # PoolTimeout, PoolClosed
                raise StoreError(f"PostgreSQL store ({self.schema}): {exc}") from exc
            raise

    def _read(self, query: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._tx() as cur:
            cur.execute(query, _params(params))
            return cur.fetchall()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool.close()

    def reset(self) -> None:
        """Empty every table of this store's schema (tests)."""
        with self._tx() as cur:
            cur.execute("TRUNCATE " + ", ".join(_TABLES) + " RESTART IDENTITY CASCADE")

    def drop_schema(self) -> None:
        """Close the store and drop its schema with everything in it (tests)."""
        self.close()
        drop_schema(self.dsn, self.schema)

    @staticmethod
    def _log(cur: psycopg.Cursor, cube_id: str, op: str, memory_id: str | None = None,
             version: int | None = None, actor: str | None = None, reason: str | None = None) -> None:
        cur.execute(
            "INSERT INTO operations(at, cube_id, memory_id, version, op, actor, reason)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            _params((utcnow().isoformat(), cube_id, memory_id, version, op, actor, reason)),
        )

    @staticmethod
    def _bump(cur: psycopg.Cursor, cube_id: str) -> None:
        cur.execute("UPDATE cubes SET revision = revision + 1 WHERE id = %s", _params((cube_id,)))

    @staticmethod
    def _lock_cube(cur: psycopg.Cursor, cube_id: str) -> bool:
        """Serialize writers of one cube (see the module docstring); False if it does not exist."""
        cur.execute("SELECT 1 FROM cubes WHERE id = %s FOR NO KEY UPDATE", _params((cube_id,)))
        return cur.fetchone() is not None

    @staticmethod
    def _row_to_item(row: Sequence[Any]) -> MemoryItem:
        _seq, state, valid_to, expired_at, access_count, last_accessed_at, body = row
        item = MemoryItem.model_validate_json(body)
        return item.model_copy(update={
            "state": LifecycleState(state),
            "valid_to": datetime.fromisoformat(valid_to) if valid_to else None,
            "expired_at": datetime.fromisoformat(expired_at) if expired_at else None,
            "access_count": access_count,
            "last_accessed_at": datetime.fromisoformat(last_accessed_at) if last_accessed_at else None,
        })

    @staticmethod
    def _version_params(item: MemoryItem, indexed: bool) -> tuple[Any, ...]:
        source_key, content_key = dedup_keys(item)
        return _params((
            item.cube_id, item.id, item.version, item.expired_at is None, item.kind.value,
            item.provenance.session_id, item.provenance.position, item.provenance.speaker,
            _epoch(item.event_time), item.state.value, _hashed(source_key), content_key,
            _iso(item.valid_to), _iso(item.expired_at), item.access_count, _iso(item.last_accessed_at),
            json.dumps(item.tags), list(item.tags), item.model_dump_json(),
            indexed, _fts_text(item.text) if indexed else "", " ".join(item.entities) if indexed else "",
        ))

    _INSERT_VERSION = (
        "INSERT INTO memories(cube_id, id, version, is_current, kind, session_id, position, speaker,"
        " event_time, state, source_key, content_key, valid_to, expired_at, access_count,"
        " last_accessed_at, tags, tag_list, body, tsv)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::text[], %s,"
        " CASE WHEN %s THEN setweight(to_tsvector('memkern_english', %s), 'A')"
        " || setweight(to_tsvector('memkern_english', %s), 'B') END)"
        " ON CONFLICT DO NOTHING RETURNING seq"
    )

    def _insert_version(self, cur: psycopg.Cursor, item: MemoryItem, vector: np.ndarray | None,
                        index_rows: list[tuple[int, str, np.ndarray]]) -> int | None:
        """Write one version; returns its seq, or None when a current duplicate exists.

        The index row of an indexed version is appended to ``index_rows`` for the caller to
        insert (in one batch, in the same order, so that index seqs follow memory seqs)."""
        indexed = item.expired_at is None and vector is not None
        cur.execute(self._INSERT_VERSION, self._version_params(item, indexed))
        row = cur.fetchone()
        if row is None:
            return None
        seq = int(row[0])
        if indexed:
            index_rows.append((seq, item.cube_id, np.asarray(vector, dtype=np.float32)))
        return seq

    @staticmethod
    def _insert_index_rows(cur: psycopg.Cursor, rows: list[tuple[int, str, np.ndarray]]) -> None:
        if rows:
            cur.executemany("INSERT INTO index_rows(memory_seq, cube_id, vector) VALUES (%s, %s, %s)",
                            [_params(row) for row in rows])

    def _current(self, cur: psycopg.Cursor, cube_id: str, memory_id: str, *, lock: bool = False) -> tuple:
        cur.execute(
            f"SELECT {_MEMORY_COLUMNS} FROM memories WHERE cube_id = %s AND id = %s AND is_current"
            + (" FOR UPDATE" if lock else ""),
            _params((cube_id, memory_id)),
        )
        row = cur.fetchone()
        if row is None:
            raise NotFoundError(f"no memory {memory_id!r} in cube {cube_id!r}")
        return row

    # -- cubes -------------------------------------------------------------------------------------
    def create_cube(self, info: CubeInfo) -> CubeInfo:
        with self._tx() as cur:
            self._insert_cube(cur, info)
        return info

    def _insert_cube(self, cur: psycopg.Cursor, info: CubeInfo) -> None:
        cur.execute(
            "INSERT INTO cubes(id, name, owner, body) VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING id",
            _params((info.id, info.name, info.owner, info.model_dump_json())),
        )
        if cur.fetchone() is None:
            raise ConflictError(f"a cube named {info.name!r} (or with id {info.id!r}) already exists")
        self._log(cur, info.id, "create_cube", actor=info.owner)

    def get_cube(self, name_or_id: str) -> CubeInfo:
        rows = self._read("SELECT body FROM cubes WHERE id = %s OR name = %s ORDER BY (id = %s) DESC LIMIT 1",
                          (name_or_id, name_or_id, name_or_id))
        if not rows:
            raise NotFoundError(f"no cube named {name_or_id!r}")
        return CubeInfo.model_validate_json(rows[0][0])

    def list_cubes(self, owner: str | None = None) -> list[CubeInfo]:
        if owner is None:
            rows = self._read('SELECT body FROM cubes ORDER BY name COLLATE "C"')
        else:
            rows = self._read('SELECT body FROM cubes WHERE owner = %s ORDER BY name COLLATE "C"', (owner,))
        return [CubeInfo.model_validate_json(body) for (body,) in rows]

    def delete_cube(self, cube_id: str, actor: str | None = None) -> None:
        with self._tx() as cur:
            if not self._lock_cube(cur, cube_id):
                raise NotFoundError(f"no cube with id {cube_id!r}")
            cur.execute("DELETE FROM index_rows WHERE cube_id = %s", _params((cube_id,)))
            cur.execute("DELETE FROM memories WHERE cube_id = %s", _params((cube_id,)))
            cur.execute("DELETE FROM cubes WHERE id = %s", _params((cube_id,)))
            self._log(cur, cube_id, "delete_cube", actor=actor)

    def cube_revision(self, cube_id: str) -> int:
        rows = self._read("SELECT revision FROM cubes WHERE id = %s", (cube_id,))
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
        index_rows: list[tuple[int, str, np.ndarray]] = []
        with self._tx() as cur:
            if not self._lock_cube(cur, cube_id):
                raise NotFoundError(f"no cube with id {cube_id!r}")
            last_position: dict[str | None, int] = {}
            for index, item in enumerate(items):
                item = self._place_turn(cur, cube_id, item, last_position)
                if self._insert_version(cur, item, vectors[index], index_rows) is None:
                    duplicates[index] = self._duplicate_of(cur, item)
                    continue  # a duplicate takes no position: the session stays numbered 0, 1, 2, ...
                if item.kind is MemoryKind.TURN and item.provenance.session_id in last_position:
                    last_position[item.provenance.session_id] = max(
                        last_position[item.provenance.session_id], item.provenance.position)
                added.append(item)
            self._insert_index_rows(cur, index_rows)
            if added:
                cur.executemany(
                    "INSERT INTO operations(at, cube_id, memory_id, version, op, actor, reason)"
                    " VALUES (%s, %s, %s, %s, 'add', %s, NULL)",
                    [_params((utcnow().isoformat(), cube_id, item.id, item.version, actor)) for item in added],
                )
                self._bump(cur, cube_id)
        return AddOutcome(added=added, duplicates=duplicates)

    def _place_turn(self, cur: psycopg.Cursor, cube_id: str, item: MemoryItem,
                    last_position: dict[str | None, int]) -> MemoryItem:
        """Number a new turn after the last one of its session. The first time a session is
        met, an advisory lock on (cube, session) is taken for the rest of the transaction
        before its last position is read, so that concurrent writers to one session never
        take the same position. ``last_position`` caches the last position per session; the
        caller advances it only when the turn is actually stored."""
        if item.kind is not MemoryKind.TURN or item.provenance.position is not None:
            return item
        session = item.provenance.session_id
        if session not in last_position:
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                        _params((_lock_key(self.schema, cube_id, session),)))
            if session is None:
                cur.execute("SELECT max(position) FROM memories WHERE cube_id = %s AND session_id IS NULL",
                            _params((cube_id,)))
            else:
                cur.execute("SELECT max(position) FROM memories WHERE cube_id = %s AND session_id = %s",
                            _params((cube_id, session)))
            found = cur.fetchone()[0]
            last_position[session] = -1 if found is None else int(found)
        provenance = item.provenance.model_copy(update={"position": last_position[session] + 1})
        return item.model_copy(update={"provenance": provenance})

    @staticmethod
    def _duplicate_of(cur: psycopg.Cursor, item: MemoryItem) -> str:
        source_key, content_key = dedup_keys(item)
        cur.execute(
            "SELECT id FROM memories WHERE cube_id = %s AND is_current AND (source_key = %s OR content_key = %s)"
            " ORDER BY seq LIMIT 1",
            _params((item.cube_id, _hashed(source_key), content_key)),
        )
        row = cur.fetchone()
        if row is None:  # the conflict was on (cube, id, version): a caller reused an id
            raise ConflictError(f"memory id {item.id!r} already exists in cube {item.cube_id!r}")
        return str(row[0])

    def update_memory(self, cube_id: str, new_version: MemoryItem, vector: np.ndarray,
                      expected_version: int) -> MemoryItem:
        with self._tx() as cur:
            self._lock_cube(cur, cube_id)
            seq, *_ = current = self._current(cur, cube_id, new_version.id, lock=True)
            old = self._row_to_item(current)
            if old.version != expected_version:
                raise ConflictError(
                    f"memory {new_version.id!r} is at version {old.version}, not {expected_version}: "
                    "it changed since you read it"
                )
            # A new validity start means the world changed: the old version stops being true then.
            valid_to = new_version.valid_from if new_version.valid_from != old.valid_from else old.valid_to
            cur.execute(
                "UPDATE memories SET is_current = false, expired_at = %s, valid_to = %s, tsv = NULL WHERE seq = %s",
                (new_version.recorded_at.isoformat(), _iso(valid_to), seq),
            )
            cur.execute("DELETE FROM index_rows WHERE memory_seq = %s", (seq,))
            index_rows: list[tuple[int, str, np.ndarray]] = []
            if self._insert_version(cur, new_version, vector, index_rows) is None:
                raise ConflictError(
                    f"the new text of {new_version.id!r} duplicates another current memory of the cube"
                )
            self._insert_index_rows(cur, index_rows)
            self._log(cur, cube_id, "update", new_version.id, new_version.version,
                      new_version.changed_by, new_version.change_reason)
            self._bump(cur, cube_id)
        return new_version

    def set_state(self, cube_id: str, memory_id: str, state: LifecycleState,
                  actor: str | None = None, reason: str | None = None) -> MemoryItem:
        if state is LifecycleState.DELETED:
            raise StoreError("use delete_memory to delete; it removes every version")
        with self._tx() as cur:
            self._lock_cube(cur, cube_id)
            seq, *_ = self._current(cur, cube_id, memory_id, lock=True)
            cur.execute("UPDATE memories SET state = %s WHERE seq = %s", (state.value, seq))
            # Re-insert the index row under a new seq so that cached indexes notice the change.
            cur.execute("DELETE FROM index_rows WHERE memory_seq = %s RETURNING cube_id, vector", (seq,))
            row = cur.fetchone()
            if row is not None:
                cur.execute("INSERT INTO index_rows(memory_seq, cube_id, vector) VALUES (%s, %s, %s)",
                            (seq, row[0], row[1]))
            self._log(cur, cube_id, state.value, memory_id, None, actor, reason)
            self._bump(cur, cube_id)
            return self._row_to_item(self._current(cur, cube_id, memory_id))

    def delete_memory(self, cube_id: str, memory_id: str, actor: str | None = None,
                      reason: str | None = None) -> None:
        with self._tx() as cur:
            self._lock_cube(cur, cube_id)
            cur.execute("DELETE FROM memories WHERE cube_id = %s AND id = %s RETURNING seq",
                        _params((cube_id, memory_id)))  # index rows go with them (ON DELETE CASCADE)
            if not cur.fetchall():
                raise NotFoundError(f"no memory {memory_id!r} in cube {cube_id!r}")
            self._log(cur, cube_id, "delete", memory_id, None, actor, reason)
            self._bump(cur, cube_id)

    def record_access(self, cube_id: str, memory_ids: Sequence[str], at: datetime) -> None:
        if not memory_ids:
            return
        with self._tx() as cur:
            # Lock the rows in one order first, so that concurrent readers cannot deadlock;
            # then one statement, each id counted as often as it was read.
            cur.execute(
                "SELECT seq FROM memories WHERE cube_id = %s AND id = ANY(%s::text[]) AND is_current"
                " ORDER BY seq FOR NO KEY UPDATE",
                _params((cube_id, list(dict.fromkeys(memory_ids)))),
            )
            cur.execute(
                "UPDATE memories m SET access_count = m.access_count + r.n, last_accessed_at = %s"
                " FROM (SELECT id, count(*)::int AS n FROM unnest(%s::text[]) AS t(id) GROUP BY id) r"
                " WHERE m.cube_id = %s AND m.id = r.id AND m.is_current",
                _params((at.isoformat(), list(memory_ids), cube_id)),
            )

    def import_cube(self, info: CubeInfo, versions: Sequence[MemoryItem], vectors: np.ndarray,
                    actor: str | None = None) -> CubeInfo:
        current = [v for v in versions if v.expired_at is None]
        if len(current) != len(vectors):
            raise StoreError(f"{len(current)} current memories but {len(vectors)} vectors")
        vector_of = {v.id: vectors[i] for i, v in enumerate(current)}
        with self._tx() as cur:
            self._insert_cube(cur, info)
            index_rows: list[tuple[int, str, np.ndarray]] = []
            for item in versions:
                vector = vector_of.get(item.id) if item.expired_at is None else None
                if self._insert_version(cur, item, vector, index_rows) is None:
                    raise ConflictError(f"the cube holds {item.version_id} twice (or a duplicate memory)")
            self._insert_index_rows(cur, index_rows)
            self._log(cur, info.id, "import", actor=actor, reason=f"{len(versions)} versions")
            self._bump(cur, info.id)
        return info

    # -- reads -------------------------------------------------------------------------------------
    def get_memories(self, cube_id: str, memory_ids: Sequence[str]) -> dict[str, MemoryItem]:
        ids = list(dict.fromkeys(memory_ids))
        if not ids:
            return {}
        rows = self._read(
            f"SELECT {_MEMORY_COLUMNS} FROM memories WHERE cube_id = %s AND is_current AND id = ANY(%s::text[])"
            " ORDER BY seq",
            (cube_id, ids),
        )
        found: dict[str, MemoryItem] = {}
        for row in rows:
            item = self._row_to_item(row)
            found[item.id] = item
        return found

    def list_memories(self, cube_id: str, filters: Filters, limit: int | None = None,
                      offset: int = 0) -> list[MemoryItem]:
        where, params = ["cube_id = %s", "is_current"], [cube_id]
        if filters.state is not None:
            where.append("state = %s")
            params.append(filters.state.value)
        if (sessions := filters.session_ids()) is not None:
            if len(sessions) == 1:
                where.append("session_id = %s")
                params.append(sessions[0])
            else:
                where.append("session_id = ANY(%s::text[])")
                params.append(list(sessions))
        if (kinds := filters.kinds()) is not None:
            where.append("kind = ANY(%s::text[])")
            params.append([k.value for k in kinds])
        if filters.speaker is not None:
            where.append("speaker = %s")
            params.append(filters.speaker)
        if filters.since is not None:
            where.append("event_time >= %s")
            params.append(filters.since.timestamp())
        if filters.until is not None:
            where.append("event_time <= %s")
            params.append(filters.until.timestamp())
        if filters.tags:  # in SQL, so that LIMIT/OFFSET count matching rows only
            where.append("tag_list @> %s::text[]")
            params.append(list(dict.fromkeys(filters.tags)))
        query = f"SELECT {_MEMORY_COLUMNS} FROM memories WHERE {' AND '.join(where)} ORDER BY seq"
        query += f" LIMIT {int(limit) if limit is not None and limit >= 0 else 'ALL'} OFFSET {max(0, int(offset))}"
        return [self._row_to_item(row) for row in self._read(query, params)]

    def history(self, cube_id: str, memory_id: str) -> list[MemoryItem]:
        rows = self._read(
            f"SELECT {_MEMORY_COLUMNS} FROM memories WHERE cube_id = %s AND id = %s ORDER BY version",
            (cube_id, memory_id),
        )
        if not rows:
            raise NotFoundError(f"no memory {memory_id!r} in cube {cube_id!r}")
        return [self._row_to_item(row) for row in rows]

    def export_versions(self, cube_id: str) -> tuple[list[MemoryItem], np.ndarray]:
        with self._tx(snapshot=True) as cur:
            cur.execute("SELECT body FROM cubes WHERE id = %s", _params((cube_id,)))
            cube = cur.fetchone()
            cur.execute(f"SELECT {_MEMORY_COLUMNS} FROM memories WHERE cube_id = %s ORDER BY seq",
                        _params((cube_id,)))
            rows = cur.fetchall()
            cur.execute("SELECT i.vector FROM index_rows i JOIN memories m ON m.seq = i.memory_seq"
                        " WHERE i.cube_id = %s ORDER BY m.seq", _params((cube_id,)))
            found = [v for (v,) in cur.fetchall()]
        if cube is None:
            raise NotFoundError(f"no cube named {cube_id!r}")
        dim = CubeInfo.model_validate_json(cube[0]).dim
        vectors = np.stack(found).astype(np.float32, copy=False) if found else np.zeros((0, dim), np.float32)
        return [self._row_to_item(row) for row in rows], vectors.reshape(-1, dim)

    def operations(self, cube_id: str, memory_id: str | None = None,
                   limit: int | None = None) -> list[Operation]:
        query = "SELECT seq, at, op, cube_id, memory_id, version, actor, reason FROM operations WHERE cube_id = %s"
        params: list[object] = [cube_id]
        if memory_id is not None:
            query += " AND memory_id = %s"
            params.append(memory_id)
        query += f" ORDER BY seq LIMIT {int(limit) if limit is not None and limit >= 0 else 'ALL'}"
        return [
            Operation(seq=r[0], at=datetime.fromisoformat(r[1]), op=r[2], cube_id=r[3], memory_id=r[4],
                      version=r[5], actor=r[6], reason=r[7])
            for r in self._read(query, params)
        ]

    # -- search primitives -------------------------------------------------------------------------
    def index_rows(self, cube_id: str, after_seq: int) -> IndexBatch:
        with self._tx(snapshot=True) as cur:  # one snapshot for rows, count and revision
            cur.execute(
                "SELECT i.seq, m.id, m.session_id, m.kind, m.speaker, m.event_time, m.state,"
                " m.position, m.tags, i.vector"
                " FROM index_rows i JOIN memories m ON m.seq = i.memory_seq"
                " WHERE i.cube_id = %s AND i.seq > %s ORDER BY i.seq",
                _params((cube_id, int(after_seq))),
            )
            rows = cur.fetchall()
            cur.execute("SELECT count(*) FROM index_rows WHERE cube_id = %s", _params((cube_id,)))
            count = cur.fetchone()[0]
            cur.execute("SELECT revision FROM cubes WHERE id = %s", _params((cube_id,)))
            revision = cur.fetchone()
        if revision is None:
            raise NotFoundError(f"no cube with id {cube_id!r}")
        batch = IndexBatch(count=int(count), revision=int(revision[0]))
        for seq, mid, session, kind, speaker, etime, state, position, tags, _ in rows:
            batch.seqs.append(int(seq))
            batch.ids.append(mid)
            batch.session_ids.append(session)
            batch.kinds.append(kind)
            batch.speakers.append(speaker)
            batch.event_times.append(etime)
            batch.states.append(state)
            batch.positions.append(position)
            batch.tags.append(json.loads(tags) if tags else [])
        if rows:
            batch.vectors = np.stack([row[-1] for row in rows]).astype(np.float32, copy=False)
        return batch

    def lexical_search(self, cube_id: str, terms: Sequence[str], limit: int) -> list[tuple[str, float]]:
        terms = [t for t in terms if t and t.strip()]
        if not terms or limit <= 0:
            return []
        # BM25-shaped: per term, IDF over the cube's indexed memories times ts_rank (saturating
        # in term frequency, weighted text 1.0 / entities 0.5, normalised by document length).
        # Document frequencies are counted among the candidates: a memory containing a term
        # matches the OR query, so every memory counted by a term's df is a candidate.
        any_term = " || ".join(["plainto_tsquery('memkern_english', %s)"] * len(terms))
        # Every CTE is MATERIALIZED so that it is computed once whatever the planner believes:
        # right after a bulk insert its statistics are stale, and it would happily recount
        # document frequencies once per candidate.
        rows = self._read(
            "WITH cand AS MATERIALIZED ("
            "  SELECT seq, id, tsv FROM memories"
            f"  WHERE cube_id = %s AND tsv @@ ({any_term})),"
            " total AS MATERIALIZED (SELECT count(*) AS n FROM index_rows WHERE cube_id = %s),"
            " t AS MATERIALIZED ("
            "  SELECT q FROM (SELECT plainto_tsquery('memkern_english', term) AS q"
            "                 FROM unnest(%s::text[]) AS u(term)) AS parsed"
            "  WHERE numnode(q) > 0),"
            " df AS MATERIALIZED ("
            "  SELECT t.q, (SELECT count(*) FROM cand c WHERE c.tsv @@ t.q) AS n FROM t),"
            " idf AS MATERIALIZED ("
            "  SELECT df.q, ln(1 + (greatest(total.n, df.n) - df.n + 0.5) / (df.n + 0.5)) AS w"
            "  FROM df CROSS JOIN total)"
            " SELECT c.id,"
            f"  sum(idf.w * ts_rank('{_RANK_WEIGHTS}'::float4[], c.tsv, idf.q, 1)) AS score"
            " FROM cand c JOIN idf ON c.tsv @@ idf.q"
            " GROUP BY c.seq, c.id ORDER BY score DESC, c.seq LIMIT %s",
            (cube_id, *terms, cube_id, list(terms), int(limit)),
        )
        return [(mid, float(score)) for mid, score in rows if score > 0]
