"""The ``memkern`` command: the operation table, command for command, for people and scripts.

Every operation of ``memkern.api.table`` is a command (``memkern.cli.operations``); a few
commands are not operations and are written by hand: ``version``, ``demo``, ``serve`` and
``mcp`` (``memkern.cli.servers``), ``scheduler run`` (``memkern.cli.worker``) and ``bench ...``
(``memkern.cli.bench``).

Every command takes ``--db PATH`` or ``--store URL`` (default: ``MemOS``'s default store, which
honours ``$MEMKERN_STORE`` and ``$MEMKERN_HOME``) and ``--json`` (one JSON document on stdout:
the result model's JSON). They can also be given before the command (``memkern --json cube
list``), with ``--user ID`` or ``--api-key KEY`` to act as a user (checked and audited).

Errors memkern raises on purpose are printed as ``error: <message>`` on stderr with exit
code 1; usage errors exit with 2. Tracebacks are for ``--debug`` (or ``MEMKERN_DEBUG=1``) only.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from memkern.cli import operations, servers, worker
from memkern.cli.bench import bench_app
from memkern.cli.state import API_KEY_ENV, DbOption, JsonFlag, State, StoreOption, emit_json, state_of
from memkern.errors import MemkernError

#: Exceptions the command-line framework handles itself (usage errors, --help, exit codes).
_FRAMEWORK_EXCEPTIONS: tuple[type[BaseException], ...] = (
    typer.Exit, typer.Abort, *(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"))


def _debug_requested(ctx: Any) -> bool:
    if os.environ.get("MEMKERN_DEBUG", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    state = ctx.obj if ctx is not None else None
    return bool(getattr(state, "debug", False))


class _MemkernGroup(TyperGroup):
    """The root group: turns memkern's errors into one line on stderr and exit code 1."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _FRAMEWORK_EXCEPTIONS:
            raise
        except MemkernError as exc:
            if _debug_requested(ctx):
                raise
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        except Exception as exc:  # a bug, or the OS: still no traceback unless asked for
            if _debug_requested(ctx):
                raise
            detail = str(exc) or type(exc).__name__
            typer.echo(f"error: unexpected {type(exc).__name__}: {detail} (run with --debug for the traceback)",
                       err=True)
            raise typer.Exit(1) from None


app = typer.Typer(
    name="memkern",
    cls=_MemkernGroup,
    help="memkern: a memory operating system for LLMs, offline by default.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    ctx: typer.Context,
    db: DbOption = None,
    as_json: JsonFlag = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks (also MEMKERN_DEBUG=1).")] = False,
    store: StoreOption = None,
    user: Annotated[str | None, typer.Option(
        "--user", metavar="ID", help="Act as this user: every command checked against the user's role and grants, "
                                     "and audited (default: the embedded single-user default, full access).")] = None,
    api_key: Annotated[str | None, typer.Option(
        "--api-key", metavar="KEY", envvar=API_KEY_ENV, show_envvar=True,
        help="Act as this API key's user (checked and audited like --user).")] = None,
) -> None:
    if db is not None and store is not None:
        raise typer.BadParameter("give either --db or --store, not both", param_hint="--store")
    if user is not None and api_key is not None:
        raise typer.BadParameter("give either --user or --api-key, not both", param_hint="--api-key")
    ctx.obj = State(db=db, json=as_json, debug=debug, store=store, user=user, api_key=api_key)


@app.command()
def version(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Print memkern's version."""
    from memkern import __version__

    if state_of(ctx, None, as_json).json:
        emit_json({"version": __version__, "python": sys.version.split()[0]})
    else:
        typer.echo(f"memkern {__version__}")


@app.command()
def demo(
    ctx: typer.Context,
    cube: Annotated[str, typer.Option(metavar="NAME", help="Cube to ingest into (reused if it exists).")] = "demo",
    db: Annotated[Path | None, typer.Option(
        "--db", metavar="PATH", dir_okay=False,
        help="Keep the demo in this store (default: a temporary directory, removed afterwards).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Ingest a short conversation that ships with memkern and answer questions from memory. Offline."""
    from memkern.cli.demo import run_demo

    state = state_of(ctx, db, as_json)
    run_demo(state.db, cube, as_json=state.json)


groups = operations.bind(app)
groups["scheduler"].command("run")(worker.scheduler_run)
app.command()(servers.serve)
app.command("mcp")(servers.mcp)
app.add_typer(bench_app, name="bench")

