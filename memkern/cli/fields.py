"""How a field of an operation's input model becomes a command-line parameter, and back.

Each field is taken positionally (when the table's ``op.cli.arguments`` names it) or as
``--field-name`` with the model's default; a few fields also answer to the names the CLI used
before the operation table (``--session`` for ``session_id``, ``--tag`` for ``tags``...).
What a shell cannot type directly is read from text: times in ISO 8601, JSON objects
(``--metadata``, ``--payload``, ``--filters``, ``--provenance``), a search recipe's name or a
whole configuration as JSON (``--config``), and chat messages from a file (``--messages``).
Values the command line can refuse (a number out of range, an unknown kind, a date that is
not one) are usage errors (exit 2); everything else is the input model's to judge.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal

import annotated_types
import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from memkern.api.spec import Operation
from memkern.cli.inputs import parse_time
from memkern.models import Filters, Message
from memkern.retrieval.config import RECIPES, SearchConfig

Kind = Literal["messages", "filters", "config", "json", "list", "time", "enum", "bool", "int", "float", "str"]

#: Names the CLI used before the operation table, kept beside the field's own ``--field-name``.
ALIASES: dict[str, tuple[str, ...]] = {
    "session_id": ("--session", "-s"),
    "tags": ("--tag", "-t"),
    "top_k": ("-k",),
    "config": ("--recipe",),
    "messages": ("-m",),
    "max_tokens": ("--tokens",),
}
#: The same, for one operation's field only (where the name means something else elsewhere).
OP_ALIASES: dict[tuple[str, str], tuple[str, ...]] = {
    ("audit", "user_id"): ("--user",),
    ("create_user", "user_id"): ("--id",),
    ("parametric_ask", "use_adapter"): ("--adapter/--no-adapter",),
}
#: How positional arguments are shown in usage lines.
METAVARS = {"memory_id": "ID", "user_id": "USER", "job_id": "JOB", "key": "KEY|PREFIX", "cubes": "CUBE..."}

_EXPLAINED: dict[str, str] = {
    "time": "An ISO date or date-time (2024-05-01, 2024-05-01T18:30Z); naive is UTC.",
    "json": "A JSON object.",
    "filters": "A JSON object: session_id, kind, tags, speaker, since, until, state.",
    "config": "NAME or JSON: a recipe's name, or a whole configuration as a JSON object.",
    "messages": "A file of chat messages ('-': standard input): a JSON list of {role, content, name, time, id, "
                "image_caption} objects or JSON lines; a message may carry its own session_id. Big files are "
                "added in chunks, with a progress bar.",
}


@dataclass(frozen=True)
class Param:
    """One command-line parameter of a command: its Python name, its Typer declaration, its default."""

    name: str
    annotation: Any
    default: Any


def _parts(annotation: Any) -> list[Any]:
    """The types a field admits, unions flattened and ``Annotated`` stripped (``None`` dropped)."""
    if typing.get_origin(annotation) is Annotated:
        return _parts(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [part for arg in typing.get_args(annotation) for part in _parts(arg)]
    return [] if annotation is type(None) else [annotation]


def _is(part: Any, cls: type) -> bool:
    return isinstance(part, type) and issubclass(part, cls)


def kind_of(field: FieldInfo) -> Kind:
    """What sort of value a field takes, as far as the command line is concerned."""
    parts = _parts(field.annotation)
    if any(typing.get_origin(p) is list and _parts(typing.get_args(p)[0]) == [Message] for p in parts):
        return "messages"
    if any(_is(p, Filters) for p in parts):
        return "filters"
    if any(_is(p, SearchConfig) for p in parts):
        return "config"
    if any(typing.get_origin(p) is dict or _is(p, BaseModel) for p in parts):
        return "json"
    if any(typing.get_origin(p) is list for p in parts):
        return "list"
    if any(_is(p, datetime) for p in parts):
        return "time"
    if any(_is(p, Enum) for p in parts):
        return "enum"
    if parts and all(_is(p, bool) for p in parts):
        return "bool"
    if any(_is(p, float) for p in parts):
        return "float"
    if parts and all(_is(p, int) for p in parts):
        return "int"
    return "str"


def _constraints(field: FieldInfo) -> list[Any]:
    """The ``annotated_types`` constraints of a field, nested ones (inside ``Optional``) included."""
    found: list[Any] = []

    def walk(item: Any) -> None:
        if isinstance(item, FieldInfo):
            for inner in item.metadata:
                walk(inner)
        elif isinstance(item, annotated_types.BaseMetadata):
            found.append(item)
        elif typing.get_origin(item) is Annotated:
            base, *extras = typing.get_args(item)
            walk(base)
            for extra in extras:
                walk(extra)
        elif typing.get_origin(item) in (typing.Union, types.UnionType):
            for arg in typing.get_args(item):
                walk(arg)

    for item in field.metadata:
        walk(item)
    walk(field.annotation)
    return found


def _bounds(field: FieldInfo, kind: Kind) -> dict[str, Any]:
    """``min``/``max`` for Typer: inclusive bounds of a number, so that the shell refuses them first."""
    bounds: dict[str, Any] = {}
    for constraint in _constraints(field):
        if isinstance(constraint, annotated_types.Ge):
            bounds["min"] = constraint.ge
        elif isinstance(constraint, annotated_types.Le):
            bounds["max"] = constraint.le
        elif isinstance(constraint, annotated_types.Gt) and kind == "int" and isinstance(constraint.gt, int):
            bounds["min"] = constraint.gt + 1
    return bounds


def _enum(field: FieldInfo) -> type[Enum]:
    return next(p for p in _parts(field.annotation) if _is(p, Enum))


def _shell_type(field: FieldInfo, kind: Kind, positional: bool, default: Any) -> Any:
    """The Python type Typer parses the parameter as (``None`` when it was not given)."""
    if kind == "list":
        return list[str] if positional else list[str] | None
    if kind == "enum":
        base: Any = _enum(field)
    else:
        base = {"bool": bool, "int": int, "float": float}.get(kind, str)
    if (positional and field.is_required()) or (kind == "bool" and isinstance(default, bool)):
        return base
    return base | None


def model_default(field: FieldInfo) -> Any:
    """The field's default if it is a plain value the help can show; ``None`` otherwise."""
    if field.default is PydanticUndefined or field.default_factory is not None:
        return None
    default = field.default
    return default if isinstance(default, (str, int, float, bool, Enum)) else None


