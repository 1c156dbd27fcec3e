"""What governance adds to ``MemOS``: users, API keys, grants, audit, retention, forgetting,
the write policy (PII, guard) and the permission-checking view ``MemOS.as_user`` returns.

Without a user, ``MemOS`` behaves as before (the embedded single-user default): nothing is
checked or audited, but writes still go through the write policy (PII tags, optional
redaction, quarantine). With a user (``mos.as_user(user_or_key)``), every cube operation
is checked by ``memkern.governance.access.decide`` and recorded in the audit log (ids only),
allowed, denied or failed; a denied call raises ``PermissionDeniedError`` and changes
nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import uuid4

from pydantic import ValidationError

from memkern.errors import AuthenticationError, InvalidInputError, MemkernError, NotFoundError, PermissionDeniedError
from memkern.governance import guard, pii
from memkern.governance.access import decide
from memkern.models import (
    ApiKey,
    AuditEntry,
    AuditResult,
    CubePolicy,
    Grant,
    Permission,
    RetentionReport,
    Role,
    User,
)
from memkern.memory.erasure import erase_derived
from memkern.models import CubeInfo, Filters, LifecycleState, MemoryItem, utcnow

if TYPE_CHECKING:
    from memkern.mos import MemOS

T = TypeVar("T")

_KEY = re.compile(r"mk_([0-9a-f]{12})_[A-Za-z0-9_-]{32,64}")
_DUMMY_HASH = hashlib.sha256(b"memkern: no such key").hexdigest()
#: Most item ids one audit entry records (the rest are counted in ``detail``).
_MAX_AUDIT_IDS = 1_000


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


#: The header that may carry an API key instead of ``Authorization: Bearer``.
API_KEY_HEADER = "X-API-Key"


def api_key_from(headers: Any) -> str | None:
    """The API key in request headers (REST or MCP over HTTP): ``Authorization: Bearer <key>``,
    else ``X-API-Key``; None when there is none. Header names are looked up in lower case,
    which both a plain mapping of lower-case names and Starlette's headers answer."""
    if headers is None:
        return None
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    value = headers.get(API_KEY_HEADER.lower())
    return value.strip() if value is not None and value.strip() else None


# -- the write policy -----------------------------------------------------------------------------------
def apply_write_policy(info: CubeInfo, item: MemoryItem) -> MemoryItem:
    """A memory about to be written, after the cube's policy: PII tagged (and redacted when
    ``redact_pii``), quarantined when the guard finds instructions aimed at the model."""
    policy = CubePolicy.of(info.metadata)
    changes: dict[str, Any] = {}
    findings = pii.find_pii(item.text)
    if findings:
        tags = list(item.tags)
        tags += [t for t in pii.pii_tags(findings) if t not in tags]
        changes["tags"] = tags
        if policy.redact_pii:
            from memkern.reader.entities import find_entities

            changes["text"] = pii.redact(item.text, findings)
            changes["entities"] = find_entities(changes["text"], item.provenance.speaker)
    if policy.guard and item.state is LifecycleState.ACTIVE:
        verdict = guard.check(item.text)
        if verdict.quarantine:
            changes["state"] = LifecycleState.QUARANTINED
            changes["metadata"] = {**item.metadata, "quarantine_reasons": verdict.reasons}
    return item.model_copy(update=changes) if changes else item


def _check_str(value: object, what: str) -> str:
    from memkern.cube.cube import check_name

    return check_name(value, what)


def _user_id(user: object) -> str:
    if isinstance(user, User):
        return user.id
    return _check_str(user, "user id")


def _permission(value: object) -> Permission:
    try:
        return Permission(value)
    except ValueError:
        raise InvalidInputError(f"permission must be one of read, write, admin; not {value!r}") from None


