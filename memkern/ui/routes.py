"""The web UI's routes: server-rendered pages over the governed operations.

Every page and every action calls ``Dispatcher.call(user, operation, args)``, the same
enforcement point as the Python API, REST, MCP and the CLI: the UI never reads or writes the
store itself, so a reader sees exactly what the reader may read, and a write it forges is
refused (403) and audited like any other. Whether to *show* a write control is decided from
the caller's permission on the cube (``Authorizer.permission``); that only hides buttons,
it never allows anything.

Reading works without JavaScript: pages are plain HTML with GET forms for filters and links
for pagination. Writes are POST forms carrying the session's CSRF token; a destructive one
(delete) goes through a confirmation page.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import quote, urlencode, urlsplit

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.background import BackgroundTask

from memkern.errors import (
    AuthenticationError,
    ConflictError,
    CubeFileError,
    InvalidInputError,
    MemkernError,
    NotFoundError,
    PermissionDeniedError,
)
from memkern.models import CubeInfo, Filters, LifecycleState, MemoryItem, MemoryKind, Permission, User
from memkern.ops.governance import authenticate
from memkern.retrieval.config import RECIPES
from memkern.ui import views
from memkern.ui.sessions import COOKIE, Session, Sessions

if TYPE_CHECKING:
    from memkern.mos import MemOS

#: Memories per timeline page, by default and at most (``get_all``'s own limit).
PAGE_SIZE, MAX_PAGE_SIZE = 50, 1_000
#: Months of the cube's tree listed above its timeline.
MONTHS_SHOWN = 120
#: Linked memories of each kind shown on a memory's page.
LINKS_PER_KIND = 5
#: Slot values shown on the profile page.
PROFILE_ROWS = 200
#: Entries of the operation and audit logs shown by default.
LOG_LIMIT = 200
#: Largest cube file accepted for upload.
MAX_UPLOAD_BYTES = 512 * 1024 * 1024
#: Static files served (shipped in the package, no CDN).
STATIC = {"ui.css": "text/css; charset=utf-8", "ui.js": "text/javascript; charset=utf-8"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}
LOG = logging.getLogger("memkern.ui")
STATUS = {PermissionDeniedError: 403, NotFoundError: 404, InvalidInputError: 422, CubeFileError: 422,
          ConflictError: 409}


class SignInNeeded(Exception):
    """No live session (or its key was revoked): GETs go to the sign-in page, POSTs answer 401."""


class CsrfError(Exception):
    """A form without this session's token (a forged or stale post)."""


class Viewer:
    """Who is looking, for one request: their session and user, and the one way to act."""

    def __init__(self, mos: MemOS, session: Session, user: User | None) -> None:
        self.mos, self.session, self.user = mos, session, user

    def call(self, operation: str, /, **args: Any) -> Any:
        """Run a governed operation as this user (``Dispatcher.call``: checked and audited)."""
        return self.mos.dispatcher.call(self.user, operation, args)

    def permission(self, info: CubeInfo) -> Permission | None:
        """What this user holds on a cube, to decide which controls to show (not to allow anything)."""
        return self.mos.kernel.authorizer.permission(self.user, info)

    @property
    def name(self) -> str:
        return f"{self.user.name} ({self.user.role.value})" if self.user is not None else "embedded (no auth)"


