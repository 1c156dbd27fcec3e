"""The PostgreSQL store's dense search: the database finds a big cube's nearest vectors itself.

Below the switch point every application node scans its in-memory copy of a cube's index
(``memkern.retrieval.index``). Past it, that copy would hold every vector of the cube in
every node (100,000 256-d rows: 100 MB per node and cube), so here the database answers the
dense half of a search with pgvector's HNSW index and the node keeps only the candidates.

- **One partial index per big cube**, ``USING hnsw ((vector::vector(D)) vector_ip_ops) WHERE
  cube_id = '<cube>' AND vector_dims(vector) = D``. The ``vector`` column has no dimension
  (cubes with embedders of different dimensions share ``index_rows``) and an HNSW index needs
  one: the cast gives it, the predicate keeps other cubes' rows (and a stray row of another
  dimension, which the cast would refuse) out. Per cube rather than per dimension: a search
  walks only its own cube's graph (in a shared graph, a cube holding 2% of the rows would
  skip 49 rows of other cubes for every one it keeps, and iterative scans stop at
  ``hnsw.max_scan_tuples``), and writes to the many small cubes pay no graph insertion.
- **Inner product** (``vector_ip_ops``, ``<#>``): vectors are unit length and the in-process
  scan ranks by dot product, so both paths order and score alike. Scores are computed from
  the stored float32 rows: exact; only the candidate set is approximate.
- **Built at run time, concurrently.** The first node that searches a cube holding
  ``DENSE_MIN_ROWS`` rows or more builds the index in a background thread with ``CREATE
  INDEX CONCURRENTLY`` on a connection of its own (it cannot run inside a transaction):
  writers are not blocked while it runs, only slowed by the build's CPU. A session advisory
  lock lets one node build it; a build that died (server restart, cancelled) leaves an
  invalid index, which the next attempt drops and builds again. Until the index is valid the
  store answers None and the node's in-memory copy serves, exactly as below the switch point.
  ``dense_indexes`` (migration 5) names each index with its cube: deleting a cube drops its
  index after the delete commits, and entries of cubes gone otherwise (purged with a user, a
  crash in between) are swept before the next build.
- **The query** applies the same filters as ``memkern.retrieval.search.filter_mask`` (state,
  never quarantined unless asked, sessions, kinds, speaker, time, tags) in SQL, joined to
  ``memories``; ``index_rows`` holds current, indexed versions only, so superseded, expired
  and deleted memories are never there. Iterative index scans (``relaxed_order``) keep
  walking the graph until enough rows pass the filters; filters that keep few rows (the
  caller's ``share``: one session of a big cube) are scanned exactly instead, as they are when
  the walk returns fewer rows than asked.
- **The nodes hold no vectors** of a cube searched here: ``memkern.retrieval.index`` reloads its
  copy without them once ``dense_search_ready`` says so. At 100,000 256-d rows that is 100 MB
  less per node (``scripts/bench_pg_dense.py``).
- A deleted memory's vector leaves the index as its row leaves the table: its tuple is dead at
  once (never returned) and its bytes go at the next vacuum, as the table's (``memories.delete_memory``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from psycopg import sql as pgsql

from memkern.errors import StoreError
from memkern.models import Filters, utcnow
from memkern.store.postgres.connection import PostgresConnection, nul_free, one_row

log = logging.getLogger(__name__)

#: A cube gets its HNSW index, and the database searches it, from this many index rows.
DENSE_MIN_ROWS = int(os.environ.get("MEMKERN_PG_DENSE_MIN_ROWS", "50000"))
#: Width of the graph walk (``hnsw.ef_search``), raised to twice the number of rows asked. Measured at
#: 100,000 turns (``scripts/bench_pg_dense.py``), for the 200 candidates of a search: walks of 200 rows
#: kept 96% of the exact top 10 (ties with its 10th cosine counted), 400 rows 99% for 1-2 ms more.
EF_SEARCH = 100
#: The graph is walked when the filters keep at least 1 / this of the cube's rows: a walk visits about
#: ``limit / share`` rows (200 candidates at 2%: 10,000, under pgvector's ``hnsw.max_scan_tuples``), and
#: past that it would give up anyway. Below it the rows the filters keep are scanned exactly.
APPROXIMATE_MIN_SHARE = 50
#: pgvector's ceiling on ``hnsw.ef_search``.
_EF_SEARCH_MAX = 1000
#: Graph parameters: neighbours per node (``m``) and the breadth of insertion walks (pgvector's 64
#: kept 98% where 128 keeps 99%, and built 100,000 rows in about the same 45 s on two busy cores).
HNSW_M = 16
EF_CONSTRUCTION = 128
#: ``maintenance_work_mem`` of the building session: a graph larger than it is built far slower.
BUILD_MEMORY = os.environ.get("MEMKERN_PG_DENSE_BUILD_MEMORY", "512MB")
#: Seconds between two looks (is the index valid, how many rows) at a cube not searched here yet.
RECHECK_S = 30.0


def dense_index_name(cube_id: str, dim: int) -> str:
    """The name of a cube's HNSW index (the cube id hashed: it is caller-given text)."""
    return f"index_rows_hnsw_{hashlib.sha256(cube_id.encode('utf-8')).hexdigest()[:20]}_{int(dim)}"