class GovernanceMixin:
    """Methods ``MemOS`` gains. ``_user`` is None on a plain MemOS (nothing checked)."""

    _store: Any
    _indexes: Any
    _user: User | None = None

    # -- identity ------------------------------------------------------------------------------------
    @property
    def user(self) -> User | None:
        """The user this MemOS acts as (``None``: the embedded single-user default)."""
        return self._user

    def as_user(self, user_or_key: User | str) -> MemOS:
        """A view of this MemOS acting as a user: every operation is checked and audited.

        Give an API key (``create_api_key``), or a ``User`` (trusted in-process callers).
        The view shares the store; closing it does not close the store.
        """
        if isinstance(user_or_key, User):
            user = self._store.get_user(user_or_key.id)
            if self._user is not None and not self._user.is_admin and self._user.id != user.id:
                self._deny("as_user", None, [user.id])
        elif isinstance(user_or_key, str):
            user = self.authenticate(user_or_key)
        else:
            raise InvalidInputError(f"as_user takes a User or an API key, not {type(user_or_key).__name__}")
        return _classes()[1]._view(self, user)

    # -- users -----------------------------------------------------------------------------------------
    def create_user(self, name: str, role: Role | str = Role.USER, *, user_id: str | None = None) -> User:
        """A new user (admin only when a user is set)."""
        name = _check_str(name, "user name")
        try:
            parsed_role = Role(role)
        except ValueError:
            raise InvalidInputError(f"role must be 'admin' or 'user', not {role!r}") from None
        uid = _check_str(user_id, "user id") if user_id is not None else uuid4().hex
        self._require_role_admin("create_user")
        user = self._store.create_user(User(id=uid, name=name, role=parsed_role))
        self._audit_event("create_user", None, [user.id])
        return user

    def get_user(self, user_id: str) -> User:
        return self._store.get_user(_check_str(user_id, "user id"))

    def list_users(self) -> list[User]:
        self._require_role_admin("list_users")
        return self._store.list_users()

    # -- API keys --------------------------------------------------------------------------------------
    def create_api_key(self, user: User | str) -> str:
        """A new API key for ``user``: returned once, stored only as its sha256."""
        uid = _user_id(user)
        self._store.get_user(uid)
        self._require_self_or_admin("create_api_key", uid)
        prefix = secrets.token_hex(6)
        key = f"mk_{prefix}_{secrets.token_urlsafe(32)}"
        self._store.add_api_key(ApiKey(prefix=prefix, user_id=uid, key_hash=hash_key(key)))
        self._audit_event("create_api_key", None, [uid, prefix])
        return key

    def authenticate(self, key: str) -> User:
        """The user an API key belongs to; ``AuthenticationError`` if it is malformed, unknown
        or revoked (the message never repeats the key)."""
        if not isinstance(key, str):
            raise AuthenticationError("an API key must be a string")
        match = _KEY.fullmatch(key.strip())
        record = self._store.get_api_key(match.group(1)) if match else None
        # Always compare a hash, so that an unknown prefix takes as long as a wrong secret.
        expected = record.key_hash if record is not None else _DUMMY_HASH
        good = hmac.compare_digest(hash_key(key.strip()), expected)
        if not (good and record is not None and record.revoked_at is None):
            self._store.append_audit([AuditEntry(operation="authenticate", result=AuditResult.DENIED,
                                                 item_ids=[match.group(1)] if match else [],
                                                 detail="AuthenticationError")])
            raise AuthenticationError("invalid or revoked API key")
        return self._store.get_user(record.user_id)

    def revoke_api_key(self, key_or_prefix: str) -> None:
        """Revoke a key, given whole or by its prefix (the 12 hex digits after ``mk_``)."""
        value = _check_str(key_or_prefix, "API key")
        match = _KEY.fullmatch(value.strip())
        prefix = match.group(1) if match else value
        record = self._store.get_api_key(prefix)
        if record is None:
            raise NotFoundError("no such API key")
        self._require_self_or_admin("revoke_api_key", record.user_id)
        self._store.revoke_api_key(prefix)
        self._audit_event("revoke_api_key", None, [record.user_id, prefix])

    def api_keys(self, user: User | str) -> list[ApiKey]:
        uid = _user_id(user)
        self._require_self_or_admin("api_keys", uid)
        return self._store.list_api_keys(uid)

    # -- grants (sharing) --------------------------------------------------------------------------------
    def grant(self, cube: str, user: User | str, permission: Permission | str) -> Grant:
        """Share a cube: give ``user`` read, write or admin on it (replacing any earlier grant)."""
        perm = _permission(permission)
        uid = _user_id(user)
        info = self._cube_info(cube)
        grant = Grant(cube_id=info.id, user_id=uid, permission=perm)
        self._guarded("grant", info, lambda: self._store.set_grant(grant), ids=[uid])
        return grant

    def revoke(self, cube: str, user: User | str) -> bool:
        """Take a user's grant on a cube away; False if they had none."""
        uid = _user_id(user)
        info = self._cube_info(cube)
        return self._guarded("revoke", info, lambda: self._store.delete_grant(info.id, uid), ids=[uid])

    def grants(self, cube: str) -> list[Grant]:
        info = self._cube_info(cube)
        return self._guarded("grants", info, lambda: self._store.list_grants(cube_id=info.id))

    # -- policy ----------------------------------------------------------------------------------------
    def set_policy(self, cube: str, **policy: Any) -> CubePolicy:
        """Set the cube's governance policy (``archive_after_days``, ``forget_after_days``,
        ``redact_pii``, ``guard``); the keys given replace those in the cube's metadata."""
        info = self._cube_info(cube)
        merged = {**{k: v for k, v in info.metadata.items() if k in CubePolicy.model_fields}, **policy}
        try:
            parsed = CubePolicy.model_validate(merged)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
            raise InvalidInputError(f"invalid cube policy: {problems}") from None
        values = parsed.model_dump(include=set(merged))
        self._guarded("set_policy", info,
                      lambda: self._store.set_cube_metadata(info.id, {**info.metadata, **values}))
        return parsed

    def policy(self, cube: str) -> CubePolicy:
        info = self._cube_info(cube)
        return self._guarded("open", info, lambda: CubePolicy.of(info.metadata))

    # -- audit -----------------------------------------------------------------------------------------
    def audit(self, cube: str | None = None, user: User | str | None = None, since: datetime | str | None = None,
              limit: int | None = 100) -> list[AuditEntry]:
        """Audit entries, newest first. A non-admin user sees only their own entries."""
        from memkern.cube.cube import check_time

        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise InvalidInputError(f"limit must be a positive integer, not {limit!r}")
        when = check_time(since, "since")
        uid = _user_id(user) if user is not None else None
        cube_id = None
        if cube is not None:
            name = _check_str(cube, "cube")
            try:
                cube_id = self._store.get_cube(name).id
            except NotFoundError:
                cube_id = name  # a deleted cube: its id
        if self._user is not None and not self._user.is_admin:
            if uid is not None and uid != self._user.id:
                self._deny("audit", cube_id, [uid])
            uid = self._user.id
        return self._store.query_audit(cube_id=cube_id, user_id=uid, since=when, limit=limit)

    # -- retention and forgetting --------------------------------------------------------------------------
    def apply_retention(self, now: datetime | str | None = None) -> RetentionReport:
        """Archive or delete memories of every cube whose policy says so, by the time since
        each was last accessed (or written). Logged and audited (ids only)."""
        from memkern.cube.cube import check_time

        when = check_time(now, "now") or utcnow()
        self._require_role_admin("apply_retention")
        actor = self._user.id if self._user else "retention"
        report = RetentionReport(now=when)
        recorder = getattr(self, "_access", None)
        if recorder is not None:
            recorder.flush()  # reads still buffered in memory count: a memory read just now is not old
        for info in self._store.list_cubes():
            policy = CubePolicy.of(info.metadata)
            if policy.archive_after_days is None and policy.forget_after_days is None:
                continue
            report.cubes += 1
            archived, forgotten = [], []
            for item in self._store.list_memories(info.id, Filters(state=None)):
                last = item.last_accessed_at or item.recorded_at
                age_days = (when - last).total_seconds() / 86_400
                if policy.forget_after_days is not None and age_days >= policy.forget_after_days:
                    self._store.delete_memory(info.id, item.id, actor=actor, reason="retention")
                    forgotten.append(item.id)
                elif (policy.archive_after_days is not None and age_days >= policy.archive_after_days
                      and item.state is LifecycleState.ACTIVE):
                    self._store.set_state(info.id, item.id, LifecycleState.ARCHIVED, actor, "retention")
                    archived.append(item.id)
            if archived:
                report.archived[info.id] = archived
                self._store.append_audit([AuditEntry(user_id=actor, operation="retention_archive",
                                                     cube_id=info.id, item_ids=archived[:_MAX_AUDIT_IDS],
                                                     detail=f"{len(archived)} archived")])
            if forgotten:
                erase_derived(self._store, info.id, forgotten)
                report.forgotten[info.id] = forgotten
                self._store.append_audit([AuditEntry(user_id=actor, operation="retention_forget",
                                                     cube_id=info.id, item_ids=forgotten[:_MAX_AUDIT_IDS],
                                                     detail=f"{len(forgotten)} deleted")])
        return report

    def forget_user(self, user_id: User | str) -> list[str]:
        """Erase a user: their cubes with every memory, version, vector and index entry, their
        grants, keys and audit trail; one id-level audit entry remains. Returns the purged
        cube ids. Admins may forget anyone, users themselves."""
        uid = _user_id(user_id)
        self._require_self_or_admin("forget_user", uid)
        cubes = self._store.forget_user(uid, actor=self._user.id if self._user else None)
        for cube_id in cubes:
            self._indexes.forget(cube_id)
            erase_derived(self._store, cube_id)
        return cubes

    # -- the write path (called by MemOS._write_items / _update_item) ------------------------------------
    def _governed_items(self, info: CubeInfo, items: list[MemoryItem]) -> list[MemoryItem]:
        return [apply_write_policy(info, item) for item in items]

    # -- checks and audit (no-ops without a user) ------------------------------------------------------------
    def _cube_info(self, cube: str) -> CubeInfo:
        return self._store.get_cube(_check_str(cube, "cube name"))

    def _require_role_admin(self, operation: str) -> None:
        if self._user is not None and not self._user.is_admin:
            self._deny(operation, None, [])

    def _require_self_or_admin(self, operation: str, user_id: str) -> None:
        if self._user is not None and not self._user.is_admin and self._user.id != user_id:
            self._deny(operation, None, [user_id])

    def _deny(self, operation: str, cube_id: str | None, ids: Sequence[str], what: str = "") -> None:
        who = self._user.id if self._user else None
        self._store.append_audit([AuditEntry(user_id=who, operation=operation, cube_id=cube_id,
                                             item_ids=list(ids)[:_MAX_AUDIT_IDS], result=AuditResult.DENIED,
                                             detail="PermissionDeniedError")])
        target = f" on cube {what!r}" if what else ""
        raise PermissionDeniedError(f"user {who!r} may not {operation}{target}")

    def _audit_event(self, operation: str, cube_id: str | None, ids: Sequence[str]) -> None:
        if self._user is not None:
            self._store.append_audit([AuditEntry(user_id=self._user.id, operation=operation, cube_id=cube_id,
                                                 item_ids=list(ids)[:_MAX_AUDIT_IDS])])

    def _allowed(self, operation: str, info: CubeInfo) -> bool:
        user = self._user
        if user is None:
            return True
        grant = None
        if not user.is_admin and info.owner != user.id:
            found = self._store.list_grants(cube_id=info.id, user_id=user.id)
            grant = found[0].permission if found else None
        return decide(user.role, info.owner == user.id, grant, operation)

    def _guarded(self, operation: str, info: CubeInfo, call: Callable[[], T], *, ids: Iterable[str] = (),
                 result_ids: Callable[[T], Iterable[str]] | None = None) -> T:
        """Run ``call`` if the user may run ``operation`` on the cube; audit the outcome.

        Calls nested inside an audited call (an ``add`` deciding facts with ``update``) are
        checked too but not audited again."""
        ids = list(ids)
        if self._user is None:
            return call()
        local = _NESTING
        nested = getattr(local, "depth", 0) > 0
        if not self._allowed(operation, info):
            if nested:
                raise PermissionDeniedError(f"user {self._user.id!r} may not {operation} on cube {info.name!r}")
            self._deny(operation, info.id, ids, info.name)
        if nested:
            return call()
        local.depth = 1
        try:
            out = call()
        except MemkernError as exc:
            result = AuditResult.DENIED if isinstance(exc, PermissionDeniedError) else AuditResult.ERROR
            self._store.append_audit([AuditEntry(user_id=self._user.id, operation=operation, cube_id=info.id,
                                                 item_ids=ids[:_MAX_AUDIT_IDS], result=result,
                                                 detail=type(exc).__name__)])
            raise
        finally:
            local.depth = 0
        found = ids + [i for i in (result_ids(out) if result_ids else ()) if i not in ids]
        detail = f"{len(found)} ids" if len(found) > _MAX_AUDIT_IDS else None
        self._store.append_audit([AuditEntry(user_id=self._user.id, operation=operation, cube_id=info.id,
                                             item_ids=found[:_MAX_AUDIT_IDS], detail=detail)])
        return out


