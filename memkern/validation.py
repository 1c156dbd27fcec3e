"""The rules every value crossing memkern's boundary is checked by, once.

Each rule is a plain function raising ``InvalidInputError`` with a message that names the
value and what was wrong, and an ``Annotated`` type that applies it inside a Pydantic
model. The operations' input models (``memkern.api.inputs``) are built from these types,
so the Python API, the CLI, REST, MCP and a cube file being loaded all refuse the same
values with the same words.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, TypeAdapter, ValidationError

from memkern.errors import InvalidInputError
from memkern.models import MAX_TEXT_CHARS, MemoryItem, as_utc

#: Longest identifier-like string (an owner, a session or memory id, a tag, a path).
MAX_NAME_CHARS = 1_000
#: Longest cube name.
MAX_CUBE_NAME_CHARS = 200
#: Longest free-text note (an actor, a reason, a description).
MAX_NOTE_CHARS = 10_000
#: Deepest nesting of JSON arrays and objects accepted in metadata (and in a cube file's JSON):
#: deep enough for any real document, shallow enough that no parser or encoder ever recurses out.
MAX_JSON_DEPTH = 64
#: Highest version number a memory may carry: far beyond any real history, and far below the
#: stores' integer columns, so that the next update can never overflow them.
MAX_VERSION = 1_000_000


def describe(error: ValidationError, limit: int = 5) -> str:
    """A ValidationError as one line: ``where: what; where: what; and N more``."""
    parts = []
    for issue in error.errors()[:limit]:
        where = ".".join(str(p) for p in issue["loc"]) or "input"
        message = str(issue["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if issue["type"] in ("enum", "literal_error") and len(repr(issue.get("input"))) <= 80:
            message += f", not {issue['input']!r}"
        parts.append(f"{where}: {message}")
    more = len(error.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def check_unicode(value: str, what: str) -> str:
    """Refuse strings that cannot be stored as UTF-8 (lone surrogates) or that hold NUL."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(f"{what} is not valid Unicode (at character {exc.start})") from exc
    if "\x00" in value:
        raise InvalidInputError(f"{what} holds a NUL character (at character {value.index(chr(0))})")
    return value


def check_text(value: object, what: str = "text") -> str:
    """A non-empty, valid-Unicode string within the size limit of one memory."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string, not {type(value).__name__}")
    if not value.strip():
        raise InvalidInputError(f"{what} is empty")
    if len(value) > MAX_TEXT_CHARS:
        raise InvalidInputError(f"{what} is {len(value):,} characters; the limit is {MAX_TEXT_CHARS:,}")
    return check_unicode(value, what)


def check_name(value: object, what: str) -> str:
    """A short identifier-like string: an owner, a session or memory id, a tag, a user id."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"{what} must be a non-empty string, not {value!r}")
    if len(value) > MAX_NAME_CHARS:
        raise InvalidInputError(f"{what} is longer than {MAX_NAME_CHARS:,} characters")
    return check_unicode(value, what)


def check_cube_name(value: object, what: str = "cube name") -> str:
    """A cube name: 1 to 200 printable characters, no slash or backslash, not ``.`` or ``..``,
    no surrounding spaces. One rule for every surface, so that every cube that can be
    created can be addressed by name in a URL path, a CLI argument or an MCP call."""
    name = check_name(value, what)
    if len(name) > MAX_CUBE_NAME_CHARS:
        raise InvalidInputError(f"{what} is longer than {MAX_CUBE_NAME_CHARS} characters")
    if name != name.strip():
        raise InvalidInputError(f"{what} {name!r} starts or ends with a space")
    if name in (".", ".."):
        raise InvalidInputError(f"{what} cannot be {name!r}")
    for position, char in enumerate(name):
        if char in "/\\" or unicodedata.category(char)[0] == "C":
            raise InvalidInputError(f"{what} {name!r} holds {char!r} at character {position}: use printable "
                                    "characters other than / and \\")
    return name


def check_note(value: object, what: str) -> str | None:
    """An optional free-text note (actor, reason, description): a string or None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string, not {type(value).__name__}")
    if len(value) > MAX_NOTE_CHARS:
        raise InvalidInputError(f"{what} is longer than {MAX_NOTE_CHARS:,} characters")
    return check_unicode(value, what)


_DATETIME: TypeAdapter[datetime] = TypeAdapter(datetime)


def check_time(value: object, what: str) -> datetime | None:
    """A datetime, or an ISO 8601 string; naive times are taken as UTC."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (datetime, str)):
        raise InvalidInputError(f"{what} must be a datetime or an ISO 8601 string, not {type(value).__name__}")
    try:
        return as_utc(_DATETIME.validate_python(value))
    except ValidationError as exc:
        raise InvalidInputError(f"{what} is not a valid time: {value!r}") from exc


