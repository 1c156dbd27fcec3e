"""MCP tools made from the operation table: one tool per operation, named as the operation.

A tool's input schema is the operation's input model (``memkern.api.inputs``), its output
schema the operation's result type, its annotations say whether it reads, writes or
destroys. The SDK does not validate the arguments itself: they go as given to the
dispatcher, which validates them against the same model as every other surface and so
refuses bad input with the same words. The result is sent as structured JSON, and as the
same JSON in a text block for clients that read only text. (A list or object that a client
sends as a JSON string, for a field that takes no text, is decoded first, as the SDK would.)

A memkern error becomes a tool error (``isError``) whose text is the error's detail and
whose structured content is the problem details every surface sends (``memkern.errors``):
the model reads what went wrong, and a program reads the problem type.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, ConfigDict, TypeAdapter, create_model

from memkern.api.spec import Operation
from memkern.api.table import OPERATIONS
from memkern.errors import MemkernError, problem_of

logger = logging.getLogger("memkern.mcp")

#: Runs an operation for a tool call: ``(ctx, operation name, arguments) -> result``.
Runner = Callable[[Context, str, dict[str, Any]], Any]

ANNOTATIONS: dict[str, ToolAnnotations] = {
    "read": ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                            open_world_hint=False),
    "write": ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False,
                             open_world_hint=False),
    "destructive": ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True,
                                   open_world_hint=False),
}


class AsGiven(ArgModelBase):
    """The arguments exactly as the client sent them: the dispatcher validates them, once."""

    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)

    def model_dump_one_level(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def json_fields(op: Operation) -> frozenset[str]:
    """The fields that take no text (lists, objects, numbers): some clients send such a value as a
    JSON string (``"[\"a\"]"``), which then means the JSON it holds."""
    schema = op.input.model_json_schema()
    definitions = schema.get("$defs", {})
    return frozenset(name for name, field in schema.get("properties", {}).items()
                     if not _takes_text(field, definitions))


def _takes_text(schema: dict[str, Any], definitions: dict[str, Any]) -> bool:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return _takes_text(definitions.get(ref.rsplit("/", 1)[-1], {}), definitions)
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        return any(_takes_text(option, definitions) for option in options)
    return schema.get("type", "string") == "string"  # no type: anything, text included


def _unquoted(arguments: dict[str, Any], fields: frozenset[str]) -> dict[str, Any]:
    """``arguments`` with a list or object sent as a JSON string, for a field that takes no text, decoded."""
    decoded = dict(arguments)
    for name in fields & arguments.keys():
        value = arguments[name]
        if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
            with contextlib.suppress(ValueError):
                found = json.loads(value)
                if isinstance(found, (list, dict)):
                    decoded[name] = found
    return decoded


def tool_operations() -> list[Operation]:
    """The operations that are MCP tools, in table order."""
    return [op for op in OPERATIONS.values() if op.mcp is not None]


def problem_result(error: MemkernError) -> CallToolResult:
    """A tool error carrying the problem details of ``error`` (the detail as its text)."""
    status, problem_type, title, detail = problem_of(error)
    if detail != str(error):  # the public detail hides internals: keep the message in the log
        logger.warning("%s: %s", type(error).__name__, error)
    return CallToolResult(content=[TextContent(type="text", text=detail)], is_error=True,
                          structured_content={"type": problem_type, "title": title, "status": status,
                                              "detail": detail, "error": type(error).__name__})


def make_tool(op: Operation, run: Runner) -> Tool:
    """The MCP tool of ``op``; a call runs ``run(ctx, op.name, arguments)``."""
    kind = op.mcp
    if kind is None:
        raise ValueError(f"{op.name} is not an MCP tool: {op.not_on_mcp}")
    wrapped = not (isinstance(op.output, type) and issubclass(op.output, BaseModel))
    output_model: Any = create_model(f"{op.name}_result", result=(op.output, ...)) if wrapped else op.output
    output = TypeAdapter(op.output)
    structured_fields = json_fields(op)

    def call(ctx: Context, **arguments: Any) -> CallToolResult:
        try:
            result = run(ctx, op.name, _unquoted(arguments, structured_fields))
        except MemkernError as exc:
            logger.info("tool %s failed: %s: %s", op.name, type(exc).__name__, exc)
            return problem_result(exc)
        structured = output.dump_python(result, mode="json")
        if wrapped:
            structured = {"result": structured}
        text = json.dumps(structured, ensure_ascii=False, indent=2)
        return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)

    return Tool(fn=call, name=op.name, title=None, description=" ".join(op.summary.split()),
                parameters=op.input.model_json_schema(),
                fn_metadata=FuncMetadata(arg_model=AsGiven, output_model=output_model, wrap_output=wrapped),
                is_async=False, context_kwarg="ctx", annotations=ANNOTATIONS[kind])
