"""The one enforcement point: every operation, from every surface, runs through ``Dispatcher.call``.

A call is: validate the arguments against the operation's input model (one set of rules and
messages for Python, REST, MCP and the CLI); open the cubes it names; check what it needs
(``Operation.needs``) against the caller's role and grants; run it; and write one audit
entry (ids only) saying it was allowed, denied or failed. A denied call changes nothing.

Without a user (the embedded single-user default) nothing is checked or audited; the
write policy (PII, guard) still applies, since it lives in the write path itself.

Scheduler jobs go through ``Dispatcher.enter`` (the same checks and audit under the job's
name), as the user who queued them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from memkern.api.spec import (
    KeyOwnerOrAdmin,
    Need,
    OnCube,
    OnMemory,
    Operation,
    OwnerIsCaller,
    SelfOrAdmin,
    StoreAdmin,
)
from memkern.api.table import OPERATIONS
from memkern.errors import InvalidInputError, MemkernError, NotFoundError, PermissionDeniedError
from memkern.kernel import Kernel
from memkern.models import AuditEntry, AuditResult, CubeInfo, LifecycleState, Permission, User
from memkern.ops.context import OpContext
from memkern.ops.governance import MAX_AUDIT_IDS, key_owner, key_prefix
from memkern.validation import describe


class Denied(PermissionDeniedError):
    """Raised inside the checks; carries what the audit entry should name."""

    def __init__(self, message: str, cube_id: str | None, ids: Sequence[str]) -> None:
        super().__init__(message)
        self.cube_id = cube_id
        self.ids = list(ids)


def operation(name: str) -> Operation:
    """The table entry ``name``; ``InvalidInputError`` for an unknown one."""
    found = OPERATIONS.get(name)
    if found is None:
        raise InvalidInputError(f"unknown operation {name!r}")
    return found


def validate(op: Operation, args: Mapping[str, Any]) -> BaseModel:
    """The arguments as the operation's input model, or ``InvalidInputError`` in one line."""
    if isinstance(args, op.input):
        return args
    try:
        return op.input.model_validate(dict(args))
    except ValidationError as exc:
        raise InvalidInputError(f"{op.name}: {describe(exc)}") from None
    except (TypeError, ValueError) as exc:  # a mapping that is not one, a value no validator could read
        raise InvalidInputError(f"{op.name}: {exc}") from None


