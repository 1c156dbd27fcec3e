"""Logic the SQL back ends share: rows to models, query pieces, write-time decisions.

Pure functions and statements, no connections: each back end (``sqlite``, ``postgres``)
runs the SQL and passes the rows in. Statements are written once, in the neutral form of
``memkern.store.dialect`` (``?`` and a few tokens), and each back end renders them with
its ``Dialect``; query builders take the ``Dialect`` and return rendered SQL. What only
one back end does stays in that back end.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from memkern.errors import ConflictError, NotFoundError, StoreError
from memkern.models import CubeInfo, Filters, LifecycleState, MemoryItem, MemoryKind, Operation
from memkern.store.base import IndexBatch, MemoryText, dedup_keys
from memkern.store.dialect import Clause, Dialect

#: The columns ``row_to_item`` reads, in its order.
MEMORY_COLUMNS = "seq, state, valid_to, expired_at, access_count, last_accessed_at, body"
#: The columns ``texts_by_id`` reads, in its order (``{text_fields}``: see ``memkern.store.dialect``).
TEXT_COLUMNS = "id, state, speaker, {text_fields}"
#: The columns ``row_to_operation`` reads, in its order.
OPERATION_COLUMNS = "seq, at, op, cube_id, memory_id, version, actor, reason"
#: The columns of ``memories`` that ``version_values`` gives, in its order.
VERSION_COLUMNS = ("cube_id, id, version, is_current, kind, session_id, position, speaker, event_time, state,"
                   " source_key, content_key, valid_to, expired_at, access_count, last_accessed_at")

# -- statements both back ends run (neutral: render with ``Dialect.sql``) ----------------------------
SCHEMA_VERSION_READ = "SELECT value FROM meta WHERE key = 'schema_version'"
SCHEMA_VERSION_WRITE = ("INSERT INTO meta(key, value) VALUES ('schema_version', ?)"
                        " ON CONFLICT (key) DO UPDATE SET value = excluded.value")
LOG_OPERATION = ("INSERT INTO operations(at, cube_id, memory_id, version, op, actor, reason)"
                 " VALUES (?, ?, ?, ?, ?, ?, ?)")
BUMP_REVISION = "UPDATE cubes SET revision = revision + 1 WHERE id = ?"
CUBE_EXISTS = "SELECT 1 FROM cubes WHERE id = ?"
CUBE_BODY = "SELECT body FROM cubes WHERE id = ?"
CUBE_REVISION = "SELECT revision FROM cubes WHERE id = ?"
#: A cube by name or id; an id wins over another cube's name.
CUBE_BY_NAME_OR_ID = "SELECT body FROM cubes WHERE id = ? OR name = ? ORDER BY (id = ?) DESC LIMIT 1"
INSERT_CUBE = "INSERT INTO cubes(id, name, owner, body) VALUES (?, ?, ?, ?)"
LIST_CUBES = "SELECT body FROM cubes ORDER BY name{bytewise}"
LIST_CUBES_OF = "SELECT body FROM cubes WHERE owner = ? ORDER BY name{bytewise}"
#: A cube's rows, deleted in this order (index rows before the versions they point to).
DELETE_CUBE = tuple(f"DELETE FROM {table} WHERE cube_id = ?" for table in ("index_rows", "index_removals", "memories")
                    ) + ("DELETE FROM cubes WHERE id = ?",)
#: ``DELETE_CUBE`` and the cube's operation log too (forgetting a user).
PURGE_CUBE = DELETE_CUBE[:-1] + ("DELETE FROM operations WHERE cube_id = ?", DELETE_CUBE[-1])
CURRENT_VERSION = f"SELECT {MEMORY_COLUMNS} FROM memories WHERE cube_id = ? AND id = ? AND {{is_current}}"
HISTORY = f"SELECT {MEMORY_COLUMNS} FROM memories WHERE cube_id = ? AND id = ? ORDER BY version"
CUBE_VERSIONS = f"SELECT {MEMORY_COLUMNS} FROM memories WHERE cube_id = ? ORDER BY seq"
CUBE_VECTORS = ("SELECT i.vector FROM index_rows i JOIN memories m ON m.seq = i.memory_seq"
                " WHERE i.cube_id = ? ORDER BY m.seq")
LAST_POSITION = "SELECT max(position) FROM memories WHERE cube_id = ? AND session_id = ?"
LAST_POSITION_NO_SESSION = "SELECT max(position) FROM memories WHERE cube_id = ? AND session_id IS NULL"
SET_STATE = "UPDATE memories SET state = ? WHERE seq = ?"
#: The current memory a refused version duplicates (``duplicate_query``).
DUPLICATE = ("SELECT id FROM memories WHERE cube_id = ? AND {is_current}"
             " AND (source_key = ? OR content_key = ?) ORDER BY seq LIMIT 1")
DELETE_VERSIONS = "DELETE FROM memories WHERE cube_id = ? AND id = ?"
INSERT_INDEX_ROW = "INSERT INTO index_rows(memory_seq, cube_id, vector) VALUES (?, ?, ?)"
DELETE_INDEX_ROW = "DELETE FROM index_rows WHERE memory_seq = ?"
LOG_REMOVAL = "INSERT INTO index_removals(cube_id, memory_id) VALUES (?, ?)"
#: The index feed: ``index_batch`` reads these columns.
INDEX_FEED = ("SELECT i.seq, m.id, m.session_id, m.kind, m.speaker, m.event_time, m.state, m.position,"
              " {tags_json}, i.vector FROM index_rows i JOIN memories m ON m.seq = i.memory_seq"
              " WHERE i.cube_id = ? AND i.seq > ? ORDER BY i.seq")
INDEX_COUNT = "SELECT count(*) FROM index_rows WHERE cube_id = ?"
REMOVALS_AFTER = "SELECT seq, memory_id FROM index_removals WHERE cube_id = ? AND seq > ? ORDER BY seq"
LAST_REMOVAL = "SELECT coalesce(max(seq), 0) FROM index_removals WHERE cube_id = ?"

def epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value else None


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _from_iso(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def limit_clause(dialect: Dialect, limit: int | None) -> str:
    """``LIMIT n``; a missing or negative limit is no limit."""
    return f" LIMIT {int(limit) if limit is not None and limit >= 0 else dialect.no_limit}"


# -- errors ----------------------------------------------------------------------------------------
def no_cube(cube_id: str) -> NotFoundError:
    return NotFoundError(f"no cube with id {cube_id!r}")


def no_cube_named(name_or_id: str) -> NotFoundError:
    return NotFoundError(f"no cube named {name_or_id!r}")


def no_memory(cube_id: str, memory_id: str) -> NotFoundError:
    return NotFoundError(f"no memory {memory_id!r} in cube {cube_id!r}")


def cube_exists(info: CubeInfo) -> ConflictError:
    return ConflictError(f"a cube named {info.name!r} (or with id {info.id!r}) already exists")


# -- rows to models --------------------------------------------------------------------------------
def row_to_item(row: Sequence[Any]) -> MemoryItem:
    """A ``MEMORY_COLUMNS`` row as a ``MemoryItem``: the stored body with its mutable columns."""
    _seq, state, valid_to, expired_at, access_count, last_accessed_at, body = row
    item = MemoryItem.model_validate_json(body)
    # Set on the item just parsed (no one else holds it): a copy per row cost a third of a bulk read.
    item.state = LifecycleState(state)
    item.valid_to = _from_iso(valid_to)
    item.expired_at = _from_iso(expired_at)
    item.access_count = access_count
    item.last_accessed_at = _from_iso(last_accessed_at)
    return item


def items_by_id(rows: Sequence[Sequence[Any]]) -> dict[str, MemoryItem]:
    """``MEMORY_COLUMNS`` rows as items by id, in the order they were written (seq, the first column)."""
    found: dict[str, MemoryItem] = {}
    for row in sorted(rows, key=lambda row: row[0]):
        item = row_to_item(row)
        found[item.id] = item
    return found


def texts_by_id(rows: Sequence[Sequence[Any]]) -> dict[str, MemoryText]:
    """``TEXT_COLUMNS`` rows (:func:`current_versions_queries` with those columns) as :class:`MemoryText` by id:
    the database read the body's fields, no model built."""
    return {memory_id: MemoryText(id=memory_id, text=text, speaker=speaker, role=role, said_at=_from_body_time(said),
                                  state=LifecycleState(state))
            for memory_id, state, speaker, text, role, said in rows}


