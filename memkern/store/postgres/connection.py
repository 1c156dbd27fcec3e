"""The PostgreSQL store's plumbing: the connection pool, transactions, migrations, and values.

``PostgresConnection`` is the base of ``PostgresStore``: it opens the pool, migrates the
schema under an advisory lock (nodes starting together upgrade once), lends one
transaction at a time (``_tx``) and keeps what every write does (log the operation, bump
the cube's revision, lock the cube's row). The other modules of the package add the
memory, search and governance methods on top of it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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
from memkern.models import utcnow
from memkern.store import sql
from memkern.store.dialect import POSTGRES
from memkern.store.postgres.schema import MIGRATIONS, SCHEMA_VERSION, TABLES
from memkern.store.queue import SQLJobQueue

#: Renders the statements shared with SQLite (``memkern.store.sql``).
q = POSTGRES.sql

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
def clean(value: Any) -> Any:
    """PostgreSQL text cannot hold NUL; replace it (strings, and lists of strings)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


def nul_free(values: Sequence[Any]) -> tuple[Any, ...]:
    """Query parameters with NULs replaced (``clean``): every parameter goes through it."""
    return tuple(clean(v) for v in values)


def one_row(cur: Any) -> tuple[Any, ...]:
    """The single row a query that always returns one (a count, a lookup by key) returned."""
    row = cur.fetchone()
    if row is None:
        raise StoreError("PostgreSQL returned no row where one was expected")
    return tuple(row)


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
            conn.execute(pgsql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(pgsql.Identifier(schema)))
    except psycopg.Error as exc:
        raise StoreError(f"cannot drop schema {schema!r} ({_safe_dsn(dsn)}): {exc}") from exc


class PostgresConnection:
    """The pool, transactions and migrations of ``PostgresStore`` (see the module docstring).

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
                        row = one_row(cur)
                    ext_schema = str(row[0]).strip('"')
                    cur.execute("SELECT t.oid FROM pg_type t JOIN pg_extension e ON e.extnamespace = t.typnamespace"
                                " WHERE e.extname = 'vector' AND t.typname = 'vector'")
                    vector_oid = int(one_row(cur)[0])

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
                    if one_row(cur)[0] is not None:
                        cur.execute(q(sql.SCHEMA_VERSION_READ))
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
                            cur.execute(q(sql.SCHEMA_VERSION_WRITE), (str(step + 1),))
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

    def _read(self, query: str, values: Sequence[Any] = ()) -> list[tuple]:
        with self._tx() as cur:
            cur.execute(query, nul_free(values))
            return cur.fetchall()

    def job_queue(self) -> SQLJobQueue:
        """The scheduler's job queue in this database (claims serialised by an advisory lock)."""
        return SQLJobQueue(self._tx, self._read, POSTGRES,
                           claim_lock="SELECT pg_advisory_xact_lock(hashtextextended('memkern:jobs:claim', 0))")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool.close()

    def reset(self) -> None:
        """Empty every table of this store's schema (tests)."""
        with self._tx() as cur:
            cur.execute("TRUNCATE " + ", ".join(TABLES) + " RESTART IDENTITY CASCADE")

    def drop_schema(self) -> None:
        """Close the store and drop its schema with everything in it (tests)."""
        self.close()
        drop_schema(self.dsn, self.schema)

    # -- what every write does ---------------------------------------------------------------------
    @staticmethod
    def _log(cur: psycopg.Cursor, cube_id: str, op: str, memory_id: str | None = None,
             version: int | None = None, actor: str | None = None, reason: str | None = None) -> None:
        cur.execute(q(sql.LOG_OPERATION), nul_free((utcnow().isoformat(), cube_id, memory_id, version, op, actor, reason)))

    @staticmethod
    def _bump(cur: psycopg.Cursor, cube_id: str) -> None:
        cur.execute(q(sql.BUMP_REVISION), nul_free((cube_id,)))

    @staticmethod
    def _lock_cube(cur: psycopg.Cursor, cube_id: str) -> bool:
        """Serialize writers of one cube (see ``memkern.store.postgres``); False if it does not exist."""
        cur.execute(q(sql.CUBE_EXISTS) + " FOR NO KEY UPDATE", nul_free((cube_id,)))
        return cur.fetchone() is not None
