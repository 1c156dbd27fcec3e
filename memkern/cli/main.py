"""The ``memkern`` command: the Python API, verb for verb, for people and scripts.

Every command takes ``--db PATH`` (default: ``MemOS``'s default store, which honours
``$MEMKERN_STORE`` and ``$MEMKERN_HOME``) and ``--json`` (one JSON document on stdout: the Pydantic models'
JSON). Both can also be given before the command (``memkern --json cube list``).

Errors memkern raises on purpose are printed as ``error: <message>`` on stderr with
exit code 1; usage errors exit with 2. Tracebacks are for ``--debug`` (or
``MEMKERN_DEBUG=1``) only.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from typer.core import TyperGroup

from memkern.cli import render
from memkern.cli.inputs import BATCH, batches, parse_ks, parse_messages, parse_time, read_source
from memkern.errors import MemkernError
from memkern.models import AddResult, MemoryKind

# --------------------------------------------------------------------------------------- errors


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
cube_app = typer.Typer(help="Create, list, delete, dump and load cubes.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks: LoCoMo retrieval quality, ingest and search speed at scale, load.",
                        no_args_is_help=True)
app.add_typer(cube_app, name="cube")
app.add_typer(bench_app, name="bench")
user_app = typer.Typer(help="Users (governance): create and list.", no_args_is_help=True)
key_app = typer.Typer(help="API keys for the REST and MCP servers: create and revoke.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(key_app, name="key")


# ---------------------------------------------------------------------------------------- state


@dataclass
class State:
    db: Path | None = None
    json: bool = False
    debug: bool = False
    #: A store URL or path (``memkern.store.open_store``), given with ``--store``.
    store: str | None = None


DbOption = Annotated[Path | None, typer.Option(
    "--db", metavar="PATH", help="SQLite store to use (default: $MEMKERN_HOME/memkern.db or ~/.memkern/memkern.db).",
    dir_okay=False)]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables.")]
StoreOption = Annotated[str | None, typer.Option(
    "--store", metavar="URL", help="Store to use: a SQLite path, sqlite:///PATH or postgresql://USER@HOST/DB[?schema=NAME] "
                                   "(default: $MEMKERN_STORE, else the SQLite default).")]


def _state(ctx: typer.Context, db: Path | None = None, as_json: bool = False) -> State:
    """The root options, overridden by the same options given after the command."""
    root = ctx.obj if isinstance(ctx.obj, State) else State()
    return State(db=db if db is not None else root.db, json=as_json or root.json, debug=root.debug, store=root.store)


def _use_store(state: State, store: str | None = None) -> State:
    """``state`` with ``--store`` applied; for servers, also exported as ``$MEMKERN_STORE`` for ``MemOS()``."""
    from memkern.errors import InvalidInputError
    from memkern.store import STORE_ENV, parse_store_url

    url = store if store is not None else state.store
    if url is not None:
        if state.db is not None:
            raise InvalidInputError("give either --db or --store, not both")
        parse_store_url(url)  # refuse a bad URL before anything starts
        os.environ[STORE_ENV] = url
    return State(db=state.db, json=state.json, debug=state.debug, store=url)


@contextmanager
def _mos(state: State) -> Iterator[Any]:
    from memkern.mos import MemOS

    if state.store is not None and state.db is None:
        from memkern.store import open_store

        with MemOS(store=open_store(state.store)) as mos:
            yield mos
        return
    with MemOS(state.db) as mos:
        yield mos


def _out() -> Any:
    return render.make_console()


def _emit_json(value: Any) -> None:
    typer.echo(render.to_json(value))


def _progress(transient: bool = False) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        console=render.make_console(stderr=True), transient=transient,
    )


def _print_report(state: State, result: dict[str, Any], out: Path | None,
                  format_report: Callable[[dict[str, Any]], str]) -> None:
    """A benchmark's result: JSON on stdout with --json, else its text report; also to ``out``."""
    if out is not None:
        _write_json(out, result)
    if state.json:
        _emit_json(result)
        return
    typer.echo(format_report(result))
    if out is not None:
        typer.echo(f"\nwrote {out}")


def _labelled_tasks(progress: Progress) -> Callable[[str, int, int], None]:
    """A ``progress(label, done, total)`` callback for the benchmarks: one bar per label."""
    tasks: dict[str, Any] = {}

    def on_progress(label: str, done: int, total: int) -> None:
        if label not in tasks:
            tasks[label] = progress.add_task(label, total=total)
        progress.update(tasks[label], completed=done, total=total)

    return on_progress


@app.callback()
def _root(
    ctx: typer.Context,
    db: DbOption = None,
    as_json: JsonFlag = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks (also MEMKERN_DEBUG=1).")] = False,
    store: StoreOption = None,
) -> None:
    if db is not None and store is not None:
        raise typer.BadParameter("give either --db or --store, not both", param_hint="--store")
    ctx.obj = State(db=db, json=as_json, debug=debug, store=store)


# -------------------------------------------------------------------------------------- version


@app.command()
def version(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Print memkern's version."""
    from memkern import __version__

    state = _state(ctx, None, as_json)
    if state.json:
        _emit_json({"version": __version__, "python": sys.version.split()[0]})
    else:
        typer.echo(f"memkern {__version__}")


# ----------------------------------------------------------------------------------------- cubes


@cube_app.command("create")
def cube_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Cube name, unique in the store.")],
    owner: Annotated[str, typer.Option(metavar="OWNER", help="Who the cube belongs to.")] = "default",
    description: Annotated[str, typer.Option(metavar="TEXT", help="What the cube is for.")] = "",
    db: DbOption = None, as_json: JsonFlag = False,
) -> None:
    """Create an empty cube."""
    state = _state(ctx, db, as_json)
    with _mos(state) as mos:
        info = mos.create_cube(name, owner=owner, description=description).info
    if state.json:
        _emit_json(info)
    else:
        _out().print(f"created cube {info.name!r} (owner {info.owner!r}, id {info.id}, embedder {info.embedder})",
                     markup=False)


