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
    from psycopg import sql as pgsql
    from psycopg.adapt import Dumper, Loader
    from psycopg.conninfo import conninfo_to_dict
    from psycopg.pq import Format
    from psycopg_pool import ConnectionPool
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "the PostgreSQL store needs psycopg 3 and psycopg-pool: pip install 'psycopg[binary]' psycopg-pool"
    ) from exc

from memkern.errors import StoreError
from memkern.governance.sqlstore import GovernanceSQL
from memkern.models import CubeInfo, Filters, LifecycleState, MemoryItem, Operation, utcnow
from memkern.store import sql
from memkern.store.base import AddOutcome, IndexBatch, Store
from memkern.store.queue import SQLJobQueue
from memkern.store.sql import MEMORY_COLUMNS, row_to_item

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
    # 1 -> 2: governance: users, hashed API keys, per-cube grants, the audit log.
    """
    CREATE TABLE users (
        id         text PRIMARY KEY,
        name       text NOT NULL,
        role       text NOT NULL,
        created_at text NOT NULL
    );

    -- The key itself is never stored: its public prefix (for lookup) and its sha256.
    CREATE TABLE api_keys (
        prefix     text PRIMARY KEY,
        user_id    text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        key_hash   text NOT NULL,
        created_at text NOT NULL,
        revoked_at text
    );
    CREATE INDEX api_keys_user ON api_keys (user_id);

    CREATE TABLE grants (
        cube_id    text NOT NULL REFERENCES cubes(id) ON DELETE CASCADE,
        user_id    text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        permission text NOT NULL,
        granted_at text NOT NULL,
        PRIMARY KEY (cube_id, user_id)
    );
    CREATE INDEX grants_user ON grants (user_id);

    -- Append-only, ids only: who did what on which cube and memories, and how it ended.
    CREATE TABLE audit (
        seq       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at        text NOT NULL,
        user_id   text,
        operation text NOT NULL,
        cube_id   text,
        item_ids  text NOT NULL,
        result    text NOT NULL,
        detail    text
    );
    CREATE INDEX audit_cube ON audit (cube_id, seq);
    CREATE INDEX audit_user ON audit (user_id, seq);
    """,
    # 2 -> 3: the scheduler's durable job queue (memkern.store.queue) and the marks its
    # handlers keep per memory ("extracted"). Times are epoch seconds. Jobs of one ``lane``
    # (a cube) run in ``seq`` order; they go with their cube.
    """
    CREATE TABLE jobs (
        seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id           text NOT NULL UNIQUE,
        lane         text NOT NULL,
        cube_id      text REFERENCES cubes(id) ON DELETE CASCADE,
        type         text NOT NULL,
        payload      text NOT NULL,
        status       text NOT NULL,
        attempts     integer NOT NULL DEFAULT 0,
        max_attempts integer NOT NULL,
        run_at       double precision NOT NULL,
        created_at   double precision NOT NULL,
        started_at   double precision,
        finished_at  double precision,
        lease_owner  text,
        lease_token  text,
        lease_until  double precision,
        heartbeat_at double precision,
        dedup_key    text,
        last_error   text,
        result       text
    );
    CREATE INDEX jobs_open_lane ON jobs (lane, seq) WHERE status IN ('pending', 'running');
    CREATE INDEX jobs_status ON jobs (status, run_at);
    CREATE INDEX jobs_cube ON jobs (cube_id, seq);
    CREATE UNIQUE INDEX jobs_dedup ON jobs (dedup_key) WHERE status = 'pending' AND dedup_key IS NOT NULL;

    CREATE TABLE job_marks (
        cube_id   text NOT NULL REFERENCES cubes(id) ON DELETE CASCADE,
        mark      text NOT NULL,
        memory_id text NOT NULL,
        at        double precision NOT NULL,
        job_id    text,
        PRIMARY KEY (cube_id, mark, memory_id)
    );
    """,
    # 3 -> 4: the removal feed of the search index (ids only, see the SQLite schema).
    """
    CREATE TABLE index_removals (
        seq       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        cube_id   text NOT NULL,
        memory_id text NOT NULL
    );
    CREATE INDEX index_removals_cube ON index_removals (cube_id, seq);
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)

_TABLES = ("audit", "grants", "api_keys", "users", "operations", "index_removals", "index_rows", "memories",
           "cubes")
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


def _one_of(column: str, values: list[str]) -> sql.Clause:
    if column == "session_id" and len(values) == 1:  # an equality can use the hash index
        return f"{column} = %s", values
    return f"{column} = ANY(%s::text[])", [values]


def _has_tags(tags: list[str]) -> list[sql.Clause]:
    return [("tag_list @> %s::text[]", [tags])]


_DIALECT = sql.Dialect(mark="%s", is_current="is_current", no_limit="ALL", one_of=_one_of, has_tags=_has_tags)


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


class _CleanCursor:
    """A cursor whose ``execute`` replaces NULs in parameters (for the governance SQL)."""

    def __init__(self, cur: psycopg.Cursor) -> None:
        self.cur = cur

    def execute(self, query: str, params: Sequence[Any] = ()) -> psycopg.Cursor:
        return self.cur.execute(query, _params(params))


def drop_schema(dsn: str, schema: str) -> None:
    """Drop a store's schema with everything in it, without opening (or migrating) the store."""
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(pgsql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(pgsql.Identifier(schema)))
    except psycopg.Error as exc:
        raise StoreError(f"cannot drop schema {schema!r} ({_safe_dsn(dsn)}): {exc}") from exc