def _from_body_time(value: str | None) -> datetime | None:
    """A datetime as a model body holds it ("2024-05-01T10:00:00Z"; Python 3.10 does not read the Z)."""
    if not value:
        return None
    return datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)


def history_items(rows: Sequence[Sequence[Any]], cube_id: str, memory_id: str) -> list[MemoryItem]:
    if not rows:
        raise no_memory(cube_id, memory_id)
    return [row_to_item(row) for row in rows]


def row_to_operation(row: Sequence[Any]) -> Operation:
    """An ``OPERATION_COLUMNS`` row as an ``Operation``."""
    seq, at, op, cube_id, memory_id, version, actor, reason = row
    return Operation(seq=seq, at=datetime.fromisoformat(at), op=op, cube_id=cube_id, memory_id=memory_id,
                     version=version, actor=actor, reason=reason)


def cube_from_rows(rows: Sequence[Sequence[Any]], name_or_id: str) -> CubeInfo:
    """The cube of a ``SELECT body FROM cubes`` lookup by name or id."""
    if not rows:
        raise no_cube_named(name_or_id)
    return CubeInfo.model_validate_json(rows[0][0])


def revision_from_rows(rows: Sequence[Sequence[Any]], cube_id: str) -> int:
    if not rows:
        raise no_cube(cube_id)
    return int(rows[0][0])