@dataclass
class _CubeDense:
    """What this process knows of one cube's HNSW index."""

    ready: bool = False
    #: ``time.monotonic()`` of the last look; None before the first.
    checked_at: float | None = None
    build: threading.Thread | None = None
    #: The building connection, to cancel the build when the store closes.
    conn: psycopg.Connection | None = None


def _filter_sql(filters: Filters) -> tuple[list[str], list[Any]]:
    """``memkern.retrieval.search.filter_mask`` as conditions on ``memories m``."""
    where: list[str] = []
    params: list[Any] = []
    if filters.state is None:
        where.append("m.state <> 'quarantined'")  # never searched (memkern.governance.guard)
    else:
        where.append("m.state = %s")
        params.append(filters.state.value)
    if (sessions := filters.session_ids()) is not None:  # one session: an equality, which the hash index serves
        where.append("m.session_id = %s" if len(sessions) == 1 else "m.session_id = ANY(%s::text[])")
        params.append(sessions[0] if len(sessions) == 1 else list(sessions))
    if (kinds := filters.kinds()) is not None:
        where.append("m.kind = ANY(%s::text[])")
        params.append([k.value for k in kinds])
    if filters.speaker is not None:
        where.append("m.speaker = %s")
        params.append(filters.speaker)
    if filters.since is not None:
        where.append("m.event_time >= %s")
        params.append(filters.since.timestamp())
    if filters.until is not None:
        where.append("m.event_time <= %s")
        params.append(filters.until.timestamp())
    if filters.tags:
        where.append("m.tag_list @> %s::text[]")
        params.append(list(dict.fromkeys(filters.tags)))
    return where, params