@cube_app.command("list")
def cube_list(
    ctx: typer.Context,
    owner: Annotated[str | None, typer.Option(metavar="OWNER", help="Only this owner's cubes.")] = None,
    db: DbOption = None, as_json: JsonFlag = False,
) -> None:
    """List the cubes in the store."""
    state = _state(ctx, db, as_json)
    with _mos(state) as mos:
        cubes = mos.list_cubes(owner)
    if state.json:
        _emit_json(cubes)
    elif not cubes:
        _out().print("no cubes" + (f" owned by {owner!r}" if owner else "") + "; create one with "
                     "`memkern cube create NAME`", markup=False)
    else:
        _out().print(render.cubes_table(cubes))


@cube_app.command("delete")
def cube_delete(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Cube name or id.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation on a terminal.")] = False,
    db: DbOption = None, as_json: JsonFlag = False,
) -> None:
    """Delete a cube and every memory in it. Final."""
    state = _state(ctx, db, as_json)
    with _mos(state) as mos:
        # Looked up without opening the cube, so that a cube built with another embedder can be deleted too.
        cubes = mos.list_cubes()
        info = next((c for c in cubes if c.name == name), None) or next((c for c in cubes if c.id == name), None)
        if info is None:
            mos.delete_cube(name)  # raises NotFoundError with the store's message
            return
        if not yes and sys.stdin.isatty() and not state.json:
            typer.confirm(f"Delete cube {info.name!r} and all its memories? This cannot be undone", abort=True)
        mos.delete_cube(info.id)
    if state.json:
        _emit_json({"deleted": info})
    else:
        _out().print(f"deleted cube {info.name!r} ({info.id})", markup=False)


@cube_app.command("dump")
def cube_dump(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Cube name or id.")],
    path: Annotated[Path, typer.Argument(metavar="PATH", help="File to write (a portable .mkcube file).", dir_okay=False)],
    db: DbOption = None, as_json: JsonFlag = False,
) -> None:
    """Write a cube to one portable file."""
    state = _state(ctx, db, as_json)
    with _mos(state) as mos:
        cube = mos.get_cube(name)
        written = cube.dump(path)
        info = cube.info
    size = written.stat().st_size if written.exists() else None
    if state.json:
        _emit_json({"cube": info, "path": str(written), "bytes": size})
    else:
        _out().print(f"wrote cube {info.name!r} to {written}" + (f" ({size:,} bytes)" if size is not None else ""),
                     markup=False)


@cube_app.command("load")
def cube_load(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(metavar="PATH", help="A file written by `memkern cube dump`.", dir_okay=False)],
    name: Annotated[str | None, typer.Option(metavar="NAME", help="Name for the loaded cube (default: the dumped name).")] = None,
    owner: Annotated[str | None, typer.Option(metavar="OWNER", help="Owner of the loaded cube (default: the dumped owner).")] = None,
    db: DbOption = None, as_json: JsonFlag = False,
) -> None:
    """Load a cube file (verified whole before anything is written)."""
    state = _state(ctx, db, as_json)
    if not path.is_file():
        raise typer.BadParameter(f"no such file: {str(path)!r}", param_hint="PATH")
    with _mos(state) as mos:
        info = mos.load_cube(path, name=name, owner=owner).info
    if state.json:
        _emit_json(info)
    else:
        _out().print(f"loaded cube {info.name!r} (owner {info.owner!r}, id {info.id}) from {path}", markup=False)


# -------------------------------------------------------------------------------------- memories