def index_batch(rows: Sequence[Sequence[Any]], count: int, revision: Sequence[Any] | None, cube_id: str,
                vectors: Callable[[list[Any]], np.ndarray],
                removals: Sequence[Sequence[Any]] = (), removal_seq: int | None = None) -> IndexBatch:
    """An ``IndexBatch`` from index rows ``(seq, id, session_id, kind, speaker, event_time,
    state, position, tags JSON, vector)``, the cube's row count and its revision row;
    ``vectors`` turns the rows' stored vectors into one float32 matrix. ``removals`` are
    ``(seq, memory_id)`` rows of the removal log, ``removal_seq`` its highest seq."""
    if revision is None:
        raise no_cube(cube_id)
    batch = IndexBatch(count=int(count), revision=int(revision[0]), removed=[str(m) for _, m in removals],
                       removal_seq=int(removal_seq or 0))
    if not rows:
        return batch
    # Column by column (a cube's first load is every row of it): one transpose, no per-row appends.
    seqs, ids, sessions, kinds, speakers, times, states, positions, tags, blobs = map(list, zip(*rows))
    batch.seqs = seqs  # ints from both databases: converting a million of them again took a second
    batch.ids, batch.session_ids, batch.kinds, batch.speakers = ids, sessions, kinds, speakers
    batch.event_times, batch.states, batch.positions = times, states, positions
    batch.tags = [json.loads(t) if t and t != "[]" else [] for t in tags]
    batch.vectors = vectors(blobs)
    return batch


# -- queries ---------------------------------------------------------------------------------------
def last_position_query(dialect: Dialect, cube_id: str, session: str | None) -> tuple[str, list[Any]]:
    """The highest turn position stored in a session of the cube (``place_turn``)."""
    if session is None:
        return dialect.sql(LAST_POSITION_NO_SESSION), [cube_id]
    return dialect.sql(LAST_POSITION), [cube_id, session]


