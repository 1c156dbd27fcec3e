"""memkern's MCP server, driven by the MCP SDK's own client.

The tools are the operations of the table, named as the operations (``add``, ``search``,
``get_all``...), with the operations' input fields as arguments. The same agent session
runs over stdio (the server launched as ``python -m memkern.mcp``) and over streamable
HTTP (a server process on a free loopback port): list the tools, create a cube, add
messages, search and see the provenance, update and read the history, read both
resources, delete, and hit the error paths. In-process tests cover the rest of the error
handling and who the tools run as. Skipped when the ``mcp`` extra is missing.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp.server.mcpserver", reason="needs the mcp extra (the MCP Python SDK, version 2)")

import anyio
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from memkern import MemOS
from memkern.api.table import OPERATIONS
from memkern.errors import EmbedderError

#: The tools: every operation of the table with an MCP entry, named as the operation.
TOOLS = {op.name for op in OPERATIONS.values() if op.mcp is not None}

MESSAGES = [
    {"role": "user", "name": "Alice", "content": "I live in Paris near the canal.", "time": "2024-03-02T09:30:00Z",
     "id": "m1"},
    {"role": "assistant", "content": "Paris is lovely in spring.", "time": "2024-03-02T09:31:00Z", "id": "m2"},
    {"role": "user", "name": "Alice", "content": "My cat Miso sleeps on my keyboard.",
     "time": "2024-03-02T09:32:00Z", "id": "m3"},
]

#: Bound on each whole client session, so that a hung server fails the test instead of the suite.
SESSION_TIMEOUT_S = 30


@pytest.fixture(scope="module")
def static_embedder_available() -> None:
    """The server processes build MemOS's default embedder (the bundled static model)."""
    from memkern.embed import default_embedder

    try:
        default_embedder()
    except (EmbedderError, OSError) as exc:  # pragma: no cover - depends on the bundled model
        pytest.skip(f"the bundled embedder cannot be built here: {exc}")