def check_metadata(value: object, what: str = "metadata") -> dict[str, Any]:
    """A JSON object: string keys, JSON-serialisable values, of a sane size."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"{what} must be a mapping, not {type(value).__name__}")
    if not all(isinstance(key, str) for key in value):
        raise InvalidInputError(f"{what} keys must be strings")
    if _depth(value) > MAX_JSON_DEPTH:
        raise InvalidInputError(f"{what} nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        encoded = json.dumps(dict(value), ensure_ascii=False, allow_nan=False)
        encoded.encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidInputError(f"{what} must be JSON-serialisable with string keys: {exc}") from exc
    if len(encoded) > MAX_TEXT_CHARS:
        raise InvalidInputError(f"{what} is {len(encoded):,} characters as JSON; the limit is {MAX_TEXT_CHARS:,}")
    return dict(value)


def _depth(value: object) -> int:
    """How deeply lists and mappings nest in ``value`` (walked without recursion; stops past the limit)."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, Mapping):
            children: Any = node.values()
        elif isinstance(node, (list, tuple)):
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            break
        stack.extend((child, depth + 1) for child in children)
    return deepest


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_JSON_BRACKET = re.compile(rb"[\[\]{}]")


def check_json_depth(raw: bytes, what: str, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON text whose arrays and objects nest deeper than ``limit``, before any parser sees
    it (Python's ``json`` would raise ``RecursionError``). Brackets inside strings do not count."""
    depth = 0
    for match in _JSON_BRACKET.finditer(_JSON_STRING.sub(b'""', raw)):
        if match.group() in (b"[", b"{"):
            depth += 1
            if depth > limit:
                raise InvalidInputError(f"{what} nests JSON deeper than {limit} levels")
        else:
            depth -= 1


def check_memory(item: MemoryItem, what: str) -> MemoryItem:
    """A memory built outside the API (a line of a cube file) within the limits ``add`` applies:
    its text, names, tags, notes and metadata pass the same rules, and its version is bounded."""
    check_text(item.text, f"{what}: text")
    for field in ("id", "cube_id", "owner"):
        check_name(getattr(item, field), f"{what}: {field}")
    for field, values in (("tags", item.tags), ("entities", item.entities),
                          ("provenance.message_ids", item.provenance.message_ids)):
        for value in values:
            check_name(value, f"{what}: {field}")
    for field in ("session_id", "speaker", "document_path"):
        found = getattr(item.provenance, field)
        if found is not None:
            check_name(found, f"{what}: provenance.{field}")
    for field in ("supersedes", "changed_by", "change_reason"):
        check_note(getattr(item, field), f"{what}: {field}")
    check_metadata(item.metadata, f"{what}: metadata")
    if not 1 <= item.version <= MAX_VERSION:
        raise InvalidInputError(f"{what}: version {item.version} is outside 1..{MAX_VERSION:,}")
    if not 0 <= item.access_count <= 2**31 - 1:
        raise InvalidInputError(f"{what}: access_count {item.access_count} is out of range")
    if not math.isfinite(item.importance):
        raise InvalidInputError(f"{what}: importance is not a finite number")
    return item


def _as_value_error(rule: Any, what: str) -> Any:
    """``rule`` as a Pydantic validator: its InvalidInputError becomes the ValueError Pydantic reports."""

    def validate(value: Any) -> Any:
        try:
            return rule(value, what)
        except InvalidInputError as exc:
            raise ValueError(str(exc)) from None

    return validate


def _tags(value: Any) -> Any:
    if isinstance(value, (str, bytes)):
        raise ValueError("tags must be a list of strings")
    return value


# -- the types input models are built from ------------------------------------------------------
# The string rules run before Pydantic's own str validation, so that a value of the wrong type
# (None, a number, bytes, which lax Pydantic would even decode) gets the rule's own words.
Text = Annotated[str, BeforeValidator(_as_value_error(check_text, "text"))]
Query = Annotated[str, BeforeValidator(_as_value_error(check_text, "query"))]
Name = Annotated[str, BeforeValidator(_as_value_error(check_name, "value"))]
CubeName = Annotated[str, BeforeValidator(_as_value_error(check_cube_name, "cube name"))]
#: A cube addressed by name or id (an id is 32 hex digits, itself a valid name).
CubeRef = Annotated[str, BeforeValidator(_as_value_error(check_name, "cube"))]
MemoryId = Annotated[str, BeforeValidator(_as_value_error(check_name, "memory id"))]
UserId = Annotated[str, BeforeValidator(_as_value_error(check_name, "user id"))]
Note = Annotated[str, BeforeValidator(_as_value_error(check_note, "note"))]
Time = Annotated[datetime, AfterValidator(as_utc)]
Metadata = Annotated[dict[str, Any], AfterValidator(_as_value_error(check_metadata, "metadata"))]
Tags = Annotated[list[Name], BeforeValidator(_tags)]