def current_versions_queries(dialect: Dialect, cube_id: str, memory_ids: Sequence[str],
                             columns: str = MEMORY_COLUMNS) -> list[tuple[str, list[Any]]]:
    """``get_memories``: the current versions of distinct ``memory_ids``, in as many
    queries as the dialect's bound on a list's length needs (``columns`` of each:
    ``TEXT_COLUMNS`` for ``get_texts``).

    No ``ORDER BY`` here (:func:`items_by_id` orders by seq): with one, SQLite's planner picks the
    (cube_id, is_current, seq) index to skip the sort and scans every current row of the cube per
    query, 14 s for the 100,000 turns of a cube instead of about 4 through the id index."""
    ids = list(dict.fromkeys(memory_ids))
    size = dialect.max_list or max(1, len(ids))
    queries = []
    for start in range(0, len(ids), size):
        clause, values = dialect.one_of("id", ids[start:start + size])
        query = dialect.sql(f"SELECT {columns} FROM memories WHERE cube_id = ? AND {{is_current}} AND ")
        queries.append((query + clause, [cube_id, *values]))
    return queries


def list_memories_query(dialect: Dialect, cube_id: str, filters: Filters, limit: int | None,
                        offset: int) -> tuple[str, list[Any]]:
    """``list_memories``: current versions of the cube matching ``filters``, in insertion order."""
    p = dialect.mark
    where: list[str] = [f"cube_id = {p}", dialect.is_current]
    params: list[Any] = [cube_id]

    def add(clause: Clause) -> None:
        where.append(clause[0])
        params.extend(clause[1])

    if filters.state is not None:
        add((f"state = {p}", [filters.state.value]))
    if (sessions := filters.session_ids()) is not None:
        add(dialect.one_of("session_id", list(sessions)))
    if (kinds := filters.kinds()) is not None:
        add(dialect.one_of("kind", [k.value for k in kinds]))
    if filters.speaker is not None:
        add((f"speaker = {p}", [filters.speaker]))
    if filters.since is not None:
        add((f"event_time >= {p}", [filters.since.timestamp()]))
    if filters.until is not None:
        add((f"event_time <= {p}", [filters.until.timestamp()]))
    if filters.tags:  # in SQL, so that LIMIT/OFFSET count matching rows only
        for clause in dialect.has_tags(list(dict.fromkeys(filters.tags))):
            add(clause)
    query = f"SELECT {MEMORY_COLUMNS} FROM memories WHERE {' AND '.join(where)} ORDER BY seq"
    query += limit_clause(dialect, limit) + f" OFFSET {max(0, int(offset))}"
    return query, params


def operations_query(dialect: Dialect, cube_id: str, memory_id: str | None,
                     limit: int | None) -> tuple[str, list[Any]]:
    """``operations``: the cube's log (or one memory's part of it), oldest first."""
    query = f"SELECT {OPERATION_COLUMNS} FROM operations WHERE cube_id = ?"
    params: list[Any] = [cube_id]
    if memory_id is not None:
        query += " AND memory_id = ?"
        params.append(memory_id)
    return dialect.sql(query + " ORDER BY seq") + limit_clause(dialect, limit), params


def duplicate_query(dialect: Dialect, item: MemoryItem,
                    source_key: Callable[[str | None], str | None] = lambda key: key) -> tuple[str, list[Any]]:
    """The current memory that a refused ``item`` duplicates (by either dedup key, the
    source key as stored: ``source_key`` maps it)."""
    source, content = dedup_keys(item)
    return dialect.sql(DUPLICATE), [item.cube_id, source_key(source), content]


def duplicate_id(row: Sequence[Any] | None, item: MemoryItem) -> str:
    """The id found by ``duplicate_query``; none means the conflict was on (cube, id, version)."""
    if row is None:  # a caller reused an id
        raise ConflictError(f"memory id {item.id!r} already exists in cube {item.cube_id!r}")
    return str(row[0])


