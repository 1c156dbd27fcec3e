"""Governance operations: users, API keys, grants, cube policies, the audit log, retention,
and forgetting a user.

Who may run each is declared with the operation (``memkern.api.table``) and checked by the
dispatcher; what a caller may *see* (a non-admin reads only their own audit entries) is
decided here. API keys are stored as SHA-256 hashes (``mk_<prefix>_<secret>``, shown once).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime
from typing import Any
from uuid import uuid4

from memkern.errors import AuthenticationError, NotFoundError
from memkern.kernel import Kernel
from memkern.models import (
    ApiKey,
    ApiKeyInfo,
    AuditEntry,
    AuditResult,
    CubePolicy,
    Filters,
    Grant,
    LifecycleState,
    Permission,
    RetentionReport,
    Role,
    User,
    utcnow,
)
from memkern.ops import erasure
from memkern.ops.context import OpContext

KEY_PATTERN = re.compile(r"mk_([0-9a-f]{12})_[A-Za-z0-9_-]{32,64}")
_DUMMY_HASH = hashlib.sha256(b"memkern: no such key").hexdigest()
#: Most item ids one audit entry records (the rest are counted in ``detail``).
MAX_AUDIT_IDS = 1_000


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_prefix(key_or_prefix: str) -> str:
    """The public prefix of a whole key, or the prefix itself."""
    match = KEY_PATTERN.fullmatch(key_or_prefix.strip())
    return match.group(1) if match else key_or_prefix.strip()


def authenticate(kernel: Kernel, key: object) -> User:
    """The user an API key belongs to; ``AuthenticationError`` if it is malformed, unknown or
    revoked (the message never repeats the key). A failure is audited by key prefix."""
    if not isinstance(key, str):
        raise AuthenticationError("an API key must be a string")
    match = KEY_PATTERN.fullmatch(key.strip())
    record = kernel.store.get_api_key(match.group(1)) if match else None
    # Always compare a hash, so that an unknown prefix takes as long as a wrong secret.
    expected = record.key_hash if record is not None else _DUMMY_HASH
    good = hmac.compare_digest(hash_key(key.strip()), expected)
    if not (good and record is not None and record.revoked_at is None):
        kernel.audit(AuditEntry(operation="authenticate", result=AuditResult.DENIED,
                                item_ids=[match.group(1)] if match else [], detail="AuthenticationError"))
        raise AuthenticationError("invalid or revoked API key")
    return kernel.store.get_user(record.user_id)


# -- users -------------------------------------------------------------------------------------------
def create_user(ctx: OpContext, name: str, role: Role = Role.USER, user_id: str | None = None) -> User:
    return ctx.kernel.store.create_user(User(id=user_id or uuid4().hex, name=name, role=role))


def get_user(ctx: OpContext, user_id: str) -> User:
    return ctx.kernel.store.get_user(user_id)


def list_users(ctx: OpContext) -> list[User]:
    return ctx.kernel.store.list_users()


def whoami(ctx: OpContext) -> User | None:
    """The authenticated user (``None`` for the embedded default, or a server without authentication)."""
    return ctx.user


def forget_user(ctx: OpContext, user_id: str) -> list[str]:
    """Erase a user: their cubes with every memory, version, vector and index entry, their
    grants, keys and audit trail; one id-level audit entry remains. Returns the purged cube ids."""
    cubes = ctx.kernel.store.forget_user(user_id, actor=ctx.user.id if ctx.user else None)
    for cube_id in cubes:
        ctx.kernel.indexes.forget(cube_id)
        erasure.erase_derived(ctx.kernel.store, cube_id)
    return cubes


# -- API keys ----------------------------------------------------------------------------------------
def create_api_key(ctx: OpContext, user_id: str) -> str:
    """A new API key for the user: returned once, stored only as its sha256."""
    ctx.kernel.store.get_user(user_id)
    prefix = secrets.token_hex(6)
    key = f"mk_{prefix}_{secrets.token_urlsafe(32)}"
    ctx.kernel.store.add_api_key(ApiKey(prefix=prefix, user_id=user_id, key_hash=hash_key(key)))
    return key


def api_keys(ctx: OpContext, user_id: str) -> list[ApiKeyInfo]:
    """The user's keys, by prefix (never the key or its hash)."""
    return [ApiKeyInfo.model_validate(k.model_dump(exclude={"key_hash"}))
            for k in ctx.kernel.store.list_api_keys(user_id)]


def key_owner(kernel: Kernel, key_or_prefix: str) -> str:
    """Whose key this is (the dispatcher's "self or admin" check); ``NotFoundError`` if nobody's."""
    record = kernel.store.get_api_key(key_prefix(key_or_prefix))
    if record is None:
        raise NotFoundError("no such API key")
    return record.user_id


