"""The REST routes, bound from the operation table: one route per operation, no other code.

How a request becomes an operation's arguments (the Python client follows the same rules):

- The route is ``/v1`` + ``op.http.path`` with ``op.http.method``; each ``{field}`` of the
  path is that input field, as text.
- **GET and DELETE** (and uploads) take the other fields from the query string. A field
  that takes only text (a string, an enum, a time) is given as is (``owner=ann``,
  ``since=2024-05-01``); every other field is given as JSON text: numbers and booleans
  (``limit=20``), and objects and arrays such as ``filters``
  (``filters={"kind":"fact","state":null}``). A parameter given twice is refused.
- **POST, PUT and PATCH** take the other fields from a JSON object body (an empty body is
  ``{}``); they take no query string.
- A field the path gives may not be given again, and a field the server fills (below) may
  not be given at all.
- ``op.http.upload``: the request body is a file. It is streamed to a temporary file, the
  size limit enforced while it arrives (``memkern.server.limits``), and that file's path is
  the upload field; the other fields come from the query string. The file is deleted after.
- ``op.http.download``: the server names a temporary file as the download field, the
  operation writes it, and the response streams it back and deletes it; the result comes as
  JSON in the ``X-Memkern-Result`` header.
- The response is ``op.output`` as JSON, with ``op.http.status``.

Every route calls ``Dispatcher.call(user, op.name, args)`` in the threadpool, with the user
of the request's API key (``memkern.server.auth``): the dispatcher validates the arguments
against the operation's input model, checks permissions, runs the operation and audits it,
as for every other surface. Errors are problem details (``memkern.server.problems``).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response
from pydantic import TypeAdapter
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from memkern.api.spec import Operation
from memkern.api.table import OPERATIONS
from memkern.errors import InvalidInputError, MemkernError
from memkern.models import User
from memkern.server.auth import current_user
from memkern.validation import MAX_JSON_DEPTH, check_json_depth

PREFIX = "/v1"
#: Methods whose fields come from the query string; the others take a JSON body.
QUERY_METHODS = ("GET", "DELETE")
#: The one kind of file the table sends and takes: a portable cube file (a zip).
FILE_MEDIA_TYPE = "application/zip"
FILE_SUFFIX = ".mkcube"
#: The response header carrying a download's result (its body is the file); ``memkern.client`` reads it.
RESULT_HEADER = "X-Memkern-Result"

Caller = Annotated[User | None, Depends(current_user)]
_PATH_FIELD = re.compile(r"\{(\w+)\}")
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


def path_fields(op: Operation) -> list[str]:
    """The input fields the route's path gives, in order."""
    return _PATH_FIELD.findall(op.http.path)


def query_fields(op: Operation) -> list[str]:
    """The fields a route takes from its query string (none for a route with a JSON body)."""
    if op.http.method not in QUERY_METHODS and op.http.upload is None:
        return []
    server = (op.http.upload, op.http.download)
    return [f for f in op.fields if f not in path_fields(op) and f not in server]


def body_fields(op: Operation) -> list[str]:
    """The fields a route takes from its JSON body (none for a GET, DELETE or upload)."""
    if op.http.method in QUERY_METHODS or op.http.upload is not None:
        return []
    return [f for f in op.fields if f not in path_fields(op) and f != op.http.download]


def scalar_fields(op: Operation) -> frozenset[str]:
    """The fields that take one plain value (text, a number, a boolean), not an object or array."""
    return _fields_of_types(op, ("string", "integer", "number", "boolean"))


def text_fields(op: Operation) -> frozenset[str]:
    """The fields that take only text, given as is in a query string (the others as JSON)."""
    return _fields_of_types(op, ("string",))


def _fields_of_types(op: Operation, types: tuple[str, ...]) -> frozenset[str]:
    schema = op.input.model_json_schema()
    definitions = schema.get("$defs", {})
    return frozenset(name for name, field in schema.get("properties", {}).items()
                     if _only(types, field, definitions))


