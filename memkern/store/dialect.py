"""The one place where the SQL of SQLite and PostgreSQL differs in the statements they share.

Statements the back ends share are written once (in ``memkern.store.sql``, the job queue
and the governance mixin) in a neutral form: ``?`` for every parameter and a few
``{tokens}`` for what each database spells its own way. ``Dialect.sql`` renders such a
statement for one database; ``SQLITE`` and ``POSTGRES`` are the two dialects. What only
one back end does (FTS5 against ``tsvector``, pgvector's binary format, advisory locks)
stays in that back end.

Tokens:

- ``{is_current}``: the condition "is the current version" on ``memories``, spelled as
  each database's partial indexes spell it, so that the planner uses them;
- ``{false}``: the boolean literal false (SQLite stores booleans as 0 and 1);
- ``{tags_json}``: a memory's tags as a JSON list, on ``memories`` aliased ``m``;
- ``{bytewise}``: the collation that orders text by its bytes (SQLite's default);
- ``{text_fields}``: a memory's text, its string ``metadata.role`` (else NULL) and the time it
  was said (``event_time``, else ``valid_from``, as the body holds them), read from ``body`` by the
  database's own JSON functions: parsing whole bodies in Python was most of a search's reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

#: ``(clause, params)``: a piece of a WHERE clause and the values of its placeholders.
Clause = tuple[str, list[Any]]


@dataclass(frozen=True)
class Dialect:
    """How one database spells what differs in the shared statements (module docstring)."""

    #: ``"sqlite"`` or ``"postgres"``.
    name: str
    #: The parameter placeholder that replaces ``?``: ``?`` or ``%s``.
    mark: str
    #: ``{is_current}``.
    is_current: str
    #: ``{false}``.
    false: str
    #: ``{tags_json}``.
    tags_json: str
    #: ``{bytewise}`` (with its leading space, or empty).
    bytewise: str
    #: ``{text_fields}``.
    text_fields: str
    #: What ``LIMIT`` takes for "no limit": ``-1`` or ``ALL``.
    no_limit: str
    #: ``column`` is one of ``values`` (a non-empty list of strings), rendered.
    one_of: Callable[[str, list[str]], Clause] = field(repr=False)
    #: The memory carries every one of ``tags`` (non-empty, distinct), rendered.
    has_tags: Callable[[list[str]], list[Clause]] = field(repr=False)
    #: How many values one ``one_of`` may hold (SQLite bounds a statement's parameters).
    max_list: int | None = None

    def sql(self, statement: str) -> str:
        """``statement`` (neutral: ``?`` and tokens) as this database reads it."""
        return _render(self, statement)


@lru_cache(maxsize=1024)
def _render(dialect: Dialect, statement: str) -> str:
    text = statement if dialect.mark == "?" else statement.replace("?", dialect.mark)
    for token, value in (("{is_current}", dialect.is_current), ("{false}", dialect.false),
                         ("{tags_json}", dialect.tags_json), ("{bytewise}", dialect.bytewise),
                         ("{text_fields}", dialect.text_fields)):
        text = text.replace(token, value)
    return text


# -- SQLite ----------------------------------------------------------------------------------------
def _sqlite_in(column: str, values: list[str]) -> Clause:
    return f"{column} IN ({','.join('?' * len(values))})", values


def _sqlite_has_tags(tags: list[str]) -> list[Clause]:
    return [("EXISTS (SELECT 1 FROM json_each(memories.body, '$.tags') WHERE value = ?)", [tag]) for tag in tags]


#: ``{tags_json}`` on SQLite, where tags live in the body (``MemoryItem`` JSON). Parsing every body
#: was half the time of reading a cube's whole index (200,000 rows: 2.0 -> 1.2 s), and most memories
#: have no tags: a body whose first ``"tags":`` key is ``"tags":[]`` gives NULL (no tags) unparsed.
#: That first key is the item's own: only string fields (escaped) precede ``tags`` in the dump.
_SQLITE_TAGS = ("CASE WHEN instr(m.body, '\"tags\":[]') > 0 AND instr(m.body, '\"tags\":[]') = instr(m.body, '\"tags\":')"
                " THEN NULL ELSE json_extract(m.body, '$.tags') END")

_SQLITE_TEXT_FIELDS = ("json_extract(body, '$.text'),"
                       " CASE WHEN json_type(body, '$.metadata.role') = 'text' THEN json_extract(body, '$.metadata.role') END,"
                       " coalesce(json_extract(body, '$.event_time'), json_extract(body, '$.valid_from'))")

SQLITE = Dialect(
    name="sqlite", mark="?", is_current="is_current=1", false="0", tags_json=_SQLITE_TAGS,
    bytewise="", text_fields=_SQLITE_TEXT_FIELDS, no_limit="-1", one_of=_sqlite_in, has_tags=_sqlite_has_tags,
    max_list=500,
)


# -- PostgreSQL ------------------------------------------------------------------------------------
def _postgres_one_of(column: str, values: list[str]) -> Clause:
    if column == "session_id" and len(values) == 1:  # an equality can use the hash index
        return f"{column} = %s", values
    return f"{column} = ANY(%s::text[])", [values]


def _postgres_has_tags(tags: list[str]) -> list[Clause]:
    return [("tag_list @> %s::text[]", [tags])]


_POSTGRES_TEXT_FIELDS = ("body::jsonb ->> 'text',"
                         " CASE WHEN jsonb_typeof(body::jsonb -> 'metadata' -> 'role') = 'string'"
                         " THEN body::jsonb -> 'metadata' ->> 'role' END,"
                         " coalesce(body::jsonb ->> 'event_time', body::jsonb ->> 'valid_from')")

POSTGRES = Dialect(
    name="postgres", mark="%s", is_current="is_current", false="false", tags_json="m.tags",
    bytewise=' COLLATE "C"', text_fields=_POSTGRES_TEXT_FIELDS, no_limit="ALL", one_of=_postgres_one_of,
    has_tags=_postgres_has_tags,
)
