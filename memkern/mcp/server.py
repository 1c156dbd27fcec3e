"""The MCP server: the table's tools and two resources over a ``MemOS``, on stdio or streamable HTTP.

Who the tools run as: over streamable HTTP (``auth="required"``, the default) every request
needs an API key, ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``, the same as the
REST API; the key is checked before the MCP layer sees the request (401 without a valid
one) and every tool call runs as its user. Over stdio the tools run as the local user given
by ``--user`` (``build_server(mos, user=...)``) or, without one, as the unrestricted
embedded default. ``--no-auth`` turns keys off on HTTP, for a loopback address only.

Every tool call and resource read goes through ``Dispatcher.call``, so it is validated,
authorized and audited like a call from any other surface. Without a user, writes are
recorded with the actor ``"mcp"`` unless the call names one.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path
from typing import Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError

from memkern.api.credentials import api_key_from
from memkern.api.table import OPERATIONS
from memkern.errors import AuthenticationError, InvalidInputError, MemkernError, NotFoundError, problem_of
from memkern.mcp.tools import make_tool, tool_operations
from memkern.models import User
from memkern.mos import MemOS
from memkern.version import __version__

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
Auth = Literal["required", "off"]

#: Who the operation log names for a write through MCP when no user is authenticated.
ACTOR = "mcp"
#: Most memories the ``memkern://cubes/{cube}/memories`` resource returns; the ``get_all`` tool pages further.
RESOURCE_MEMORY_LIMIT = 1_000
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8766
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
KEY_REQUIRED = "an API key is required: send 'Authorization: Bearer <key>' (or 'X-API-Key: <key>')"

INSTRUCTIONS = """\
memkern is a long-term memory store. Memories live in named cubes (one per user, agent or \
project). Store what is worth remembering with add (a single fact as text, or chat messages \
as turns), find it again with search (hits carry a score, its parts and the provenance: \
session, speaker, message ids, times), correct it with update (old versions stay in \
history), and remove it with delete. Call list_cubes first if you do not know the cube's \
name; create_cube makes a new one. Tool names and arguments are those of memkern's Python \
API and REST API."""


def build_server(mos: MemOS, *, log_level: LogLevel = "WARNING", auth: Auth = "off",
                 user: User | str | None = None) -> MCPServer:
    """An MCP server exposing ``mos``: a tool per operation of the table that has one, and two resources.

    ``auth="required"``: each call runs as the user of the API key in its HTTP request's
    headers (a call without one is an ``AuthenticationError`` tool error). ``auth="off"``:
    calls run as ``user`` (a ``User`` or user id), or unrestricted.

    The caller owns ``mos`` (and closes it). Calls into memkern are serialised with a
    lock, so the server is safe to run on a multi-threaded transport.
    """
    if auth not in ("required", "off"):
        raise InvalidInputError(f"auth must be 'required' or 'off', not {auth!r}")
    if user is not None and auth == "required":
        raise InvalidInputError("give either auth='required' (users from API keys) or user, not both")
    local = mos.get_user(user.id if isinstance(user, User) else user) if user is not None else None
    lock = threading.Lock()

    def caller(ctx: Context | None) -> User | None:
        """The user a call runs as: the API key's, the local one, or none (unrestricted)."""
        if auth == "off":
            return local
        try:
            headers = ctx.headers if ctx is not None else None
        except ValueError:  # no request (an in-process call): no headers, so no key
            headers = None
        key = api_key_from(headers)
        if key is None:
            raise AuthenticationError(KEY_REQUIRED)
        return mos.authenticate(key)

    def run(ctx: Context | None, name: str, arguments: dict[str, Any]) -> Any:
        with lock:
            who = caller(ctx)
            if who is None and "actor" in OPERATIONS[name].fields and arguments.get("actor") is None:
                arguments = {**arguments, "actor": ACTOR}
            return mos.dispatcher.call(who, name, arguments)

    server: MCPServer = MCPServer("memkern", title="memkern memory", instructions=INSTRUCTIONS,
                                  version=__version__, log_level=log_level,
                                  tools=[make_tool(op, run) for op in tool_operations()])

    def read(ctx: Context | None, name: str, arguments: dict[str, Any]) -> Any:
        """``run`` for a resource: errors as the SDK's resource errors, with the problem's detail."""
        try:
            return run(ctx, name, arguments)
        except MemkernError as exc:
            detail = problem_of(exc)[3]
            raise (ResourceNotFoundError if isinstance(exc, NotFoundError) else ResourceError)(detail) from exc

    @server.resource("memkern://cubes", name="cubes", title="Memory cubes", mime_type="application/json",
                     description="The cubes in the store, as a JSON list.")
    def cubes_resource() -> str:
        # A static resource gets no request context: with API keys it cannot tell who asks.
        if auth == "required":
            raise ResourceError("with API keys, list cubes with the list_cubes tool (this resource cannot see "
                                "the key)")
        return _json([info.model_dump(mode="json") for info in read(None, "list_cubes", {})])

    @server.resource("memkern://cubes/{cube}/memories", name="cube_memories", title="A cube's memories",
                     mime_type="application/json",
                     description=f"A cube's current memories, oldest first, as JSON (at most "
                                 f"{RESOURCE_MEMORY_LIMIT:,}; page further with the get_all tool).")
    def cube_memories_resource(cube: str, ctx: Context) -> str:
        info = read(ctx, "get_cube", {"cube": cube})
        page = read(ctx, "get_all", {"cube": info.id, "limit": RESOURCE_MEMORY_LIMIT})
        return _json({"cube": info.model_dump(mode="json"),
                      "memories": [item.model_dump(mode="json") for item in page.items],
                      "truncated": page.next_offset is not None})

    return server


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


