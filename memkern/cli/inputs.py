"""Reading what users type or pipe into the CLI: message files, times, comma lists."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import typer

from memkern.errors import InvalidInputError

#: Messages per ``cube.add`` call when importing a file.
BATCH = 1_000

#: A message object may name its session (an extension of the API's message shape, for files
#: that hold several sessions); the key is removed before the message reaches ``add``.
SESSION_KEYS = ("session_id", "session")


def parse_time(value: str | None, option: str) -> datetime | None:
    """An ISO 8601 date or date-time (``2024-05-01``, ``2024-05-01T18:30``, ``...Z``); naive is UTC."""
    if value is None:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO date or date-time (e.g. 2024-05-01 or "
                                 "2024-05-01T18:30:00Z)", param_hint=option) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def parse_ks(value: str) -> tuple[int, ...]:
    """``"1,3,5"`` -> ``(1, 3, 5)``."""
    try:
        ks = tuple(int(part) for part in value.replace(" ", "").split(",") if part)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a comma-separated list of integers", param_hint="--k") from None
    if not ks or any(k < 1 for k in ks):
        raise typer.BadParameter(f"{value!r}: give positive integers like 1,3,5,10,25", param_hint="--k")
    return ks


def read_source(spec: str, what: str, option: str) -> tuple[str, str]:
    """The text of file ``spec`` (``-`` for standard input) and a name for it in messages."""
    if spec == "-":
        return sys.stdin.read(), "standard input"
    path = Path(spec)
    if not path.is_file():
        raise typer.BadParameter(f"no such file: {spec!r}", param_hint=option)
    try:
        return path.read_text(encoding="utf-8"), repr(spec)
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{what} {spec!r} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read {what} {spec!r}: {exc.strerror or exc}") from None


def parse_messages(raw: str, name: str) -> list[dict[str, Any]]:
    """Message objects from a JSON list, a ``{"messages": [...]}`` object or JSON lines."""
    stripped = raw.strip()
    if not stripped:
        raise InvalidInputError(f"the messages in {name} are empty")
    data: Any
    try:
        data = json.loads(stripped)
    except json.JSONDecodeError as whole_error:
        if not stripped.startswith("{"):
            raise InvalidInputError(f"{name} is not valid JSON: {whole_error.msg} at line {whole_error.lineno}, "
                                    f"column {whole_error.colno}") from None
        data = []
        for number, line in enumerate(stripped.splitlines(), 1):
            if not line.strip():
                continue
            try:
                data.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"{name} line {number} is not valid JSON: {exc.msg} "
                                        f"(column {exc.colno})") from None
    if isinstance(data, dict):
        data = data["messages"] if isinstance(data.get("messages"), list) else [data]
    if not isinstance(data, list):
        raise InvalidInputError(f"{name} must hold a JSON list of message objects or JSON lines, "
                                f"not a JSON {type(data).__name__}")
    for position, message in enumerate(data):
        if not isinstance(message, dict):
            raise InvalidInputError(f"message {position} in {name} is a JSON {type(message).__name__}, "
                                    "not an object like {\"role\": \"user\", \"content\": \"...\"}")
    if not data:
        raise InvalidInputError(f"{name} holds no messages")
    return data


def batches(messages: list[dict[str, Any]], default_session: str | None,
            size: int = BATCH) -> Iterator[tuple[str | None, list[dict[str, Any]]]]:
    """``(session_id, messages)`` batches of at most ``size``, one session each, in file order.

    A message's own ``session_id`` (or ``session``) wins over ``--session``; consecutive
    messages of the same session are added together.
    """
    current: str | None = None
    chunk: list[dict[str, Any]] = []
    for position, message in enumerate(messages):
        session = default_session
        for key in SESSION_KEYS:
            if key in message:
                value = message[key]
                if not isinstance(value, str) or not value.strip():
                    raise InvalidInputError(f"message {position}: {key} must be a non-empty string")
                session = value
        clean = {k: v for k, v in message.items() if k not in SESSION_KEYS}
        if chunk and (session != current or len(chunk) >= size):
            yield current, chunk
            chunk = []
        current = session
        chunk.append(clean)
    if chunk:
        yield current, chunk