def _one(cur: Any) -> tuple[Any, ...]:
    """The single row a query that always returns one (a count, a lookup by key) returned."""
    row = cur.fetchone()
    if row is None:
        raise StoreError("PostgreSQL returned no row where one was expected")
    return tuple(row)


class PostgresStore(GovernanceSQL, Store):
    """``Store`` on a PostgreSQL database with pgvector (see the module docstring).

    ``dsn`` is a libpq connection string or URL; ``schema`` is where the tables live
    (created if missing); ``pool_size`` bounds the connections this store opens.
    """

    # -- governance hooks (memkern.governance.sqlstore) ----------------------------------------------
    _gov_mark = "%s"

    @contextmanager
    def _gov_tx(self) -> Iterator[_CleanCursor]:
        with self._tx() as cur:
            yield _CleanCursor(cur)

    def _gov_read(self, query: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self._read(query, params)

    def _gov_purge_cube(self, db: _CleanCursor, cube_id: str) -> None:
        if not self._lock_cube(db.cur, cube_id):
            return
        for table in ("index_rows", "index_removals", "memories", "operations"):
            db.execute(f"DELETE FROM {table} WHERE cube_id = %s", (cube_id,))
        db.execute("DELETE FROM cubes WHERE id = %s", (cube_id,))

    def _gov_after_forget(self) -> None:
        # Dead row versions stay in the heap until vacuumed: vacuum the tables that held them, so
        # that their space is reused soon. Plain VACUUM does not overwrite the bytes (measured:
        # the text stays in the table file until the space is reused, or VACUUM FULL rewrites it).
        try:
            with self._connect(autocommit=True) as conn:
                conn.execute(self._search_path)
                for table in ("memories", "index_rows", "operations", "cubes", "audit", "users", "api_keys"):
                    conn.execute(pgsql.SQL("VACUUM {}").format(pgsql.Identifier(self.schema, table)))
        except (StoreError, psycopg.Error):  # best effort: the rows are already deleted
            pass

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
        self._search_path = pgsql.SQL("SET search_path TO {}").format(
            pgsql.SQL(", ").join(pgsql.Identifier(s) for s in path))
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
                        row = _one(cur)
                    ext_schema = str(row[0]).strip('"')
                    cur.execute("SELECT t.oid FROM pg_type t JOIN pg_extension e ON e.extnamespace = t.typnamespace"
                                " WHERE e.extname = 'vector' AND t.typname = 'vector'")
                    vector_oid = int(_one(cur)[0])

                    # Only create a missing schema: CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege on
                    # the database even when the schema exists, which an application role often lacks.
                    cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,))
                    if cur.fetchone() is None:
                        cur.execute(pgsql.SQL("CREATE SCHEMA {}").format(pgsql.Identifier(self.schema)))
                    path = [self.schema] if ext_schema == self.schema else [self.schema, ext_schema]
                    cur.execute(pgsql.SQL("SET LOCAL search_path TO {}").format(
                        pgsql.SQL(", ").join(pgsql.Identifier(s) for s in path)))
                    cur.execute("SELECT to_regclass(format('%%I.meta', %s::text))", (self.schema,))
                    version = 0
                    if _one(cur)[0] is not None:
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

    def job_queue(self) -> SQLJobQueue:
        """The scheduler's job queue in this database (claims serialised by an advisory lock)."""
        return SQLJobQueue(self._tx, self._read, "%s",
                           claim_lock="SELECT pg_advisory_xact_lock(hashtextextended('memkern:jobs:claim', 0))",
                           name="postgres")

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
    def _version_params(item: MemoryItem, indexed: bool) -> tuple[Any, ...]:
        return _params((
            *sql.version_values(item, _hashed),
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
            f"SELECT {MEMORY_COLUMNS} FROM memories WHERE cube_id = %s AND id = %s AND is_current"
            + (" FOR UPDATE" if lock else ""),
            _params((cube_id, memory_id)),
        )
        row = cur.fetchone()
        if row is None:
            raise sql.no_memory(cube_id, memory_id)
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
            raise sql.cube_exists(info)
        self._log(cur, info.id, "create_cube", actor=info.owner)

    def get_cube(self, name_or_id: str) -> CubeInfo:
        rows = self._read("SELECT body FROM cubes WHERE id = %s OR name = %s ORDER BY (id = %s) DESC LIMIT 1",
                          (name_or_id, name_or_id, name_or_id))
        return sql.cube_from_rows(rows, name_or_id)

    def list_cubes(self, owner: str | None = None) -> list[CubeInfo]:
        if owner is None:
            rows = self._read('SELECT body FROM cubes ORDER BY name COLLATE "C"')
        else:
            rows = self._read('SELECT body FROM cubes WHERE owner = %s ORDER BY name COLLATE "C"', (owner,))
        return [CubeInfo.model_validate_json(body) for (body,) in rows]

    def delete_cube(self, cube_id: str, actor: str | None = None) -> None:
        with self._tx() as cur:
            if not self._lock_cube(cur, cube_id):
                raise sql.no_cube(cube_id)
            cur.execute("DELETE FROM index_rows WHERE cube_id = %s", _params((cube_id,)))
            cur.execute("DELETE FROM index_removals WHERE cube_id = %s", _params((cube_id,)))
            cur.execute("DELETE FROM memories WHERE cube_id = %s", _params((cube_id,)))
            cur.execute("DELETE FROM cubes WHERE id = %s", _params((cube_id,)))
            self._log(cur, cube_id, "delete_cube", actor=actor)

    def cube_revision(self, cube_id: str) -> int:
        return sql.revision_from_rows(self._read("SELECT revision FROM cubes WHERE id = %s", (cube_id,)), cube_id)

    # -- writes ------------------------------------------------------------------------------------
    def add_memories(self, cube_id: str, items: Sequence[MemoryItem], vectors: np.ndarray,
                     actor: str | None = None) -> AddOutcome:
        sql.check_batch(items, vectors)
        added: list[MemoryItem] = []
        duplicates: dict[int, str] = {}
        index_rows: list[tuple[int, str, np.ndarray]] = []
        with self._tx() as cur:
            if not self._lock_cube(cur, cube_id):
                raise sql.no_cube(cube_id)
            last_position: dict[str | None, int] = {}
            for index, item in enumerate(items):
                item = self._place_turn(cur, cube_id, item, last_position)
                if self._insert_version(cur, item, vectors[index], index_rows) is None:
                    duplicates[index] = self._duplicate_of(cur, item)
                    continue  # a duplicate takes no position: the session stays numbered 0, 1, 2, ...
                sql.advance_position(item, last_position)
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
        """Number a new turn (``sql.place_turn``). The first time a session is met, an
        advisory lock on (cube, session) is taken for the rest of the transaction before its
        last position is read, so that concurrent writers to one session never take the same
        position."""
        def last_stored(session: str | None) -> int | None:
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                        _params((_lock_key(self.schema, cube_id, session),)))
            if session is None:
                cur.execute("SELECT max(position) FROM memories WHERE cube_id = %s AND session_id IS NULL",
                            _params((cube_id,)))
            else:
                cur.execute("SELECT max(position) FROM memories WHERE cube_id = %s AND session_id = %s",
                            _params((cube_id, session)))
            return _one(cur)[0]

        return sql.place_turn(item, last_position, last_stored)

    @staticmethod
    def _duplicate_of(cur: psycopg.Cursor, item: MemoryItem) -> str:
        query, params = sql.duplicate_query(_DIALECT, item, _hashed)
        cur.execute(query, _params(params))
        return sql.duplicate_id(cur.fetchone(), item)

    def update_memory(self, cube_id: str, new_version: MemoryItem, vector: np.ndarray,
                      expected_version: int) -> MemoryItem:
        with self._tx() as cur:
            self._lock_cube(cur, cube_id)
            seq, *_ = current = self._current(cur, cube_id, new_version.id, lock=True)
            old = row_to_item(current)
            valid_to = sql.closing_valid_to(old, new_version, expected_version)
            cur.execute(
                "UPDATE memories SET is_current = false, expired_at = %s, valid_to = %s, tsv = NULL WHERE seq = %s",
                (new_version.recorded_at.isoformat(), valid_to, seq),
            )
            cur.execute("DELETE FROM index_rows WHERE memory_seq = %s", (seq,))
            index_rows: list[tuple[int, str, np.ndarray]] = []
            if self._insert_version(cur, new_version, vector, index_rows) is None:
                raise sql.update_duplicates(new_version)
            self._insert_index_rows(cur, index_rows)
            self._log(cur, cube_id, "update", new_version.id, new_version.version,
                      new_version.changed_by, new_version.change_reason)
            self._bump(cur, cube_id)
        return new_version

    def set_state(self, cube_id: str, memory_id: str, state: LifecycleState,
                  actor: str | None = None, reason: str | None = None) -> MemoryItem:
        sql.check_settable(state)
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
            return row_to_item(self._current(cur, cube_id, memory_id))

    def delete_memory(self, cube_id: str, memory_id: str, actor: str | None = None,
                      reason: str | None = None) -> None:
        """Delete every version; when this returns no row of any memkern table holds the text.

        What PostgreSQL cannot promise (unlike ``SQLiteStore``): the dead row versions stay in
        the table files until their space is reused (plain ``VACUUM`` marks it free but does not
        overwrite it) and in WAL segments until they are recycled. ``VACUUM FULL`` on the memkern
        tables rewrites them without the text; it locks each table while it runs, so memkern
        does not run it on every delete."""
        with self._tx() as cur:
            self._lock_cube(cur, cube_id)
            cur.execute("DELETE FROM memories WHERE cube_id = %s AND id = %s RETURNING seq",
                        _params((cube_id, memory_id)))  # index rows go with them (ON DELETE CASCADE)
            if not cur.fetchall():
                raise sql.no_memory(cube_id, memory_id)
            cur.execute("INSERT INTO index_removals(cube_id, memory_id) VALUES (%s, %s)", _params((cube_id, memory_id)))
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
        vector_of = sql.import_vectors(versions, vectors)
        with self._tx() as cur:
            self._insert_cube(cur, info)
            index_rows: list[tuple[int, str, np.ndarray]] = []
            for item in versions:
                if self._insert_version(cur, item, vector_of(item), index_rows) is None:
                    raise sql.import_duplicates(item)
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
            f"SELECT {MEMORY_COLUMNS} FROM memories WHERE cube_id = %s AND is_current AND id = ANY(%s::text[])"
            " ORDER BY seq",
            (cube_id, ids),
        )
        return sql.items_by_id(rows)

    def list_memories(self, cube_id: str, filters: Filters, limit: int | None = None,
                      offset: int = 0) -> list[MemoryItem]:
        query, params = sql.list_memories_query(_DIALECT, cube_id, filters, limit, offset)
        return [row_to_item(row) for row in self._read(query, params)]

    def history(self, cube_id: str, memory_id: str) -> list[MemoryItem]:
        rows = self._read(
            f"SELECT {MEMORY_COLUMNS} FROM memories WHERE cube_id = %s AND id = %s ORDER BY version",
            (cube_id, memory_id),
        )
        return sql.history_items(rows, cube_id, memory_id)

    def export_versions(self, cube_id: str) -> tuple[list[MemoryItem], np.ndarray]:
        with self._tx(snapshot=True) as cur:
            cur.execute("SELECT body FROM cubes WHERE id = %s", _params((cube_id,)))
            cube = cur.fetchone()
            cur.execute(f"SELECT {MEMORY_COLUMNS} FROM memories WHERE cube_id = %s ORDER BY seq",
                        _params((cube_id,)))
            rows = cur.fetchall()
            cur.execute("SELECT i.vector FROM index_rows i JOIN memories m ON m.seq = i.memory_seq"
                        " WHERE i.cube_id = %s ORDER BY m.seq", _params((cube_id,)))
            found = [v for (v,) in cur.fetchall()]
        if cube is None:
            raise sql.no_cube_named(cube_id)
        dim = CubeInfo.model_validate_json(cube[0]).dim
        vectors = np.stack(found).astype(np.float32, copy=False) if found else np.zeros((0, dim), np.float32)
        return [row_to_item(row) for row in rows], vectors.reshape(-1, dim)

    def operations(self, cube_id: str, memory_id: str | None = None,
                   limit: int | None = None) -> list[Operation]:
        return [sql.row_to_operation(row)
                for row in self._read(*sql.operations_query(_DIALECT, cube_id, memory_id, limit))]

    # -- search primitives -------------------------------------------------------------------------
    def index_rows(self, cube_id: str, after_seq: int, removals_after: int | None = None, *,
                   count: bool = True, limit: int | None = None) -> IndexBatch:
        with self._tx(snapshot=True) as cur:  # one snapshot for rows, count, revision and removals
            cur.execute(
                "SELECT i.seq, m.id, m.session_id, m.kind, m.speaker, m.event_time, m.state,"
                " m.position, m.tags, i.vector"
                " FROM index_rows i JOIN memories m ON m.seq = i.memory_seq"
                " WHERE i.cube_id = %s AND i.seq > %s ORDER BY i.seq" + sql.limit_clause(_DIALECT, limit),
                _params((cube_id, int(after_seq))),
            )
            rows = cur.fetchall()
            rows_in_cube = -1
            if count:
                cur.execute("SELECT count(*) FROM index_rows WHERE cube_id = %s", _params((cube_id,)))
                rows_in_cube = _one(cur)[0]
            cur.execute("SELECT revision FROM cubes WHERE id = %s", _params((cube_id,)))
            revision = cur.fetchone()
            removals: list[tuple] = []
            if removals_after is not None:
                cur.execute("SELECT seq, memory_id FROM index_removals WHERE cube_id = %s AND seq > %s ORDER BY seq",
                            _params((cube_id, int(removals_after))))
                removals = cur.fetchall()
            cur.execute("SELECT coalesce(max(seq), 0) FROM index_removals WHERE cube_id = %s", _params((cube_id,)))
            removal_seq = int(_one(cur)[0])  # an aggregate always returns its row
        return sql.index_batch(rows, rows_in_cube, revision, cube_id,
                               lambda found: np.stack(found).astype(np.float32, copy=False), removals, removal_seq)

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
