"""A Python client for memkern's REST API, with the in-process API's method names and types.

Code moves from embedded to server by changing one constructor::

    mos = MemOS()                                    # embedded
    mos = MemkernClient("http://127.0.0.1:8765")     # over HTTP

    cube = mos.create_cube("alice")                  # a MemCube, or a RemoteCube
    cube.add([{"role": "user", "content": "I moved to Oslo"}], session_id="s1")
    hits = cube.search("where does she live")        # list[Hit] either way

Every method returns the same Pydantic models as ``MemCube`` (``AddResult``, ``Hit``,
``MemoryItem``, ``Operation``, ``CubeInfo``) and raises the same exceptions: the
server's RFC 9457 problem details are turned back into ``NotFoundError``,
``ConflictError``, ``InvalidInputError``, ``CubeFileError``, ``StoreError`` or
``EmbedderError`` with the server's ``detail`` as the message. A server that cannot be
reached raises ``StoreError`` (the store is unavailable, as far as the caller can tell).

Needs only ``httpx`` (a core dependency), not the server extra.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python

from memkern import errors
from memkern.files import atomic_file
from memkern.models import ApiKey, AuditEntry, CubePolicy, Grant, Permission, RetentionReport, Role, User
from memkern.models import AddResult, ChatAnswer, CubeInfo, Filters, Hit, MemoryItem, MemoryKind, Message, Operation
from memkern.retrieval.config import SearchConfig

ACTOR_HEADER = "X-Memkern-Actor"
_PROBLEM_PREFIX = "urn:memkern:problem:"
#: Page size used by ``get_all`` when it follows ``next_offset``.
_PAGE = 1_000

_SLUG_ERRORS: dict[str, type[errors.MemkernError]] = {
    "invalid-input": errors.InvalidInputError,
    "payload-too-large": errors.InvalidInputError,
    "bad-request": errors.InvalidInputError,
    "unsupported-media-type": errors.InvalidInputError,
    "cube-file": errors.CubeFileError,
    "not-found": errors.NotFoundError,
    "conflict": errors.ConflictError,
    "store-unavailable": errors.StoreError,
    "embedder-unavailable": errors.EmbedderError,
    "unauthenticated": errors.AuthenticationError,
    "permission-denied": errors.PermissionDeniedError,
    "llm-not-configured": errors.LLMUnavailableError,
}
_LLM_ERROR = getattr(errors, "LLMError", None)
if _LLM_ERROR is not None:
    _SLUG_ERRORS["llm-unavailable"] = _LLM_ERROR
_NAMED_ERRORS: dict[str, type[errors.MemkernError]] = {
    cls.__name__: cls for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, errors.MemkernError)
}
_STATUS_ERRORS: dict[int, type[errors.MemkernError]] = {
    400: errors.InvalidInputError, 401: errors.AuthenticationError, 403: errors.PermissionDeniedError,
    404: errors.NotFoundError, 409: errors.ConflictError,
    413: errors.InvalidInputError, 415: errors.InvalidInputError, 422: errors.InvalidInputError,
    503: errors.StoreError,
}

class _Page(BaseModel):
    """One page of ``GET /v1/cubes/{name}/memories`` (``memkern.server.schemas.MemoryPage``)."""

    items: list[MemoryItem]
    next_offset: int | None = None


_HITS = TypeAdapter(list[Hit])
_ITEMS = TypeAdapter(list[MemoryItem])
_OPERATIONS = TypeAdapter(list[Operation])
_CUBES = TypeAdapter(list[CubeInfo])
_USERS = TypeAdapter(list[User])
_GRANTS = TypeAdapter(list[Grant])
_AUDIT = TypeAdapter(list[AuditEntry])
_KEYS = TypeAdapter(list[dict[str, Any]])


def _uid(user: User | str) -> str:
    return user.id if isinstance(user, User) else user


def _seg(value: object, what: str) -> str:
    """One URL path segment; the server checks the value itself, this only refuses what no URL can carry."""
    if not isinstance(value, str) or not value:
        raise errors.InvalidInputError(f"{what} must be a non-empty string, not {value!r}")
    try:
        return quote(value, safe="")
    except UnicodeEncodeError as exc:
        raise errors.InvalidInputError(f"{what} is not valid Unicode (at character {exc.start})") from exc


def _jsonable(value: Any, what: str) -> dict[str, Any]:
    """Request arguments for a JSON body: strict JSON (no NaN or Infinity), odd code points escaped."""
    try:
        encoded = json.dumps(to_jsonable_python(value), ensure_ascii=True, allow_nan=False)
    except (PydanticSerializationError, TypeError, ValueError) as exc:
        raise errors.InvalidInputError(f"{what} cannot be sent as JSON: {exc}") from exc
    return {"content": encoded.encode("ascii"), "headers": {"Content-Type": "application/json"}}


def _error_from(response: httpx.Response) -> errors.MemkernError:
    """The memkern exception a problem-details response stands for."""
    status = response.status_code
    body: Any = None
    with contextlib.suppress(ValueError):
        body = response.json()
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("title") or f"HTTP {status}"
        cls = None
        ptype = body.get("type")
        if isinstance(ptype, str) and ptype.startswith(_PROBLEM_PREFIX):
            cls = _SLUG_ERRORS.get(ptype.removeprefix(_PROBLEM_PREFIX))
        if cls is None and isinstance(body.get("error"), str):
            cls = _NAMED_ERRORS.get(body["error"])
        if cls is None:
            cls = _STATUS_ERRORS.get(status, errors.MemkernError)
        return cls(str(detail))
    text = response.text.strip()[:200]
    cls = _STATUS_ERRORS.get(status, errors.MemkernError)
    return cls(f"HTTP {status} from {response.request.method} {response.request.url.path}"
               + (f": {text}" if text else ""))


class MemkernClient:
    """The REST API as the Python API: ``MemOS``'s methods, over HTTP.

    ``api_key`` (``memkern key create USER``) is sent as ``Authorization: Bearer <key>``
    with every request: the server runs every call as its user. ``actor`` (a server with
    ``--no-auth`` only) is sent as the ``X-Memkern-Actor`` header and recorded in the
    operation log; a method's own ``actor=`` overrides it for that call. 401 raises
    ``AuthenticationError``, 403 ``PermissionDeniedError``.
    """

    def __init__(self, base_url: str, *, api_key: str | None = None, actor: str | None = None,
                 timeout: float = 30, transport: httpx.BaseTransport | None = None) -> None:
        if not isinstance(base_url, str) or not base_url.strip():
            raise errors.InvalidInputError(f"base_url must be a URL such as 'http://127.0.0.1:8765', not {base_url!r}")
        headers = {"Accept": "application/json"}
        if actor is not None:
            headers[ACTOR_HEADER] = actor
        if api_key is not None:
            if not isinstance(api_key, str) or not api_key.strip():
                raise errors.InvalidInputError("api_key must be a non-empty string")
            headers["Authorization"] = f"Bearer {api_key.strip()}"
        self.base_url = base_url.rstrip("/")
        self.actor = actor
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, headers=headers, transport=transport)

    # -- context management ------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> MemkernClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MemkernClient({self.base_url!r})"

    # -- transport ---------------------------------------------------------------------------------
    def _request(self, method: str, path: str, *, actor: str | None = None, **kwargs: Any) -> httpx.Response:
        if actor is not None:
            kwargs["headers"] = {**kwargs.get("headers", {}), ACTOR_HEADER: actor}
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise errors.StoreError(f"cannot reach the memkern server at {self.base_url}: {exc}") from exc
        if response.is_error:
            raise _error_from(response)
        return response

    @staticmethod
    def _parse(adapter: TypeAdapter[Any] | type[BaseModel], response: httpx.Response) -> Any:
        try:
            if isinstance(adapter, TypeAdapter):
                return adapter.validate_json(response.content)
            return adapter.model_validate_json(response.content)
        except ValidationError as exc:
            raise errors.MemkernError(f"unexpected response from {response.request.url.path}: {exc}") from exc

    # -- cubes -------------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return self._request("GET", "/v1/health").json()

    def create_cube(self, name: str, owner: str | None = None, description: str = "") -> RemoteCube:
        """A new cube, owned by ``owner`` (default: the caller; ``default`` without authentication)."""
        body = {"name": name, "description": description, **({"owner": owner} if owner is not None else {})}
        response = self._request("POST", "/v1/cubes", **_jsonable(body, "cube"))
        return RemoteCube(self, self._parse(CubeInfo, response))

    def get_cube(self, name_or_id: str) -> RemoteCube:
        response = self._request("GET", f"/v1/cubes/{self._cube_segment(name_or_id)}")
        return RemoteCube(self, self._parse(CubeInfo, response))

    def list_cubes(self, owner: str | None = None) -> list[CubeInfo]:
        params = {"owner": owner} if owner is not None else None
        return self._parse(_CUBES, self._request("GET", "/v1/cubes", params=params))

    def delete_cube(self, name_or_id: str, actor: str | None = None) -> None:
        self._request("DELETE", f"/v1/cubes/{self._cube_segment(name_or_id)}", actor=actor)

    def _cube_segment(self, name_or_id: str) -> str:
        """The URL segment for a cube: a name that no URL path can carry ("a/b", "..") is sent as the id."""
        segment = _seg(name_or_id, "cube name")
        if "/" in name_or_id or name_or_id in (".", ".."):
            cubes = self.list_cubes()
            found = next((c for c in cubes if c.name == name_or_id), None) or next(
                (c for c in cubes if c.id == name_or_id), None)
            if found is None:
                raise errors.NotFoundError(f"no cube named {name_or_id!r}")
            segment = _seg(found.id, "cube id")
        return segment

    def load_cube(self, path: str | Path, name: str | None = None, owner: str | None = None) -> RemoteCube:
        """Upload a cube file written by ``dump`` (or ``MemCube.dump``); the server verifies it whole."""
        source = Path(path)
        if not source.is_file():
            raise errors.CubeFileError(f"no cube file at {source}")
        params = {key: value for key, value in (("name", name), ("owner", owner)) if value is not None}
        with source.open("rb") as fh:
            response = self._request("POST", "/v1/cubes/load", params=params, content=fh,
                                     headers={"Content-Type": "application/zip",
                                              "Content-Length": str(source.stat().st_size)})
        return RemoteCube(self, self._parse(CubeInfo, response))


    # -- governance --------------------------------------------------------------------------------
    def whoami(self) -> User | None:
        """The user the API key belongs to (``None`` on a server without authentication)."""
        response = self._request("GET", "/v1/me")
        return None if response.content.strip() in (b"", b"null") else self._parse(User, response)

    def create_user(self, name: str, role: Role | str = Role.USER, *, user_id: str | None = None) -> User:
        body = {"name": name, "role": role, **({"id": user_id} if user_id is not None else {})}
        return self._parse(User, self._request("POST", "/v1/users", **_jsonable(body, "user")))

    def list_users(self) -> list[User]:
        return self._parse(_USERS, self._request("GET", "/v1/users"))

    def forget_user(self, user_id: User | str) -> list[str]:
        """Erase a user with their cubes, grants, keys and audit trail; the purged cube ids."""
        response = self._request("DELETE", f"/v1/users/{_seg(_uid(user_id), 'user id')}")
        return list(response.json()["cubes"])

    def create_api_key(self, user: User | str) -> str:
        """A new API key for ``user``, returned this once."""
        response = self._request("POST", f"/v1/users/{_seg(_uid(user), 'user id')}/keys")
        return str(response.json()["key"])

    def api_keys(self, user: User | str) -> list[ApiKey]:
        """The user's keys (``key_hash`` is never sent: it is blank here)."""
        rows = self._parse(_KEYS, self._request("GET", f"/v1/users/{_seg(_uid(user), 'user id')}/keys"))
        return [ApiKey.model_validate({**row, "key_hash": ""}) for row in rows]

    def revoke_api_key(self, key_or_prefix: str) -> None:
        value = key_or_prefix.strip() if isinstance(key_or_prefix, str) else key_or_prefix
        if isinstance(value, str) and value.startswith("mk_") and value.count("_") >= 2:
            value = value.split("_")[1]
        self._request("DELETE", f"/v1/keys/{_seg(value, 'API key prefix')}")

    def grant(self, cube: str, user: User | str, permission: Permission | str) -> Grant:
        path = f"/v1/cubes/{self._cube_segment(cube)}/grants/{_seg(_uid(user), 'user id')}"
        return self._parse(Grant, self._request("PUT", path, **_jsonable({"permission": permission}, "grant")))

    def revoke(self, cube: str, user: User | str) -> bool:
        path = f"/v1/cubes/{self._cube_segment(cube)}/grants/{_seg(_uid(user), 'user id')}"
        return bool(self._request("DELETE", path).json()["revoked"])

    def grants(self, cube: str) -> list[Grant]:
        return self._parse(_GRANTS, self._request("GET", f"/v1/cubes/{self._cube_segment(cube)}/grants"))

    def set_policy(self, cube: str, **policy: Any) -> CubePolicy:
        response = self._request("PUT", f"/v1/cubes/{self._cube_segment(cube)}/policy",
                                 **_jsonable(policy, "policy"))
        return self._parse(CubePolicy, response)

    def policy(self, cube: str) -> CubePolicy:
        return self._parse(CubePolicy, self._request("GET", f"/v1/cubes/{self._cube_segment(cube)}/policy"))

    def audit(self, cube: str | None = None, user: User | str | None = None, since: datetime | str | None = None,
              limit: int | None = 100) -> list[AuditEntry]:
        """Audit entries, newest first (a non-admin sees only their own)."""
        params: dict[str, Any] = {}
        if cube is not None:
            params["cube"] = cube
        if user is not None:
            params["user"] = _uid(user)
        if since is not None:
            params["since"] = since.isoformat() if isinstance(since, datetime) else since
        if limit is not None:
            params["limit"] = limit
        return self._parse(_AUDIT, self._request("GET", "/v1/audit", params=params or None))

    def apply_retention(self, now: datetime | str | None = None) -> RetentionReport:
        body = {"now": now} if now is not None else {}
        return self._parse(RetentionReport, self._request("POST", "/v1/admin/retention",
                                                          **_jsonable(body, "retention")))


