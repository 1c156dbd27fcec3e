"""memkern as an MCP server: any MCP client (an agent, an IDE, a chat app) uses memkern directly.

``build_server(mos)`` returns an MCP server (the SDK's ``MCPServer``, called ``FastMCP``
before mcp 2) whose tools are the MemCube API, verb for verb, and whose resources are the
cube list and each cube's current memories as JSON. ``serve`` runs it over stdio or
streamable HTTP; ``memkern mcp`` and ``python -m memkern.mcp_server`` call it.

Every tool returns structured JSON (with an output schema) as well as the same JSON as
text. An error memkern raises on purpose becomes a tool error (``isError``) carrying the
exception's message, for the model to read and act on; it never stops the server.

Who the tools run as: over streamable HTTP (``auth="required"``, the default) every
request needs an API key, ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``, the same
as the REST API; the key is checked before the MCP layer sees the request (401 without a
valid one) and every tool call runs as its user through ``mos.as_user(key)``, checked
and audited (a denied call is a tool error naming ``PermissionDeniedError``). Over stdio
the tools run as the local user given by ``--user`` (``build_server(mos, user=...)``) or,
without one, as the unrestricted embedded default. ``--no-auth`` turns keys off on HTTP,
for a loopback address only.

Writes are recorded with the actor ``"mcp"`` (or the user's id). Needs the ``mcp`` extra (the MCP Python SDK,
version 2): ``pip install 'memkern[mcp]'``.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

try:
    from mcp.server.mcpserver import Context, MCPServer
    from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
    from mcp.types import CallToolResult, TextContent, ToolAnnotations
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "memkern's MCP server needs the MCP Python SDK, version 2 (mcp>=2.3): "
        "pip install 'memkern[mcp]'"
    ) from _exc

from memkern import __version__
from memkern.errors import AuthenticationError, InvalidInputError, MemkernError, NotFoundError
from memkern.governance.api import api_key_from
from memkern.models import User
from memkern.models import (
    AddResult,
    CubeInfo,
    Hit,
    MemoryItem,
    MemoryKind,
    Message,
    Provenance,
    ScoreParts,
)
from memkern.mos import MemOS

#: Who the operation log says made a write through MCP when no user is authenticated.
ACTOR = "mcp"
#: Most memories the ``memkern://cubes/{name}/memories`` resource returns; ``list_memories`` pages further.
RESOURCE_MEMORY_LIMIT = 1_000
logger = logging.getLogger("memkern.mcp")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8766
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_KEY_REQUIRED = "an API key is required: send 'Authorization: Bearer <key>' (or 'X-API-Key: <key>')"

INSTRUCTIONS = """\
memkern is a long-term memory store. Memories live in named cubes (one per user, agent or \
project). Store what is worth remembering with add_memory (a single fact, or chat messages \
as turns), find it again with search_memories (hits carry a score, its parts and the \
provenance: session, speaker, message ids, times), correct it with update_memory (old \
versions stay in memory_history), and remove it with delete_memory. Call list_cubes first \
if you do not know the cube's name; create_cube makes a new one."""


# ------------------------------------------------------------------------------ output models


class CubeList(BaseModel):
    """The cubes in the store."""

    cubes: list[CubeInfo]


class SearchHit(BaseModel):
    """One search result: the memory's text, why it scored, where it came from and when."""

    id: str
    text: str
    score: float
    parts: ScoreParts
    kind: MemoryKind
    tags: list[str]
    provenance: Provenance
    #: When it happened or was said.
    event_time: datetime | None
    valid_from: datetime | None
    valid_to: datetime | None
    #: When this version was stored.
    recorded_at: datetime
    version: int

    @classmethod
    def from_hit(cls, hit: Hit) -> SearchHit:
        item = hit.memory
        return cls(id=item.id, text=item.text, score=hit.score, parts=hit.parts, kind=item.kind, tags=item.tags,
                   provenance=item.provenance, event_time=item.event_time, valid_from=item.valid_from,
                   valid_to=item.valid_to, recorded_at=item.recorded_at, version=item.version)


class SearchResult(BaseModel):
    cube: str
    query: str
    hits: list[SearchHit]


class MemoryPage(BaseModel):
    cube: str
    memories: list[MemoryItem]
    offset: int
    #: Offset of the next page, or null when this page is the last.
    next_offset: int | None


class MemoryHistory(BaseModel):
    cube: str
    id: str
    #: Every version, oldest first; the last one is current.
    versions: list[MemoryItem]


class Deleted(BaseModel):
    cube: str
    deleted: str


