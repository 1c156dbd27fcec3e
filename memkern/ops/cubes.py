"""Cubes of a store: create, open, list, delete."""

from __future__ import annotations

from uuid import uuid4

from memkern.models import CubeInfo, Deleted
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
