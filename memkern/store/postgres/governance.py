"""The PostgreSQL store's hooks for the governance SQL (``memkern.governance.sqlstore``).

The governance statements themselves are written once, for both back ends, in the mixin;
what is PostgreSQL's own is here: NULs replaced in every parameter, a cube locked before
it is purged, and the tables vacuumed after a user is forgotten.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql as pgsql

from memkern.errors import StoreError
from memkern.store import sql
from memkern.store.dialect import POSTGRES
from memkern.store.postgres.connection import nul_free, q
from memkern.store.postgres.dense import PostgresDense


class CleanCursor:
    """A cursor whose ``execute`` replaces NULs in parameters (for the governance SQL)."""

    def __init__(self, cur: psycopg.Cursor) -> None:
        self.cur = cur

    def execute(self, query: str, values: Sequence[Any] = ()) -> psycopg.Cursor:
        return self.cur.execute(query, nul_free(values))


class PostgresGovernance(PostgresDense):
    """The four hooks ``GovernanceSQL`` needs, on PostgreSQL."""

    _gov_dialect = POSTGRES

    @contextmanager
    def _gov_tx(self) -> Iterator[CleanCursor]:
        with self._tx() as cur:
            yield CleanCursor(cur)

    def _gov_read(self, query: str, values: Sequence[Any] = ()) -> list[tuple]:
        return self._read(query, values)

    def _gov_purge_cube(self, db: CleanCursor, cube_id: str) -> None:
        if not self._lock_cube(db.cur, cube_id):
            return
        for statement in sql.PURGE_CUBE:
            db.execute(q(statement), (cube_id,))

    def _gov_after_forget(self) -> None:
        self._after_cubes_deleted()  # the HNSW indexes of the purged cubes
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
