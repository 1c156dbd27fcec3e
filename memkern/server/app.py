"""The REST API: ``create_app`` builds the FastAPI application, ``serve`` runs it with uvicorn.

The application is small on purpose: the routes are the operation table's
(``memkern.server.routes``, described by ``memkern.server.openapi``), the caller is the API
key's user (``memkern.server.auth``), every error is problem details
(``memkern.server.problems``) and bodies are bounded while they arrive
(``memkern.server.limits``). Besides them there is only ``GET /v1/health`` and the OpenAPI
document at ``/openapi.json`` (interactive docs at ``/docs``).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from memkern.api.table import OPERATIONS
from memkern.errors import InvalidInputError
from memkern.governance import guard_helper
from memkern.mos import MemOS
from memkern.server import openapi, problems
from memkern.server.auth import Auth, check_auth_mode, check_exposure
from memkern.server.limits import BodyLimitMiddleware
from memkern.server.routes import PREFIX, table_router, upload_patterns
from memkern.server.schemas import Health
from memkern.ui import ui_router
from memkern.version import __version__

DESCRIPTION = ("A memory operating system for LLMs and agents: every operation of memkern over HTTP. "
               "Errors are RFC 9457 problem details (`application/problem+json`).")


def create_app(mos: MemOS | None = None, *, auth: Auth = "required", max_body_bytes: int = 2_000_000,
               max_upload_bytes: int = 1024**3) -> FastAPI:
    """The REST API over ``mos`` (default: ``MemOS()``, opened now and closed at shutdown; a
    ``mos`` passed in stays open: its owner closes it).

    ``auth="required"`` (the default): every ``/v1`` route but the health check needs an API
    key and runs as its user, checked and audited. ``auth="off"``: no keys, no users, nothing
    checked: the embedded single-user default, for a loopback address only.

    ``max_body_bytes`` bounds every request body except uploaded files (``POST /v1/cubes/load``),
    which ``max_upload_bytes`` bounds; a larger body is refused with 413 while it arrives.
    """
    for value, what in ((max_body_bytes, "max_body_bytes"), (max_upload_bytes, "max_upload_bytes")):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidInputError(f"{what} must be a positive integer, not {value!r}")
    auth = check_auth_mode(auth)
    owned = mos is None
    memos = mos if mos is not None else MemOS()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        guard_helper.prepare()  # started with the server, not by the first large write (which would read alone)
        try:
            yield
        finally:
            if owned:
                memos.close()

    app = FastAPI(title="memkern", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  default_response_class=problems.JSONBody)
    app.state.mos = memos
    app.state.auth = auth

    @app.get(f"{PREFIX}/health", response_model=Health, tags=["health"])
    def health() -> Health:
        """Liveness: the server is up, with the embedder it uses (no API key needed)."""
        embedder = app.state.mos.embedder
        return Health(version=__version__, embedder=embedder.name, dim=embedder.dim)

    app.include_router(table_router(OPERATIONS.values()))
    app.include_router(ui_router(memos, auth=auth))  # the web UI at /ui/ (memkern.ui), same auth
    problems.install(app)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=max_body_bytes,
                       max_upload_bytes=max_upload_bytes, upload_paths=[*upload_patterns(OPERATIONS.values()), re.compile(r"/ui/cubes/load")])
    _describe(app, auth)
    return app


def _describe(app: FastAPI, auth: Auth) -> None:
    """``/openapi.json``: FastAPI's description of its own routes, plus the table's."""

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            openapi.add_operations(schema, OPERATIONS.values(), auth=auth)
            openapi.problems_everywhere(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]


def serve(host: str = "127.0.0.1", port: int = 8765, db: str | os.PathLike[str] | None = None, *,
          auth: Auth = "required", **uvicorn_options: Any) -> None:
    """Run the REST API with uvicorn until interrupted (``memkern serve``).

    ``auth="off"`` is refused unless ``host`` is a loopback address, and warns."""
    import uvicorn

    check_exposure(check_auth_mode(auth), host)
    with MemOS(os.fspath(db) if db is not None else None) as mos:
        if auth == "off":
            print(f"warning: serving http://{host}:{port} WITHOUT authentication: every local process has full "
                  "access to every cube", file=sys.stderr, flush=True)
        elif not mos.store.list_users():
            print("note: no users yet; create the first admin and a key with\n"
                  "  memkern user create NAME --role admin\n  memkern key create USER_ID",
                  file=sys.stderr, flush=True)
        uvicorn.run(create_app(mos, auth=auth), host=host, port=port, **uvicorn_options)