# -- writes ----------------------------------------------------------------------------------------
def version_values(item: MemoryItem, source_key: Callable[[str | None], str | None] = lambda key: key
                   ) -> tuple[Any, ...]:
    """The values of ``memories``' columns ``cube_id, id, version, is_current, kind,
    session_id, position, speaker, event_time, state, source_key, content_key, valid_to,
    expired_at, access_count, last_accessed_at`` for ``item`` (the source key as stored:
    ``source_key`` maps it)."""
    source, content = dedup_keys(item)
    return (
        item.cube_id, item.id, item.version, item.expired_at is None, item.kind.value,
        item.provenance.session_id, item.provenance.position, item.provenance.speaker,
        epoch(item.event_time), item.state.value, source_key(source), content,
        iso(item.valid_to), iso(item.expired_at), item.access_count, iso(item.last_accessed_at),
    )


def check_batch(items: Sequence[MemoryItem], vectors: np.ndarray) -> None:
    if len(items) != len(vectors):
        raise StoreError(f"{len(items)} memories but {len(vectors)} vectors")


def place_turn(item: MemoryItem, last_position: dict[str | None, int],
               last_stored: Callable[[str | None], int | None]) -> MemoryItem:
    """Number a new turn after the last one of its session. ``last_position`` caches the
    last position per session; the first time a session is met, ``last_stored(session)``
    gives its highest stored position (None if it has none). The back end calls this in
    its write transaction, holding whatever keeps concurrent writers to the session apart."""
    if item.kind is not MemoryKind.TURN or item.provenance.position is not None:
        return item
    session = item.provenance.session_id
    if session not in last_position:
        found = last_stored(session)
        last_position[session] = -1 if found is None else int(found)
    provenance = item.provenance.model_copy(update={"position": last_position[session] + 1})
    return item.model_copy(update={"provenance": provenance})


def advance_position(item: MemoryItem, last_position: dict[str | None, int]) -> None:
    """After ``item`` (placed by ``place_turn``) is stored: its session's last position.
    A duplicate is not stored and takes no position: a session stays numbered 0, 1, 2, ..."""
    position = item.provenance.position
    if item.kind is MemoryKind.TURN and item.provenance.session_id in last_position and position is not None:
        last_position[item.provenance.session_id] = max(last_position[item.provenance.session_id], position)


def closing_valid_to(old: MemoryItem, new_version: MemoryItem, expected_version: int) -> str | None:
    """For an update of ``old`` to ``new_version``: ``ConflictError`` if ``old`` is not the
    version the caller read, else the ``valid_to`` (ISO) the old version gets."""
    if old.version != expected_version:
        raise ConflictError(
            f"memory {new_version.id!r} is at version {old.version}, not {expected_version}: "
            "it changed since you read it"
        )
    # A new validity start means the world changed: the old version stops being true then.
    valid_to = new_version.valid_from if new_version.valid_from != old.valid_from else old.valid_to
    return iso(valid_to)


def update_duplicates(new_version: MemoryItem) -> ConflictError:
    return ConflictError(f"the new text of {new_version.id!r} duplicates another current memory of the cube")


def check_settable(state: LifecycleState) -> None:
    if state is LifecycleState.DELETED:
        raise StoreError("use delete_memory to delete; it removes every version")


def import_vectors(versions: Sequence[MemoryItem], vectors: np.ndarray
                   ) -> Callable[[MemoryItem], np.ndarray | None]:
    """For ``import_cube``: the vector of each version (current ones only, paired in order)."""
    current = [v for v in versions if v.expired_at is None]
    if len(current) != len(vectors):
        raise StoreError(f"{len(current)} current memories but {len(vectors)} vectors")
    vector_of = {v.id: vectors[i] for i, v in enumerate(current)}
    return lambda item: vector_of.get(item.id) if item.expired_at is None else None


def import_duplicates(item: MemoryItem) -> ConflictError:
    return ConflictError(f"the cube holds {item.version_id} twice (or a duplicate memory)")