@app.command()
def add(
    ctx: typer.Context,
    cube: Annotated[str, typer.Argument(metavar="CUBE", help="Cube name or id.")],
    text: Annotated[str | None, typer.Argument(metavar="TEXT", help="One memory's text ('-' reads it from stdin).")] = None,
    messages: Annotated[str | None, typer.Option(
        "--messages", "-m", metavar="FILE.json|-",
        help="Chat messages to store as turns: a JSON list of {role, content, name, time, id, image_caption} "
             "objects, or JSON lines ('-' for stdin). A message may carry its own session_id.")] = None,
    session: Annotated[str | None, typer.Option("--session", "-s", metavar="SESSION", help="Session id.")] = None,
    kind: Annotated[MemoryKind | None, typer.Option(metavar="KIND", help="Kind of a TEXT memory (default: fact).")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", metavar="TAG", help="Tag (repeatable).")] = None,
    time: Annotated[str | None, typer.Option(metavar="TIME", help="When a TEXT memory happened (ISO date or date-time).")] = None,
    db: DbOption = None, as_json: JsonFlag = False,
) -> None:
    """Add one text memory, or chat messages as turn memories."""
    state = _state(ctx, db, as_json)
    if (text is None) == (messages is None):
        raise typer.BadParameter("give either TEXT or --messages FILE", param_hint="TEXT / --messages")
    tags = list(tag or [])
    when = parse_time(time, "--time")
    if messages is not None:
        if kind is not None or when is not None:
            raise typer.BadParameter("--kind and --time apply to TEXT; messages are turns and carry their own "
                                     "'time'", param_hint="--kind / --time")
        raw, source_name = read_source(messages, "messages file", "--messages")
        parsed = parse_messages(raw, source_name)
        result = _add_messages(state, cube, parsed, session, tags)
    else:
        assert text is not None
        body = sys.stdin.read() if text == "-" else text
        with _mos(state) as mos:
            result = mos.get_cube(cube).add(text=body, session_id=session, kind=kind or MemoryKind.FACT, tags=tags,
                                            time=when)
    if state.json:
        _emit_json(result)
        return
    out = _out()
    dup = f" ({len(result.duplicates)} already stored, skipped)" if result.duplicates else ""
    if len(result.added) == 1 and text is not None:
        out.print(f"added memory {result.added[0].id} to cube {cube!r}{dup}", markup=False)
    else:
        out.print(f"added {len(result.added):,} memories to cube {cube!r}{dup}", markup=False)
        if 0 < len(result.added) <= 20:
            out.print(render.memories_table(result.added, text_limit=100))


def _combine(into: AddResult, result: AddResult) -> None:
    """Fold one chunk's ``AddResult`` into the total: writes, duplicates, decisions, jobs and the
    extraction report (calls and facts summed, batches and rejections kept, the worst status)."""
    into.added.extend(result.added)
    into.duplicates.extend(result.duplicates)
    into.updated.extend(result.updated)
    into.decisions.extend(result.decisions)
    into.jobs.extend(result.jobs)
    if result.extraction is None:
        return
    from memkern.models import ExtractionReport
    from memkern.reader.llm_reader import merge_report

    if into.extraction is None:
        into.extraction = ExtractionReport(model=result.extraction.model)
    merge_report(into.extraction, result.extraction)


def _add_messages(state: State, cube_name: str, messages: list[dict[str, Any]], session: str | None,
                  tags: list[str]) -> AddResult:
    total = len(messages)
    combined = AddResult()
    with _mos(state) as mos:
        cube = mos.get_cube(cube_name)
        chunks = batches(messages, session)
        if total <= BATCH:
            for session_id, chunk in chunks:
                _combine(combined, cube.add(messages=chunk, session_id=session_id, tags=tags))
            return combined
        with _progress() as progress:
            task = progress.add_task(f"adding to {cube.name}", total=total)
            for session_id, chunk in chunks:
                _combine(combined, cube.add(messages=chunk, session_id=session_id, tags=tags))
                progress.advance(task, len(chunk))
    return combined


_RECIPE_HELP = "Search recipe: hybrid (default), lexical, dense or recent."


def _check_recipe(recipe: str | None) -> str | None:
    from memkern.retrieval.config import RECIPES

    if recipe is not None and recipe not in RECIPES:
        raise typer.BadParameter(f"unknown recipe {recipe!r}; known: {', '.join(sorted(RECIPES))}",
                                 param_hint="--recipe")
    return recipe


@app.command()
def search(
    ctx: typer.Context,
    cube: Annotated[str, typer.Argument(metavar="CUBE", help="Cube name or id.")],
    query: Annotated[str, typer.Argument(metavar="QUERY", help="What to look for, in words.")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", metavar="N", help="How many hits.", min=1)] = 5,
    session: Annotated[list[str] | None, typer.Option("--session", "-s", metavar="SESSION", help="Only these sessions (repeatable).")] = None,
    kind: Annotated[list[MemoryKind] | None, typer.Option(metavar="KIND", help="Only these kinds (repeatable): turn, fact, event, preference, summary, document.")] = None,
    since: Annotated[str | None, typer.Option(metavar="TIME", help="Only memories from this time on (ISO date or date-time).")] = None,
    until: Annotated[str | None, typer.Option(metavar="TIME", help="Only memories up to this time (ISO date or date-time).")] = None,
    speaker: Annotated[str | None, typer.Option(metavar="NAME", help="Only what this speaker said.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", metavar="TAG", help="Only memories with this tag (repeatable).")] = None,
    recipe: Annotated[str | None, typer.Option(metavar="NAME", help=_RECIPE_HELP)] = None,
    db: DbOption = None, as_json: JsonFlag = False,
) -> None:
    """Search a cube: the best memories for QUERY, with each score's parts."""
    state = _state(ctx, db, as_json)
    filters: dict[str, Any] = {"since": parse_time(since, "--since"), "until": parse_time(until, "--until")}
    if session:
        filters["session_id"] = session
    if kind:
        filters["kind"] = kind
    if speaker:
        filters["speaker"] = speaker
    if tag:
        filters["tags"] = tag
    with _mos(state) as mos:
        hits = mos.get_cube(cube).search(query, top_k=top_k, filters=filters, config=_check_recipe(recipe))
    if state.json:
        _emit_json(hits)
        return
    out = _out()
    if not hits:
        out.print(f"no memories in {cube!r} match", markup=False)
        return
    out.print(render.hits_table(hits, title=f"{len(hits)} hit(s) for {query!r} in {cube!r}"))


@app.command()
def get(
    ctx: typer.Context,
    cube: Annotated[str, typer.Argument(metavar="CUBE", help="Cube name or id.")],
    memory_id: Annotated[str, typer.Argument(metavar="ID", help="Memory id.")],
    db: DbOption = None, as_json: JsonFlag = False,
) -> None:
    """Show one memory, every field."""
    state = _state(ctx, db, as_json)
    with _mos(state) as mos:
        item = mos.get_cube(cube).get(memory_id)
    if state.json:
        _emit_json(item)
    else:
        _out().print(render.memory_detail(item))


@app.command("list")
def list_(
    ctx: typer.Context,
    cube: Annotated[str, typer.Argument(metavar="CUBE", help="Cube name or id.")],
    limit: Annotated[int, typer.Option(metavar="N", help="At most this many (0: all).", min=0)] = 50,
    offset: Annotated[int, typer.Option(metavar="N", help="Skip this many first.", min=0)] = 0,
    session: Annotated[list[str] | None, typer.Option("--session", "-s", metavar="SESSION", help="Only these sessions (repeatable).")] = None,
    kind: Annotated[list[MemoryKind] | None, typer.Option(metavar="KIND", help="Only these kinds (repeatable): turn, fact, event, preference, summary, document.")] = None,
    db: DbOption = None, as_json: JsonFlag = False,
) -> None:
    """List a cube's current memories, oldest first."""
    state = _state(ctx, db, as_json)
    filters: dict[str, Any] = {}
    if session:
        filters["session_id"] = session
    if kind:
        filters["kind"] = kind
    with _mos(state) as mos:
        items = mos.get_cube(cube).get_all(filters, limit=limit or None, offset=offset)
    if state.json:
        _emit_json(items)
        return
    out = _out()
    if not items:
        out.print(f"no memories in {cube!r}" + (" at this offset" if offset else ""), markup=False)
        return
    out.print(render.memories_table(items))
    if limit and len(items) == limit:
        out.print(f"showing {len(items)} from offset {offset}; more with --offset {offset + limit} "
                  "(or --limit 0 for all)", style="dim", markup=False)


@app.command()
def update(
    ctx: typer.Context,
    cube: Annotated[str, typer.Argument(metavar="CUBE", help="Cube name or id.")],
    memory_id: Annotated[str, typer.Argument(metavar="ID", help="Memory id.")],
    text: Annotated[str, typer.Argument(metavar="TEXT", help="The new text.")],
    reason: Annotated[str | None, typer.Option(metavar="TEXT", help="Why (kept in history and the log).")] = None,
    valid_from: Annotated[str | None, typer.Option(
        metavar="TIME", help="The world changed at this time (ISO); without it the update is a correction.")] = None,
    db: DbOption = None, as_json: JsonFlag = False,
) -> None:
    """Write a new version of a memory; the old one stays in its history."""
    state = _state(ctx, db, as_json)
    with _mos(state) as mos:
        item = mos.get_cube(cube).update(memory_id, text, reason=reason,
                                         valid_from=parse_time(valid_from, "--valid-from"))
    if state.json:
        _emit_json(item)
    else:
        _out().print(f"updated memory {item.id} to version {item.version}", markup=False)


@app.command()
def history(
    ctx: typer.Context,
    cube: Annotated[str, typer.Argument(metavar="CUBE", help="Cube name or id.")],
    memory_id: Annotated[str, typer.Argument(metavar="ID", help="Memory id.")],
    db: DbOption = None, as_json: JsonFlag = False,
) -> None:
    """Every version of a memory, oldest first."""
    state = _state(ctx, db, as_json)
    with _mos(state) as mos:
        items = mos.get_cube(cube).history(memory_id)
    if state.json:
        _emit_json(items)
    else:
        _out().print(render.versions_table(items, title=f"history of {memory_id}"))


@app.command()
def delete(
    ctx: typer.Context,
    cube: Annotated[str, typer.Argument(metavar="CUBE", help="Cube name or id.")],
    memory_id: Annotated[str, typer.Argument(metavar="ID", help="Memory id.")],
    reason: Annotated[str | None, typer.Option(metavar="TEXT", help="Why (kept in the log, which holds no text).")] = None,
    db: DbOption = None, as_json: JsonFlag = False,
) -> None:
    """Delete a memory with all its versions. Final; the log keeps its id."""
    state = _state(ctx, db, as_json)
    with _mos(state) as mos:
        mos.get_cube(cube).delete(memory_id, reason=reason)
    if state.json:
        _emit_json({"deleted": memory_id, "cube": cube})
    else:
        _out().print(f"deleted memory {memory_id}", markup=False)


@app.command()
def log(
    ctx: typer.Context,
    cube: Annotated[str, typer.Argument(metavar="CUBE", help="Cube name or id.")],
    memory_id: Annotated[str | None, typer.Argument(metavar="ID", help="Only this memory's operations.")] = None,
    limit: Annotated[int | None, typer.Option(metavar="N", help="At most this many.", min=1)] = None,
    db: DbOption = None, as_json: JsonFlag = False,
) -> None:
    """The cube's operation log (ids, never text), oldest first."""
    state = _state(ctx, db, as_json)
    with _mos(state) as mos:
        ops = mos.get_cube(cube).operations(memory_id, limit)
    if state.json:
        _emit_json(ops)
    elif not ops:
        _out().print("no operations", markup=False)
    else:
        _out().print(render.operations_table(ops))


@app.command()
def audit(
    ctx: typer.Context,
    cube: Annotated[str | None, typer.Option("--cube", metavar="CUBE", help="Only this cube (name or id).")] = None,
    user: Annotated[str | None, typer.Option("--user", metavar="ID", help="Only this user id.")] = None,
    limit: Annotated[int, typer.Option(metavar="N", help="At most this many, newest first.", min=1)] = 50,
    db: DbOption = None, as_json: JsonFlag = False,
) -> None:
    """The audit log (who, when, operation, cube, memory ids, result; never text or keys)."""
    state = _state(ctx, db, as_json)
    with _mos(state) as mos:
        entries = mos.audit(cube=cube, user=user, limit=limit)
    if state.json:
        _emit_json(entries)
    elif not entries:
        _out().print("no audit entries", markup=False)
    else:
        for e in entries:
            ids = ",".join(e.item_ids[:5]) + (f",+{len(e.item_ids) - 5}" if len(e.item_ids) > 5 else "")
            typer.echo(f"{e.seq}\t{e.at.isoformat(timespec='seconds')}\t{e.user_id or '-'}\t{e.operation}\t"
                       f"{e.cube_id or '-'}\t{e.result.value}\t{ids or '-'}\t{e.detail or ''}")


# ------------------------------------------------------------------------------------------ chat


@app.command()
def chat(
    ctx: typer.Context,
    cube: Annotated[str, typer.Argument(metavar="CUBE", help="Cube name or id.")],
    query: Annotated[str, typer.Argument(metavar="QUERY", help="The question, in words.")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", metavar="N", help="Memories to answer from.", min=1)] = 8,
    write_back: Annotated[bool, typer.Option("--write-back", help="Store the question and the answer as two turns.")] = False,
    session: Annotated[str | None, typer.Option("--session", "-s", metavar="SESSION",
                                                help="Session for --write-back (default: chat-YYYY-MM-DD).")] = None,
    db: DbOption = None, as_json: JsonFlag = False,
) -> None:
    """Answer QUERY from the cube's memories with the LLM that MEMKERN_LLM names."""
    from memkern.chat import NO_LLM_MESSAGE, answer
    from memkern.errors import InvalidInputError
    from memkern.llm import llm_from_env

    state = _state(ctx, db, as_json)
    if session is not None and not write_back:
        raise typer.BadParameter("--session is where --write-back stores the exchange; give --write-back too",
                                 param_hint="--session")
    llm = llm_from_env()
    if llm is None:
        raise InvalidInputError(NO_LLM_MESSAGE)
    try:
        with _mos(state) as mos:
            result = answer(mos.get_cube(cube), llm, query, top_k=top_k, write_back=write_back, session_id=session)
    finally:
        close = getattr(llm, "close", None)
        if callable(close):
            close()
    if state.json:
        _emit_json(result)
        return
    out = _out()
    out.print(result.answer, markup=False)
    if result.hits:
        out.print(render.hits_table(result.hits, title=f"{len(result.hits)} memories used"))
    usage = result.usage
    note = f"model {result.model}, {usage.calls} call(s), {usage.prompt_tokens}+{usage.completion_tokens} tokens"
    if result.stored:
        note += f"; stored the exchange in session {result.session_id!r}"
    out.print(note, style="dim", markup=False)


# ----------------------------------------------------------------------------------------- serve


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(metavar="HOST", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="TCP port.", min=1, max=65535)] = 8765,
    db: DbOption = None,
    store: StoreOption = None,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="No API keys: full access for every local process "
                                                           "(loopback addresses only).")] = False,
) -> None:
    """Serve the REST API (OpenAPI at /openapi.json, docs at /docs) until interrupted. Needs memkern[server].

    Every request needs an API key (memkern user create / memkern key create) unless --no-auth."""
    try:
        from memkern.server import serve as run_server
    except ImportError as exc:
        typer.echo(f"error: memkern serve needs the server extra: pip install 'memkern[server]' ({exc})", err=True)
        raise typer.Exit(1) from None
    run_server(host=host, port=port, db=_use_store(_state(ctx, db), store).db, auth="off" if no_auth else "required")