_NESTING = threading.local()


def _added_ids(result: Any) -> list[str]:
    return [m.id for m in [*result.added, *getattr(result, "updated", [])]]


def _hit_ids(hits: Any) -> list[str]:
    return [h.id for h in hits]


# -- the governed view ---------------------------------------------------------------------------------------
def _make_classes() -> tuple[type, type]:
    from memkern.cube.cube import MemCube
    from memkern.mos import MemOS

    class GovernedCube(MemCube):
        """A cube opened through ``MemOS.as_user``: every method is checked and audited."""

        _mos: Any

        def _g(self, operation: str, call: Callable[[], T], ids: Iterable[str] = (),
               result_ids: Callable[[T], Iterable[str]] | None = None) -> T:
            return self._mos._guarded(operation, self.info, call, ids=ids, result_ids=result_ids)

        def _actor(self, kwargs: dict[str, Any]) -> dict[str, Any]:
            kwargs["actor"] = self._mos._user.id  # the log names the authenticated user
            return kwargs

        def _is_admin(self) -> bool:
            return self._mos._allowed("release", self.info)

        def _quarantined(self, memory_id: object) -> bool:
            if not isinstance(memory_id, str):
                return False
            found = self._mos._store.get_memories(self.id, [memory_id])
            return memory_id in found and found[memory_id].state is LifecycleState.QUARANTINED

        # writes
        def add(self, *args: Any, **kwargs: Any) -> Any:
            return self._g("add", lambda: MemCube.add(self, *args, **self._actor(kwargs)), result_ids=_added_ids)

        def add_document(self, *args: Any, **kwargs: Any) -> Any:
            return self._g("add_document", lambda: MemCube.add_document(self, *args, **self._actor(kwargs)),
                           result_ids=_added_ids)

        def update(self, memory_id: str, *args: Any, **kwargs: Any) -> MemoryItem:
            return self._g("update", lambda: MemCube.update(self, memory_id, *args, **self._actor(kwargs)),
                           ids=[str(memory_id)])

        def invalidate(self, memory_id: str, **kwargs: Any) -> MemoryItem:
            op = "restore_quarantined" if self._quarantined(memory_id) else "invalidate"
            return self._g(op, lambda: MemCube.invalidate(self, memory_id, **self._actor(kwargs)),
                           ids=[str(memory_id)])

        def delete(self, memory_id: str, **kwargs: Any) -> None:
            return self._g("delete", lambda: MemCube.delete(self, memory_id, **self._actor(kwargs)),
                           ids=[str(memory_id)])

        def archive(self, memory_id: str, **kwargs: Any) -> MemoryItem:
            op = "restore_quarantined" if self._quarantined(memory_id) else "archive"
            return self._g(op, lambda: MemCube.archive(self, memory_id, **self._actor(kwargs)), ids=[str(memory_id)])

        def restore(self, memory_id: str, **kwargs: Any) -> MemoryItem:
            op = "restore_quarantined" if self._quarantined(memory_id) else "restore"
            return self._g(op, lambda: MemCube.restore(self, memory_id, **self._actor(kwargs)), ids=[str(memory_id)])

        def release(self, memory_id: str, **kwargs: Any) -> MemoryItem:
            return self._g("release", lambda: MemCube.release(self, memory_id, **self._actor(kwargs)),
                           ids=[str(memory_id)])

        # reads
        def search(self, *args: Any, **kwargs: Any) -> Any:
            def run() -> Any:
                hits = MemCube.search(self, *args, **kwargs)
                return [h for h in hits if h.memory.state is not LifecycleState.QUARANTINED]
            return self._g("search", run, result_ids=_hit_ids)

        def chat(self, *args: Any, **kwargs: Any) -> Any:
            if kwargs.get("write_back") and not self._mos._allowed("add", self.info):
                # Refuse before the model is asked: its answer could not be stored anyway.
                self._mos._deny("chat", self.id, [], self.name)
            return self._g("chat", lambda: MemCube.chat(self, *args, **kwargs),
                           result_ids=lambda answer: [h.id for h in answer.hits])

        def get(self, memory_id: str) -> MemoryItem:
            def run() -> MemoryItem:
                item = MemCube.get(self, memory_id)
                if item.state is LifecycleState.QUARANTINED and not self._is_admin():
                    raise NotFoundError(f"no memory {memory_id!r} in cube {self.name!r}")
                return item
            return self._g("get", run, ids=[str(memory_id)])

        def get_all(self, filters: Filters | Mapping[str, Any] | None = None, **kwargs: Any) -> list[MemoryItem]:
            state = filters.state if isinstance(filters, Filters) else (
                (filters or {}).get("state", "active") if isinstance(filters, Mapping) else "active")
            wants_quarantined = state is not None and str(getattr(state, "value", state)) == "quarantined"
            op = "get_quarantined" if wants_quarantined else "get_all"

            def run() -> list[MemoryItem]:
                items = MemCube.get_all(self, filters, **kwargs)
                if not wants_quarantined and not self._is_admin():
                    items = [i for i in items if i.state is not LifecycleState.QUARANTINED]
                return items
            return self._g(op, run, result_ids=lambda items: [i.id for i in items])

        def history(self, memory_id: str) -> list[MemoryItem]:
            return self._g("history", lambda: MemCube.history(self, memory_id), ids=[str(memory_id)])

        def operations(self, *args: Any, **kwargs: Any) -> Any:
            return self._g("operations", lambda: MemCube.operations(self, *args, **kwargs))

        def dump(self, path: str | Path) -> Path:
            return self._g("dump", lambda: MemCube.dump(self, path))

    class GovernedMemOS(MemOS):
        """A MemOS acting as one user (from ``MemOS.as_user``): every cube operation is
        checked against the user's role and grants, and audited."""

        _user: User

        @classmethod
        def _view(cls, parent: MemOS, user: User) -> GovernedMemOS:
            view = cls.__new__(cls)
            view.__dict__.update(parent.__dict__)
            view._user = user
            return view

        def close(self) -> None:
            """A view does not own the store: closing it is a no-op (close the parent MemOS)."""

        def __exit__(self, *exc: Any) -> None:
            self.close()

        def _cube(self, info: CubeInfo) -> GovernedCube:
            return GovernedCube(self, info)

        def create_cube(self, name: str, owner: str | None = None, description: str = "") -> GovernedCube:
            owner = self._user.id if owner is None else owner
            if owner != self._user.id and not self._user.is_admin:
                self._deny("create_cube", None, [str(owner)])
            cube = MemOS.create_cube(self, name, owner=owner, description=description)
            self._audit_event("create_cube", cube.id, [])
            return self._cube(cube.info)

        def get_cube(self, name_or_id: str) -> GovernedCube:
            info = self._cube_info(name_or_id)
            self._guarded("open", info, lambda: self._check_embedder(info))
            return self._cube(info)

        def list_cubes(self, owner: str | None = None) -> list[CubeInfo]:
            visible = [info for info in MemOS.list_cubes(self, owner) if self._allowed("open", info)]
            self._audit_event("list_cubes", None, [info.id for info in visible])
            return visible

        def delete_cube(self, name_or_id: str, actor: str | None = None) -> None:
            info = self._cube_info(name_or_id)
            self._guarded("delete_cube", info, lambda: MemOS.delete_cube(self, info.id, actor=self._user.id))

        def load_cube(self, path: str | Path, name: str | None = None, owner: str | None = None) -> GovernedCube:
            owner = self._user.id if owner is None else owner
            if owner != self._user.id and not self._user.is_admin:
                self._deny("load_cube", None, [str(owner)])
            cube = MemOS.load_cube(self, path, name=name, owner=owner)
            self._audit_event("load_cube", cube.id, [])
            return self._cube(cube.info)

        def _write_items(self, info: CubeInfo, items: list[MemoryItem], actor: str | None) -> Any:
            # Backstop: whatever path reaches the write path needs write on the cube.
            if not self._allowed("add", info):
                self._deny("add", info.id, [], info.name)
            return MemOS._write_items(self, info, items, actor)

        def _update_item(self, info: CubeInfo, item: MemoryItem, expected_version: int) -> MemoryItem:
            if not self._allowed("update", info):
                self._deny("update", info.id, [item.id], info.name)
            return MemOS._update_item(self, info, item, expected_version)

    return GovernedCube, GovernedMemOS


_CLASSES: list[tuple[type, type]] = []


def _classes() -> tuple[type, type]:
    """``(GovernedCube, GovernedMemOS)``, built on first use: they subclass ``MemCube`` and
    ``MemOS``, which import this module."""
    if not _CLASSES:
        _CLASSES.append(_make_classes())
    return _CLASSES[0]


def __getattr__(name: str) -> Any:
    if name == "GovernedCube":
        return _classes()[0]
    if name == "GovernedMemOS":
        return _classes()[1]
    raise AttributeError(name)
