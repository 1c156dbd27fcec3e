"""Surface parity: every operation of the table is on every surface, with the same parameters.

The table (``memkern.api.table``) is the one declaration of the public operations; the
Python methods (``MemOS``/``MemCube``, and ``MemkernClient``/``RemoteCube`` over HTTP), the
REST routes, the MCP tools and the CLI commands are bound from it. This test walks the
table and fails, naming the operation and the surface, when a surface lacks an operation or
a parameter, or when a method's parameters (names, order, defaults) differ from the
operation's input model.
"""

from __future__ import annotations

import inspect
import re
from typing import Any, get_type_hints

import pytest

from memkern import MemOS
from memkern.api.methods import UNSET
from memkern.api.spec import Operation
from memkern.api.table import OPERATIONS
from memkern.client import MemkernClient, RemoteCube
from memkern.mos import MemCube

OPS = list(OPERATIONS.values())
HANDLES: dict[str, tuple[type, ...]] = {"cube": (MemCube, RemoteCube), "store": (MemOS, MemkernClient)}


def _default(op: Operation, field: str) -> Any:
    info = op.input.model_fields[field]
    return inspect.Parameter.empty if info.is_required() else info.get_default(call_default_factory=True)


def _same_default(method_default: Any, model_default: Any, only_given: bool) -> bool:
    if only_given and method_default is UNSET:  # "leave as is": the model's default is never used
        return True
    if isinstance(method_default, tuple):  # an immutable default for a list field
        method_default = list(method_default)
    return bool(method_default == model_default)


