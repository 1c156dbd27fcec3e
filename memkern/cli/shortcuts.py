"""Conveniences some commands have beyond their operation's fields, kept from the CLI before the table.

A shortcut adds parameters to one command and folds what was typed into the operation's
arguments before the call: ``memkern search CUBE QUERY --session s1 --kind fact`` builds the
``filters`` object, ``memkern add CUBE TEXT`` takes the text positionally (``-`` reads it
from standard input), ``memkern cube delete`` asks before deleting on a terminal. Nothing
here reaches past the operation: the arguments still go through the dispatcher whole.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from memkern.cli.fields import Param
from memkern.cli.inputs import parse_time
from memkern.cli.state import State
from memkern.models import MemoryKind


@dataclass(frozen=True)
class Shortcut:
    """Extra parameters of one command, and how their values change the operation's arguments."""

    params: tuple[Param, ...]
    #: ``apply(typed, args, state)``: ``typed`` holds the shortcut's parameters that were given.
    apply: Callable[[dict[str, Any], dict[str, Any], State], None]


# -- filters from options ----------------------------------------------------------------------------------
_FILTER_PARAMS = (
    Param("filter_session", Annotated[list[str] | None, typer.Option(
        "--session", "-s", metavar="SESSION", help="Only these sessions (repeatable).")], None),
    Param("filter_kind", Annotated[list[MemoryKind] | None, typer.Option(
        "--kind", help="Only these kinds (repeatable).")], None),
    Param("filter_since", Annotated[str | None, typer.Option(
        "--since", metavar="TIME", help="Only memories from this time on (ISO date or date-time).")], None),
    Param("filter_until", Annotated[str | None, typer.Option(
        "--until", metavar="TIME", help="Only memories up to this time (ISO date or date-time).")], None),
    Param("filter_speaker", Annotated[str | None, typer.Option(
        "--speaker", metavar="NAME", help="Only what this speaker said.")], None),
    Param("filter_tag", Annotated[list[str] | None, typer.Option(
        "--tag", "-t", metavar="TAG", help="Only memories with this tag (repeatable).")], None),
)

#: The key of ``Filters`` each option fills.
_FILTER_KEYS = {"filter_session": "session_id", "filter_kind": "kind", "filter_since": "since",
                "filter_until": "until", "filter_speaker": "speaker", "filter_tag": "tags"}


def _apply_filters(typed: dict[str, Any], args: dict[str, Any], state: State) -> None:
    """``--session``, ``--kind``... as the keys of ``filters``, beside those of ``--filters JSON``."""
    found = {_FILTER_KEYS[name]: value for name, value in typed.items()}
    for key in ("since", "until"):
        if key in found:
            found[key] = parse_time(found[key], f"--{key}")
    if not found:
        return
    filters = dict(args.get("filters") or {})
    both = sorted(set(filters) & set(found))
    if both:
        raise typer.BadParameter(f"{', '.join(both)} given both in --filters and as an option", param_hint="--filters")
    args["filters"] = {**filters, **found}


FILTERS = Shortcut(_FILTER_PARAMS, _apply_filters)


# -- add: the text positionally, and one of text or messages -----------------------------------------------
def _apply_add(typed: dict[str, Any], args: dict[str, Any], state: State) -> None:
    if "text_argument" in typed:
        if "text" in args:
            raise typer.BadParameter("give TEXT or --text, not both", param_hint="TEXT / --text")
        value = typed["text_argument"]
        args["text"] = sys.stdin.read() if value == "-" else value
    if ("text" in args) == ("messages" in args):
        raise typer.BadParameter("give either TEXT or --messages FILE", param_hint="TEXT / --messages")
    if "messages" in args and ("kind" in args or "time" in args):
        raise typer.BadParameter("--kind and --time apply to TEXT; messages are turns and carry their own 'time'",
                                 param_hint="--kind / --time")


ADD = Shortcut((Param("text_argument", Annotated[str | None, typer.Argument(
    metavar="TEXT", help="One memory's text ('-' reads it from standard input); the same as --text.")], None),),
    _apply_add)


# -- asking before a final deletion ------------------------------------------------------------------------
def _confirm_cube_deletion(typed: dict[str, Any], args: dict[str, Any], state: State) -> None:
    if not typed.get("yes") and sys.stdin.isatty() and not state.json:
        typer.confirm(f"Delete cube {args['cube']!r} and all its memories? This cannot be undone", abort=True)


CONFIRM_CUBE_DELETION = Shortcut((Param("yes", Annotated[bool, typer.Option(
    "--yes", "-y", help="Do not ask for confirmation on a terminal.")], False),), _confirm_cube_deletion)


#: The shortcuts of each operation's command.
SHORTCUTS: dict[str, tuple[Shortcut, ...]] = {
    "add": (ADD,),
    "search": (FILTERS,),
    "get_all": (FILTERS,),
    "delete_cube": (CONFIRM_CUBE_DELETION,),
}
