"""memkern as an MCP server: any MCP client (an agent, an IDE, a chat app) uses memkern directly.

``build_server(mos)`` returns an MCP server (the SDK's ``MCPServer``, called ``FastMCP``
before mcp 2) whose tools are the MemCube API, verb for verb, and whose resources are the
cube list and each cube's current memories as JSON. ``serve`` runs it over stdio or
streamable HTTP; ``memkern mcp`` and ``python -m memkern.mcp_server`` call it.

Every tool returns structured JSON (with an output schema) as well as the same JSON as
text. An error memkern raises on purpose becomes a tool error (``isError``) carrying the
exception's message, for the model to read and act on; it never stops the server.

Writes are recorded with the actor ``"mcp"``. Needs the ``mcp`` extra (the MCP Python SDK,
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
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
    from mcp.types import CallToolResult, TextContent, ToolAnnotations
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "memkern's MCP server needs the MCP Python SDK, version 2 (mcp>=2.3): "
        "pip install 'memkern[mcp]'"
    ) from _exc

from memkern import __version__
from memkern.errors import MemkernError, NotFoundError
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

#: Who the operation log says made a write through MCP (a later step adds real users).
ACTOR = "mcp"
#: Most memories the ``memkern://cubes/{name}/memories`` resource returns; ``list_memories`` pages further.
RESOURCE_MEMORY_LIMIT = 1_000
logger = logging.getLogger("memkern.mcp")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8766

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
                 ) -> MCPServer:
    """An MCP server exposing ``mos``: nine tools and two resources (see the module docstring).

    The caller owns ``mos`` (and closes it). Calls into memkern are serialised with a
    lock, so the server is safe to run on a multi-threaded transport.
    """
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
    def list_cubes() -> CubeList:
        """List the memory cubes in the store: name, owner, description, id and when each was created."""
        return CubeList(cubes=mos.list_cubes())

    @server.tool(annotations=writes)
    @guarded
    def create_cube(
        name: Annotated[str, Field(description="Name of the new cube; must be unique in the store.")],
        owner: Annotated[str, Field(description="Who the memories belong to (a user or agent name).")] = "default",
        description: Annotated[str, Field(description="What the cube is for (optional).")] = "",
    ) -> CubeInfo:
        """Create a new, empty memory cube. Fails if a cube with this name already exists."""
        return mos.create_cube(name, owner=owner, description=description).info

    # -- writing ----------------------------------------------------------------------------------
    @server.tool(annotations=writes)
    @guarded
    def add_memory(
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
        handle = mos.get_cube(cube)
        if messages is not None and text is None:
            return handle.add(messages, session_id=session_id, tags=tags, actor=ACTOR)
        return handle.add(messages, text=text, session_id=session_id, kind=kind, tags=tags, actor=ACTOR)

    @server.tool(annotations=writes)
    @guarded
    def update_memory(
        cube: CubeArg,
        id: MemoryIdArg,
        text: Annotated[str, Field(description="The memory's corrected or new text (replaces the old text).")],
        reason: Annotated[str | None, Field(description="Why it changed; kept in the history (optional).")] = None,
    ) -> MemoryItem:
        """Replace a memory's text with a new version. The old version is kept in memory_history."""
        return mos.get_cube(cube).update(id, text, reason=reason, actor=ACTOR)

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True,
                                             open_world_hint=False))
    @guarded
    def delete_memory(
        cube: CubeArg,
        id: MemoryIdArg,
        reason: Annotated[str | None, Field(description="Why it is deleted; kept in the operation log, which "
                                                        "holds ids, never text (optional).")] = None,
    ) -> Deleted:
        """Delete a memory and all its versions, permanently."""
        mos.get_cube(cube).delete(id, reason=reason, actor=ACTOR)
        return Deleted(cube=cube, deleted=id)

    # -- reading ----------------------------------------------------------------------------------
    @server.tool(annotations=read_only)
    @guarded
    def search_memories(
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
        hits = mos.get_cube(cube).search(query, top_k=top_k, filters=filters)
        return SearchResult(cube=cube, query=query, hits=[SearchHit.from_hit(hit) for hit in hits])

    @server.tool(annotations=read_only)
    @guarded
    def get_memory(cube: CubeArg, id: MemoryIdArg) -> MemoryItem:
        """Get one memory's current version, every field."""
        return mos.get_cube(cube).get(id)

    @server.tool(annotations=read_only)
    @guarded
    def list_memories(
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
        items = mos.get_cube(cube).get_all(filters, limit=limit + 1, offset=offset)
        more = len(items) > limit
        return MemoryPage(cube=cube, memories=items[:limit], offset=offset,
                          next_offset=offset + limit if more else None)

    @server.tool(annotations=read_only)
    @guarded
    def memory_history(cube: CubeArg, id: MemoryIdArg) -> MemoryHistory:
        """Every version of a memory, oldest first, with who changed it, when and why."""
        versions = mos.get_cube(cube).history(id)
        if not versions:
            raise NotFoundError(f"no memory {id!r} in cube {cube!r}")
        return MemoryHistory(cube=cube, id=id, versions=versions)

    # -- resources --------------------------------------------------------------------------------
    @server.resource("memkern://cubes", name="cubes", title="Memory cubes", mime_type="application/json",
                     description="The cubes in the store, as a JSON list.")
    def cubes_resource() -> str:
        with resource_read():
            return _json([info.model_dump(mode="json") for info in mos.list_cubes()])

    @server.resource("memkern://cubes/{name}/memories", name="cube_memories", title="A cube's memories",
                     mime_type="application/json",
                     description=f"A cube's current memories, oldest first, as JSON (at most "
                                 f"{RESOURCE_MEMORY_LIMIT:,}; page with the list_memories tool).")
    def cube_memories_resource(name: str) -> str:
        with resource_read():
            handle = mos.get_cube(name)
            items = handle.get_all(limit=RESOURCE_MEMORY_LIMIT + 1)
            return _json({
                "cube": handle.info.model_dump(mode="json"),
                "memories": [item.model_dump(mode="json") for item in items[:RESOURCE_MEMORY_LIMIT]],
                "truncated": len(items) > RESOURCE_MEMORY_LIMIT,
            })

    return server


# -------------------------------------------------------------------------------------- running


def serve(db: str | Path | None = None, *, transport: Literal["stdio", "http"] = "stdio",
          host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "WARNING") -> None:
    """Run the MCP server on ``db`` (default: MemOS's default store) until the client or a signal stops it.

    ``stdio`` speaks on stdin/stdout (nothing else is written to stdout); ``http`` serves
    streamable HTTP at ``http://HOST:PORT/mcp``. HTTP has no authentication: keep it on
    a loopback address unless something in front of it authenticates.
    """
    if transport not in ("stdio", "http"):
        raise ValueError(f"unknown transport {transport!r}; use 'stdio' or 'http'")
    with MemOS(db) as mos:
        server = build_server(mos, log_level=log_level)
        try:
            if transport == "stdio":
                server.run("stdio")
            else:
                print(f"memkern MCP server (streamable HTTP) on http://{host}:{port}/mcp", file=sys.stderr,
                      flush=True)
                if host not in ("127.0.0.1", "localhost", "::1"):
                    print(f"warning: listening on {host}, without authentication", file=sys.stderr, flush=True)
                server.run("streamable-http", host=host, port=port)
        except KeyboardInterrupt:
            pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m memkern.mcp_server", description="memkern's MCP server.")
    parser.add_argument("--transport", choices=("stdio", "http"), default="stdio")
    parser.add_argument("--host", default=DEFAULT_HOST, help="HTTP address to bind (default: %(default)s).")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="HTTP port (default: %(default)s).")
    parser.add_argument("--db", type=Path, default=None, metavar="PATH",
                        help="SQLite store (default: $MEMKERN_HOME/memkern.db or ~/.memkern/memkern.db).")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f"--port must be from 1 to 65535, not {args.port}")
    try:
        serve(args.db, transport=args.transport, host=args.host, port=args.port)
    except MemkernError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