# ------------------------------------------------------------------------------------ users, keys


@user_app.command("create")
def user_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The user's name.")],
    role: Annotated[str, typer.Option(metavar="admin|user", help="Role in the whole store.")] = "user",
    user_id: Annotated[str | None, typer.Option("--id", metavar="ID", help="User id (default: random).")] = None,
    db: DbOption = None, as_json: JsonFlag = False,
) -> None:
    """Create a user (the first admin, for a server that needs API keys)."""
    state = _state(ctx, db, as_json)
    with _mos(state) as mos:
        user = mos.create_user(name, role, user_id=user_id)
    if state.json:
        _emit_json(user)
    else:
        typer.echo(f"created {user.role.value} {user.name!r} with id {user.id}")


@user_app.command("list")
def user_list(ctx: typer.Context, db: DbOption = None, as_json: JsonFlag = False) -> None:
    """Every user."""
    state = _state(ctx, db, as_json)
    with _mos(state) as mos:
        users = mos.list_users()
    if state.json:
        _emit_json(users)
    else:
        for u in users:
            typer.echo(f"{u.id}\t{u.role.value}\t{u.name}")


@key_app.command("create")
def key_create(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(metavar="USER", help="User id.")],
    db: DbOption = None, as_json: JsonFlag = False,
) -> None:
    """A new API key for USER, printed this once (only its hash is stored)."""
    state = _state(ctx, db, as_json)
    with _mos(state) as mos:
        key = mos.create_api_key(user)
    if state.json:
        _emit_json({"key": key, "prefix": key.split("_")[1], "user_id": user})
    else:
        typer.echo(key)
        typer.echo("store it now: it is not shown again", err=True)