def _only(types: tuple[str, ...], schema: Mapping[str, Any], definitions: Mapping[str, Any]) -> bool:
    """Whether every value ``schema`` accepts, but null, is of one of the JSON ``types``."""
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return _only(types, definitions.get(ref.rsplit("/", 1)[-1], {}), definitions)
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"]
        return bool(options) and all(_only(types, s, definitions) for s in options)
    return schema.get("type") in types


def upload_patterns(operations: Iterable[Operation]) -> list[re.Pattern[str]]:
    """The request paths whose body is a file (they have the upload size limit)."""
    return [re.compile(PREFIX + _PATH_FIELD.sub("[^/]+", op.http.path)) for op in operations
            if op.http.upload is not None]


# -- reading a request ----------------------------------------------------------------------------
def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json(raw: bytes | str, what: str) -> Any:
    """Strict JSON (no NaN or Infinity), nesting bounded before the parser sees it."""
    check_json_depth(raw.encode() if isinstance(raw, str) else raw, what, MAX_JSON_DEPTH)
    return json.loads(raw, parse_constant=_no_constant)


def _check_unicode(value: Any, what: str) -> None:
    """Refuse a JSON string holding a lone surrogate (``"\\ud800"``): it can be neither stored nor sent back."""
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            todo.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise InvalidInputError(f"{what} holds text that is not valid Unicode (at character "
                                        f"{exc.start})") from None


