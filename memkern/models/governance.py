"""Records of governance: users, API keys, grants, audit entries, retention reports."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field

from memkern.models.memory import utcnow


class Role(str, Enum):
    """A user's role in the whole store: admins pass every check."""

    ADMIN = "admin"
    USER = "user"


class Permission(str, Enum):
    """What a grant on a cube allows; each level includes the ones below it."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"

    @property
    def level(self) -> int:
        return _LEVELS[self]


_LEVELS = {Permission.READ: 1, Permission.WRITE: 2, Permission.ADMIN: 3}


class User(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    role: Role = Role.USER
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


class ApiKey(BaseModel):
    """A stored API key: never the key itself, only its public prefix and sha256."""

    model_config = ConfigDict(extra="forbid")

    prefix: str
    user_id: str
    key_hash: str
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None


class ApiKeyInfo(BaseModel):
    """A stored API key as it is shown: by its public prefix, never the key or its hash."""

    prefix: str
    user_id: str
    created_at: datetime
    revoked_at: datetime | None = None


class Grant(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cube_id: str
    user_id: str
    permission: Permission
    granted_at: datetime = Field(default_factory=utcnow)


class AuditResult(str, Enum):
    ALLOWED = "allowed"
    DENIED = "denied"
    ERROR = "error"


class AuditEntry(BaseModel):
    """One audited call: who, when, what, on which cube and memories, and how it ended.

    Ids and names of operations only: never memory text, queries, keys or error messages
    (``detail`` is an exception class name or a count).
    """

    model_config = ConfigDict(extra="forbid")

    seq: int = 0
    at: datetime = Field(default_factory=utcnow)
    user_id: str | None = None
    operation: str
    cube_id: str | None = None
    item_ids: list[str] = Field(default_factory=list)
    result: AuditResult = AuditResult.ALLOWED
    detail: str | None = None


class RetentionReport(BaseModel):
    """What ``apply_retention`` did: memory ids archived and deleted, per cube id."""

    now: datetime
    cubes: int = 0
    archived: dict[str, list[str]] = Field(default_factory=dict)
    forgotten: dict[str, list[str]] = Field(default_factory=dict)

    @property
    def n_archived(self) -> int:
        return sum(len(v) for v in self.archived.values())

    @property
    def n_forgotten(self) -> int:
        return sum(len(v) for v in self.forgotten.values())
