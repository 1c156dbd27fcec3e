"""``memkern serve`` (REST) and ``memkern mcp`` (MCP): the store served to other processes.

Both servers bind their routes and tools from the same operation table as the CLI; these
commands only start them, on the store ``--db``/``--store`` names (exported as
``$MEMKERN_STORE`` so that the server's own ``MemOS()`` opens the same one).
"""

from __future__ import annotations

from typing import Annotated

import typer

from memkern.cli.state import DbOption, StoreOption, state_of, use_store

NoAuthFlag = Annotated[bool, typer.Option("--no-auth", help="No API keys: full access for every local process "
                                                           "(loopback addresses only).")]


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(metavar="HOST", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="TCP port.", min=1, max=65535)] = 8765,
    db: DbOption = None,
    store: StoreOption = None,
    no_auth: NoAuthFlag = False,
) -> None:
    """Serve the REST API (OpenAPI at /openapi.json, docs at /docs) until interrupted. Needs memkern[server].

    Every request needs an API key (memkern user create / memkern key create) unless --no-auth."""
    try:
        from memkern.server import serve as run_server
    except ImportError as exc:
        typer.echo(f"error: memkern serve needs the server extra: pip install 'memkern[server]' ({exc})", err=True)
        raise typer.Exit(1) from None
    run_server(host=host, port=port, db=use_store(state_of(ctx, db, store=store)).db,
               auth="off" if no_auth else "required")


def mcp(
    ctx: typer.Context,
    transport: Annotated[str, typer.Option(metavar="stdio|http", help="stdio (default), or streamable HTTP.")] = "stdio",
    host: Annotated[str, typer.Option(metavar="HOST", help="HTTP address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="HTTP port.", min=1, max=65535)] = 8766,
    db: DbOption = None,
    store: StoreOption = None,
    user: Annotated[str | None, typer.Option("--user", metavar="ID", help="stdio: run the tools as this user "
                                                                          "(default: the root --user, else "
                                                                          "unrestricted).")] = None,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="http: no API keys (loopback addresses only).")] = False,
) -> None:
    """Serve the store to MCP clients (agents), over stdio or streamable HTTP at /mcp. Needs memkern[mcp].

    HTTP needs an API key (Authorization: Bearer) unless --no-auth; stdio runs as --user or unrestricted."""
    if transport not in ("stdio", "http"):
        raise typer.BadParameter(f"unknown transport {transport!r}; use stdio or http", param_hint="--transport")
    try:
        from memkern.mcp import serve as run_server
    except ImportError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    state = use_store(state_of(ctx, db, store=store))
    run_server(state.db, transport=transport, host=host, port=port,  # type: ignore[arg-type]
               user=user if user is not None else state.user, auth="off" if no_auth else "required")