# ----------------------------------------------------------------------------- argument types

CubeArg = Annotated[str, Field(description="Cube name (or id). See list_cubes.")]
MemoryIdArg = Annotated[str, Field(description="Memory id, as returned by add_memory, search_memories or "
                                               "list_memories.")]
SessionArg = Annotated[str | None, Field(description="Conversation/session id the memories belong to "
                                                     "(optional).")]


def _error_result(exc: MemkernError) -> CallToolResult:
    """A tool error (``isError``) whose text is the exception's message, for the model to act on."""
    return CallToolResult(content=[TextContent(type="text", text=str(exc))], is_error=True,
                          structured_content={"error": type(exc).__name__, "message": str(exc)})


def _json(value: Any) -> str:
    if isinstance(value, BaseModel):
        return value.model_dump_json(indent=2)
    return json.dumps(value, indent=2, ensure_ascii=False)


# ------------------------------------------------------------------------------------- server


def build_server(mos: MemOS, *, log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "WARNING",
                 auth: Literal["required", "off"] = "off", user: User | str | None = None) -> MCPServer:
    """An MCP server exposing ``mos``: nine tools and two resources (see the module docstring).

    ``auth="required"``: each call runs as the user of the API key in its HTTP request's
    headers (a call without one is an ``AuthenticationError`` tool error). ``auth="off"``:
    calls run as ``user`` (a ``User`` or user id; ``mos.as_user``), or unrestricted.

    The caller owns ``mos`` (and closes it). Calls into memkern are serialised with a
    lock, so the server is safe to run on a multi-threaded transport.
    """
    if auth not in ("required", "off"):
        raise InvalidInputError(f"auth must be 'required' or 'off', not {auth!r}")
    if user is not None and auth == "required":
        raise InvalidInputError("give either auth='required' (users from API keys) or user, not both")
    local = mos.as_user(user if isinstance(user, User) else mos.get_user(user)) if user is not None else mos

    def acting(ctx: Context | None) -> MemOS:
        """The MemOS a call runs against: the API key's user, the local user, or unrestricted."""
        if auth == "off":
            return local
        try:
            headers = ctx.headers if ctx is not None else None
        except Exception:  # no request context (an in-process call)
            headers = None
        key = api_key_from(headers)
        if key is None:
            raise AuthenticationError(_KEY_REQUIRED)
        return mos.as_user(key)

    server: MCPServer = MCPServer(
        "memkern", title="memkern memory", instructions=INSTRUCTIONS, version=__version__, log_level=log_level,
    )
    lock = threading.Lock()

    def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
        """Serialise ``fn`` and turn memkern's errors into an error result carrying just their message."""

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            with lock:
                try:
                    return fn(*args, **kwargs)
                except MemkernError as exc:
                    logger.info("tool %s failed: %s: %s", fn.__name__, type(exc).__name__, exc)
                    return _error_result(exc)

        return call

    @contextmanager
    def resource_read() -> Iterator[None]:
        with lock:
            try:
                yield
            except NotFoundError as exc:
                raise ResourceNotFoundError(str(exc)) from exc
            except MemkernError as exc:
                raise ResourceError(str(exc)) from exc

    read_only = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                                open_world_hint=False)
    writes = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False,
                             open_world_hint=False)

    # -- cubes ------------------------------------------------------------------------------------
    @server.tool(annotations=read_only)
    @guarded
    def list_cubes(ctx: Context) -> CubeList:
        """List the memory cubes in the store: name, owner, description, id and when each was created."""
        return CubeList(cubes=acting(ctx).list_cubes())

    @server.tool(annotations=writes)
    @guarded
    def create_cube(
        ctx: Context,
        name: Annotated[str, Field(description="Name of the new cube; must be unique in the store.")],
        owner: Annotated[str | None, Field(description="Who the memories belong to (a user or agent name; default: "
                                                     "the calling user, or 'default').")] = None,
        description: Annotated[str, Field(description="What the cube is for (optional).")] = "",
    ) -> CubeInfo:
        """Create a new, empty memory cube. Fails if a cube with this name already exists."""
        owned = {"owner": owner} if owner is not None else {}
        return acting(ctx).create_cube(name, description=description, **owned).info

    # -- writing ----------------------------------------------------------------------------------
    @server.tool(annotations=writes)
    @guarded
    def add_memory(
        ctx: Context,
        cube: CubeArg,
        text: Annotated[str | None, Field(
            description="One memory to store, written as a self-contained statement (e.g. 'Alice is "
                        "allergic to peanuts'). Give either text or messages.")] = None,
        messages: Annotated[list[Message] | None, Field(
            description="Chat messages to store, in order, each as one 'turn' memory: role ('user' or "
                        "'assistant'), content, and optionally name (the speaker), time (ISO 8601) and id. "
                        "Give either text or messages.")] = None,
        session_id: SessionArg = None,
        kind: Annotated[MemoryKind, Field(
            description="What a text memory is: fact, preference, event, summary or document. Ignored for "
                        "messages, which are always turns.")] = MemoryKind.FACT,
        tags: Annotated[list[str], Field(description="Labels to filter on later (optional).")] = [],  # noqa: B006
    ) -> AddResult:
        """Store a memory in a cube: one text, or chat messages as turns.

        Returns the memories written (with their ids) and the ids of inputs that were already
        stored and so were skipped.
        """
        handle = acting(ctx).get_cube(cube)
        if messages is not None and text is None:
            return handle.add(messages, session_id=session_id, tags=tags, actor=ACTOR)
        return handle.add(messages, text=text, session_id=session_id, kind=kind, tags=tags, actor=ACTOR)

    @server.tool(annotations=writes)
    @guarded
    def update_memory(
        ctx: Context,
        cube: CubeArg,
        id: MemoryIdArg,
        text: Annotated[str, Field(description="The memory's corrected or new text (replaces the old text).")],
        reason: Annotated[str | None, Field(description="Why it changed; kept in the history (optional).")] = None,
    ) -> MemoryItem:
        """Replace a memory's text with a new version. The old version is kept in memory_history."""
        return acting(ctx).get_cube(cube).update(id, text, reason=reason, actor=ACTOR)

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True,
                                             open_world_hint=False))
    @guarded
    def delete_memory(
        ctx: Context,
        cube: CubeArg,
        id: MemoryIdArg,
        reason: Annotated[str | None, Field(description="Why it is deleted; kept in the operation log, which "
                                                        "holds ids, never text (optional).")] = None,
    ) -> Deleted:
        """Delete a memory and all its versions, permanently."""
        acting(ctx).get_cube(cube).delete(id, reason=reason, actor=ACTOR)
        return Deleted(cube=cube, deleted=id)

    # -- reading ----------------------------------------------------------------------------------
    @server.tool(annotations=read_only)
    @guarded
    def search_memories(
        ctx: Context,
        cube: CubeArg,
        query: Annotated[str, Field(description="What to look for, in words (a question works well).")],
        top_k: Annotated[int, Field(ge=1, le=100, description="How many hits to return, best first.")] = 5,
        session_id: Annotated[str | None, Field(description="Only memories from this session (optional).")] = None,
        kind: Annotated[MemoryKind | None, Field(description="Only memories of this kind (optional).")] = None,
    ) -> SearchResult:
        """Find the memories that best answer a query, best first.

        Each hit has the memory's id and text, its score and the parts of that score, its
        provenance (session, speaker, source message ids) and its times.
        """
        filters: dict[str, Any] = {}
        if session_id is not None:
            filters["session_id"] = session_id
        if kind is not None:
            filters["kind"] = kind
        hits = acting(ctx).get_cube(cube).search(query, top_k=top_k, filters=filters)
        return SearchResult(cube=cube, query=query, hits=[SearchHit.from_hit(hit) for hit in hits])

    @server.tool(annotations=read_only)
    @guarded
    def get_memory(ctx: Context, cube: CubeArg, id: MemoryIdArg) -> MemoryItem:
        """Get one memory's current version, every field."""
        return acting(ctx).get_cube(cube).get(id)

    @server.tool(annotations=read_only)
    @guarded
    def list_memories(
        ctx: Context,
        cube: CubeArg,
        limit: Annotated[int, Field(ge=1, le=500, description="At most this many memories.")] = 20,
        offset: Annotated[int, Field(ge=0, description="Skip this many first (for paging).")] = 0,
        session_id: Annotated[str | None, Field(description="Only memories from this session (optional).")] = None,
        kind: Annotated[MemoryKind | None, Field(description="Only memories of this kind (optional).")] = None,
    ) -> MemoryPage:
        """List a cube's current memories, oldest first, one page at a time."""
        filters: dict[str, Any] = {}
        if session_id is not None:
            filters["session_id"] = session_id
        if kind is not None:
            filters["kind"] = kind
        items = acting(ctx).get_cube(cube).get_all(filters, limit=limit + 1, offset=offset)
        more = len(items) > limit
        return MemoryPage(cube=cube, memories=items[:limit], offset=offset,
                          next_offset=offset + limit if more else None)

    @server.tool(annotations=read_only)
    @guarded
    def memory_history(ctx: Context, cube: CubeArg, id: MemoryIdArg) -> MemoryHistory:
        """Every version of a memory, oldest first, with who changed it, when and why."""
        versions = acting(ctx).get_cube(cube).history(id)
        if not versions:
            raise NotFoundError(f"no memory {id!r} in cube {cube!r}")
        return MemoryHistory(cube=cube, id=id, versions=versions)

    # -- resources --------------------------------------------------------------------------------
    @server.resource("memkern://cubes", name="cubes", title="Memory cubes", mime_type="application/json",
                     description="The cubes in the store, as a JSON list.")
    def cubes_resource() -> str:
        # A static resource gets no request context: with API keys it cannot tell who asks.
        with resource_read():
            if auth == "required":
                raise AuthenticationError("with API keys, list cubes with the list_cubes tool (this resource "
                                          "cannot see the key)")
            return _json([info.model_dump(mode="json") for info in acting(None).list_cubes()])

    @server.resource("memkern://cubes/{name}/memories", name="cube_memories", title="A cube's memories",
                     mime_type="application/json",
                     description=f"A cube's current memories, oldest first, as JSON (at most "
                                 f"{RESOURCE_MEMORY_LIMIT:,}; page with the list_memories tool).")
    def cube_memories_resource(name: str, ctx: Context) -> str:
        with resource_read():
            handle = acting(ctx).get_cube(name)
            items = handle.get_all(limit=RESOURCE_MEMORY_LIMIT + 1)
            return _json({
                "cube": handle.info.model_dump(mode="json"),
                "memories": [item.model_dump(mode="json") for item in items[:RESOURCE_MEMORY_LIMIT]],
                "truncated": len(items) > RESOURCE_MEMORY_LIMIT,
            })

    return server