@key_app.command("revoke")
def key_revoke(
    ctx: typer.Context,
    prefix: Annotated[str, typer.Argument(metavar="PREFIX", help="The key, or its prefix (12 hex digits after mk_).")],
    db: DbOption = None,
) -> None:
    """Revoke an API key."""
    with _mos(_state(ctx, db)) as mos:
        mos.revoke_api_key(prefix)
    typer.echo("revoked")


# ------------------------------------------------------------------------------------------ demo


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

    state = _state(ctx, db, as_json)
    run_demo(state.db, cube, as_json=state.json)


# ------------------------------------------------------------------------------------------- mcp


@app.command("mcp")
def mcp_(
    ctx: typer.Context,
    transport: Annotated[str, typer.Option(metavar="stdio|http", help="stdio (default), or streamable HTTP.")] = "stdio",
    host: Annotated[str, typer.Option(metavar="HOST", help="HTTP address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="HTTP port.", min=1, max=65535)] = 8766,
    db: DbOption = None,
    user: Annotated[str | None, typer.Option("--user", metavar="ID", help="stdio: run the tools as this user "
                                                                          "(default: unrestricted).")] = None,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="http: no API keys (loopback addresses only).")] = False,
) -> None:
    """Serve the store to MCP clients (agents), over stdio or streamable HTTP at /mcp. Needs memkern[mcp].

    HTTP needs an API key (Authorization: Bearer) unless --no-auth; stdio runs as --user or unrestricted."""
    if transport not in ("stdio", "http"):
        raise typer.BadParameter(f"unknown transport {transport!r}; use stdio or http", param_hint="--transport")
    try:
        from memkern.mcp_server import serve
    except ImportError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    serve(_use_store(_state(ctx, db)).db, transport=transport, host=host, port=port,  # type: ignore[arg-type]
          user=user, auth="off" if no_auth else "required")


# ----------------------------------------------------------------------------------------- bench


@bench_app.command("locomo")
def bench_locomo(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option(metavar="PATH", help="The LoCoMo JSON file (locomo10.json).", dir_okay=False)],
    k: Annotated[str, typer.Option("--k", metavar="K,K,...", help="Cut-offs, comma-separated.")] = "1,3,5,10,25",
    out: Annotated[Path | None, typer.Option("--json", metavar="OUT", dir_okay=False,
                                                help="Also write the full result as JSON here.")] = None,
    recipe: Annotated[str | None, typer.Option(metavar="NAME", help=_RECIPE_HELP)] = None,
    answer: Annotated[bool, typer.Option("--answer", help="Also answer each question with the MEMKERN_LLM model "
                                                          "and score it (LoCoMo F1).")] = False,
    judge_model: Annotated[str | None, typer.Option(metavar="M", help="Judge model for J (with --answer).")] = None,
    judge_base_url: Annotated[str | None, typer.Option(
        metavar="U", help="Judge endpoint, OpenAI-compatible (default: MEMKERN_LLM_BASE_URL).")] = None,
    limit_questions: Annotated[int | None, typer.Option(metavar="N", min=1,
                                                        help="Answer only the first N questions.")] = None,
    extract: Annotated[bool, typer.Option("--extract", help="Ingest with the MEMKERN_LLM model (fact extraction); "
                                                            "reports its cost and extraction quality.")] = False,
) -> None:
    """Retrieval quality on LoCoMo: memkern vs a BM25 baseline, same data, same metrics."""
    from memkern.bench.locomo import format_report, run_locomo
    from memkern.bench.qa import make_judge

    state = _state(ctx)
    ks = parse_ks(k)
    if not data.is_file():
        raise typer.BadParameter(f"no such file: {str(data)!r}", param_hint="--data")
    if not answer and (judge_model or judge_base_url or limit_questions):
        raise typer.BadParameter("--judge-model, --judge-base-url and --limit-questions apply to --answer",
                                 param_hint="--answer")
    llm = None
    if answer or extract:
        from memkern.chat import NO_LLM_MESSAGE
        from memkern.errors import InvalidInputError
        from memkern.llm import llm_from_env

        llm = llm_from_env()
        if llm is None:
            raise InvalidInputError(NO_LLM_MESSAGE.replace("chat needs", "--answer and --extract need"))
    judge = make_judge(judge_model, judge_base_url) if answer else None
    with _progress() as progress:
        on_progress = _labelled_tasks(progress)
        result = run_locomo(data, ks=ks, progress=on_progress, search_config=_check_recipe(recipe),
                            answer_llm=llm if answer else None, judge_llm=judge, limit_questions=limit_questions,
                            ingest_llm=llm if extract else None)
    _print_report(state, result, out, format_report)