class Dispatcher:
    """Runs operations of the table against one kernel, checking and auditing each call."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    # -- the call ----------------------------------------------------------------------------------
    def call(self, user: User | None, name: str, args: Mapping[str, Any] | BaseModel) -> Any:
        """Run operation ``name`` as ``user`` (``None``: the embedded default) with ``args``."""
        op = operation(name)
        data = validate(op, args)  # type: ignore[arg-type]
        given = data.model_fields_set
        cube_info = self._cube_of(op, data)
        if cube_info is not None and op.needs_embedder:
            self.kernel.check_embedder(cube_info)
        ctx = self.enter(user, op.name, cube_info, op.needs(data), ids=_input_ids(data))
        kwargs = {f: getattr(data, f) for f in op.fields
                  if f != op.cube_field and (f in given or not op.only_given)}
        if user is None:
            return op.run(ctx, **kwargs)
        try:
            out = op.run(ctx, **kwargs)
        except MemkernError as exc:
            self._record(user, op.name, ctx.cube_info, _input_ids(data), exc)
            raise
        self._record(user, op.name, ctx.cube_info or _cube_in(out), [*_input_ids(data), *_result_ids(out)], None)
        return out

    def enter(self, user: User | None, name: str, cube_info: CubeInfo | None, needs: Sequence[Need], *,
              ids: Sequence[str] = ()) -> OpContext:
        """Check ``needs`` for ``user`` and give the context to run ``name`` in; a refusal is
        audited and raised. Used by ``call`` and by scheduler jobs (which audit their outcome)."""
        permission = self.kernel.authorizer.permission(user, cube_info) if cube_info is not None else None
        if user is not None:
            try:
                for need in needs:
                    self._check(user, need, cube_info, name)
            except Denied as denied:
                self.kernel.audit(AuditEntry(user_id=user.id, operation=name,
                                             cube_id=denied.cube_id or (cube_info.id if cube_info else None),
                                             item_ids=[*ids, *denied.ids][:MAX_AUDIT_IDS], result=AuditResult.DENIED,
                                             detail="PermissionDeniedError"))
                raise PermissionDeniedError(str(denied)) from None
            except NotFoundError as missing:
                self._record(user, name, cube_info, list(ids), missing)
                raise
        return OpContext(self.kernel, user, cube_info, permission)

    def record(self, user: User | None, name: str, cube_info: CubeInfo | None, ids: Iterable[str],
               error: MemkernError | None) -> None:
        """Audit the outcome of a call that ``enter`` allowed (a scheduler job's)."""
        if user is not None:
            self._record(user, name, cube_info, list(ids), error)

    # -- the parts -----------------------------------------------------------------------------------
    def _cube_of(self, op: Operation, data: BaseModel) -> CubeInfo | None:
        ref = getattr(data, op.cube_field) if op.cube_field else None
        return self.kernel.store.get_cube(ref) if ref is not None else None

    def _check(self, user: User, need: Need, opened: CubeInfo | None, name: str) -> None:
        if isinstance(need, (OnCube, OnMemory)):
            info = opened if opened is not None and need.cube in (opened.id, opened.name) else \
                self.kernel.store.get_cube(need.cube)
            needed = need.permission
            held = self.kernel.authorizer.permission(user, info)
            if isinstance(need, OnMemory) and self._quarantined(info, need.memory_id):
                if needed is Permission.READ and held is not None and held.level < Permission.ADMIN.level:
                    # Only cube admins may know a held-back memory exists: to a reader it is not there.
                    raise NotFoundError(f"no memory {need.memory_id!r} in cube {info.name!r}")
                needed = Permission.ADMIN
            if held is None or held.level < needed.level:
                raise Denied(f"user {user.id!r} may not {name} on cube {info.name!r} (it needs {needed.value})",
                             info.id, [])
        elif isinstance(need, StoreAdmin):
            if not user.is_admin:
                raise Denied(f"user {user.id!r} may not {name}: it needs the admin role", None, [])
        elif isinstance(need, SelfOrAdmin):
            if not (user.is_admin or user.id == need.user_id):
                raise Denied(f"user {user.id!r} may not {name} for user {need.user_id!r}", None, [need.user_id])
        elif isinstance(need, KeyOwnerOrAdmin):
            owner = key_owner(self.kernel, need.key)
            if not (user.is_admin or user.id == owner):
                raise Denied(f"user {user.id!r} may not {name} on another user's key", None, [owner])
        elif isinstance(need, OwnerIsCaller):
            if need.owner is not None and need.owner != user.id and not user.is_admin:
                raise Denied(f"user {user.id!r} may not {name} for owner {need.owner!r}", None, [need.owner])
        else:  # pragma: no cover - the Need union is closed
            raise TypeError(f"unknown need {need!r}")

    def _quarantined(self, info: CubeInfo, memory_id: str) -> bool:
        found = self.kernel.store.get_memories(info.id, [memory_id])
        return memory_id in found and found[memory_id].state is LifecycleState.QUARANTINED

    def _record(self, user: User, name: str, cube_info: CubeInfo | None, ids: list[str],
                error: MemkernError | None) -> None:
        unique = list(dict.fromkeys(ids))
        if error is None:
            result, detail = AuditResult.ALLOWED, (f"{len(unique)} ids" if len(unique) > MAX_AUDIT_IDS else None)
        else:
            result = AuditResult.DENIED if isinstance(error, PermissionDeniedError) else AuditResult.ERROR
            detail = type(error).__name__
        self.kernel.audit(AuditEntry(user_id=user.id, operation=name, cube_id=cube_info.id if cube_info else None,
                                     item_ids=unique[:MAX_AUDIT_IDS], result=result, detail=detail))


# -- ids for the audit log (never a key, never text) ---------------------------------------------------
def _input_ids(data: BaseModel) -> list[str]:
    ids = []
    for field in ("memory_id", "user_id"):
        value = getattr(data, field, None)
        if isinstance(value, str):
            ids.append(value)
    key = getattr(data, "key", None)
    if isinstance(key, str):
        ids.append(key_prefix(key))  # the public prefix only
    return ids


def _result_ids(out: Any) -> list[str]:
    """The ids of what an operation returned: memories added, hits, a page, a cube..."""
    if isinstance(out, list):
        return [i for item in out for i in _result_ids(item)][: MAX_AUDIT_IDS + 1]
    for many in ("added", "updated", "items", "hits"):
        if isinstance(getattr(out, many, None), list):
            return [i for name in ("added", "updated", "items", "hits")
                    for item in getattr(out, name, None) or [] for i in _result_ids(item)]
    found = getattr(out, "id", None)
    return [found] if isinstance(found, str) else []


def _cube_in(out: Any) -> CubeInfo | None:
    """A new cube an operation made (create, load, compose), named as the audit entry's cube."""
    if isinstance(out, CubeInfo):
        return out
    found = getattr(out, "cube", None)
    return found if isinstance(found, CubeInfo) else None