def option_names(op: Operation, name: str, kind: Kind, default: Any) -> tuple[str, ...]:
    """``--field-name`` and its aliases; booleans that default to true or to unset get ``--no-...``."""
    flag = "--" + name.replace("_", "-")
    aliases = ALIASES.get(name, ()) + OP_ALIASES.get((op.name, name), ())
    if kind == "bool" and default is not False:
        return (f"{flag}/--no-{flag[2:]}", *aliases)
    return (flag, *aliases)


def param_for(op: Operation, name: str) -> Param:
    """The command-line parameter of field ``name`` of ``op``'s input."""
    field = op.input.model_fields[name]
    kind = kind_of(field)
    positional = name in op.cli.arguments
    help_text = " ".join(t for t in (field.description or "", _EXPLAINED.get(kind, "")) if t) or None
    default = model_default(field)
    declared: Any
    if positional:
        declared = typer.Argument(metavar=METAVARS.get(name, name.upper()), help=help_text,
                                  show_default=default is not None, **_bounds(field, kind))
    else:
        metavar = {"time": "TIME", "json": "JSON", "filters": "JSON", "config": "NAME|JSON",
                   "messages": "FILE|-", "int": "N", "float": "X"}.get(kind, name.upper())
        declared = typer.Option(*option_names(op, name, kind, default), help=help_text,
                                metavar=None if kind in ("bool", "enum") else metavar,
                                show_default=default not in (None, ""), **_bounds(field, kind))
    required = positional and field.is_required()
    return Param(name, Annotated[_shell_type(field, kind, positional, default), declared],
                 inspect.Parameter.empty if required else default)


# -- from what was typed to what the operation takes -----------------------------------------------------
def json_object(value: str, option: str) -> dict[str, Any]:
    """A JSON object typed on the command line; a usage error otherwise."""
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint=option) from None
    if not isinstance(parsed, dict):
        raise typer.BadParameter(f"must be a JSON object, not a JSON {type(parsed).__name__}", param_hint=option)
    return parsed


def search_config(value: str, option: str) -> str | dict[str, Any]:
    """A recipe's name, or a whole search configuration as JSON."""
    if value.lstrip().startswith("{"):
        return json_object(value, option)
    if value not in RECIPES:
        raise typer.BadParameter(f"unknown recipe {value!r}; known: {', '.join(sorted(RECIPES))}", param_hint=option)
    return value


#: How a typed value becomes the operation's value, by kind (the rest are passed as parsed).
CONVERTERS: dict[str, Callable[[Any, str], Any]] = {
    "time": lambda value, option: parse_time(value, option),
    "json": json_object,
    "filters": json_object,
    "config": search_config,
    "list": lambda value, option: list(value),
}


def convert(op: Operation, name: str, value: Any) -> Any:
    """The value typed for field ``name`` as the operation takes it (messages stay a file name)."""
    kind = kind_of(op.input.model_fields[name])
    converter = CONVERTERS.get(kind)
    return converter(value, "--" + name.replace("_", "-")) if converter is not None else value