@bench_app.command("scale")
def bench_scale(
    ctx: typer.Context,
    items: Annotated[int, typer.Option(metavar="N", help="Conversation turns to ingest.", min=1)] = 100_000,
    queries: Annotated[int, typer.Option(metavar="N", help="Questions to time per recipe.", min=1)] = 200,
    seed: Annotated[int, typer.Option(metavar="N", help="Seed of the synthetic conversations.")] = 7,
    out: Annotated[Path | None, typer.Option("--json", metavar="OUT", dir_okay=False,
                                                help="Also write the result as JSON here.")] = None,
) -> None:
    """Ingest and search speed on synthetic conversations, in a temporary store."""
    from memkern.bench.scale import format_report, run_scale

    state = _state(ctx)
    with _progress() as progress:
        on_progress = _labelled_tasks(progress)
        result = run_scale(items=items, queries=queries, seed=seed, progress=on_progress)
    _print_report(state, result, out, format_report)


@bench_app.command("load")
def bench_load(
    ctx: typer.Context,
    store: Annotated[str | None, typer.Option(
        "--store", metavar="URL", help="Store to load: a SQLite path or postgresql://USER@HOST/DB[?schema=NAME] "
                                       "(default: $MEMKERN_STORE, else a temporary SQLite file). A fresh cube is "
                                       "created and deleted at the end.")] = None,
    clients: Annotated[int, typer.Option(metavar="N", help="Concurrent client processes.", min=1, max=64)] = 8,
    writes: Annotated[int, typer.Option(metavar="N", help="Writes per client.", min=1, max=100_000)] = 1000,
    search_every: Annotated[int, typer.Option(metavar="N", help="A search after every N writes (0: none).",
                                              min=0)] = 5,
    shared_every: Annotated[int, typer.Option(metavar="N", help="Every N-th write is one message all clients "
                                                               "send (dedup; 0: none).", min=0)] = 10,
    kill_at: Annotated[int | None, typer.Option(metavar="N", min=1, help="SIGKILL the server after N acknowledged "
                                                "writes, restart it, and check every acknowledged write.")] = None,
    nodes: Annotated[int, typer.Option(metavar="N", help="Server processes on the same store.", min=1, max=8)] = 1,
    timeout: Annotated[float, typer.Option(metavar="S", help="Stop everything after this many seconds.",
                                           min=1)] = 900.0,
    out: Annotated[Path | None, typer.Option("--json", metavar="OUT", dir_okay=False,
                                             help="Also write the result as JSON here.")] = None,
) -> None:
    """Concurrent clients against real `memkern serve` processes: throughput, latency, crash safety."""
    from memkern.bench.load import format_report, run_load

    state = _state(ctx)
    url = store if store is not None else state.store
    if url is None and state.db is not None:
        url = str(state.db)
    if url is None:
        url = os.environ.get("MEMKERN_STORE") or None
    with _progress(transient=True) as progress:
        result = run_load(url, clients=clients, writes=writes, search_every=search_every, shared_every=shared_every,
                          kill_at=kill_at, nodes=nodes, timeout_s=timeout,
                          progress=_labelled_tasks(progress))
    _print_report(state, result, out, format_report)
    if not result["ok"]:
        raise typer.Exit(1)


@bench_app.command("activation")
def bench_activation(
    ctx: typer.Context,
    tokens: Annotated[str, typer.Option("--tokens", metavar="N,N,...",
                                        help="Memory block sizes in tokens.")] = "512,1024,2048",
    reps: Annotated[int, typer.Option(metavar="N", min=1, help="Repetitions each way (median reported).")] = 3,
    max_new: Annotated[int, typer.Option("--max-new-tokens", metavar="N", min=1,
                                         help="Greedy tokens generated (compared both ways).")] = 16,
    data: Annotated[Path | None, typer.Option("--data", metavar="LOCOMO.json", dir_okay=False,
                                              help="Build blocks from LoCoMo turns instead of the demo.")] = None,
    out: Annotated[Path | None, typer.Option("--json", metavar="OUT", dir_okay=False,
                                                help="Also write the result as JSON here.")] = None,
) -> None:
    """Activation memory: time to first token with the restored KV cache vs reading the block (local model)."""
    from memkern.bench.activation import format_report, run_activation_bench

    state = _state(ctx)
    sizes = parse_ks(tokens)
    if any(size < 256 for size in sizes):
        raise typer.BadParameter("block sizes start at 256 tokens", param_hint="--tokens")
    if data is not None and not data.is_file():
        raise typer.BadParameter(f"no such file: {str(data)!r}", param_hint="--data")
    result = run_activation_bench(sizes, reps=reps, max_new_tokens=max_new, data=data,
                                  progress=lambda msg: typer.echo(msg, err=True))
    _print_report(state, result, out, format_report)


@bench_app.command("parametric")
def bench_parametric(
    ctx: typer.Context,
    facts: Annotated[int, typer.Option(metavar="N", min=1, max=30, help="Synthetic facts to distil (at most 30).")] = 30,
    epochs: Annotated[int, typer.Option(metavar="N", min=1, help="Training epochs.")] = 8,
    rank: Annotated[int, typer.Option(metavar="N", min=1, max=64, help="LoRA rank.")] = 8,
    lr: Annotated[float, typer.Option("--lr", metavar="X", help="Learning rate.")] = 2e-3,
    seed: Annotated[int, typer.Option(metavar="N", help="Training seed.")] = 0,
    out: Annotated[Path | None, typer.Option("--json", metavar="OUT", dir_okay=False,
                                                help="Also write the result as JSON here.")] = None,
) -> None:
    """Parametric memory: closed-book accuracy with and without a LoRA adapter distilled from synthetic facts."""
    from memkern.bench.parametric import format_report, run_parametric

    state = _state(ctx)
    with _progress() as progress:
        on_progress = _labelled_tasks(progress)
        result = run_parametric(facts=facts, epochs=epochs, rank=rank, learning_rate=lr, seed=seed,
                                progress=on_progress)
    _print_report(state, result, out, format_report)