def revoke_api_key(ctx: OpContext, key: str) -> ApiKeyInfo:
    """Revoke a key, given whole or by its prefix (the 12 hex digits after ``mk_``)."""
    prefix = key_prefix(key)
    ctx.kernel.store.revoke_api_key(prefix)
    record = ctx.kernel.store.get_api_key(prefix)
    assert record is not None
    return ApiKeyInfo.model_validate(record.model_dump(exclude={"key_hash"}))


# -- grants and policy -------------------------------------------------------------------------------
def grant(ctx: OpContext, user_id: str, permission: Permission) -> Grant:
    """Share a cube: give a user read, write or admin on it (replacing any earlier grant)."""
    found = Grant(cube_id=ctx.cube.id, user_id=user_id, permission=permission)
    ctx.kernel.store.set_grant(found)
    return found


def revoke(ctx: OpContext, user_id: str) -> bool:
    """Take a user's grant on a cube away; False if they had none."""
    return ctx.kernel.store.delete_grant(ctx.cube.id, user_id)


def grants(ctx: OpContext) -> list[Grant]:
    return ctx.kernel.store.list_grants(cube_id=ctx.cube.id)


def policy(ctx: OpContext) -> CubePolicy:
    return CubePolicy.of(ctx.cube.metadata)


def set_policy(ctx: OpContext, **changes: Any) -> CubePolicy:
    """Set policy keys (``archive_after_days``, ``forget_after_days``, ``redact_pii``, ``guard``);
    the keys given replace those in the cube's metadata, the others keep their value."""
    info = ctx.cube
    merged = {**CubePolicy.of(info.metadata).model_dump(), **changes}
    parsed = CubePolicy.model_validate(merged)
    ctx.kernel.store.set_cube_metadata(info.id, {**info.metadata, **parsed.model_dump()})
    return parsed


# -- audit and retention -----------------------------------------------------------------------------
def audit(ctx: OpContext, cube: str | None = None, user: str | None = None, since: datetime | None = None,
          limit: int | None = 100) -> list[AuditEntry]:
    """Audit entries, newest first (``limit=None``: all of them). A non-admin sees only their own."""
    cube_id = None
    if cube is not None:
        try:
            cube_id = ctx.kernel.store.get_cube(cube).id
        except NotFoundError:
            cube_id = cube  # a deleted cube: its id
    if ctx.user is not None and not ctx.user.is_admin:
        user = ctx.user.id
    return ctx.kernel.store.query_audit(cube_id=cube_id, user_id=user, since=since, limit=limit)


def apply_retention(ctx: OpContext, now: datetime | None = None) -> RetentionReport:
    """Archive or delete memories of every cube whose policy says so, by the time since each
    was last accessed (or written). Logged, and audited per cube (ids only)."""
    kernel = ctx.kernel
    when = now or utcnow()
    actor = ctx.user.id if ctx.user else "retention"
    report = RetentionReport(now=when)
    kernel.access.flush()  # reads still buffered in memory count: a memory read just now is not old
    for info in kernel.store.list_cubes():
        rules = CubePolicy.of(info.metadata)
        if rules.archive_after_days is None and rules.forget_after_days is None:
            continue
        report.cubes += 1
        archived, forgotten = [], []
        for item in kernel.store.list_memories(info.id, Filters(state=None)):
            age_days = (when - (item.last_accessed_at or item.recorded_at)).total_seconds() / 86_400
            if rules.forget_after_days is not None and age_days >= rules.forget_after_days:
                kernel.store.delete_memory(info.id, item.id, actor=actor, reason="retention")
                forgotten.append(item.id)
            elif (rules.archive_after_days is not None and age_days >= rules.archive_after_days
                  and item.state is LifecycleState.ACTIVE):
                kernel.store.set_state(info.id, item.id, LifecycleState.ARCHIVED, actor, "retention")
                archived.append(item.id)
        if archived:
            report.archived[info.id] = archived
            kernel.audit(AuditEntry(user_id=actor, operation="retention_archive", cube_id=info.id,
                                    item_ids=archived[:MAX_AUDIT_IDS], detail=f"{len(archived)} archived"))
        if forgotten:
            erasure.erase_derived(kernel.store, info.id, forgotten)
            report.forgotten[info.id] = forgotten
            kernel.audit(AuditEntry(user_id=actor, operation="retention_forget", cube_id=info.id,
                                    item_ids=forgotten[:MAX_AUDIT_IDS], detail=f"{len(forgotten)} deleted"))
    return report