class RemoteCube:
    """A cube on a memkern server: ``MemCube``'s methods, same arguments, same return types."""

    def __init__(self, client: MemkernClient, info: CubeInfo) -> None:
        self._client = client
        self.info = info
        self._base = f"/v1/cubes/{_seg(info.id, 'cube id')}"

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def name(self) -> str:
        return self.info.name

    def __repr__(self) -> str:
        return f"RemoteCube(name={self.name!r}, owner={self.info.owner!r}, id={self.id!r})"

    def _memory(self, memory_id: str) -> str:
        return f"{self._base}/memories/{_seg(memory_id, 'memory id')}"

    # -- writing -----------------------------------------------------------------------------------
    def add(self, messages: Sequence[Mapping[str, Any] | Message] | None = None, *, text: str | None = None,
            session_id: str | None = None, kind: MemoryKind | str = MemoryKind.FACT,
            tags: Sequence[str] = (), metadata: Mapping[str, Any] | None = None,
            time: datetime | None = None, actor: str | None = None, infer: bool | None = None) -> AddResult:
        """Store chat ``messages`` as turn memories, or one ``text`` memory of ``kind``."""
        if (messages is None) == (text is None):
            raise errors.InvalidInputError("give either messages or text to add")
        body: dict[str, Any] = {"session_id": session_id, "kind": kind, "tags": tags, "metadata": metadata,
                                "time": time, "infer": infer}
        if messages is not None:
            if isinstance(messages, (str, bytes)):
                raise errors.InvalidInputError("messages must be a list of {'role', 'content', ...} objects")
            body["messages"] = [m.model_dump(exclude_none=True) if isinstance(m, Message) else m for m in messages]
        else:
            body["text"] = text
        body = {key: value for key, value in body.items() if value is not None}
        response = self._client._request("POST", f"{self._base}/memories", actor=actor,
                                         **_jsonable(body, "add"))
        return self._client._parse(AddResult, response)

    def add_document(self, text: str, *, path: str | Path | None = None, time: datetime | None = None,
                     tags: Sequence[str] = (), actor: str | None = None) -> AddResult:
        body = {"text": text, "path": str(path) if path is not None else None, "time": time, "tags": tags}
        body = {key: value for key, value in body.items() if value is not None}
        response = self._client._request("POST", f"{self._base}/documents", actor=actor,
                                         **_jsonable(body, "document"))
        return self._client._parse(AddResult, response)

    def update(self, memory_id: str, text: str | None = None, *, tags: Sequence[str] | None = None,
               metadata: Mapping[str, Any] | None = None, valid_from: datetime | None = None,
               reason: str | None = None, actor: str | None = None, event_time: datetime | None = None) -> MemoryItem:
        body = {"text": text, "tags": tags, "metadata": metadata, "valid_from": valid_from, "reason": reason,
                "event_time": event_time}
        body = {key: value for key, value in body.items() if value is not None}
        response = self._client._request("PATCH", self._memory(memory_id), actor=actor,
                                         **_jsonable(body, "update"))
        return self._client._parse(MemoryItem, response)

    def delete(self, memory_id: str, *, reason: str | None = None, actor: str | None = None) -> None:
        params = {"reason": reason} if reason is not None else None
        self._client._request("DELETE", self._memory(memory_id), actor=actor, params=params)

    def archive(self, memory_id: str, *, reason: str | None = None, actor: str | None = None) -> MemoryItem:
        response = self._client._request("POST", f"{self._memory(memory_id)}/archive", actor=actor,
                                         **_jsonable({"reason": reason}, "reason"))
        return self._client._parse(MemoryItem, response)

    def restore(self, memory_id: str, *, reason: str | None = None, actor: str | None = None) -> MemoryItem:
        response = self._client._request("POST", f"{self._memory(memory_id)}/restore", actor=actor,
                                         **_jsonable({"reason": reason}, "reason"))
        return self._client._parse(MemoryItem, response)

    def invalidate(self, memory_id: str, *, at: datetime | None = None, reason: str | None = None,
                   actor: str | None = None, metadata: Mapping[str, Any] | None = None) -> MemoryItem:
        body = {key: value for key, value in (("at", at), ("reason", reason), ("metadata", metadata))
                if value is not None}
        response = self._client._request("POST", f"{self._memory(memory_id)}/invalidate", actor=actor,
                                         **_jsonable(body, "invalidate"))
        return self._client._parse(MemoryItem, response)

    def release(self, memory_id: str, *, reason: str | None = None, actor: str | None = None) -> MemoryItem:
        """Release a quarantined memory back into search (cube admins)."""
        response = self._client._request("POST", f"{self._memory(memory_id)}/release", actor=actor,
                                         **_jsonable({"reason": reason}, "reason"))
        return self._client._parse(MemoryItem, response)

    def chat(self, query: str, *, top_k: int = 8, write_back: bool = False,
             session_id: str | None = None) -> ChatAnswer:
        """Answer ``query`` from the cube's memories with the server's LLM (``LLMUnavailableError`` if it has none)."""
        body = {"query": query, "top_k": top_k, "write_back": write_back,
                **({"session_id": session_id} if session_id is not None else {})}
        response = self._client._request("POST", f"{self._base}/chat", **_jsonable(body, "chat"))
        return self._client._parse(ChatAnswer, response)

    # -- reading -----------------------------------------------------------------------------------
    def search(self, query: str, top_k: int = 5, *, filters: Filters | Mapping[str, Any] | None = None,
               config: SearchConfig | str | None = None) -> list[Hit]:
        body: dict[str, Any] = {"query": query, "top_k": top_k}
        if filters is not None:
            body["filters"] = filters.model_dump(exclude_unset=True) if isinstance(filters, Filters) else filters
        if isinstance(config, SearchConfig):
            body["config"] = config.model_dump()
        elif config is not None:
            body["recipe"] = config
        response = self._client._request("POST", f"{self._base}/search", **_jsonable(body, "search"))
        return self._client._parse(_HITS, response)

    def get(self, memory_id: str) -> MemoryItem:
        return self._client._parse(MemoryItem, self._client._request("GET", self._memory(memory_id)))

    def get_all(self, filters: Filters | Mapping[str, Any] | None = None, *, limit: int | None = None,
                offset: int = 0) -> list[MemoryItem]:
        """Current memories matching ``filters``, oldest first; follows the server's pages up to ``limit``."""
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise errors.InvalidInputError(f"limit must be a non-negative integer, not {limit!r}")
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise errors.InvalidInputError(f"offset must be a non-negative integer, not {offset!r}")
        params = self._filter_params(filters)
        items: list[MemoryItem] = []
        next_offset: int | None = offset
        while next_offset is not None and (limit is None or len(items) < limit):
            page_size = _PAGE if limit is None else min(_PAGE, limit - len(items))
            response = self._client._request("GET", f"{self._base}/memories",
                                             params=[*params, ("limit", page_size), ("offset", next_offset)])
            page: _Page = self._client._parse(_Page, response)
            items.extend(page.items)
            next_offset = page.next_offset if page.items else None
        return items

    def history(self, memory_id: str) -> list[MemoryItem]:
        return self._client._parse(_ITEMS, self._client._request("GET", f"{self._memory(memory_id)}/history"))

    def operations(self, memory_id: str | None = None, limit: int | None = None) -> list[Operation]:
        params: dict[str, Any] = {}
        if memory_id is not None:
            params["memory_id"] = memory_id
        if limit is not None:
            params["limit"] = limit
        response = self._client._request("GET", f"{self._base}/operations", params=params or None)
        return self._client._parse(_OPERATIONS, response)

    def dump(self, path: str | Path) -> Path:
        """Download the cube's portable file to ``path`` (written whole, then renamed into place)."""
        target = Path(path)
        if target.is_dir():
            raise errors.InvalidInputError(f"cannot dump the cube to {target}: it is a directory")
        with atomic_file(target) as handle:
            for chunk in self._stream(f"{self._base}/dump"):
                handle.write(chunk)
        return target

    # -- helpers -----------------------------------------------------------------------------------
    def _stream(self, path: str) -> Iterator[bytes]:
        http = self._client._http
        try:
            with http.stream("GET", path) as response:
                if response.is_error:
                    response.read()
                    raise _error_from(response)
                yield from response.iter_bytes()
        except httpx.TransportError as exc:
            raise errors.StoreError(f"cannot reach the memkern server at {self._client.base_url}: {exc}") from exc

    @staticmethod
    def _filter_params(filters: Filters | Mapping[str, Any] | None) -> list[tuple[str, Any]]:
        if filters is None:
            return []
        if not isinstance(filters, Filters):
            try:
                filters = Filters.model_validate(filters)
            except ValidationError as exc:
                raise errors.InvalidInputError(f"invalid filters: {exc}") from exc
        params: list[tuple[str, Any]] = []
        for session in filters.session_ids() or []:
            params.append(("session_id", session))
        for kind in filters.kinds() or []:
            params.append(("kind", kind.value))
        for tag in filters.tags or []:
            params.append(("tags", tag))
        if filters.speaker is not None:
            params.append(("speaker", filters.speaker))
        for key in ("since", "until"):
            if (value := getattr(filters, key)) is not None:
                params.append((key, value.isoformat()))
        params.append(("state", filters.state.value if filters.state is not None else "any"))
        return params