@bench_app.command("guard")
def bench_guard(
    ctx: typer.Context,
    data: Annotated[Path | None, typer.Option("--data", metavar="LOCOMO.json", dir_okay=False,
                                              help="LoCoMo file whose turns measure false positives.")] = None,
    injections: Annotated[Path | None, typer.Option("--injections", metavar="FILE.jsonl", dir_okay=False,
                                                    help="Injection set (default: the bundled one).")] = None,
) -> None:
    """Poisoning guard: catch rate on injected memories, false positives on LoCoMo turns."""
    from memkern.governance.guard_eval import evaluate, format_report

    state = _state(ctx)
    result = evaluate(data, injections)
    if state.json:
        _emit_json(result)
    else:
        typer.echo(format_report(result))


# ------------------------------------------------------------------------------------ scheduler

scheduler_app = typer.Typer(help="The memory scheduler: run queued jobs, show the queue, enqueue, retry.",
                            no_args_is_help=True)
app.add_typer(scheduler_app, name="scheduler")


def _scheduler_policy(path: Path | None) -> Any:
    from memkern.errors import InvalidInputError
    from memkern.scheduler import SchedulerPolicy

    if path is None:
        return None
    try:
        return SchedulerPolicy.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"cannot read the scheduler policy {str(path)!r}: {exc}") from None


PolicyOption = Annotated[Path | None, typer.Option("--policy", metavar="FILE.json", dir_okay=False,
                                                   help="SchedulerPolicy as JSON (docs/scheduler.md).")]


@scheduler_app.command("run")
def scheduler_run(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Run the jobs that are due, then exit.")] = False,
    cube: Annotated[str | None, typer.Option("--cube", metavar="CUBE", help="Only this cube's jobs.")] = None,
    workers: Annotated[int | None, typer.Option(metavar="N", min=1, max=64, help="Worker threads.")] = None,
    maintenance: Annotated[float | None, typer.Option(
        metavar="SECONDS", help="Also queue organize/promote/demote for every cube this often.")] = None,
    policy: PolicyOption = None, db: DbOption = None, as_json: JsonFlag = False,
) -> None:
    """Run queued jobs: until none is due (--once), or until interrupted."""
    import threading

    from memkern.scheduler import Scheduler

    state = _state(ctx, db, as_json)
    with _mos(state) as mos:
        rules = _scheduler_policy(policy)
        if maintenance is not None:
            rules = (rules or mos.scheduler.policy).model_copy(update={"maintenance_interval_s": maintenance})
        scheduler = Scheduler(mos, policy=rules) if rules is not None else mos.scheduler
        cube_id = mos.get_cube(cube).id if cube else None
        if once:
            ran = scheduler.run(cube_id, until_idle=True)
        else:
            stop = threading.Event()
            scheduler.start(workers, cube_id)
            try:
                while not stop.wait(1.0):
                    pass
            except KeyboardInterrupt:
                pass
            finally:
                scheduler.stop()
            ran = -1
        status = scheduler.status(cube_id)
    if state.json:
        _emit_json({"ran": ran, "status": status})
    else:
        if ran >= 0:
            typer.echo(f"ran {ran} job(s)")
        typer.echo(" ".join(f"{k}={v}" for k, v in status.counts.items()))


@scheduler_app.command("status")
def scheduler_status(
    ctx: typer.Context,
    cube: Annotated[str | None, typer.Option("--cube", metavar="CUBE", help="Only this cube's jobs.")] = None,
    db: DbOption = None, as_json: JsonFlag = False,
) -> None:
    """Jobs by status and type, running jobs and dead letters."""
    state = _state(ctx, db, as_json)
    with _mos(state) as mos:
        status = mos.scheduler.status(mos.get_cube(cube).id if cube else None)
    if state.json:
        _emit_json(status)
        return
    typer.echo(" ".join(f"{k}={v}" for k, v in status.counts.items()))
    for job_type, counts in sorted(status.by_type.items()):
        typer.echo(f"  {job_type}: " + " ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    if status.oldest_pending_at:
        typer.echo(f"oldest pending since {status.oldest_pending_at.isoformat(timespec='seconds')}")
    for job in status.running:
        typer.echo(f"running\t{job.id}\t{job.type}\t{job.cube_id or '-'}\t{job.lease_owner}\t"
                   f"attempt {job.attempts}/{job.max_attempts}")
    for job in status.dead:
        typer.echo(f"dead\t{job.id}\t{job.type}\t{job.cube_id or '-'}\t{job.last_error or ''}")
    typer.echo("hooks: " + "; ".join(f"{k}={','.join(v) or '-'}" for k, v in status.hooks.items()))


@scheduler_app.command("enqueue")
def scheduler_enqueue(
    ctx: typer.Context,
    job_type: Annotated[str, typer.Argument(metavar="TYPE", help="extract, organize, promote, distil, demote, rebuild.")],
    cube: Annotated[str | None, typer.Option("--cube", metavar="CUBE", help="The job's cube.")] = None,
    payload: Annotated[str | None, typer.Option(metavar="JSON", help="The job's payload (a JSON object).")] = None,
    db: DbOption = None, as_json: JsonFlag = False,
) -> None:
    """Queue a job; it runs when a worker (``memkern scheduler run``) gets to it."""
    import json

    from memkern.errors import InvalidInputError

    try:
        body = json.loads(payload) if payload else {}
    except ValueError as exc:
        raise InvalidInputError(f"--payload is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidInputError("--payload must be a JSON object")
    state = _state(ctx, db, as_json)
    with _mos(state) as mos:
        job = mos.scheduler.enqueue(job_type, mos.get_cube(cube) if cube else None, body)
    if state.json:
        _emit_json(job)
    else:
        typer.echo(f"queued {job.type} job {job.id}")


@scheduler_app.command("retry")
def scheduler_retry(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="JOB", help="Id of a dead or cancelled job.")],
    db: DbOption = None, as_json: JsonFlag = False,
) -> None:
    """Bring a dead-lettered job back to the queue."""
    state = _state(ctx, db, as_json)
    with _mos(state) as mos:
        job = mos.scheduler.retry(job_id)
    if state.json:
        _emit_json(job)
    else:
        typer.echo(f"requeued {job.type} job {job.id}")


# ------------------------------------------------------------------------------------ parametric
activation_app = typer.Typer(help="Activation memory: the cube's memory block pre-read by the local model "
                                    "(MEMKERN_LLM=local) and kept as its KV cache.", no_args_is_help=True)
app.add_typer(activation_app, name="activation")


