"""The commands of the operation table: one per operation, built from its declaration.

For each operation of ``memkern.api.table.OPERATIONS`` the command at ``op.cli.words``
(``memkern cube create``, ``memkern search``...) takes the fields ``op.cli.arguments``
positionally and every other field of ``op.input`` as an option with the model's default
(``memkern.cli.fields``), plus ``--db``, ``--store`` and ``--json``, and the few shortcuts
the CLI had before the table (``memkern.cli.shortcuts``). Running it sends the fields that
were given to ``Dispatcher.call``, the one enforcement point, as the CLI's user (the
embedded default, or ``--user``/``--api-key``), and prints the result (``memkern.cli.show``)
or its JSON. A new operation in the table is a new command, with nothing to write here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import typer

from memkern.api.spec import Operation
from memkern.api.table import OPERATIONS
from memkern.cli import ingest
from memkern.cli.fields import Param, convert, kind_of, param_for
from memkern.cli.shortcuts import SHORTCUTS
from memkern.cli.show import show
from memkern.cli.state import DbOption, JsonFlag, StoreOption, emit_json, open_mos, state_of
from memkern.errors import LLMNotConfiguredError
from memkern.llm import NO_LLM_MESSAGE
from memkern.ops.writes import read_turns_ahead

#: The command groups (``memkern cube ...``) and their help; a group not named here gets a plain one.
GROUPS: dict[str, str] = {
    "cube": "Cubes: create, show, list, delete, dump and load, compose, fuse duplicates.",
    "activation": "Activation memory: the cube's memory block pre-read by the local model (MEMKERN_LLM=local) "
                  "and kept as its KV cache.",
    "parametric": "Parametric memory: distil a cube into a LoRA adapter and ask it closed-book "
                  "(extra memkern[lora]).",
    "policy": "A cube's policy: retention, PII redaction, the poisoning guard.",
    "user": "Users (governance): create, show, list, forget.",
    "key": "API keys for the REST and MCP servers: create, list and revoke.",
    "scheduler": "The memory scheduler: run queued jobs, show the queue, enqueue, retry.",
}
#: Operations that cannot run without an LLM: said before anything is opened.
NEEDS_AN_LLM = frozenset({"chat"})

_COMMON = (Param("db", DbOption, None), Param("store", StoreOption, None), Param("as_json", JsonFlag, False))


def _plain(text: str) -> str:
    """Docstring text for a terminal: ``code`` marks dropped."""
    return text.replace("``", "")


def params_of(op: Operation) -> list[Param]:
    """The command's parameters: the fields (arguments first, in the table's order), the shortcuts, the common ones."""
    fields = [param_for(op, name) for name in op.cli.arguments]
    fields += [param_for(op, name) for name in op.fields if name not in op.cli.arguments]
    extras = [param for shortcut in SHORTCUTS.get(op.name, ()) for param in shortcut.params]
    return [*fields, *extras, *_COMMON]


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether parameter ``name`` was given (on the command line, by its environment variable...)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name != "DEFAULT"


def run(op: Operation, ctx: typer.Context, values: dict[str, Any]) -> None:
    """Run ``op`` with what was typed: the given fields through the dispatcher, then print the result."""
    state = state_of(ctx, values.pop("db"), values.pop("as_json"), values.pop("store"))
    typed = {name: value for name, value in values.items() if _given(ctx, name)}
    args = {name: convert(op, name, value) for name, value in typed.items() if name in op.input.model_fields}
    for shortcut in SHORTCUTS.get(op.name, ()):
        shortcut.apply({p.name: typed[p.name] for p in shortcut.params if p.name in typed}, args, state)
    with open_mos(state) as mos:
        if op.name in NEEDS_AN_LLM and mos.llm is None:
            raise LLMNotConfiguredError(NO_LLM_MESSAGE)

        def call(arguments: dict[str, Any]) -> Any:
            return mos.dispatcher.call(mos.user, op.name, arguments)

        from_file = any(kind_of(op.input.model_fields[name]) == "messages" for name in args)
        ahead = read_turns_ahead if op.name == "add" else None
        result = ingest.add_messages(call, args, ahead) if from_file else call(args)
    if state.json:
        emit_json(result)
    else:
        show(op.name, result, args)


def command_for(op: Operation) -> Callable[..., None]:
    """The Typer command function of ``op``, its signature built from ``params_of(op)``."""

    def command(ctx: typer.Context, **values: Any) -> None:
        run(op, ctx, values)

    params = [inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)]
    params += [inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=p.default, annotation=p.annotation)
               for p in params_of(op)]
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__name__ = op.name
    command.__doc__ = _plain(op.summary)
    return command


def bind(app: typer.Typer) -> dict[str, typer.Typer]:
    """Add every operation's command to ``app``; returns the command groups by name."""
    groups: dict[str, typer.Typer] = {}
    for op in OPERATIONS.values():
        *path, word = op.cli.words
        target = app
        if path:
            (group,) = path
            if group not in groups:
                groups[group] = typer.Typer(help=GROUPS.get(group, f"{group} commands."), no_args_is_help=True)
                app.add_typer(groups[group], name=group)
            target = groups[group]
        target.command(word, help=_plain(op.summary))(command_for(op))
    return groups