class PostgresDense(PostgresConnection):
    """``dense_search`` of ``PostgresStore`` and the HNSW index of each big cube (module docstring)."""

    def __init__(self, dsn: str, *, schema: str = "memkern", pool_size: int = 4, timeout_s: float = 60.0) -> None:
        super().__init__(dsn, schema=schema, pool_size=pool_size, timeout_s=timeout_s)
        self._dense: dict[tuple[str, int], _CubeDense] = {}
        self._dense_lock = threading.Lock()

    # -- search ------------------------------------------------------------------------------------
    def dense_search(self, cube_id: str, query_vector: np.ndarray, limit: int, filters: Filters,
                     share: float = 1.0) -> list[tuple[str, float]] | None:
        query = np.asarray(query_vector, dtype=np.float32).reshape(-1)
        dim = len(query)
        if limit <= 0 or dim == 0 or not self._dense_ready(cube_id, dim):
            return None
        found: list[tuple[str, float]] = []
        if share * APPROXIMATE_MIN_SHARE >= 1:
            found = self._nearest(cube_id, dim, query, limit, filters, approximate=True)
        if len(found) < limit:  # the filters keep few rows: scanning them exactly costs less than the walk
            found = self._nearest(cube_id, dim, query, limit, filters, approximate=False)
        return found

    def _nearest(self, cube_id: str, dim: int, query: np.ndarray, limit: int, filters: Filters, *,
                 approximate: bool) -> list[tuple[str, float]]:
        """The ``limit`` rows nearest by inner product, through the cube's HNSW index or (not
        ``approximate``) by scanning the cube's rows: the uncast column matches no index."""
        where, params = _filter_sql(filters)
        typed = pgsql.SQL("vector({})").format(pgsql.Literal(int(dim)))
        distance = (pgsql.SQL("(r.vector::{typed}) <#> %s::{typed}") if approximate
                    else pgsql.SQL("r.vector <#> %s::{typed}")).format(typed=typed)
        # The cube id and dimension are literals, not parameters: the planner matches them against
        # the partial index's predicate, which a generic plan of a prepared statement could not.
        statement = pgsql.SQL(
            "WITH near AS MATERIALIZED ("
            " SELECT m.id, m.seq, {distance} AS distance"
            " FROM index_rows r JOIN memories m ON m.seq = r.memory_seq"
            " WHERE r.cube_id = {cube} AND vector_dims(r.vector) = {dim} {filters}"
            " ORDER BY {distance} LIMIT {limit})"
            " SELECT id, -distance FROM near ORDER BY distance, seq"
        ).format(distance=distance, cube=pgsql.Literal(cube_id), dim=pgsql.Literal(int(dim)),
                 filters=pgsql.SQL("".join(f" AND {clause}" for clause in where)),
                 limit=pgsql.Literal(int(limit)))
        with self._tx() as cur:
            if approximate:
                cur.execute(pgsql.SQL("SET LOCAL hnsw.ef_search = {}").format(
                    pgsql.Literal(min(_EF_SEARCH_MAX, max(EF_SEARCH, 2 * int(limit))))))
                cur.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            cur.execute(statement, nul_free((query, *params, query)))
            return [(str(memory_id), float(score)) for memory_id, score in cur.fetchall()]

    def dense_search_ready(self, cube_id: str, dim: int) -> bool:
        return self._dense_ready(cube_id, dim)

    # -- the index of each cube --------------------------------------------------------------------
    def _dense_ready(self, cube_id: str, dim: int) -> bool:
        """Whether the cube's HNSW index is valid; looks at most every ``RECHECK_S`` seconds, and
        starts building it when the cube has ``DENSE_MIN_ROWS`` rows and no node is building it."""
        now = time.monotonic()
        with self._dense_lock:
            state = self._dense.setdefault((cube_id, dim), _CubeDense())
            if state.ready or state.build is not None or (
                    state.checked_at is not None and now - state.checked_at < RECHECK_S):
                return state.ready
            state.checked_at = now
        valid, rows = self._dense_status(cube_id, dim, count=True)
        with self._dense_lock:
            if valid:
                state.ready = True
            elif rows >= DENSE_MIN_ROWS and state.build is None and not self._closed:
                state.build = threading.Thread(target=self._build, args=(cube_id, dim, state), daemon=True,
                                               name=f"memkern-pg-hnsw-{cube_id[:8]}")
                state.build.start()
            return state.ready

    def _dense_status(self, cube_id: str, dim: int, *, count: bool) -> tuple[bool | None, int]:
        """Whether the cube's index is valid (None: there is none) and, if ``count``, its index rows."""
        with self._tx() as cur:
            cur.execute("SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
                        (self.schema, dense_index_name(cube_id, dim)))
            found = cur.fetchone()
            rows = 0
            if count:
                cur.execute("SELECT count(*) FROM index_rows WHERE cube_id = %s", nul_free((cube_id,)))
                rows = int(one_row(cur)[0])
        return (None if found is None else bool(found[0])), rows

    def ensure_dense_index(self, cube_id: str, dim: int) -> bool:
        """Build the cube's HNSW index now, whatever its size, unless it is valid already (idempotent);
        False if another node holds the build lock. Searches use it from then on (tests, operators)."""
        state = _CubeDense()
        done = self._build_index(cube_id, dim, state)
        if done:
            with self._dense_lock:
                self._dense.setdefault((cube_id, dim), _CubeDense()).ready = True
        return done

    def wait_dense_builds(self, timeout_s: float | None = None) -> None:
        """Return once no HNSW index is being built by this store (tests and benchmarks)."""
        for state in list(self._dense.values()):
            thread = state.build
            if thread is not None:
                thread.join(timeout_s)

    def _build(self, cube_id: str, dim: int, state: _CubeDense) -> None:
        try:
            if self._build_index(cube_id, dim, state):
                state.ready = True
        except Exception:  # the in-memory copy keeps serving; the next look tries again
            log.exception("building the HNSW index of cube %s failed", cube_id)
        finally:
            state.build = state.conn = None

    def _build_index(self, cube_id: str, dim: int, state: _CubeDense) -> bool:
        """Create the cube's index concurrently under the build lock; True once it is valid."""
        name = dense_index_name(cube_id, dim)
        lock = f"memkern:hnsw:{self.schema}:{name}"
        started = time.perf_counter()
        with self._connect(autocommit=True) as conn:
            state.conn = conn
            try:
                conn.execute(self._search_path)
                if not one_row(conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (lock,)))[0]:
                    return False  # another node is building it
                self._sweep_dense_indexes(conn)
                valid, _ = self._dense_status(cube_id, dim, count=False)
                if valid:
                    return True
                if valid is False:  # left by a build that died: CONCURRENTLY cannot resume one
                    conn.execute(pgsql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(pgsql.Identifier(name)))
                conn.execute("INSERT INTO dense_indexes(name, cube_id, dim, created_at) VALUES (%s, %s, %s, %s)"
                             " ON CONFLICT (name) DO NOTHING", nul_free((name, cube_id, int(dim), utcnow().isoformat())))
                conn.execute(pgsql.SQL("SET maintenance_work_mem = {}").format(pgsql.Literal(BUILD_MEMORY)))
                conn.execute(pgsql.SQL(
                    "CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON index_rows"
                    " USING hnsw ((vector::vector({dim})) vector_ip_ops) WITH (m = {m}, ef_construction = {ef})"
                    " WHERE cube_id = {cube} AND vector_dims(vector) = {dim}"
                ).format(name=pgsql.Identifier(name), dim=pgsql.Literal(int(dim)), m=pgsql.Literal(HNSW_M),
                         ef=pgsql.Literal(EF_CONSTRUCTION), cube=pgsql.Literal(cube_id)))
            except psycopg.Error as exc:
                raise StoreError(f"cannot build the HNSW index of cube {cube_id!r}: {exc}") from exc
        log.info("HNSW index of cube %s built in %.1f s", cube_id, time.perf_counter() - started)
        return bool(self._dense_status(cube_id, dim, count=False)[0])

    def _sweep_dense_indexes(self, conn: psycopg.Connection) -> None:
        """Drop the indexes of cubes that no longer exist (autocommit ``conn``; DROP ... CONCURRENTLY)."""
        gone = conn.execute("SELECT d.name FROM dense_indexes d"
                            " WHERE NOT EXISTS (SELECT 1 FROM cubes c WHERE c.id = d.cube_id)").fetchall()
        for (name,) in gone:
            conn.execute(pgsql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(pgsql.Identifier(name)))
            conn.execute("DELETE FROM dense_indexes WHERE name = %s", (name,))

    def _after_cubes_deleted(self) -> None:
        """After a cube was deleted or purged: drop its HNSW index (best effort; swept again later)."""
        with self._dense_lock:
            for key in [key for key in self._dense if self._dense[key].build is None]:
                del self._dense[key]  # looked at again on the next search
        try:
            if not self._read("SELECT 1 FROM dense_indexes d"
                              " WHERE NOT EXISTS (SELECT 1 FROM cubes c WHERE c.id = d.cube_id) LIMIT 1"):
                return  # the usual case: the cubes had no index, and no connection of its own is opened
            with self._connect(autocommit=True) as conn:
                conn.execute(self._search_path)
                self._sweep_dense_indexes(conn)
        except (StoreError, psycopg.Error) as exc:
            log.warning("dropping the HNSW index of a deleted cube failed (swept again later): %s", exc)

    def close(self) -> None:
        """Cancel HNSW builds in flight (the next build drops what they leave), then close."""
        for state in list(self._dense.values()):
            conn = state.conn
            if conn is not None:  # the lock and the connection go with it
                with contextlib.suppress(psycopg.Error):
                    conn.cancel_safe()
        super().close()
