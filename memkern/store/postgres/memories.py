"""The PostgreSQL store's cubes and memories: versions written, read, changed and deleted.

Every write is one transaction that first locks the cube's row (``_lock_cube``), so the
index rows it adds become visible in ``seq`` order (see ``memkern.store.postgres``).
Duplicates are refused by the partial unique indexes over current versions with ``ON
CONFLICT DO NOTHING``; turn positions are taken under an advisory lock per (cube,
session). The lexical index (``tsv``) of a version is written with it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import psycopg

from memkern.models import CubeInfo, Filters, LifecycleState, MemoryItem, Operation, utcnow
from memkern.store import sql
from memkern.store.base import AddOutcome, MemoryText
from memkern.store.dialect import POSTGRES
from memkern.store.postgres.connection import nul_free, one_row, q
from memkern.store.postgres.dense import PostgresDense
from memkern.store.postgres.search import fts_text
from memkern.store.sql import VERSION_COLUMNS, row_to_item


def hashed(key: str | None) -> str | None:
    """A key as stored: its sha256 (a caller-given key may exceed a btree row's size)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest() if key is not None else None


def lock_key(*parts: str | None) -> str:
    """The text of an advisory lock on ``parts`` (None and the separators cannot collide)."""
    return "\x1f".join("\x1e" if p is None else p for p in parts)


class PostgresMemories(PostgresDense):
    """The cube and memory methods of ``PostgresStore`` (see the module docstring)."""

    # -- versions ----------------------------------------------------------------------------------
    @staticmethod
    def _version_params(item: MemoryItem, indexed: bool) -> tuple[Any, ...]:
        return nul_free((
            *sql.version_values(item, hashed),
            json.dumps(item.tags), list(item.tags), item.model_dump_json(),
            indexed, fts_text(item.text) if indexed else "", " ".join(item.entities) if indexed else "",
        ))

    _INSERT_VERSION = (
        f"INSERT INTO memories({VERSION_COLUMNS}, tags, tag_list, body, tsv)"
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
            cur.executemany(q(sql.INSERT_INDEX_ROW), [nul_free(row) for row in rows])

    def _current(self, cur: psycopg.Cursor, cube_id: str, memory_id: str, *, lock: bool = False) -> tuple:
        cur.execute(q(sql.CURRENT_VERSION) + (" FOR UPDATE" if lock else ""), nul_free((cube_id, memory_id)))
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
            q(sql.INSERT_CUBE) + " ON CONFLICT DO NOTHING RETURNING id",
            nul_free((info.id, info.name, info.owner, info.model_dump_json())),
        )
        if cur.fetchone() is None:
            raise sql.cube_exists(info)
        self._log(cur, info.id, "create_cube", actor=info.owner)

    def get_cube(self, name_or_id: str) -> CubeInfo:
        rows = self._read(q(sql.CUBE_BY_NAME_OR_ID), (name_or_id,) * 3)
        return sql.cube_from_rows(rows, name_or_id)

    def list_cubes(self, owner: str | None = None) -> list[CubeInfo]:
        rows = self._read(q(sql.LIST_CUBES_OF), (owner,)) if owner is not None else self._read(q(sql.LIST_CUBES))
        return [CubeInfo.model_validate_json(body) for (body,) in rows]

    def delete_cube(self, cube_id: str, actor: str | None = None) -> None:
        with self._tx() as cur:
            if not self._lock_cube(cur, cube_id):
                raise sql.no_cube(cube_id)
            for statement in sql.DELETE_CUBE:
                cur.execute(q(statement), nul_free((cube_id,)))
            self._log(cur, cube_id, "delete_cube", actor=actor)
        self._after_cubes_deleted()  # its HNSW index, if it had one

    def cube_revision(self, cube_id: str) -> int:
        return sql.revision_from_rows(self._read(q(sql.CUBE_REVISION), (cube_id,)), cube_id)

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
                cur.executemany(q(sql.LOG_OPERATION), [
                    nul_free((utcnow().isoformat(), cube_id, item.id, item.version, "add", actor, None)) for item in added])
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
                        nul_free((lock_key(self.schema, cube_id, session),)))
            query, values = sql.last_position_query(POSTGRES, cube_id, session)
            cur.execute(query, nul_free(values))
            return one_row(cur)[0]

        return sql.place_turn(item, last_position, last_stored)

    @staticmethod
    def _duplicate_of(cur: psycopg.Cursor, item: MemoryItem) -> str:
        query, params = sql.duplicate_query(POSTGRES, item, hashed)
        cur.execute(query, nul_free(params))
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
            cur.execute(q(sql.DELETE_INDEX_ROW), (seq,))
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
            cur.execute(q(sql.SET_STATE), (state.value, seq))
            # Re-insert the index row under a new seq so that cached indexes notice the change.
            cur.execute(q(sql.DELETE_INDEX_ROW) + " RETURNING cube_id, vector", (seq,))
            row = cur.fetchone()
            if row is not None:
                cur.execute(q(sql.INSERT_INDEX_ROW), (seq, row[0], row[1]))
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
            cur.execute(q(sql.DELETE_VERSIONS) + " RETURNING seq",
                        nul_free((cube_id, memory_id)))  # index rows go with them (ON DELETE CASCADE)
            if not cur.fetchall():
                raise sql.no_memory(cube_id, memory_id)
            cur.execute(q(sql.LOG_REMOVAL), nul_free((cube_id, memory_id)))
            self._log(cur, cube_id, "delete", memory_id, None, actor, reason)
            self._bump(cur, cube_id)

    def record_access(self, cube_id: str, memory_ids: Sequence[str], at: datetime) -> None:
        if not memory_ids:
            return
        with self._tx() as cur:
            # Statistics, written on the read path: committed without waiting for the WAL flush
            # (``Store.record_access``; a crash may lose them, never corrupt anything).
            cur.execute("SET LOCAL synchronous_commit TO OFF")
            # Lock the rows in one order first, so that concurrent readers cannot deadlock;
            # then one statement, each id counted as often as it was read.
            cur.execute(
                "SELECT seq FROM memories WHERE cube_id = %s AND id = ANY(%s::text[]) AND is_current"
                " ORDER BY seq FOR NO KEY UPDATE",
                nul_free((cube_id, list(dict.fromkeys(memory_ids)))),
            )
            cur.execute(
                "UPDATE memories m SET access_count = m.access_count + r.n, last_accessed_at = %s"
                " FROM (SELECT id, count(*)::int AS n FROM unnest(%s::text[]) AS t(id) GROUP BY id) r"
                " WHERE m.cube_id = %s AND m.id = r.id AND m.is_current",
                nul_free((at.isoformat(), list(memory_ids), cube_id)),
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
    def _current_rows(self, cube_id: str, memory_ids: Sequence[str], columns: str = sql.MEMORY_COLUMNS) -> list[tuple]:
        rows: list[tuple] = []
        for query, values in sql.current_versions_queries(POSTGRES, cube_id, memory_ids, columns):
            rows += self._read(query, values)
        return rows

    def get_memories(self, cube_id: str, memory_ids: Sequence[str]) -> dict[str, MemoryItem]:
        return sql.items_by_id(self._current_rows(cube_id, memory_ids))

    def get_texts(self, cube_id: str, memory_ids: Sequence[str]) -> dict[str, MemoryText]:
        return sql.texts_by_id(self._current_rows(cube_id, memory_ids, sql.TEXT_COLUMNS))

    def list_memories(self, cube_id: str, filters: Filters, limit: int | None = None,
                      offset: int = 0) -> list[MemoryItem]:
        query, params = sql.list_memories_query(POSTGRES, cube_id, filters, limit, offset)
        return [row_to_item(row) for row in self._read(query, params)]

    def history(self, cube_id: str, memory_id: str) -> list[MemoryItem]:
        rows = self._read(q(sql.HISTORY), (cube_id, memory_id))
        return sql.history_items(rows, cube_id, memory_id)

    def export_versions(self, cube_id: str) -> tuple[list[MemoryItem], np.ndarray]:
        with self._tx(snapshot=True) as cur:
            cur.execute(q(sql.CUBE_BODY), nul_free((cube_id,)))
            cube = cur.fetchone()
            cur.execute(q(sql.CUBE_VERSIONS), nul_free((cube_id,)))
            rows = cur.fetchall()
            cur.execute(q(sql.CUBE_VECTORS), nul_free((cube_id,)))
            found = [v for (v,) in cur.fetchall()]
        if cube is None:
            raise sql.no_cube_named(cube_id)
        dim = CubeInfo.model_validate_json(cube[0]).dim
        vectors = np.stack(found).astype(np.float32, copy=False) if found else np.zeros((0, dim), np.float32)
        return [row_to_item(row) for row in rows], vectors.reshape(-1, dim)

    def operations(self, cube_id: str, memory_id: str | None = None,
                   limit: int | None = None) -> list[Operation]:
        return [sql.row_to_operation(row)
                for row in self._read(*sql.operations_query(POSTGRES, cube_id, memory_id, limit))]

