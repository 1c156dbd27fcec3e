"""What every command shares: the store to open, who acts, and how to print.

The root options (``memkern --db PATH --json ...``) are kept in a ``State`` on the Typer
context; ``--db``, ``--store`` and ``--json`` given after a command override them for that
command. ``open_mos`` opens the store they name and, with ``--user`` or an API key, gives the
view acting as that user (every call then checked against the user's role and grants, and
audited); without either the CLI is the embedded single-user default, as in Python.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from memkern.cli import render
from memkern.errors import InvalidInputError

if TYPE_CHECKING:
    from memkern.mos import MemOS

#: The environment variable holding an API key for the CLI (as for the REST examples).
API_KEY_ENV = "MEMKERN_API_KEY"


@dataclass(frozen=True)
class State:
    db: Path | None = None
    json: bool = False
    debug: bool = False
    #: A store URL or path (``memkern.store.open_store``), given with ``--store``.
    store: str | None = None
    #: Act as this user id (trusted: whoever can open the store file can do anything anyway).
    user: str | None = None
    #: Act as this API key's user.
    api_key: str | None = None


DbOption = Annotated[Path | None, typer.Option(
    "--db", metavar="PATH", help="SQLite store to use (default: $MEMKERN_HOME/memkern.db or ~/.memkern/memkern.db).",
    dir_okay=False)]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables.")]
StoreOption = Annotated[str | None, typer.Option(
    "--store", metavar="URL", help="Store to use: a SQLite path, sqlite:///PATH or postgresql://USER@HOST/DB[?schema=NAME] "
                                   "(default: $MEMKERN_STORE, else the SQLite default).")]


def state_of(ctx: typer.Context, db: Path | None = None, as_json: bool = False, store: str | None = None) -> State:
    """The root options, overridden by the same options given after the command."""
    root = ctx.find_root().obj
    base = root if isinstance(root, State) else State()
    if db is not None and store is not None:
        raise typer.BadParameter("give either --db or --store, not both", param_hint="--store")
    if db is not None:
        base = replace(base, db=db, store=None)
    elif store is not None:
        base = replace(base, store=store, db=None)
    return replace(base, json=as_json or base.json)


def use_store(state: State, store: str | None = None) -> State:
    """``state`` with ``--store`` applied; for servers, also exported as ``$MEMKERN_STORE`` for ``MemOS()``."""
    from memkern.store import STORE_ENV, parse_store_url

    url = store if store is not None else state.store
    if url is not None:
        if state.db is not None:
            raise InvalidInputError("give either --db or --store, not both")
        parse_store_url(url)  # refuse a bad URL before anything starts
        os.environ[STORE_ENV] = url
    return replace(state, store=url)


@contextmanager
def open_mos(state: State) -> Iterator[MemOS]:
    """The store ``state`` names, acting as its user if one is given; closed afterwards."""
    from memkern.mos import MemOS

    if state.store is not None and state.db is None:
        from memkern.store import open_store

        mos = MemOS(store=open_store(state.store))
    else:
        mos = MemOS(state.db)
    with mos:
        if state.api_key is not None:
            yield mos.as_user(state.api_key)
        elif state.user is not None:
            yield mos.as_user(mos.store.get_user(state.user))
        else:
            yield mos


def emit_json(value: Any) -> None:
    typer.echo(render.to_json(value))


def write_json(path: Path, value: Any) -> None:
    """``value`` as one JSON document in ``path``; ``InvalidInputError`` if it cannot be written."""
    try:
        path.write_text(render.to_json(value) + "\n", encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
