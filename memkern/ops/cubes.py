"""Cubes of a store: create, open, list, delete."""

from __future__ import annotations

from collections import Counter
from uuid import uuid4

from memkern.models import CubeInfo, CubeStats, Deleted, LifecycleState, Permission
from memkern.ops import erasure
from memkern.ops.context import OpContext


def create_cube(ctx: OpContext, name: str, owner: str | None = None, description: str = "") -> CubeInfo:
    """A new, empty cube owned by ``owner`` (default: the caller, or ``default`` for the embedded
    default). Names are unique within the store."""
    default_owner = ctx.user.id if ctx.user is not None else "default"
    info = CubeInfo(id=uuid4().hex, name=name, owner=owner or default_owner, description=description,
                    embedder=ctx.kernel.embedder.name, dim=ctx.kernel.embedder.dim)
    return ctx.kernel.store.create_cube(info)


def get_cube(ctx: OpContext) -> CubeInfo:
    """A cube's record, by name or id; refuses one built with another embedder."""
    ctx.kernel.check_embedder(ctx.cube)
    return ctx.cube


def stats(ctx: OpContext) -> CubeStats:
    """How many memories the cube holds, by kind, state and session: counted over its search
    index in memory, so it costs the same at a hundred memories as at a million."""
    index = ctx.kernel.indexes.get(ctx.cube.id, ctx.cube.dim)
    rows = index.live.nonzero()[0]
    if not ctx.may(Permission.ADMIN) and ctx.user is not None:
        rows = rows[index.states[rows] != LifecycleState.QUARANTINED.value]
    sessions = Counter(int(code) for code in index.session_codes[rows])
    return CubeStats(
        cube_id=ctx.cube.id, total=len(rows),
        by_kind=dict(Counter(index.kinds[rows].tolist()).most_common()),
        by_state=dict(Counter(index.states[rows].tolist()).most_common()),
        by_session={index.session_names[code] or "": n for code, n in sessions.most_common()})


def list_cubes(ctx: OpContext, owner: str | None = None) -> list[CubeInfo]:
    """The cubes the caller may open (all of them for the embedded default), or one owner's."""
    found = ctx.kernel.store.list_cubes(owner)
    if ctx.user is None:
        return found
    return [info for info in found if ctx.kernel.authorizer.permission(ctx.user, info) is not None]


def delete_cube(ctx: OpContext, actor: str | None = None) -> Deleted:
    """Remove a cube and everything in it and derived from it. Final."""
    info = ctx.cube
    erasure.erase_derived(ctx.kernel.store, info.id)
    ctx.kernel.store.delete_cube(info.id, ctx.actor(actor))
    ctx.kernel.indexes.forget(info.id)
    return Deleted(cube_id=info.id)
