"""Request and response bodies of the REST API that are not already ``memkern.models``.

Responses reuse the project's models (``CubeInfo``, ``MemoryItem``, ``AddResult``,
``Hit``, ``Operation``) so that the JSON is the same as ``--json`` on the command line
and what ``MemkernClient`` parses back. Requests mirror the keyword arguments of the
Python API one to one; the core still validates every value (these models only give
the OpenAPI schema its shape and refuse what JSON cannot carry to the core safely).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from memkern.models import Permission, Role
from memkern.models import Filters, MemoryItem, MemoryKind, Message
from memkern.retrieval.config import SearchConfig

#: Most memories one page of ``GET /v1/cubes/{name}/memories`` returns.
MAX_PAGE = 1_000
#: Largest offset accepted when paging (SQLite integers are 64-bit).
MAX_OFFSET = 2**53


def _unencodable(value: Any, depth: int = 0) -> str | None:
    """Where in a JSON value a string holds a lone surrogate (JSON's ``"\\ud800"``), if anywhere."""
    if depth > 64:
        return None
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "a string"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if _unencodable(key, depth + 1):
                return f"the key {key!r}"
            if found := _unencodable(item, depth + 1):
                return f"{key}: {found}" if isinstance(key, str) and _unencodable(key) is None else found
        return None
    if isinstance(value, (list, tuple)):
        for position, item in enumerate(value):
            if found := _unencodable(item, depth + 1):
                return f"[{position}]: {found}"
    return None


class _Request(BaseModel):
    """Base of request bodies: unknown fields are refused, and so is text that is not valid Unicode."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        if (where := _unencodable(data)) is not None:
            raise ValueError(f"{where} is not valid Unicode (a lone surrogate)")
        return data


class CubeCreate(_Request):
    """``POST /v1/cubes``: the arguments of ``MemOS.create_cube``."""

    name: str = Field(description="Cube name, unique in the store.")
    owner: str | None = Field(None, description="Who the cube belongs to (default: the caller; `default` "
                                                 "without authentication). Only admins give someone else.")
    description: str = ""


class MemoryAdd(_Request):
    """``POST /v1/cubes/{name}/memories``: the arguments of ``MemCube.add``.

    Give either ``messages`` (stored as turn memories of ``session_id``) or ``text``
    (one memory of ``kind`` with ``tags``, ``metadata`` and ``time``).
    """

    messages: list[Message] | None = None
    text: str | None = None
    session_id: str | None = None
    kind: MemoryKind = MemoryKind.FACT
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] | None = None
    time: datetime | None = None
    infer: bool | None = Field(None, description="Extract and decide on facts with the LLM (default: when "
                                                 "there is one); false stores as given.")


class DocumentAdd(_Request):
    """``POST /v1/cubes/{name}/documents``: the arguments of ``MemCube.add_document``."""

    text: str
    path: str | None = None
    time: datetime | None = None
    tags: list[str] = Field(default_factory=list)


class SearchRequest(_Request):
    """``POST /v1/cubes/{name}/search``: the arguments of ``MemCube.search``.

    ``recipe`` names a ready-made configuration (hybrid, lexical, dense, recent);
    ``config`` gives one in full. At most one of them.
    """

    query: str
    top_k: int = Field(5, ge=1, le=1_000)
    filters: Filters | None = None
    recipe: str | None = None
    config: SearchConfig | None = None

    @model_validator(mode="after")
    def _one_config(self) -> SearchRequest:
        if self.recipe is not None and self.config is not None:
            raise ValueError("give either recipe or config, not both")
        return self


class MemoryUpdate(_Request):
    """``PATCH /v1/cubes/{name}/memories/{id}``: the arguments of ``MemCube.update``."""

    text: str | None = None
    tags: list[str] | None = None
    metadata: dict[str, Any] | None = None
    valid_from: datetime | None = None
    event_time: datetime | None = None
    reason: str | None = None


class InvalidateRequest(_Request):
    """Optional body of ``.../invalidate``: the arguments of ``MemCube.invalidate``."""

    at: datetime | None = Field(None, description="When it stopped being true (default: now).")
    reason: str | None = None
    metadata: dict[str, Any] | None = None


class ChatRequest(_Request):
    """``POST /v1/cubes/{name}/chat``: the arguments of ``MemCube.chat``."""

    query: str
    top_k: int = Field(8, ge=1, le=1_000)
    write_back: bool = False
    session_id: str | None = None


class UserCreate(_Request):
    """``POST /v1/users``: the arguments of ``MemOS.create_user``."""

    name: str
    role: Role = Role.USER
    id: str | None = Field(None, description="The user id (default: a random one).")


class ApiKeyCreated(BaseModel):
    """A new API key: ``key`` is shown this once and stored only as its sha256."""

    key: str
    prefix: str
    user_id: str


class ApiKeyInfo(BaseModel):
    """A stored API key, by its public prefix (never the key or its hash)."""

    prefix: str
    user_id: str
    created_at: datetime
    revoked_at: datetime | None = None


class GrantRequest(_Request):
    """``PUT /v1/cubes/{name}/grants/{user_id}``."""

    permission: Permission


class RevokeResult(BaseModel):
    revoked: bool


class PolicyUpdate(_Request):
    """``PUT /v1/cubes/{name}/policy``: the keys to set (``MemOS.set_policy``); others keep their value."""

    archive_after_days: float | None = Field(None, gt=0, allow_inf_nan=False)
    forget_after_days: float | None = Field(None, gt=0, allow_inf_nan=False)
    redact_pii: bool | None = None
    guard: bool | None = None


class ForgetResult(BaseModel):
    """``DELETE /v1/users/{id}``: the user erased and the ids of their cubes purged."""

    user_id: str
    cubes: list[str]


class RetentionRequest(_Request):
    """Optional body of ``POST /v1/admin/retention``."""

    now: datetime | None = Field(None, description="Apply as of this time (default: now).")


class LifecycleChange(_Request):
    """Optional body of ``.../archive`` and ``.../restore``: why."""

    reason: str | None = None


class MemoryPage(BaseModel):
    """One page of ``GET /v1/cubes/{name}/memories``; ``next_offset`` is ``null`` on the last page."""

    items: list[MemoryItem]
    offset: int
    limit: int
    next_offset: int | None = None


class Health(BaseModel):
    status: str = "ok"
    version: str
    embedder: str
    dim: int


class Problem(BaseModel):
    """An error, as RFC 9457 problem details (``application/problem+json``).

    ``error`` names the memkern exception class when the error is one of memkern's
    (``NotFoundError``, ``ConflictError``, ``InvalidInputError``, ...); ``errors``
    lists the fields that failed validation, when that is what happened.
    """

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    error: str | None = None
    errors: list[dict[str, Any]] | None = None