def server_env(home: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MEMKERN_")}
    env.update({"MEMKERN_HOME": str(home), "MEMKERN_EMBEDDER": "static", "PYTHONUNBUFFERED": "1"})
    return env


# ------------------------------------------------------------------------------------ the session


def text_of(result: Any) -> str:
    return "".join(block.text for block in result.content if block.type == "text")


async def call(session: ClientSession, tool: str, **arguments: Any) -> Any:
    """A tool's structured result (a result that is not an object comes as ``{"result": ...}``)."""
    result = await session.call_tool(tool, arguments)
    assert not result.is_error, (tool, text_of(result))
    assert result.structured_content is not None, tool
    assert json.loads(text_of(result)) == result.structured_content  # the same JSON as text, for any client
    content = result.structured_content
    return content["result"] if set(content) == {"result"} else content


async def read_json(session: ClientSession, uri: str) -> Any:
    result = await session.read_resource(uri)
    (content,) = result.contents
    assert content.mime_type == "application/json"
    return json.loads(content.text)


async def agent_session(session: ClientSession) -> None:
    """What an agent does with memkern, end to end, with the assertions a user would make."""
    init = await session.initialize()
    assert init.server_info.name == "memkern"
    assert "memory" in (init.instructions or "")

    tools = {tool.name: tool for tool in (await session.list_tools()).tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description and tool.output_schema, tool.name
    for name in ("cube", "text", "messages", "session_id", "kind", "tags"):
        assert tools["add"].input_schema["properties"][name].get("description"), f"add.{name} has no description"
    assert tools["search"].annotations.read_only_hint is True
    assert tools["delete"].annotations.destructive_hint is True
    assert "dump" not in tools and "create_api_key" not in tools  # files on the server's disk; a secret

    assert await call(session, "list_cubes") == []
    cube = await call(session, "create_cube", name="notes", owner="bob", description="test cube")
    assert (cube["name"], cube["owner"], cube["description"]) == ("notes", "bob", "test cube")

    added = await call(session, "add", cube="notes", messages=MESSAGES, session_id="s1", tags=["chat"])
    assert [item["kind"] for item in added["added"]] == ["turn"] * 3
    assert added["duplicates"] == []
    again = await call(session, "add", cube="notes", messages=MESSAGES[:1], session_id="s1")
    assert again["added"] == [] and len(again["duplicates"]) == 1
    fact = await call(session, "add", cube="notes", text="Alice is allergic to peanuts.", kind="fact")
    fact_id = fact["added"][0]["id"]

    # Search: the memory comes back with its score parts, provenance and times.
    hits = await call(session, "search", cube="notes", query="Where does Alice live?", top_k=3)
    top = hits[0]["memory"]
    assert "Paris" in top["text"]
    assert hits[0]["score"] > 0 and set(hits[0]["parts"]) >= {"lexical", "dense", "session", "cosine", "bm25"}
    assert top["provenance"]["session_id"] == "s1"
    assert top["provenance"]["speaker"] == "Alice"
    assert top["provenance"]["message_ids"] == ["m1"]
    assert top["event_time"].startswith("2024-03-02T09:30") and top["recorded_at"]
    assert top["kind"] == "turn" and top["tags"] == ["chat"] and top["version"] == 1
    paris_id = top["id"]
    only_facts = await call(session, "search", cube="notes", query="Alice", filters={"kind": "fact"})
    assert [hit["memory"]["id"] for hit in only_facts] == [fact_id]

    # Update, then the history shows both versions and who changed it, and why.
    updated = await call(session, "update", cube="notes", memory_id=paris_id, text="Alice: I moved to Lyon.",
                         reason="she moved")
    assert (updated["version"], updated["changed_by"], updated["change_reason"]) == (2, "mcp", "she moved")
    history = await call(session, "history", cube="notes", memory_id=paris_id)
    assert [v["version"] for v in history] == [1, 2]
    assert "Paris" in history[0]["text"] and "Lyon" in history[1]["text"]
    assert (await call(session, "get", cube="notes", memory_id=paris_id))["text"] == "Alice: I moved to Lyon."

    page = await call(session, "get_all", cube="notes", limit=2)
    assert len(page["items"]) == 2 and page["next_offset"] == 2
    rest = await call(session, "get_all", cube="notes", limit=2, offset=2)
    assert len(rest["items"]) == 2 and rest["next_offset"] is None
    turns = await call(session, "get_all", cube="notes", filters={"session_id": "s1", "kind": "turn"})
    assert len(turns["items"]) == 3

    # Resources: the cube list and the cube's current memories.
    resources = {str(r.uri) for r in (await session.list_resources()).resources}
    assert "memkern://cubes" in resources
    templates = {t.uri_template for t in (await session.list_resource_templates()).resource_templates}
    assert "memkern://cubes/{cube}/memories" in templates
    assert [c["name"] for c in await read_json(session, "memkern://cubes")] == ["notes"]
    memories = await read_json(session, "memkern://cubes/notes/memories")
    assert memories["cube"]["name"] == "notes" and memories["truncated"] is False
    assert {m["text"] for m in memories["memories"]} >= {"Alice: I moved to Lyon.", "Alice is allergic to peanuts."}
    assert len(memories["memories"]) == 4

    # Delete; the memory is gone.
    deleted = await call(session, "delete", cube="notes", memory_id=fact_id, reason="asked to forget")
    assert deleted["memory_id"] == fact_id
    gone = await session.call_tool("get", {"cube": "notes", "memory_id": fact_id})
    assert gone.is_error and fact_id in text_of(gone)

    # Errors: the problem details as an isError result, the detail as its text; the server carries on.
    unknown = await session.call_tool("search", {"cube": "ghost", "query": "anything"})
    assert unknown.is_error
    assert text_of(unknown) == "no cube named 'ghost'"
    assert unknown.structured_content == {"type": "urn:memkern:problem:not-found", "title": "Not found",
                                          "status": 404, "detail": "no cube named 'ghost'",
                                          "error": "NotFoundError"}
    with pytest.raises(MCPError, match="no cube named 'ghost'"):
        await session.read_resource("memkern://cubes/ghost/memories")
    assert len(await call(session, "list_cubes")) == 1


def check_store_after(db: Path) -> None:
    """The writes reached the file, logged with the actor ``mcp``."""
    with MemOS(db) as mos:
        cube = mos.get_cube("notes")
        assert len(cube.get_all()) == 3
        ops = [op for op in cube.operations() if op.memory_id is not None]
        assert ops and {op.actor for op in ops} == {"mcp"}
        assert any("asked to forget" in (op.reason or "") for op in ops)


# ------------------------------------------------------------------------------------- transports


def test_stdio(tmp_path: Path, static_embedder_available: None) -> None:
    db = tmp_path / "stdio.db"
    params = StdioServerParameters(command=sys.executable, args=["-m", "memkern.mcp", "--db", str(db)],
                                   env=server_env(tmp_path / "home"), cwd=str(tmp_path))

    async def main() -> None:
        with anyio.fail_after(SESSION_TIMEOUT_S):
            with (tmp_path / "stderr.log").open("w") as errlog:
                async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
                    await agent_session(session)

    anyio.run(main)
    check_store_after(db)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the HTTP server exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"the HTTP server did not listen on port {port} within {timeout_s} s: {log.read_text()[-2000:]}")


def test_streamable_http(tmp_path: Path, static_embedder_available: None) -> None:
    db = tmp_path / "http.db"
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "memkern", "mcp", "--transport", "http", "--host", "127.0.0.1",
             "--port", str(port), "--db", str(db), "--no-auth"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=server_env(tmp_path / "home"),
            cwd=str(tmp_path),
        )
    try:
        wait_for_port(port, process, log)

        async def main() -> None:
            with anyio.fail_after(SESSION_TIMEOUT_S):
                url = f"http://127.0.0.1:{port}/mcp"
                async with streamable_http_client(url) as (read, write), ClientSession(read, write) as session:
                    await agent_session(session)

        anyio.run(main)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a server that ignores SIGTERM
            process.kill()
            process.wait(timeout=5)
    assert f"http://127.0.0.1:{port}/mcp" in log.read_text()
    check_store_after(db)


