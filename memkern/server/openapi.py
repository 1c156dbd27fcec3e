"""The OpenAPI description of the table's routes, from the same models the dispatcher validates.

For each operation: its path and query parameters and its JSON body are the fields of its
input model (``memkern.server.routes`` says which field goes where; a query field that is
not plain text is described as ``application/json`` content, as it is sent), its response is
its output type, and its error responses are the problem details of the errors it may raise
(the common ones and the table's ``errors``). All schemas are generated in one pass, so a
model used in both directions gets one name per direction.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import TypeAdapter

from memkern.api.spec import COMMON_ERRORS, Operation
from memkern.errors import AuthenticationError, MemkernError, PayloadTooLargeError
from memkern.server.auth import SECURITY_SCHEMES, Auth
from memkern.server.problems import PROBLEM_JSON
from memkern.server.routes import FILE_MEDIA_TYPE, PREFIX, body_fields, path_fields, query_fields, scalar_fields
from memkern.server.schemas import Problem

REF = "#/components/schemas/{model}"
PROBLEM_REF = {"$ref": REF.format(model="Problem")}
BINARY = {"type": "string", "format": "binary"}


def add_operations(document: dict[str, Any], operations: Iterable[Operation], *, auth: Auth) -> None:
    """Describe ``operations`` in the OpenAPI ``document`` (FastAPI's, for the other routes)."""
    ops = list(operations)
    adapters: list[tuple[tuple[str, str], Any, TypeAdapter[Any]]] = [(("", "problem"), "serialization",
                                                                       TypeAdapter(Problem))]
    for op in ops:
        adapters.append(((op.name, "input"), "validation", TypeAdapter(op.input)))
        adapters.append(((op.name, "output"), "serialization", TypeAdapter(op.output)))
    found, definitions = TypeAdapter.json_schemas(adapters, ref_template=REF)
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name, schema in definitions.get("$defs", {}).items():
        if name in schemas and schemas[name] != schema:
            raise RuntimeError(f"two different schemas are named {name!r} in the OpenAPI document")
        schemas[name] = schema
    if auth == "required":
        components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    paths = document.setdefault("paths", {})
    for op in ops:
        input_schema = _resolve(found[((op.name, "input"), "validation")], schemas)
        output_schema = found[((op.name, "output"), "serialization")]
        item = paths.setdefault(PREFIX + op.http.path, {})
        item[op.http.method.lower()] = _operation(op, input_schema, output_schema, auth)


def problems_everywhere(document: dict[str, Any]) -> None:
    """Every 4xx and 5xx response of every route is ``application/problem+json`` (FastAPI's own
    routes included, whose validation errors the server answers as problems too)."""
    for item in document.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            for status, response in operation.get("responses", {}).items():
                if status[:1] in ("4", "5"):
                    response["content"] = {PROBLEM_JSON: {"schema": PROBLEM_REF}}
    schemas = document.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)


def _resolve(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return schemas[ref.rsplit("/", 1)[-1]] if isinstance(ref, str) else schema


def _operation(op: Operation, input_schema: dict[str, Any], output_schema: dict[str, Any],
               auth: Auth) -> dict[str, Any]:
    properties = input_schema.get("properties", {})
    required = set(input_schema.get("required", []))
    plain = scalar_fields(op)
    parameters: list[dict[str, Any]] = [
        {"name": f, "in": "path", "required": True, "schema": properties[f]} for f in path_fields(op)]
    for f in query_fields(op):
        parameter: dict[str, Any] = {"name": f, "in": "query", "required": f in required}
        if "description" in properties[f]:
            parameter["description"] = properties[f]["description"]
        if f in plain:  # one value, written as is (a number as JSON and as text are the same)
            parameter["schema"] = properties[f]
        else:
            parameter["content"] = {"application/json": {"schema": properties[f]}}
        parameters.append(parameter)
    operation: dict[str, Any] = {
        "operationId": op.name, "summary": op.summary, "description": (op.run.__doc__ or op.summary).strip(),
        "tags": [op.http.path.strip("/").split("/")[0]], "parameters": parameters,
        "responses": _responses(op, output_schema, auth),
    }
    fields = body_fields(op)
    if op.http.upload is not None:
        operation["requestBody"] = {"required": True, "description": f"The file ({op.http.upload}).", "content": {
            FILE_MEDIA_TYPE: {"schema": BINARY}, "application/octet-stream": {"schema": BINARY}}}
    elif fields:
        body = {"type": "object", "properties": {f: properties[f] for f in fields},
                "required": [f for f in fields if f in required], "additionalProperties": False}
        operation["requestBody"] = {"required": any(f in required for f in fields),
                                    "content": {"application/json": {"schema": body}}}
    if auth == "required":
        operation["security"] = [{name: []} for name in SECURITY_SCHEMES]
    return operation


def _responses(op: Operation, output_schema: dict[str, Any], auth: Auth) -> dict[str, Any]:
    if op.http.download is not None:
        success = {"description": "The file.", "content": {FILE_MEDIA_TYPE: {"schema": BINARY}}}
    else:
        success = {"description": "The result.", "content": {"application/json": {"schema": output_schema}}}
    responses: dict[str, Any] = {str(op.http.status): success}
    errors: list[type[MemkernError]] = [*COMMON_ERRORS, *op.errors]
    if auth == "required":
        errors.append(AuthenticationError)
    if op.http.method not in ("GET", "DELETE"):
        errors.append(PayloadTooLargeError)
    titles: dict[int, list[str]] = {}
    for error in errors:
        if error.title not in titles.setdefault(error.status, []):
            titles[error.status].append(error.title)
    for status in sorted(titles):
        responses[str(status)] = {"description": "; ".join(titles[status]),
                                  "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}}}
    return responses