# -- running ------------------------------------------------------------------------------------------
def http_app(mos: MemOS, *, auth: Auth = "required", log_level: LogLevel = "WARNING",
             host: str = DEFAULT_HOST) -> Any:
    """The streamable-HTTP ASGI app (``/mcp``). With ``auth="required"`` a request without a
    valid API key is answered 401 before the MCP layer sees it; each tool call then runs
    as the key's user."""
    app = build_server(mos, log_level=log_level, auth=auth).streamable_http_app(host=host)
    return app if auth == "off" else KeyRequired(app, mos)


class KeyRequired:
    """ASGI middleware: HTTP requests need a valid, unrevoked API key (401 otherwise)."""

    def __init__(self, app: Any, mos: MemOS) -> None:
        self.app = app
        self.mos = mos

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            import anyio.to_thread
            from starlette.datastructures import Headers
            from starlette.responses import JSONResponse

            key = api_key_from(Headers(scope=scope))
            error: AuthenticationError | None = AuthenticationError(KEY_REQUIRED)
            if key is not None:
                try:
                    await anyio.to_thread.run_sync(self.mos.authenticate, key)
                    error = None
                except AuthenticationError as exc:
                    error = exc
            if error is not None:
                status, problem_type, title, detail = problem_of(error)
                response = JSONResponse({"type": problem_type, "title": title, "status": status, "detail": detail,
                                         "error": type(error).__name__}, status_code=status,
                                        media_type="application/problem+json",
                                        headers={"WWW-Authenticate": 'Bearer realm="memkern"'})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def serve(db: str | Path | None = None, *, transport: Literal["stdio", "http"] = "stdio",
          host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, log_level: LogLevel = "WARNING",
          user: str | None = None, auth: Auth = "required") -> None:
    """Run the MCP server on ``db`` (default: MemOS's default store) until the client or a signal stops it.

    ``stdio`` speaks on stdin/stdout (nothing else is written to stdout) and runs the tools
    as ``user`` (a user id) or unrestricted; ``http`` serves streamable HTTP at
    ``http://HOST:PORT/mcp``, where every request needs an API key unless ``auth="off"``
    (loopback addresses only).
    """
    if transport not in ("stdio", "http"):
        raise InvalidInputError(f"unknown transport {transport!r}; use 'stdio' or 'http'")
    if transport == "http" and user is not None:
        raise InvalidInputError("--user is for stdio; over HTTP the API key says who is calling")
    if transport == "http" and auth == "off" and host not in LOOPBACK_HOSTS:
        raise InvalidInputError(f"refusing to serve MCP on {host} without authentication: --no-auth is for a "
                                f"loopback address only")
    with MemOS(db) as mos:
        try:
            if transport == "stdio":
                build_server(mos, log_level=log_level, user=user).run("stdio")
                return
            import uvicorn

            print(f"memkern MCP server (streamable HTTP) on http://{host}:{port}/mcp", file=sys.stderr, flush=True)
            if auth == "off":
                print("warning: without authentication: every local process has full access", file=sys.stderr,
                      flush=True)
            app = http_app(mos, auth=auth, log_level=log_level, host=host)
            uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level.lower())).run()
        except KeyboardInterrupt:
            pass


def main(argv: list[str] | None = None) -> None:
    """``python -m memkern.mcp``: the same server as ``memkern mcp``."""
    parser = argparse.ArgumentParser(prog="python -m memkern.mcp", description="memkern's MCP server.")
    parser.add_argument("--transport", choices=("stdio", "http"), default="stdio")
    parser.add_argument("--host", default=DEFAULT_HOST, help="HTTP address to bind (default: %(default)s).")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="HTTP port (default: %(default)s).")
    parser.add_argument("--db", type=Path, default=None, metavar="PATH",
                        help="SQLite store (default: $MEMKERN_HOME/memkern.db or ~/.memkern/memkern.db).")
    parser.add_argument("--user", default=None, metavar="ID",
                        help="stdio: run the tools as this user (default: unrestricted).")
    parser.add_argument("--no-auth", action="store_true", help="http: no API keys (loopback addresses only).")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f"--port must be from 1 to 65535, not {args.port}")
    try:
        serve(args.db, transport=args.transport, host=args.host, port=args.port, user=args.user,
              auth="off" if args.no_auth else "required")
    except MemkernError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