def _method_problems(op: Operation, cls: type) -> list[str]:
    method = getattr(cls, op.name, None)
    if method is None:
        return [f"{cls.__name__} has no method {op.name}"]
    params = [p for p in inspect.signature(method).parameters.values() if p.name != "self"]
    problems = []
    names = [p.name for p in params]
    if names != op.method_fields:
        problems.append(f"{cls.__name__}.{op.name} takes {names}, the operation {op.method_fields}")
    positional = tuple(p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if positional != op.positional:
        problems.append(f"{cls.__name__}.{op.name} takes {positional} positionally, the table says {op.positional}")
    for param in params:
        if param.name not in op.input.model_fields:
            continue
        model_default = _default(op, param.name)
        if (param.default is inspect.Parameter.empty) != (model_default is inspect.Parameter.empty):
            problems.append(f"{cls.__name__}.{op.name}({param.name}) is required in one and not the other")
        elif param.default is not inspect.Parameter.empty and not _same_default(param.default, model_default,
                                                                                 op.only_given):
            problems.append(f"{cls.__name__}.{op.name}({param.name}) defaults to {param.default!r}, "
                            f"the input model to {model_default!r}")
    returns = get_type_hints(method).get("return", Any)
    if returns is not Any and returns != op.output:
        problems.append(f"{cls.__name__}.{op.name} returns {returns}, the operation {op.output}")
    return problems


@pytest.mark.parametrize("op", OPS, ids=[op.name for op in OPS])
def test_python_methods(op: Operation) -> None:
    """``MemOS``/``MemCube`` and the client's classes: a method per operation, the input's parameters."""
    problems = [p for cls in HANDLES[op.handle] for p in _method_problems(op, cls)]
    assert not problems, "\n".join(problems)


def test_every_operation_is_one_method() -> None:
    """No method of a handle is left over from an operation that no longer exists."""
    from memkern.api.methods import CubeMethods, StoreMethods

    for base, handle in ((CubeMethods, "cube"), (StoreMethods, "store")):
        public = {name for name, value in vars(base).items() if callable(value) and not name.startswith("_")}
        assert public == {op.name for op in OPS if op.handle == handle}, base.__name__


# -- REST -----------------------------------------------------------------------------------------------
def test_rest_routes(mos: MemOS) -> None:
    """A route per operation, named as it, at the table's path under ``/v1``, answering the table's
    method (asked with placeholder values: a route that exists answers with the operation's own
    error, never "no route" or 405)."""
    pytest.importorskip("fastapi")
    from starlette.routing import NoMatchFound
    from starlette.testclient import TestClient

    from memkern.server import create_app

    app = create_app(mos, auth="off")
    problems = []
    with TestClient(app, raise_server_exceptions=False) as http:
        for op in OPS:
            placeholders = {field: f"no-{field}" for field in re.findall(r"\{(\w+)\}", op.http.path)}
            try:
                path = app.url_path_for(op.name, **placeholders)
            except NoMatchFound:
                problems.append(f"{op.name}: no route named {op.name}")
                continue
            if path != "/v1" + op.http.path.format(**placeholders):
                problems.append(f"{op.name}: the route is at {path}, the table says /v1{op.http.path}")
                continue
            body = {} if op.http.method not in ("GET", "DELETE") and op.http.upload is None else None
            answer = http.request(op.http.method, path, json=body)
            if answer.status_code == 405 or "no route" in answer.text:
                problems.append(f"{op.name}: {op.http.method} {path} is not routed ({answer.status_code})")
    assert not problems, "REST:\n" + "\n".join(problems)


def test_rest_description(mos: MemOS) -> None:
    """The OpenAPI description of each route documents every input field: in the path, the query
    string or the JSON body, or as the file sent or received."""
    pytest.importorskip("fastapi")
    from memkern.server import create_app

    paths = create_app(mos, auth="off").openapi()["paths"]
    problems = []
    for op in OPS:
        described = paths.get(f"/v1{op.http.path}", {}).get(op.http.method.lower())
        if described is None:
            problems.append(f"{op.name}: not in /openapi.json")
            continue
        body = described.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
        documented = {p["name"] for p in described.get("parameters", [])} | set(body.get("properties", {}))
        documented |= {f for f in (op.http.upload, op.http.download) if f is not None}
        if documented != set(op.fields):
            problems.append(f"{op.name}: documents {sorted(documented)}, takes {sorted(op.fields)}")
    assert not problems, "OpenAPI:\n" + "\n".join(problems)


# -- MCP ------------------------------------------------------------------------------------------------
def test_mcp_tools(mos: MemOS) -> None:
    """A tool per operation with an MCP entry, named as the operation, its input fields as arguments."""
    pytest.importorskip("mcp.server.mcpserver", reason="needs the mcp extra")
    import anyio

    from memkern.mcp import build_server

    server = build_server(mos)
    tools = {tool.name: tool for tool in anyio.run(server.list_tools)}
    assert set(tools) == {op.name for op in OPS if op.mcp is not None}
    for op in OPS:
        if op.mcp is None:
            assert op.not_on_mcp, f"{op.name} is left out of MCP without a reason"
            continue
        tool = tools[op.name]
        assert set(tool.input_schema.get("properties", {})) == set(op.fields), op.name
        assert set(tool.input_schema.get("required", [])) == {
            f for f in op.fields if op.input.model_fields[f].is_required()}, op.name
        assert tool.annotations is not None
        assert tool.annotations.read_only_hint is (op.mcp == "read"), op.name
        assert tool.annotations.destructive_hint is (op.mcp == "destructive"), op.name
        assert tool.description and tool.output_schema, op.name


# -- CLI ------------------------------------------------------------------------------------------------
def _cli_commands() -> dict[tuple[str, ...], Any]:
    """Every CLI command by its words, as click commands."""
    import typer

    from memkern.cli.main import app

    found: dict[tuple[str, ...], Any] = {}

    def walk(command: Any, words: tuple[str, ...]) -> None:
        if isinstance(getattr(command, "commands", None), dict):  # a group
            for name, sub in command.commands.items():
                walk(sub, (*words, name))
        else:
            found[words] = command

    walk(typer.main.get_command(app), ())
    return found


def test_cli_commands() -> None:
    """A command per operation at ``op.cli.words``: its positional arguments as the table says, an
    option for every other field."""

    commands = _cli_commands()
    problems = []
    for op in OPS:
        command = commands.get(op.cli.words)
        if command is None:
            problems.append(f"{op.name}: no command `memkern {' '.join(op.cli.words)}`")
            continue
        params = {param.name: param for param in command.params}
        for field in op.fields:
            param = params.get(field)
            if param is None:
                problems.append(f"{op.name}: `memkern {' '.join(op.cli.words)}` has no parameter {field}")
            elif (param.param_type_name == "argument") != (field in op.cli.arguments):
                problems.append(f"{op.name}: {field} should be {'an argument' if field in op.cli.arguments else 'an option'}")
    assert not problems, "\n".join(problems)
