"""The REST API: the Python API over HTTP, route for method.

A thin layer: every route validates the shape of its request, resolves the caller,
calls the sync core (``MemOS`` / ``MemCube``) from FastAPI's threadpool and returns the
project's Pydantic models. Nothing here re-implements core logic.

Errors are RFC 9457 problem details (``application/problem+json``) everywhere:

=====================================  ======  ==============================================
cause                                  status  ``type``
=====================================  ======  ==============================================
``InvalidInputError``, bad JSON/fields  422    ``urn:memkern:problem:invalid-input``
``CubeFileError`` (an uploaded file)    422    ``urn:memkern:problem:cube-file``
``NotFoundError``, unknown route        404    ``urn:memkern:problem:not-found``
``ConflictError``                       409    ``urn:memkern:problem:conflict``
body over the limit                     413    ``urn:memkern:problem:payload-too-large``
``StoreError``                          503    ``urn:memkern:problem:store-unavailable``
``EmbedderError``                       503    ``urn:memkern:problem:embedder-unavailable``
``LLMError`` (chat)                     502    ``urn:memkern:problem:llm-unavailable``
chat with no LLM configured             503    ``urn:memkern:problem:llm-not-configured``
missing or bad API key                  401    ``urn:memkern:problem:unauthenticated``
not allowed on that cube                403    ``urn:memkern:problem:forbidden``
anything else                           500    ``urn:memkern:problem:internal``
=====================================  ======  ==============================================

5xx responses carry a fixed, safe ``detail`` (no paths, no internals); the real error
goes to the ``memkern.server`` log.

Who is calling is resolved by one dependency, :func:`current_actor`, on every ``/v1``
route except the health check: an API key sent as ``Authorization: Bearer <key>`` (or
``X-API-Key: <key>``) is authenticated with ``MemOS.authenticate`` and every route runs
against ``mos.as_user(user)``, so the governance layer (``memkern.governance``) checks
and audits every call. With ``create_app(mos, auth="off")`` (the embedded single-user
default, for loopback only) there is no key and no user: routes run against ``mos``
itself, unchecked, and the optional ``X-Memkern-Actor`` header only labels writes in the
operation log.

=====================================  ======  ==============================================
``AuthenticationError`` (no, bad or     401    ``urn:memkern:problem:unauthenticated``
revoked key)
``PermissionDeniedError``               403    ``urn:memkern:problem:permission-denied``
=====================================  ======  ==============================================

403, not 404: a cube that exists but that the caller may not open answers 403
(``PermissionDeniedError``), the same as the Python API; only a cube that does not exist
answers 404. Cube names are unique in the store, so ``POST /v1/cubes`` would reveal a
hidden name with 409 anyway: hiding existence behind 404 would be a pretence. Memory ids
inside a cube the caller may not open are never looked at (the cube check comes first),
and a quarantined memory is 404 to whoever may not see quarantined memories.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from datetime import datetime
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Body, Depends, FastAPI, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import APIKeyHeader, HTTPBearer
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from memkern import errors
from memkern.cube.cube import MemCube
from memkern.governance.api import API_KEY_HEADER, api_key_from
from memkern.models import AuditEntry, CubePolicy, Grant, RetentionReport, User
from memkern.models import (
    AddResult,
    ChatAnswer,
    CubeInfo,
    Filters,
    Hit,
    LifecycleState,
    MemoryItem,
    MemoryKind,
    Operation,
)
from memkern.mos import MemOS
from memkern.server.schemas import (
    MAX_OFFSET,
    MAX_PAGE,
    ApiKeyCreated,
    ApiKeyInfo,
    ChatRequest,
    CubeCreate,
    DocumentAdd,
    ForgetResult,
    GrantRequest,
    Health,
    InvalidateRequest,
    LifecycleChange,
    MemoryAdd,
    MemoryPage,
    MemoryUpdate,
    PolicyUpdate,
    Problem,
    RetentionRequest,
    RevokeResult,
    SearchRequest,
    UserCreate,
)

log = logging.getLogger("memkern.server")

#: With ``auth="off"`` only: a label for writes in the operation log (not an identity).
ACTOR_HEADER = "X-Memkern-Actor"
#: The API key, when not sent as ``Authorization: Bearer <key>``.
#: ``create_app(auth=...)``: ``required`` (an API key on every /v1 route) or ``off``.
AUTH_MODES = ("required", "off")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
PROBLEM_JSON = "application/problem+json"
PROBLEM_PREFIX = "urn:memkern:problem:"
#: Where a cube file is uploaded; its body limit is ``max_upload_bytes``.
LOAD_PATH = "/v1/cubes/load"
#: Most bytes of an oversized body read and discarded before answering 413, so that a
#: client that sends its whole body before reading the answer still gets the answer.
_DRAIN_LIMIT = 64 * 1024 * 1024

# --------------------------------------------------------------------------------- problems

#: memkern exception -> (status, type slug, title, safe detail or None to pass the message on).
_ERROR_MAP: list[tuple[type[Exception], int, str, str, str | None]] = [
    (errors.AuthenticationError, 401, "unauthenticated", "Unauthenticated", None),
    (errors.PermissionDeniedError, 403, "permission-denied", "Permission denied", None),
    (errors.InvalidInputError, 422, "invalid-input", "Invalid input", None),
    (errors.CubeFileError, 422, "cube-file", "Invalid cube file", None),
    (errors.NotFoundError, 404, "not-found", "Not found", None),
    (errors.ConflictError, 409, "conflict", "Conflict", None),
    (errors.EmbedderError, 503, "embedder-unavailable", "Embedder unavailable",
     "the embedding model is unavailable or does not match this cube; see the server log"),
    (errors.StoreError, 503, "store-unavailable", "Store unavailable",
     "the store could not complete the operation (it may be busy); try again"),
]
_LLM_ERROR = getattr(errors, "LLMError", None)
if _LLM_ERROR is not None:
    _ERROR_MAP.append((_LLM_ERROR, 502, "llm-unavailable", "Language model unavailable",
                       "the language model could not be reached or answered badly; try again"))

_STATUS_SLUG = {400: "bad-request", 404: "not-found", 405: "method-not-allowed", 406: "not-acceptable",
                413: "payload-too-large", 415: "unsupported-media-type", 422: "invalid-input"}


def problem_response(request: Request | None, status: int, *, slug: str | None = None, title: str | None = None,
                     detail: str | None = None, error: str | None = None,
                     headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    """An ``application/problem+json`` response (RFC 9457)."""
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    slug = slug or _STATUS_SLUG.get(status) or ("internal" if status >= 500 else "error")
    body = Problem(type=PROBLEM_PREFIX + slug, title=title or phrase, status=status, detail=detail,
                   instance=request.url.path if request is not None else None, error=error, **extra)
    # ensure_ascii: a detail that quotes odd input is still valid JSON and valid UTF-8.
    return _JSONResponse(jsonable_encoder(body, exclude_none=True), status_code=status, headers=headers,
                         media_type=PROBLEM_JSON)


class _JSONResponse(JSONResponse):
    """JSON that never fails to encode (odd code points are escaped, not refused)."""

    def render(self, content: Any) -> bytes:
        import json

        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


class PayloadTooLarge(StarletteHTTPException):
    """The request body is larger than the limit (raised while it is being read)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the limit of {limit:,} bytes")
        self.limit = limit