class Binding:
    """One operation as a route: reads the request, calls the dispatcher, writes the response."""

    def __init__(self, op: Operation) -> None:
        self.op = op
        self.path_fields = path_fields(op)
        self.text_fields = text_fields(op)
        self.output: TypeAdapter[Any] = TypeAdapter(op.output)

    async def respond(self, request: Request, user: User | None) -> Response:
        if self.op.http.upload is not None:
            return await self._upload(request, user, self.op.http.upload)
        if self.op.http.method in QUERY_METHODS:
            args = self._with_path(request, self._query(request))
        else:
            args = self._with_path(request, await self._body(request))
        if self.op.http.download is not None:
            return await self._download(request, user, args, self.op.http.download)
        return self._json_response(await self._call(request, user, args))

    # -- the parts ---------------------------------------------------------------------------------
    async def _call(self, request: Request, user: User | None, args: dict[str, Any]) -> Any:
        dispatcher = request.app.state.mos.dispatcher
        return await run_in_threadpool(dispatcher.call, user, self.op.name, args)

    def _json_response(self, result: Any) -> Response:
        return Response(self.output.dump_json(result), status_code=self.op.http.status,
                        media_type="application/json")

    def _query(self, request: Request) -> dict[str, Any]:
        args: dict[str, Any] = {}
        for name, value in request.query_params.multi_items():
            if name in args:
                raise InvalidInputError(f"the query parameter {name!r} is given more than once")
            args[name] = value if name in self.text_fields else self._query_json(name, value)
        return args

    def _query_json(self, name: str, value: str) -> Any:
        try:
            found = _json(value, f"the query parameter {name!r}")
        except InvalidInputError:
            raise
        except ValueError:  # not JSON: the input model says what it expected
            return value
        _check_unicode(found, f"the query parameter {name!r}")
        return found

    async def _body(self, request: Request) -> dict[str, Any]:
        if request.query_params:
            raise InvalidInputError(f"{self.op.http.method} takes its fields in a JSON body, not in the query "
                                    f"string ({', '.join(sorted(request.query_params))})")
        raw = await request.body()
        if not raw.strip():
            return {}
        try:
            data = _json(raw, "the request body")
        except InvalidInputError:
            raise
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, NaN
            raise InvalidInputError(f"the request body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidInputError(f"the request body must be a JSON object, not {type(data).__name__}")
        _check_unicode(data, "the request body")
        return data

    def _with_path(self, request: Request, given: dict[str, Any]) -> dict[str, Any]:
        for name, body in ((self.op.http.upload, "request"), (self.op.http.download, "response")):
            if name is not None and name in given:
                raise InvalidInputError(f"{name} is set by the server: the {body} body is the file")
        for name in self.path_fields:
            if name in given:
                raise InvalidInputError(f"{name} is given by the path; do not give it again")
        return {**given, **{name: request.path_params[name] for name in self.path_fields}}

    async def _upload(self, request: Request, user: User | None, field: str) -> Response:
        args = self._with_path(request, self._query(request))
        workdir = Path(await run_in_threadpool(tempfile.mkdtemp, prefix="memkern-upload-"))
        path = workdir / f"upload{FILE_SUFFIX}"
        try:
            await _receive_file(request, path)
            try:
                result = await self._call(request, user, {**args, field: str(path)})
            except MemkernError as exc:
                raise _without_path(exc, path, "the uploaded file") from None
        finally:
            await run_in_threadpool(shutil.rmtree, workdir, True)
        return self._json_response(result)

    async def _download(self, request: Request, user: User | None, args: dict[str, Any], field: str) -> Response:
        workdir = Path(await run_in_threadpool(tempfile.mkdtemp, prefix="memkern-download-"))
        path = workdir / f"download{FILE_SUFFIX}"
        try:
            result = await self._call(request, user, {**args, field: str(path)})
        except MemkernError as exc:
            shutil.rmtree(workdir, ignore_errors=True)
            raise _without_path(exc, path, "the download") from None
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        filename = _filename(result, self.op.name)
        # The body is the file; the result (``op.output``) comes as JSON in a header, for the client,
        # naming the file as the response does (never the server's temporary path).
        shown = self.output.dump_python(result, mode="json")
        if isinstance(shown, dict) and field in shown:
            shown[field] = filename
        headers = {RESULT_HEADER: json.dumps(shown, ensure_ascii=True)}
        sha256 = getattr(result, "sha256", None)
        if isinstance(sha256, str):  # RFC 9530: the client can check what it received
            headers["Repr-Digest"] = f"sha-256=:{base64.b64encode(bytes.fromhex(sha256)).decode()}:"
        return FileResponse(path, status_code=self.op.http.status, media_type=FILE_MEDIA_TYPE,
                            filename=filename, headers=headers,
                            background=BackgroundTask(shutil.rmtree, workdir, ignore_errors=True))


async def _receive_file(request: Request, path: Path) -> None:
    """Stream the request body to ``path``: one chunk in memory at a time; the body limit
    (``BodyLimitMiddleware``) raises while it arrives."""
    handle = await run_in_threadpool(path.open, "wb")
    try:
        async for chunk in request.stream():
            if chunk:
                await run_in_threadpool(handle.write, chunk)
    finally:
        await run_in_threadpool(handle.close)


def _without_path(error: MemkernError, file: Path, name: str) -> MemkernError:
    """The error with the server's temporary file (or its directory) replaced by what the caller
    knows it as."""
    message = str(error)
    for path in (str(file), str(file.parent)):
        message = message.replace(path, name)
    if message == str(error):
        return error
    try:
        return type(error)(message)
    except TypeError:  # an error class that takes more than a message
        return error


def _filename(result: Any, fallback: str) -> str:
    cube = getattr(result, "cube", None)
    name = getattr(cube, "name", None) or fallback
    return (_UNSAFE_FILENAME.sub("_", name).strip("._") or fallback)[:100] + FILE_SUFFIX


# -- the router ------------------------------------------------------------------------------------
def _endpoint(op: Operation) -> Callable[..., Awaitable[Response]]:
    binding = Binding(op)

    async def endpoint(request: Request, user: Caller) -> Response:
        return await binding.respond(request, user)

    endpoint.__name__ = op.name
    endpoint.__doc__ = op.summary
    return endpoint


def table_router(operations: Iterable[Operation] = OPERATIONS.values()) -> APIRouter:
    """One route per operation, under ``/v1``. Their OpenAPI description is ``memkern.server.openapi``'s
    (FastAPI does not see their parameters: the dispatcher reads them)."""
    router = APIRouter(prefix=PREFIX)
    for op in operations:
        router.add_api_route(op.http.path, _endpoint(op), methods=[op.http.method], name=op.name,
                             status_code=op.http.status, response_model=None, include_in_schema=False)
    return router