def ui_router(mos: MemOS, *, auth: Literal["required", "off"] = "required", prefix: str = "/ui") -> APIRouter:
    """The UI's routes under ``prefix``, acting on ``mos``, with the server's ``auth`` mode:
    ``"required"``, sign in with an API key; ``"off"`` (embedded, loopback only), no key is
    asked for and nothing is checked, as on REST."""
    router = APIRouter(prefix=prefix, include_in_schema=False)
    sessions = Sessions()
    env = Environment(loader=PackageLoader("memkern.ui", "templates"), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.globals.update(base=prefix, kinds=[k.value for k in MemoryKind],
                       states=[s.value for s in LifecycleState if s is not LifecycleState.DELETED],
                       recipes=sorted(RECIPES), score_parts=views.SCORE_PARTS)
    env.filters["when"] = lambda t: t.strftime("%Y-%m-%d %H:%M") if t is not None else "—"
    env.filters["query"] = lambda params: urlencode(params, doseq=True)
    env.filters["seg"] = _seg

    # -- plumbing ---------------------------------------------------------------------------------
    def render(request: Request, template: str, status: int = 200, viewer: Viewer | None = None,
               **values: Any) -> HTMLResponse:
        html = env.get_template(template).render(request=request, viewer=viewer, **values)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def redirect(to: str) -> RedirectResponse:
        return RedirectResponse(to, status_code=303, headers=SECURITY_HEADERS)

    def viewer_of(request: Request) -> Viewer:
        session_id = request.cookies.get(COOKIE)
        session = sessions.get(session_id)
        if session is None:
            raise SignInNeeded()
        if session.key is None:
            if auth != "off":
                raise SignInNeeded()
            return Viewer(mos, session, None)
        try:
            user = authenticate(mos.kernel, session.key)
        except AuthenticationError:
            sessions.close(session_id)  # the key was revoked: so is the session
            raise SignInNeeded() from None
        return Viewer(mos, session, user)

    def page(handler: Callable[..., Response]) -> Callable[..., Response]:
        """Resolve the viewer, check the CSRF token of a POST, and turn errors into pages."""

        @functools.wraps(handler)
        def wrapped(request: Request, *args: Any, **kwargs: Any) -> Response:
            try:
                if request.method == "POST":
                    same_origin(request)
                viewer = viewer_of(request)
                if request.method == "POST" and not viewer.session.csrf_ok(kwargs.get("csrf")):
                    raise CsrfError()
                return handler(request, viewer, *args, **kwargs)
            except SignInNeeded:
                if request.method == "GET":
                    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    return redirect(f"{prefix}/signin?" + urlencode({"next": here}))
                return render(request, "error.html", 401, title="Signed out",
                              message="Your session has ended: sign in again.")
            except CsrfError:
                return render(request, "error.html", 403, title="Refused",
                              message="This form was not sent from this session's page (missing or wrong "
                                      "CSRF token). Reload the page and try again.")
            except AuthenticationError as exc:
                return render(request, "error.html", 401, title="Not signed in", message=str(exc))
            except MemkernError as exc:
                status = next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 500)
                if status >= 500:
                    LOG.exception("%s %s failed", request.method, request.url.path)
                message = str(exc) if status < 500 else "The server could not do this; its log has the details."
                return render(request, "error.html", status, title=type(exc).__name__, message=message)

        # FastAPI reads the route's parameters from the signature: the viewer is not one of them.
        signature = inspect.signature(handler)
        params = [p for name, p in signature.parameters.items() if name != "viewer"]
        wrapped.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        return wrapped

    def same_origin(request: Request) -> None:
        """A POST from another site is refused even before its token is looked at."""
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
            raise CsrfError()

    def cube_of(viewer: Viewer, cube: str) -> tuple[CubeInfo, Permission | None]:
        info = viewer.call("get_cube", cube=cube)
        return info, viewer.permission(info)

    def count(viewer: Viewer, cube: str) -> views.Tally:
        return views.tally(viewer.call("stats", cube=cube))

    # -- static files -----------------------------------------------------------------------------
    @router.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC:
            return Response("not found", status_code=404)
        body = resources.files("memkern.ui").joinpath("static", name).read_bytes()
        return Response(body, media_type=STATIC[name], headers={"X-Content-Type-Options": "nosniff",
                                                                "Cache-Control": "max-age=3600"})

    # -- signing in and out -------------------------------------------------------------------------
    @router.get("/signin")
    def signin_form(request: Request, next: str = "") -> Response:
        return render(request, "signin.html", next=safe_next(next, prefix), auth=auth)

    @router.post("/signin")
    def signin(request: Request, key: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "") -> Response:
        try:
            same_origin(request)
        except CsrfError:
            return render(request, "error.html", 403, title="Refused", message="Sign in from this server's page.")
        user: User | None = None
        if auth != "off" or key.strip():
            try:
                user = authenticate(mos.kernel, key)
            except AuthenticationError as exc:
                return render(request, "signin.html", 401, next=safe_next(next, prefix), auth=auth, error=str(exc))
        sessions.close(request.cookies.get(COOKIE))
        session_id, _ = sessions.open(key.strip() if user is not None else None)
        response = redirect(safe_next(next, prefix) or f"{prefix}/cubes")
        response.set_cookie(COOKIE, session_id, httponly=True, samesite="strict", path=prefix,
                            secure=request.url.scheme == "https")
        return response

    @router.post("/signout")
    @page
    def signout(request: Request, viewer: Viewer, csrf: Annotated[str, Form()] = "") -> Response:
        sessions.close(request.cookies.get(COOKIE))
        response = redirect(f"{prefix}/signin")
        response.delete_cookie(COOKIE, path=prefix)
        return response

    @router.get("/")
    def home() -> Response:
        return redirect(f"{prefix}/cubes")

    # -- cubes --------------------------------------------------------------------------------------
    @router.get("/cubes")
    @page
    def cubes(request: Request, viewer: Viewer) -> Response:
        listed = [(info, viewer.permission(info), count(viewer, info.id)) for info in viewer.call("list_cubes")]
        return render(request, "cubes.html", viewer=viewer, cubes=listed)

    @router.post("/cubes")
    @page
    def create_cube(request: Request, viewer: Viewer, name: Annotated[str, Form()] = "",
                    description: Annotated[str, Form()] = "", csrf: Annotated[str, Form()] = "") -> Response:
        info = viewer.call("create_cube", name=name, description=description)
        return redirect(f"{prefix}/cubes/{info.id}")

    @router.post("/cubes/load")
    @page
    def load_cube(request: Request, viewer: Viewer, file: Annotated[UploadFile, File()],
                  name: Annotated[str, Form()] = "", csrf: Annotated[str, Form()] = "") -> Response:
        with tempfile.TemporaryDirectory(prefix="memkern-ui-") as folder:
            path = Path(folder) / "upload.cube"
            size = 0
            with path.open("wb") as out:
                while chunk := file.file.read(1 << 20):
                    size += len(chunk)
                    if size > MAX_UPLOAD_BYTES:
                        raise InvalidInputError(f"the cube file is larger than {MAX_UPLOAD_BYTES} bytes")
                    out.write(chunk)
            info = viewer.call("load_cube", path=str(path), **({"name": name.strip()} if name.strip() else {}))
        return redirect(f"{prefix}/cubes/{info.id}")

    @router.get("/cubes/{cube}")
    @page
    def cube_page(request: Request, viewer: Viewer, cube: str) -> Response:
        info, held = cube_of(viewer, cube)
        return render(request, "cube.html", viewer=viewer, cube=info, held=held, tally=count(viewer, info.id),
                      policy=viewer.call("policy", cube=info.id),
                      activation=optional(lambda: viewer.call("activation_status", cube=info.id)),
                      parametric=optional(lambda: viewer.call("parametric_status", cube=info.id)),
                      jobs=optional(lambda: viewer.call("scheduler_status", cube=info.id)),
                      grants=viewer.call("grants", cube=info.id) if held is Permission.ADMIN else None)

    @router.get("/cubes/{cube}/dump")
    @page
    def dump(request: Request, viewer: Viewer, cube: str) -> Response:
        folder = tempfile.mkdtemp(prefix="memkern-ui-")
        path = Path(folder) / "cube.mkc"
        try:
            written = viewer.call("dump", cube=cube, path=str(path))
        except BaseException:
            _remove(folder)
            raise
        return FileResponse(written.path, media_type="application/octet-stream",
                            filename=f"{written.cube.name}.cube", headers={"Cache-Control": "no-store"},
                            background=BackgroundTask(_remove, folder))

    # -- the timeline -------------------------------------------------------------------------------
    @router.get("/cubes/{cube}/timeline")
    @page
    def timeline(request: Request, viewer: Viewer, cube: str, offset: int = 0, limit: int = PAGE_SIZE) -> Response:
        info, held = cube_of(viewer, cube)
        filters = views.parse_filters(_params(request))
        limit = max(1, min(limit, MAX_PAGE_SIZE))
        got = viewer.call("get_all", cube=info.id, filters=filters, limit=limit, offset=max(offset, 0))
        kept = views.filter_query(filters)
        # The months of the cube's tree, as a way in, on the unfiltered first page only.
        unfiltered = filters == Filters() and not offset
        months = viewer.call("timeline", cube=info.id, level="month", limit=MONTHS_SHOWN) if unfiltered else []
        return render(request, "timeline.html", viewer=viewer, cube=info, held=held, page=got,
                      groups=views.timeline(got.items), form=_params(request), kept={**kept, "limit": limit},
                      months=[(month, views.month_bounds(month.key)) for month in months])

    # -- search -------------------------------------------------------------------------------------
    @router.get("/cubes/{cube}/search")
    @page
    def search(request: Request, viewer: Viewer, cube: str, q: str = "", top_k: int = 10,
               recipe: str = "") -> Response:
        info, held = cube_of(viewer, cube)
        hits, scale = [], 0.0
        if q.strip():
            filters = views.parse_filters(_params(request))
            hits = viewer.call("search", cube=info.id, query=q, top_k=top_k, filters=filters,
                               **({"config": recipe} if recipe else {}))
            scale = max([getattr(h.parts, p) for h in hits for p in views.SCORE_PARTS] + [0.0])
        return render(request, "search.html", viewer=viewer, cube=info, held=held, q=q, top_k=top_k, recipe=recipe,
                      form=_params(request), hits=[(h, views.score_bars(h.parts, scale)) for h in hits])

    # -- one memory ---------------------------------------------------------------------------------
    @router.get("/cubes/{cube}/memories/{memory_id}")
    @page
    def memory(request: Request, viewer: Viewer, cube: str, memory_id: str) -> Response:
        info, held = cube_of(viewer, cube)
        versions: list[MemoryItem] = viewer.call("history", cube=info.id, memory_id=memory_id)
        log = viewer.call("operations", cube=info.id, memory_id=memory_id, limit=LOG_LIMIT)
        links = viewer.call("links", cube=info.id, memory_id=memory_id, limit=LINKS_PER_KIND)
        return render(request, "memory.html", viewer=viewer, cube=info, held=held, item=versions[-1],
                      versions=versions, chart=views.version_chart(versions), log=log, links=links,
                      sources=views.source_turn_ids(versions[-1]))

    @router.get("/cubes/{cube}/memories/{memory_id}/context")
    @page
    def context(request: Request, viewer: Viewer, cube: str, memory_id: str) -> Response:
        """The memory's source turn, shown in its session's timeline (a turn is its own source)."""
        info, _ = cube_of(viewer, cube)
        item: MemoryItem = viewer.call("history", cube=info.id, memory_id=memory_id)[-1]
        if item.kind is not MemoryKind.TURN:
            sources = views.source_turn_ids(item)
            if sources:
                item = viewer.call("history", cube=info.id, memory_id=sources[0])[-1]
        session = item.provenance.session_id
        if session is None:
            return redirect(f"{prefix}/cubes/{info.id}/memories/{_seg(item.id)}")
        if item.kind is not MemoryKind.TURN:  # no source turn named: its whole session, facts beside turns
            query = {"session": session, "state": views.ANY_STATE}
            return redirect(f"{prefix}/cubes/{info.id}/timeline?{urlencode(query)}#m-{_seg(item.id)}")
        position = item.provenance.position or 0
        in_session = {"session": session, "kind": "turn", "state": views.ANY_STATE,
                      "offset": str(position // PAGE_SIZE * PAGE_SIZE)}
        return redirect(f"{prefix}/cubes/{info.id}/timeline?{urlencode(in_session)}#m-{_seg(item.id)}")

    @router.post("/cubes/{cube}/memories/{memory_id}/edit")
    @page
    def edit(request: Request, viewer: Viewer, cube: str, memory_id: str, text: Annotated[str, Form()] = "",
             reason: Annotated[str, Form()] = "", valid_from: Annotated[str, Form()] = "",
             csrf: Annotated[str, Form()] = "") -> Response:
        args: dict[str, Any] = {"text": text}
        if reason.strip():
            args["reason"] = reason
        if valid_from.strip():
            args["valid_from"] = valid_from.strip()
        viewer.call("update", cube=cube, memory_id=memory_id, **args)
        return redirect(f"{prefix}/cubes/{_seg(cube)}/memories/{_seg(memory_id)}")

    @router.post("/cubes/{cube}/memories/{memory_id}/{action}")
    @page
    def change(request: Request, viewer: Viewer, cube: str, memory_id: str, action: str,
               reason: Annotated[str, Form()] = "", back: Annotated[str, Form()] = "",
               csrf: Annotated[str, Form()] = "") -> Response:
        """archive, restore, release or delete (the last from its confirmation page)."""
        if action not in ("archive", "restore", "release", "delete"):
            raise NotFoundError(f"no action {action!r}")
        viewer.call(action, cube=cube, memory_id=memory_id, **({"reason": reason} if reason.strip() else {}))
        if action == "delete":
            return redirect(safe_next(back, prefix) or f"{prefix}/cubes/{_seg(cube)}/timeline")
        return redirect(safe_next(back, prefix) or f"{prefix}/cubes/{_seg(cube)}/memories/{_seg(memory_id)}")

    @router.get("/cubes/{cube}/memories/{memory_id}/delete")
    @page
    def confirm_delete(request: Request, viewer: Viewer, cube: str, memory_id: str, back: str = "") -> Response:
        info, held = cube_of(viewer, cube)
        item = viewer.call("history", cube=info.id, memory_id=memory_id)[-1]
        return render(request, "delete.html", viewer=viewer, cube=info, held=held, item=item,
                      back=safe_next(back, prefix))

    # -- the profile --------------------------------------------------------------------------------
    @router.get("/cubes/{cube}/profile")
    @page
    def profile(request: Request, viewer: Viewer, cube: str, subject: str = "") -> Response:
        info, held = cube_of(viewer, cube)
        values = viewer.call("profile", cube=info.id, **({"subject": subject.strip()} if subject.strip() else {}))
        return render(request, "profile.html", viewer=viewer, cube=info, held=held, profile=values[:PROFILE_ROWS],
                      subject=subject.strip())

    # -- quarantine, logs ---------------------------------------------------------------------------
    @router.get("/cubes/{cube}/quarantine")
    @page
    def quarantine(request: Request, viewer: Viewer, cube: str, offset: int = 0) -> Response:
        info, held = cube_of(viewer, cube)
        got = viewer.call("get_all", cube=info.id, filters=Filters(state=LifecycleState.QUARANTINED),
                          limit=PAGE_SIZE, offset=max(offset, 0))
        return render(request, "quarantine.html", viewer=viewer, cube=info, held=held, page=got)

    @router.get("/cubes/{cube}/log")
    @page
    def operation_log(request: Request, viewer: Viewer, cube: str, memory: str = "", op: str = "", actor: str = "",
                      limit: int = LOG_LIMIT) -> Response:
        info, held = cube_of(viewer, cube)
        limit = max(1, min(limit, 10_000))
        entries = viewer.call("operations", cube=info.id, limit=limit,
                              **({"memory_id": memory.strip()} if memory.strip() else {}))
        shown = [e for e in entries if (not op or e.op == op) and (not actor or e.actor == actor)]
        return render(request, "log.html", viewer=viewer, cube=info, held=held, entries=shown, total=len(entries),
                      memory=memory, op=op, actor=actor, limit=limit, ops=sorted({e.op for e in entries}))

    @router.get("/audit")
    @page
    def audit(request: Request, viewer: Viewer, cube: str = "", user: str = "", since: str = "",
              operation: str = "", result: str = "", limit: int = LOG_LIMIT) -> Response:
        limit = max(1, min(limit, 10_000))
        args = {k: v.strip() for k, v in (("cube", cube), ("user", user), ("since", since)) if v.strip()}
        entries = viewer.call("audit", limit=limit, **args)
        shown = [e for e in entries if (not operation or e.operation == operation)
                 and (not result or e.result.value == result)]
        return render(request, "audit.html", viewer=viewer, entries=shown, total=len(entries), cube=cube, user=user,
                      since=since, operation=operation, result=result, limit=limit,
                      operations=sorted({e.operation for e in entries}))

    return router


# -- helpers ----------------------------------------------------------------------------------------------
def optional(read: Callable[[], Any]) -> Any:
    """A status that may not exist here (no local model, no adapter): its error message instead."""
    try:
        return read()
    except PermissionDeniedError:
        raise
    except MemkernError as exc:
        return str(exc)


def safe_next(target: str, prefix: str) -> str:
    """A redirect target inside the UI only (never another site)."""
    target = (target or "").strip()
    if target.startswith(prefix + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return ""


def _params(request: Request) -> dict[str, str | list[str]]:
    out: dict[str, str | list[str]] = {}
    for key in request.query_params:
        values = request.query_params.getlist(key)
        out[key] = values if key == "kind" else values[-1]
    return out


def _seg(value: str) -> str:
    """A value as one URL path segment."""
    return quote(str(value), safe="")


def _remove(folder: str) -> None:
    for name in os.listdir(folder):
        os.unlink(os.path.join(folder, name))
    os.rmdir(folder)