def _memkern_error(request: Request, exc: Exception) -> JSONResponse:
    for cls, status, slug, title, safe in _ERROR_MAP:
        if isinstance(exc, cls):
            if safe is not None:
                log.error("%s on %s %s: %s", type(exc).__name__, request.method, request.url.path, exc)
            headers = {"Retry-After": "1"} if status == 503 else None
            if status == 401:
                headers = {"WWW-Authenticate": 'Bearer realm="memkern"'}
            return problem_response(request, status, slug=slug, title=title,
                                    detail=safe if safe is not None else str(exc), error=cls.__name__,
                                    headers=headers)
    log.error("unexpected %s on %s %s: %s", type(exc).__name__, request.method, request.url.path, exc)
    return problem_response(request, 500, detail="memkern could not complete the request; see the server log",
                            error="MemkernError")


def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    issues = []
    for issue in exc.errors():
        issues.append({"loc": [str(part) for part in issue.get("loc", ())], "msg": str(issue.get("msg", "")),
                       "type": str(issue.get("type", ""))})
    summary = "; ".join(f"{'.'.join(i['loc']) or 'request'}: {i['msg']}" for i in issues[:5])
    if len(issues) > 5:
        summary += f"; and {len(issues) - 5} more"
    return problem_response(request, 422, slug="invalid-input", title="Invalid input",
                            detail=summary or "the request is invalid", error="InvalidInputError", errors=issues)