# ------------------------------------------------------------------------------- in-process errors


def test_errors_in_process(mos: MemOS) -> None:
    """Bad input from a model is an isError result with the dispatcher's message (the same words
    as every other surface), never a dead server."""
    from mcp import Client

    from memkern.mcp import build_server

    mos.create_cube("c")

    async def main() -> None:
        with anyio.fail_after(SESSION_TIMEOUT_S):
            async with Client(build_server(mos)) as client:
                async def error(tool: str, problem: str = "invalid-input", **arguments: Any) -> str:
                    result = await client.call_tool(tool, arguments)
                    assert result.is_error, (tool, arguments)
                    assert result.structured_content["type"] == f"urn:memkern:problem:{problem}", text_of(result)
                    return text_of(result)

                assert await error("add", cube="c") == "add: input: give either messages or text to add"
                assert await error("add", cube="c", text="x", messages=[{"content": "y"}]) == \
                    "add: input: give either messages or text to add"
                assert await error("add", cube="c", text="   ") == "add: text: text is empty"
                assert "kind" in await error("add", cube="c", text="x", kind="bogus")
                assert "content" in await error("add", cube="c", messages=[{"role": "user"}])
                assert "bogus" in await error("add", cube="c", text="x", bogus=1)  # unknown arguments are refused
                assert "'c'" in await error("create_cube", "conflict", name="c")  # a duplicate name
                assert "no memory 'nope'" in await error("get", "not-found", cube="c", memory_id="nope")
                assert "no memory 'nope'" in await error("update", "not-found", cube="c", memory_id="nope", text="t")
                assert "nope" in await error("delete", "not-found", cube="c", memory_id="nope")
                assert "no memory 'nope'" in await error("history", "not-found", cube="c", memory_id="nope")
                assert "top_k" in await error("search", cube="c", query="q", top_k=0)
                assert await error("search", cube="c", query="") == "search: query: query is empty"
                assert "limit" in await error("get_all", cube="c", limit=0)
                assert "MEMKERN_LLM" in await error("chat", "llm-not-configured", cube="c", query="hi")
                # ... and the server still answers.
                # (A list sent as a JSON string, as some clients do, is the list.)
                ok = await client.call_tool("add", {"cube": "c", "text": "still here", "tags": '["t"]'})
                assert not ok.is_error and ok.structured_content["added"][0]["tags"] == ["t"]
                assert len(mos.get_cube("c").get_all()) == 1
                written = [op for op in mos.get_cube("c").operations() if op.memory_id is not None]
                assert [op.actor for op in written] == ["mcp"]  # the label of MCP writes

    anyio.run(main)