def _print_activation(state: State, found: Any) -> None:
    if state.json:
        _emit_json(found.to_dict())
        return
    info = found.to_dict()
    if found.state == "missing":
        typer.echo("no activation")
        return
    typer.echo(f"{found.state}: {info['memories']} memories, {info['n_tokens']} tokens, {info['kv_bytes'] / 1e6:.1f} MB "
               f"KV state, model {info['model']}, built {info['built_at']}")
    for reason in found.reasons:
        typer.echo(f"  stale: {reason}")


@activation_app.command("build")
def activation_build(
    ctx: typer.Context,
    cube: Annotated[str, typer.Argument(metavar="CUBE", help="Cube name or id.")],
    tokens: Annotated[int, typer.Option("--tokens", metavar="N", min=64,
                                        help="Token budget of the memory block.")] = 1024,
    db: DbOption = None, as_json: JsonFlag = False,
) -> None:
    """Render the cube's profile and hottest memories, let the local model read them once, keep the KV state."""
    from memkern.memory import activation

    state = _state(ctx, db, as_json)
    with _mos(state) as mos:
        opened = mos.get_cube(cube)
        activation.activate(opened, max_tokens=tokens)
        _print_activation(state, activation.status(opened))


@activation_app.command("status")
def activation_status(
    ctx: typer.Context,
    cube: Annotated[str, typer.Argument(metavar="CUBE", help="Cube name or id.")],
    db: DbOption = None, as_json: JsonFlag = False,
) -> None:
    """Fresh, stale (and why) or missing; a stale activation is never used."""
    from memkern.memory import activation

    state = _state(ctx, db, as_json)
    with _mos(state) as mos:
        _print_activation(state, activation.status(mos.get_cube(cube)))


@activation_app.command("drop")
def activation_drop(
    ctx: typer.Context,
    cube: Annotated[str, typer.Argument(metavar="CUBE", help="Cube name or id.")],
    db: DbOption = None,
) -> None:
    """Remove the cube's activation (KV state and prefix files)."""
    from memkern.memory import activation

    state = _state(ctx, db)
    with _mos(state) as mos:
        removed = activation.drop(mos.get_cube(cube))
    typer.echo("removed the activation" if removed else "no activation")


parametric_app = typer.Typer(help="Parametric memory: distil a cube into a LoRA adapter and ask it closed-book "
                                  "(extra memkern[lora]).", no_args_is_help=True)
app.add_typer(parametric_app, name="parametric")


@parametric_app.command("distil")
def parametric_distil(
    ctx: typer.Context,
    cube: Annotated[str, typer.Argument(metavar="CUBE", help="Cube name or id.")],
    max_facts: Annotated[int, typer.Option("--max-facts", metavar="N", min=1, help="Memories to distil.")] = 64,
    epochs: Annotated[int, typer.Option(metavar="N", min=1, help="Training epochs.")] = 8,
    rank: Annotated[int, typer.Option(metavar="N", min=1, max=64, help="LoRA rank.")] = 8,
    db: DbOption = None, as_json: JsonFlag = False,
) -> None:
    """Train a LoRA adapter on the cube's facts (CPU; minutes) and attach it to the cube."""
    from dataclasses import asdict

    from memkern.memory.parametric import distil

    state = _state(ctx, db, as_json)
    with _mos(state) as mos:
        info = distil(mos.get_cube(cube), max_facts=max_facts, epochs=epochs, rank=rank)
    if state.json:
        _emit_json(asdict(info))
        return
    m = info.metrics
    typer.echo(f"adapter {info.adapter_id}: {len(info.sources)} memories, {m['examples']} QA pairs, "
               f"{m['train_seconds']} s training, loss {m['epoch_loss'][0]} -> {m['epoch_loss'][-1]}, "
               f"{info.adapter_size / 1e6:.1f} MB at {info.path}")


@parametric_app.command("ask")
def parametric_ask(
    ctx: typer.Context,
    cube: Annotated[str, typer.Argument(metavar="CUBE", help="Cube name or id.")],
    query: Annotated[str, typer.Argument(metavar="QUERY", help="The question, in words.")],
    no_adapter: Annotated[bool, typer.Option("--no-adapter", help="Ask the base model alone (for comparison).")] = False,
    db: DbOption = None, as_json: JsonFlag = False,
) -> None:
    """Answer QUERY closed-book (no retrieval) with the local model and the cube's adapter."""
    from dataclasses import asdict

    from memkern.memory.parametric import chat_with_adapter

    state = _state(ctx, db, as_json)
    with _mos(state) as mos:
        result = chat_with_adapter(mos.get_cube(cube), query, use_adapter=not no_adapter)
    if state.json:
        _emit_json(asdict(result))
    else:
        typer.echo(result.answer)


@parametric_app.command("status")
def parametric_status(
    ctx: typer.Context,
    cube: Annotated[str, typer.Argument(metavar="CUBE", help="Cube name or id.")],
    db: DbOption = None, as_json: JsonFlag = False,
) -> None:
    """Show the cube's adapter (verified) and whether its memories changed since it was distilled."""
    from memkern.memory.parametric import adapter_status

    state = _state(ctx, db, as_json)
    with _mos(state) as mos:
        status = adapter_status(mos.get_cube(cube))
    if state.json:
        _emit_json(status)
    elif status["adapter"] is None:
        typer.echo("no adapter")
    else:
        typer.echo(f"adapter {status['adapter']} (rank {status['rank']}, {status['sources']} memories, "
                   f"{'stale: ' + str(len(status['changed'])) + ' changed' if status['stale'] else 'current'}) "
                   f"at {status['path']}")


@parametric_app.command("forget")
def parametric_forget(
    ctx: typer.Context,
    cube: Annotated[str, typer.Argument(metavar="CUBE", help="Cube name or id.")],
    db: DbOption = None,
) -> None:
    """Remove the cube's adapter (files and reference)."""
    from memkern.memory.parametric import forget_adapter

    state = _state(ctx, db)
    with _mos(state) as mos:
        removed = forget_adapter(mos.get_cube(cube))
    typer.echo("removed the adapter" if removed else "no adapter")


def _write_json(path: Path, value: Any) -> None:
    try:
        path.write_text(render.to_json(value) + "\n", encoding="utf-8")
    except OSError as exc:
        from memkern.errors import InvalidInputError

        raise InvalidInputError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None


def main() -> None:  # pragma: no cover - the console script calls ``app`` directly
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