def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    status = exc.status_code
    detail = exc.detail if isinstance(exc.detail, str) else None
    if status == 404 and detail in (None, "Not Found"):
        detail = f"no route {request.method} {request.url.path}"
    if status == 405 and detail in (None, "Method Not Allowed"):
        detail = f"{request.method} is not allowed on {request.url.path}"
    error = {404: "NotFoundError", 413: "InvalidInputError", 400: "InvalidInputError",
             422: "InvalidInputError"}.get(status)
    return problem_response(request, status, detail=detail, error=error, headers=getattr(exc, "headers", None))


def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path)
    return problem_response(request, 500, detail="memkern could not complete the request; see the server log")


# ------------------------------------------------------------------------------ body limit

class BodyLimitMiddleware:
    """Refuse request bodies over a size limit with 413, before any route sees them.

    ``Content-Length`` is checked first; the bytes actually received are counted too
    (chunked bodies, lying clients). Routes read their whole body before acting, so an
    oversized body is refused before anything is written.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], max_body_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_upload_bytes if scope.get("path") == LOAD_PATH else self.max_body_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _drain(receive, 0)
            response = problem_response(Request(scope), 413, slug="payload-too-large", title="Payload too large",
                                        detail=f"the request body is {declared:,} bytes; the limit is {limit:,}",
                                        error="InvalidInputError", headers={"Connection": "close"})
            await response(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if message.get("more_body", False):
                        await _drain(receive, received)
                    raise PayloadTooLarge(limit)
            return message

        await self.app(scope, counting_receive, send)


def _content_length(scope: MutableMapping[str, Any]) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _drain(receive: Callable[[], Awaitable[dict[str, Any]]], already: int) -> None:
    total = already
    while total <= _DRAIN_LIMIT:
        message = await receive()
        if message["type"] != "http.request":
            return
        total += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


# ------------------------------------------------------------------------------ dependencies

_bearer_scheme = HTTPBearer(
    scheme_name="BearerKey", auto_error=False,
    description="An API key (`memkern key create USER`) as `Authorization: Bearer <key>`.",
)
_key_scheme = APIKeyHeader(
    name=API_KEY_HEADER, scheme_name="ApiKey", auto_error=False,
    description="The same API key in the `X-API-Key` header instead.",
)


def current_actor(request: Request) -> User | None:
    """Who is calling: the one place every ``/v1`` route learns it.

    With ``auth="required"``: the user the request's API key belongs to, or
    ``AuthenticationError`` (401) for a missing, malformed, unknown or revoked key. With
    ``auth="off"``: ``None``, the unrestricted embedded default.
    """
    if request.app.state.auth == "off":
        return None
    key = api_key_from(request.headers)
    if key is None:
        raise errors.AuthenticationError(
            "an API key is required: send 'Authorization: Bearer <key>' (or 'X-API-Key: <key>')")
    mos: MemOS = request.app.state.mos
    return mos.authenticate(key)


Caller = Annotated[User | None, Depends(current_actor)]


def actor_label(request: Request, user: Caller) -> str | None:
    """The ``actor`` the operation log records: the user, or (``auth="off"``) the label header."""
    if user is not None:
        return user.id
    value = request.headers.get(ACTOR_HEADER)
    if value is None or not value.strip():
        return None
    return value.strip()


Actor = Annotated[str | None, Depends(actor_label)]


def get_mos(request: Request, user: Caller) -> MemOS:
    """The MemOS a route runs against: ``mos.as_user(user)``, checked and audited (or ``mos``
    itself with ``auth="off"``)."""
    mos: MemOS = request.app.state.mos
    return mos if user is None else mos.as_user(user)


Mos = Annotated[MemOS, Depends(get_mos)]


def _cube(mos: MemOS, name: str) -> MemCube:
    return mos.get_cube(name)


# ------------------------------------------------------------------------------------ routes

_ERRORS = {
    401: {"model": Problem, "description": "No, malformed, unknown or revoked API key"},
    403: {"model": Problem, "description": "Permission denied"},
    404: {"model": Problem, "description": "No such cube or memory"},
    422: {"model": Problem, "description": "Invalid input"},
    503: {"model": Problem, "description": "Store or embedder unavailable"},
}
_WRITE_ERRORS = {**_ERRORS, 409: {"model": Problem, "description": "Conflict"},
                 413: {"model": Problem, "description": "Body too large"}}

_SAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


def _build_router() -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(_bearer_scheme), Depends(_key_scheme),
                                                   Depends(current_actor)])

    # -- cubes ---------------------------------------------------------------------------------
    @router.post("/cubes", status_code=201, response_model=CubeInfo, tags=["cubes"], responses=_WRITE_ERRORS)
    def create_cube(body: CubeCreate, mos: Mos, response: Response) -> CubeInfo:
        """Create an empty cube (``MemOS.create_cube``)."""
        owner = {"owner": body.owner} if body.owner is not None else {}
        info = mos.create_cube(body.name, description=body.description, **owner).info
        response.headers["Location"] = f"/v1/cubes/{info.id}"
        return info

    @router.get("/cubes", response_model=list[CubeInfo], tags=["cubes"], responses=_ERRORS)
    def list_cubes(mos: Mos, owner: Annotated[str | None, Query(max_length=1_000)] = None) -> list[CubeInfo]:
        """Every cube, or one owner's (``MemOS.list_cubes``)."""
        return mos.list_cubes(owner)

    @router.post(LOAD_PATH.removeprefix("/v1"), status_code=201, response_model=CubeInfo, tags=["cubes"],
                 responses=_WRITE_ERRORS, openapi_extra={"requestBody": {"required": True, "content": {
                     "application/zip": {"schema": {"type": "string", "format": "binary"}},
                     "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
    async def load_cube(request: Request, mos: Mos,
                        name: Annotated[str | None, Query(description="Name of the loaded cube.")] = None,
                        owner: Annotated[str | None, Query(description="Owner of the loaded cube.")] = None,
                        ) -> CubeInfo:
        """Load a cube file written by ``GET /v1/cubes/{name}/dump`` (``MemOS.load_cube``).

        The body is the file itself. It is verified whole before anything is written.
        """
        workdir = Path(tempfile.mkdtemp(prefix="memkern-upload-"))
        path = workdir / "upload.mkcube"
        try:
            with path.open("wb") as fh:
                async for chunk in request.stream():
                    if chunk:
                        await run_in_threadpool(fh.write, chunk)
            try:
                return (await run_in_threadpool(mos.load_cube, path, name, owner)).info
            except errors.CubeFileError as exc:
                raise errors.CubeFileError(str(exc).replace(str(path), "the uploaded file")) from None
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    @router.get("/cubes/{name}", response_model=CubeInfo, tags=["cubes"], responses=_ERRORS)
    def get_cube(name: str, mos: Mos) -> CubeInfo:
        """A cube's metadata, by name or id (``MemOS.get_cube``)."""
        return _cube(mos, name).info

    @router.delete("/cubes/{name}", status_code=204, response_class=Response, tags=["cubes"], responses=_ERRORS)
    def delete_cube(name: str, mos: Mos, actor: Actor) -> Response:
        """Delete a cube and every memory in it. Final (``MemOS.delete_cube``)."""
        mos.delete_cube(name, actor=actor)
        return Response(status_code=204)

    @router.get("/cubes/{name}/dump", response_class=FileResponse, tags=["cubes"], responses={
        **_ERRORS, 200: {"description": "The portable cube file", "content": {
            "application/zip": {"schema": {"type": "string", "format": "binary"}}}}})
    def dump_cube(name: str, mos: Mos) -> FileResponse:
        """The cube as one portable file (``MemCube.dump``), to load with ``POST /v1/cubes/load``."""
        cube = _cube(mos, name)
        workdir = Path(tempfile.mkdtemp(prefix="memkern-dump-"))
        try:
            written = cube.dump(workdir / "cube.mkcube")
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        filename = (_SAFE_FILENAME.sub("_", cube.name).strip("._") or cube.id)[:100] + ".mkcube"
        return FileResponse(written, media_type="application/zip", filename=filename,
                            background=BackgroundTask(shutil.rmtree, workdir, ignore_errors=True))

    # -- memories ------------------------------------------------------------------------------
    @router.post("/cubes/{name}/memories", status_code=201, response_model=AddResult, tags=["memories"],
                 responses=_WRITE_ERRORS)
    def add_memories(name: str, body: MemoryAdd, mos: Mos, actor: Actor) -> AddResult:
        """Store chat ``messages`` as turns, or one ``text`` memory (``MemCube.add``)."""
        return _cube(mos, name).add(body.messages, text=body.text, session_id=body.session_id, kind=body.kind,
                                    tags=body.tags, metadata=body.metadata, time=body.time, actor=actor,
                                    infer=body.infer)

    @router.post("/cubes/{name}/documents", status_code=201, response_model=AddResult, tags=["memories"],
                 responses=_WRITE_ERRORS)
    def add_document(name: str, body: DocumentAdd, mos: Mos, actor: Actor) -> AddResult:
        """Store a plain-text document as chunk memories (``MemCube.add_document``)."""
        return _cube(mos, name).add_document(body.text, path=body.path, time=body.time, tags=body.tags,
                                             actor=actor)

    @router.post("/cubes/{name}/search", response_model=list[Hit], tags=["memories"], responses=_WRITE_ERRORS)
    def search(name: str, body: SearchRequest, mos: Mos) -> list[Hit]:
        """The memories that best answer ``query``, best first, with score parts (``MemCube.search``)."""
        return _cube(mos, name).search(body.query, body.top_k, filters=body.filters,
                                       config=body.config if body.config is not None else body.recipe)

    @router.get("/cubes/{name}/memories", response_model=MemoryPage, tags=["memories"], responses=_ERRORS)
    def list_memories(
        name: str, mos: Mos,
        session_id: Annotated[list[str] | None, Query(description="Only these sessions (repeatable).")] = None,
        kind: Annotated[list[MemoryKind] | None, Query(description="Only these kinds (repeatable).")] = None,
        tags: Annotated[list[str] | None, Query(description="Only memories with all these tags (repeatable).")] = None,
        speaker: Annotated[str | None, Query()] = None,
        since: Annotated[datetime | None, Query()] = None,
        until: Annotated[datetime | None, Query()] = None,
        state: Annotated[LifecycleState | Literal["any"], Query(description="Lifecycle state, or `any`.")]
        = LifecycleState.ACTIVE,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> MemoryPage:
        """Current memories matching the filters, oldest first, a page at a time (``MemCube.get_all``)."""
        filters = Filters(session_id=session_id, kind=kind, tags=tags, speaker=speaker, since=since, until=until,
                          state=None if state == "any" else state)
        items = _cube(mos, name).get_all(filters, limit=limit + 1, offset=offset)
        more = len(items) > limit
        return MemoryPage(items=items[:limit], offset=offset, limit=limit,
                          next_offset=offset + limit if more else None)

    @router.get("/cubes/{name}/memories/{memory_id}", response_model=MemoryItem, tags=["memories"],
                responses=_ERRORS)
    def get_memory(name: str, memory_id: str, mos: Mos) -> MemoryItem:
        """One memory, current version (``MemCube.get``)."""
        return _cube(mos, name).get(memory_id)

    @router.patch("/cubes/{name}/memories/{memory_id}", response_model=MemoryItem, tags=["memories"],
                  responses=_WRITE_ERRORS)
    def update_memory(name: str, memory_id: str, body: MemoryUpdate, mos: Mos, actor: Actor) -> MemoryItem:
        """Write a new version of a memory; the old one stays in its history (``MemCube.update``)."""
        return _cube(mos, name).update(memory_id, body.text, tags=body.tags, metadata=body.metadata,
                                       valid_from=body.valid_from, event_time=body.event_time, reason=body.reason,
                                       actor=actor)

    @router.delete("/cubes/{name}/memories/{memory_id}", status_code=204, response_class=Response,
                   tags=["memories"], responses=_ERRORS)
    def delete_memory(name: str, memory_id: str, mos: Mos, actor: Actor,
                      reason: Annotated[str | None, Query(max_length=10_000)] = None) -> Response:
        """Delete a memory with all its versions. Final; the log keeps its id (``MemCube.delete``)."""
        _cube(mos, name).delete(memory_id, reason=reason, actor=actor)
        return Response(status_code=204)

    @router.get("/cubes/{name}/memories/{memory_id}/history", response_model=list[MemoryItem],
                tags=["memories"], responses=_ERRORS)
    def memory_history(name: str, memory_id: str, mos: Mos) -> list[MemoryItem]:
        """Every version of a memory, oldest first (``MemCube.history``)."""
        return _cube(mos, name).history(memory_id)

    @router.post("/cubes/{name}/memories/{memory_id}/archive", response_model=MemoryItem, tags=["memories"],
                 responses=_WRITE_ERRORS)
    def archive_memory(name: str, memory_id: str, mos: Mos, actor: Actor,
                       body: Annotated[LifecycleChange | None, Body()] = None) -> MemoryItem:
        """Keep a memory but leave it out of search (``MemCube.archive``)."""
        return _cube(mos, name).archive(memory_id, reason=body.reason if body else None, actor=actor)

    @router.post("/cubes/{name}/memories/{memory_id}/restore", response_model=MemoryItem, tags=["memories"],
                 responses=_WRITE_ERRORS)
    def restore_memory(name: str, memory_id: str, mos: Mos, actor: Actor,
                       body: Annotated[LifecycleChange | None, Body()] = None) -> MemoryItem:
        """Bring an archived memory back into search (``MemCube.restore``)."""
        return _cube(mos, name).restore(memory_id, reason=body.reason if body else None, actor=actor)

    @router.post("/cubes/{name}/memories/{memory_id}/invalidate", response_model=MemoryItem, tags=["memories"],
                 responses=_WRITE_ERRORS)
    def invalidate_memory(name: str, memory_id: str, mos: Mos, actor: Actor,
                          body: Annotated[InvalidateRequest | None, Body()] = None) -> MemoryItem:
        """Record that a memory stopped being true at ``at`` (default now) and archive it (``MemCube.invalidate``)."""
        body = body or InvalidateRequest()
        return _cube(mos, name).invalidate(memory_id, at=body.at, reason=body.reason, metadata=body.metadata,
                                           actor=actor)

    @router.post("/cubes/{name}/memories/{memory_id}/release", response_model=MemoryItem, tags=["quarantine"],
                 responses=_WRITE_ERRORS)
    def release_memory(name: str, memory_id: str, mos: Mos, actor: Actor,
                       body: Annotated[LifecycleChange | None, Body()] = None) -> MemoryItem:
        """Release a memory the poisoning guard quarantined back into search (cube admins; ``MemCube.release``).

        Quarantined memories are listed by ``GET .../memories?state=quarantined`` (cube admins)."""
        return _cube(mos, name).release(memory_id, reason=body.reason if body else None, actor=actor)

    @router.post("/cubes/{name}/chat", response_model=ChatAnswer, tags=["memories"],
                 responses={**_WRITE_ERRORS, 502: {"model": Problem, "description": "The language model failed"},
                            503: {"model": Problem, "description": "No language model configured, or the store "
                                                                   "or embedder is unavailable"}})
    def chat(name: str, body: ChatRequest, mos: Mos, request: Request) -> Any:
        """Answer ``query`` from the cube's memories with the server's LLM (``MemCube.chat``).

        503 (``llm-not-configured``) when the server has no LLM (``MEMKERN_LLM``)."""
        cube = _cube(mos, name)  # 404 / 403 before anything else
        if mos.llm is None:
            from memkern.chat import NO_LLM_MESSAGE

            return problem_response(request, 503, slug="llm-not-configured", title="No language model configured",
                                    detail=NO_LLM_MESSAGE, error="LLMUnavailableError")
        return cube.chat(body.query, top_k=body.top_k, write_back=body.write_back, session_id=body.session_id)

    # -- grants and policy ------------------------------------------------------------------------
    @router.get("/cubes/{name}/grants", response_model=list[Grant], tags=["grants"], responses=_ERRORS)
    def list_grants(name: str, mos: Mos) -> list[Grant]:
        """Who the cube is shared with (cube admins; ``MemOS.grants``)."""
        return mos.grants(name)

    @router.put("/cubes/{name}/grants/{user_id}", response_model=Grant, tags=["grants"], responses=_WRITE_ERRORS)
    def put_grant(name: str, user_id: str, body: GrantRequest, mos: Mos) -> Grant:
        """Share the cube: give a user read, write or admin on it, replacing any earlier grant (``MemOS.grant``)."""
        return mos.grant(name, user_id, body.permission)

    @router.delete("/cubes/{name}/grants/{user_id}", response_model=RevokeResult, tags=["grants"],
                   responses=_ERRORS)
    def delete_grant(name: str, user_id: str, mos: Mos) -> RevokeResult:
        """Take a user's grant on the cube away; ``revoked`` is false if they had none (``MemOS.revoke``)."""
        return RevokeResult(revoked=mos.revoke(name, user_id))

    @router.get("/cubes/{name}/policy", response_model=CubePolicy, tags=["grants"], responses=_ERRORS)
    def get_policy(name: str, mos: Mos) -> CubePolicy:
        """The cube's governance policy (retention, PII redaction, guard; ``MemOS.policy``)."""
        return mos.policy(name)

    @router.put("/cubes/{name}/policy", response_model=CubePolicy, tags=["grants"], responses=_WRITE_ERRORS)
    def put_policy(name: str, body: PolicyUpdate, mos: Mos) -> CubePolicy:
        """Set policy keys; those not given keep their value (cube admins; ``MemOS.set_policy``)."""
        return mos.set_policy(name, **body.model_dump(exclude_unset=True))

    @router.get("/cubes/{name}/operations", response_model=list[Operation], tags=["memories"], responses=_ERRORS)
    def operations(name: str, mos: Mos,
                   memory_id: Annotated[str | None, Query(description="Only this memory's operations.")] = None,
                   limit: Annotated[int | None, Query(ge=1, le=MAX_OFFSET)] = None) -> list[Operation]:
        """The cube's operation log (ids, never text), oldest first (``MemCube.operations``)."""
        return _cube(mos, name).operations(memory_id, limit)

    _add_governance_routes(router)
    return router


def _add_governance_routes(router: APIRouter) -> None:
    """Users, API keys, the audit log and retention (the cube-level ones are with the cubes)."""

    @router.post("/users", status_code=201, response_model=User, tags=["users"], responses=_WRITE_ERRORS)
    def create_user(body: UserCreate, mos: Mos, response: Response) -> User:
        """Create a user (admins; ``MemOS.create_user``)."""
        user = mos.create_user(body.name, body.role, user_id=body.id)
        response.headers["Location"] = f"/v1/users/{quote(user.id, safe='')}"
        return user

    @router.get("/users", response_model=list[User], tags=["users"], responses=_ERRORS)
    def list_users(mos: Mos) -> list[User]:
        """Every user (admins; ``MemOS.list_users``)."""
        return mos.list_users()

    @router.get("/me", response_model=User | None, tags=["users"], responses=_ERRORS)
    def whoami(user: Caller) -> User | None:
        """The user the API key belongs to (``null`` when the server runs without authentication)."""
        return user

    @router.delete("/users/{user_id}", response_model=ForgetResult, tags=["users"], responses=_ERRORS)
    def forget_user(user_id: str, mos: Mos) -> ForgetResult:
        """Erase a user: their cubes and every memory in them, grants, keys and audit trail
        (admins, or the user themselves; ``MemOS.forget_user``)."""
        return ForgetResult(user_id=user_id, cubes=mos.forget_user(user_id))

    @router.post("/users/{user_id}/keys", status_code=201, response_model=ApiKeyCreated, tags=["keys"],
                 responses=_WRITE_ERRORS)
    def create_key(user_id: str, mos: Mos) -> ApiKeyCreated:
        """A new API key for the user, in plain text this once (admins, or the user themselves)."""
        key = mos.create_api_key(user_id)
        return ApiKeyCreated(key=key, prefix=key.split("_")[1], user_id=user_id)

    @router.get("/users/{user_id}/keys", response_model=list[ApiKeyInfo], tags=["keys"], responses=_ERRORS)
    def list_keys(user_id: str, mos: Mos) -> list[ApiKeyInfo]:
        """The user's keys, by prefix (never the key or its hash)."""
        return [ApiKeyInfo.model_validate(k.model_dump(exclude={"key_hash"})) for k in mos.api_keys(user_id)]

    @router.delete("/keys/{prefix}", status_code=204, response_class=Response, tags=["keys"], responses=_ERRORS)
    def revoke_key(prefix: str, mos: Mos) -> Response:
        """Revoke a key by its prefix (the 12 hex digits after ``mk_``; ``MemOS.revoke_api_key``)."""
        mos.revoke_api_key(prefix)
        return Response(status_code=204)

    @router.get("/audit", response_model=list[AuditEntry], tags=["audit"], responses=_ERRORS)
    def audit(mos: Mos,
              cube: Annotated[str | None, Query(max_length=1_000, description="Only this cube (name or id).")] = None,
              user: Annotated[str | None, Query(max_length=1_000, description="Only this user id.")] = None,
              since: Annotated[datetime | None, Query(description="Only entries at or after this time.")] = None,
              limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> list[AuditEntry]:
        """Audit entries, newest first (ids only, never text). A non-admin sees only their own."""
        return mos.audit(cube=cube, user=user, since=since, limit=limit)

    @router.post("/admin/retention", response_model=RetentionReport, tags=["admin"], responses=_WRITE_ERRORS)
    def retention(mos: Mos, body: Annotated[RetentionRequest | None, Body()] = None) -> RetentionReport:
        """Apply every cube's retention policy now (admins; ``MemOS.apply_retention``)."""
        return mos.apply_retention(body.now if body else None)


# --------------------------------------------------------------------------------------- app

def create_app(mos: MemOS | None = None, *, auth: Literal["required", "off"] = "required",
               max_body_bytes: int = 2_000_000, max_upload_bytes: int = 1024**3) -> FastAPI:
    """The REST API over ``mos`` (default: ``MemOS()``, opened now and closed at shutdown).

    ``auth="required"`` (the default): every ``/v1`` route but the health check needs an
    API key and runs as its user, checked and audited. ``auth="off"``: no keys, no users,
    nothing checked: the embedded single-user default, for a server on a loopback address
    only (``memkern serve --no-auth``).

    ``max_body_bytes`` bounds every request body except cube-file uploads
    (``POST /v1/cubes/load``), which ``max_upload_bytes`` bounds; larger bodies get 413.
    A ``mos`` passed in stays open: its owner closes it.
    """
    from memkern import __version__

    for value, what in ((max_body_bytes, "max_body_bytes"), (max_upload_bytes, "max_upload_bytes")):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise errors.InvalidInputError(f"{what} must be a positive integer, not {value!r}")
    if auth not in AUTH_MODES:
        raise errors.InvalidInputError(f"auth must be 'required' or 'off', not {auth!r}")
    owned = mos is None
    memos = mos if mos is not None else MemOS()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if owned:
                memos.close()

    app = FastAPI(
        title="memkern", version=__version__, lifespan=lifespan, default_response_class=_JSONResponse,
        description="A memory operating system for LLMs and agents: the Python API over HTTP. Errors are "
                    "RFC 9457 problem details (`application/problem+json`).",
    )
    app.state.mos = memos
    app.state.auth = auth
    app.state.max_body_bytes = max_body_bytes

    @app.get("/v1/health", response_model=Health, tags=["health"])
    def health() -> Health:
        """Liveness: the server is up, with the embedder it uses."""
        return Health(version=__version__, embedder=memos.embedder.name, dim=memos.embedder.dim)

    app.include_router(_build_router())
    _document_problems(app)
    app.add_exception_handler(errors.MemkernError, _memkern_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected_error)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=max_body_bytes,  # type: ignore[arg-type]
                       max_upload_bytes=max_upload_bytes)
    return app


def _document_problems(app: FastAPI) -> None:
    """Make the published schema say what the API does: every error is ``application/problem+json``."""
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = default_openapi()
        problem = {"$ref": "#/components/schemas/Problem"}
        for operation in (op for item in schema.get("paths", {}).values() for op in item.values()
                          if isinstance(op, dict)):
            for status, response in operation.get("responses", {}).items():
                if status[:1] in ("4", "5"):
                    response["content"] = {PROBLEM_JSON: {"schema": problem}}
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def serve(host: str = "127.0.0.1", port: int = 8765, db: str | os.PathLike[str] | None = None, *,
          auth: Literal["required", "off"] = "required", **uvicorn_options: Any) -> None:
    """Run the REST API with uvicorn until interrupted (``memkern serve``).

    ``auth="off"`` is refused unless ``host`` is a loopback address, and warns."""
    import sys

    import uvicorn

    if auth == "off" and host not in LOOPBACK_HOSTS:
        raise errors.InvalidInputError(f"refusing to serve {host} without authentication: --no-auth is for a "
                                       f"loopback address ({', '.join(LOOPBACK_HOSTS)}) only")
    with MemOS(db) as mos:
        if auth == "off":
            print(f"warning: serving http://{host}:{port} WITHOUT authentication: every local process has full "
                  "access to every cube", file=sys.stderr, flush=True)
        elif not mos._store.list_users():
            print("note: no users yet; create the first admin and a key with\n"
                  "  memkern user create NAME --role admin\n  memkern key create USER_ID",
                  file=sys.stderr, flush=True)
        uvicorn.run(create_app(mos, auth=auth), host=host, port=port, **uvicorn_options)