def test_cli_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """``memkern mcp`` without the mcp package: one clear line, exit 1, no traceback."""
    from typer.testing import CliRunner

    from memkern.cli.main import app

    for module in ("memkern.mcp", "memkern.mcp.server", "memkern.mcp.tools"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.setitem(sys.modules, "mcp.server.mcpserver", None)  # makes the import fail
    result = CliRunner().invoke(app, ["mcp"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "memkern[mcp]" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


# ------------------------------------------------------------------------------------ API keys


def test_http_runs_tools_as_the_keys_user(mos: MemOS) -> None:
    """Streamable HTTP with API keys: no key is 401, each call runs as the key's user, checked and audited."""
    import httpx
    import httpx2
    from server import live_server

    from memkern.mcp import http_app

    admin = mos.create_user("Ada", "admin", user_id="u-admin")
    reader = mos.create_user("Rita", user_id="u-reader")
    admin_key, reader_key = mos.create_api_key(admin), mos.create_api_key(reader)
    revoked_key = mos.create_api_key(reader)
    mos.revoke_api_key(revoked_key)

    with live_server(http_app(mos)) as base:
        url = f"{base}/mcp"
        body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
        for headers in ({}, {"Authorization": "Bearer mk_nope"}, {"Authorization": f"Bearer {revoked_key}"}):
            denied = httpx.post(url, json=body, headers=headers, timeout=10)
            assert denied.status_code == 401 and denied.headers["www-authenticate"].startswith("Bearer")
            assert denied.json()["type"] == "urn:memkern:problem:unauthenticated"

        def http_client(key: str, header: str = "Authorization") -> httpx2.AsyncClient:
            return httpx2.AsyncClient(headers={header: f"Bearer {key}" if header == "Authorization" else key},
                                      timeout=20)

        async def main() -> None:
            with anyio.fail_after(SESSION_TIMEOUT_S):
                async with http_client(admin_key) as http, streamable_http_client(url, http_client=http) as (
                        read, write), ClientSession(read, write) as session:
                    await session.initialize()
                    cube = await call(session, "create_cube", name="team")
                    assert cube["owner"] == "u-admin"
                    added = await call(session, "add", cube="team", text="The launch is in May.", kind="document")
                    assert added["added"]
                mos.grant("team", "u-reader", "read")
                async with http_client(reader_key, "X-API-Key") as http, streamable_http_client(
                        url, http_client=http) as (read, write), ClientSession(read, write) as session:
                    await session.initialize()
                    assert [c["name"] for c in await call(session, "list_cubes")] == ["team"]
                    assert await call(session, "search", cube="team", query="launch")
                    result = await session.call_tool("add", {"cube": "team", "text": "sneaky"})
                    assert result.is_error
                    assert result.structured_content["error"] == "PermissionDeniedError"
                    assert result.structured_content["type"] == "urn:memkern:problem:permission-denied"

        anyio.run(main)
    assert len(mos.get_cube("team").get_all()) == 1
    assert {op.actor for op in mos.get_cube("team").operations()} == {"u-admin"}
    denied = [e for e in mos.audit(user="u-reader", limit=None) if e.result.value == "denied"]
    assert [e.operation for e in denied] == ["add"]


def test_stdio_style_local_user(mos: MemOS) -> None:
    """``build_server(mos, user=...)`` (``--user``): tools and resources run as that local user."""
    from mcp import Client

    from memkern.mcp import build_server

    mos.create_user("Olive", user_id="u-owner")
    mos.create_user("Nick", user_id="u-nick")
    mos.as_user(mos.get_user("u-owner")).create_cube("private").add(text="secret plans", kind="document")

    async def main() -> None:
        with anyio.fail_after(SESSION_TIMEOUT_S):
            async with Client(build_server(mos, user="u-nick")) as client:
                listed = await client.call_tool("list_cubes", {})
                assert listed.structured_content == {"result": []}
                denied = await client.call_tool("search", {"cube": "private", "query": "plans"})
                assert denied.is_error and denied.structured_content["error"] == "PermissionDeniedError"
                with pytest.raises(MCPError, match="may not"):  # resources are governed the same way
                    await client.read_resource("memkern://cubes/private/memories")
                mine = await client.call_tool("create_cube", {"name": "nicks"})
                assert mine.structured_content["owner"] == "u-nick"
                assert (await client.call_tool("whoami", {})).structured_content["result"]["id"] == "u-nick"
            async with Client(build_server(mos, auth="required")) as client:  # no HTTP request: no key
                result = await client.call_tool("list_cubes", {})
                assert result.is_error and result.structured_content["error"] == "AuthenticationError"

    anyio.run(main)