# -------------------------------------------------------------------------------------- running


def http_app(mos: MemOS, *, auth: Literal["required", "off"] = "required",
             log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "WARNING",
             host: str = DEFAULT_HOST) -> Any:
    """The streamable-HTTP ASGI app (``/mcp``). With ``auth="required"`` a request without a
    valid API key is answered 401 before the MCP layer sees it; each tool call then runs
    as the key's user."""
    server = build_server(mos, log_level=log_level, auth=auth)
    app = server.streamable_http_app(host=host)
    if auth == "off":
        return app
    return _KeyRequired(app, mos)


class _KeyRequired:
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
            message = _KEY_REQUIRED
            if key is not None:
                try:
                    await anyio.to_thread.run_sync(self.mos.authenticate, key)
                    message = ""
                except AuthenticationError as exc:
                    message = str(exc)
            if message:
                response = JSONResponse({"error": "AuthenticationError", "message": message}, status_code=401,
                                        headers={"WWW-Authenticate": 'Bearer realm="memkern"'})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def serve(db: str | Path | None = None, *, transport: Literal["stdio", "http"] = "stdio",
          host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "WARNING",
          user: str | None = None, auth: Literal["required", "off"] = "required") -> None:
    """Run the MCP server on ``db`` (default: MemOS's default store) until the client or a signal stops it.

    ``stdio`` speaks on stdin/stdout (nothing else is written to stdout) and runs the tools
    as ``user`` (a user id) or unrestricted; ``http`` serves streamable HTTP at
    ``http://HOST:PORT/mcp``, where every request needs an API key unless ``auth="off"``
    (loopback addresses only).
    """
    if transport not in ("stdio", "http"):
        raise ValueError(f"unknown transport {transport!r}; use 'stdio' or 'http'")
    if transport == "http" and user is not None:
        raise InvalidInputError("--user is for stdio; over HTTP the API key says who is calling")
    if transport == "http" and auth == "off" and host not in LOOPBACK_HOSTS:
        raise InvalidInputError(f"refusing to serve MCP on {host} without authentication: --no-auth is for a "
                                f"loopback address only")
    with MemOS(db) as mos:
        try:
            if transport == "stdio":
                build_server(mos, log_level=log_level, user=user).run("stdio")
            else:
                import uvicorn

                print(f"memkern MCP server (streamable HTTP) on http://{host}:{port}/mcp", file=sys.stderr,
                      flush=True)
                if auth == "off":
                    print("warning: without authentication: every local process has full access", file=sys.stderr,
                          flush=True)
                app = http_app(mos, auth=auth, log_level=log_level, host=host)
                uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level.lower())).run()
        except KeyboardInterrupt:
            pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m memkern.mcp_server", description="memkern's MCP server.")
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


if __name__ == "__main__":
    main()
