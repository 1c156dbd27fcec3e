"""Every error the REST API answers is RFC 9457 problem details, from one mapping.

The mapping is the exception classes' own (``memkern.errors``: each carries its problem
type, HTTP status, title and, when its message may hold internals, a public detail) via
``problem_of``; the MCP server and the Python client read the same. HTTP-level failures
that are memkern errors in disguise become one (an unknown route is a ``NotFoundError``, a
body FastAPI could not read an ``InvalidInputError``); a bare HTTP status with no memkern
meaning (405) is ``about:blank``, as RFC 9457 says. Anything unexpected is a 500 with a
fixed detail; the real error goes to the ``memkern.server`` log, as does every error whose
public detail hides its message.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from memkern.errors import AuthenticationError, InvalidInputError, MemkernError, NotFoundError, problem_of

log = logging.getLogger("memkern.server")

PROBLEM_JSON = "application/problem+json"


class JSONBody(JSONResponse):
    """JSON that never fails to encode: odd code points are escaped, NaN is refused."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def problem(request: Request | None, status: int, type_: str, title: str, detail: str, *,
            error: str | None = None, headers: dict[str, str] | None = None) -> Response:
    """An ``application/problem+json`` response."""
    body: dict[str, Any] = {"type": type_, "title": title, "status": status, "detail": detail}
    if request is not None:
        body["instance"] = request.url.path
    if error is not None:
        body["error"] = error
    return JSONBody(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def error_response(request: Request | None, error: MemkernError) -> Response:
    """The problem details of a memkern error (its class says how)."""
    status, type_, title, detail = problem_of(error)
    where = f"{request.method} {request.url.path}" if request is not None else "a request"
    if detail != str(error):  # the public detail hides the message: keep it in the log
        log.error("%s on %s: %s", type(error).__name__, where, error)
    headers = {"Retry-After": "1"} if status == 503 else None
    if isinstance(error, AuthenticationError):
        headers = {"WWW-Authenticate": 'Bearer realm="memkern"'}
    return problem(request, status, type_, title, detail, error=type(error).__name__, headers=headers)


async def _memkern_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MemkernError)
    return error_response(request, exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(status).phrase
    if status == 404:
        return error_response(request, NotFoundError(f"no route {request.method} {request.url.path}"))
    if status in (400, 422):
        return error_response(request, InvalidInputError(detail))
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    if status == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    return problem(request, status, "about:blank", phrase, detail, headers=getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: Exception) -> Response:
    """Routes of other routers that let FastAPI validate their parameters (the table's routes
    leave it to the dispatcher)."""
    assert isinstance(exc, RequestValidationError)
    issues = [f"{'.'.join(str(part) for part in issue.get('loc', ())) or 'request'}: {issue.get('msg', '')}"
              for issue in exc.errors()[:5]]
    return error_response(request, InvalidInputError("; ".join(issues) or "the request is invalid"))


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.error("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path, exc_info=exc)
    return error_response(request, MemkernError(f"unexpected {type(exc).__name__}"))


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` with problem details."""
    app.add_exception_handler(MemkernError, _memkern_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
