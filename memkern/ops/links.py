"""Links of one memory: the turns around it, its facts, the slot values it replaced or that
replaced it, and the memories naming what it names (``memkern.organize.links``)."""

from __future__ import annotations

from collections.abc import Sequence

from memkern.models import LinkKind, MemoryItem, MemoryLink
from memkern.ops.context import OpContext
from memkern.ops.profile import profile_of
from memkern.ops.versions import current
from memkern.organize.links import memory_links


def links(ctx: OpContext, memory_id: str, kinds: Sequence[LinkKind] | None = None,
          limit: int = 10) -> list[MemoryLink]:
    """The active memories linked to ``memory_id``, at most ``limit`` of each of ``kinds`` (all kinds when
    None), in the order of :class:`LinkKind`. Unknown id: ``NotFoundError``."""
    return links_of(ctx, current(ctx, memory_id), kinds, limit)


def links_of(ctx: OpContext, memory: MemoryItem, kinds: Sequence[LinkKind] | None = None,
             limit: int = 10) -> list[MemoryLink]:
    """:func:`links` of a memory already read (a search hit: chat), without reading it again."""
    kernel, cube = ctx.kernel, ctx.cube
    index = kernel.indexes.get(cube.id, cube.dim)
    wanted = list(kinds) if kinds else list(LinkKind)
    found = memory_links(kernel.store, index, cube.id, memory, wanted, limit,
                         lambda: profile_of(kernel, cube.id, index), lambda: kernel.timelines.get(cube.id, index))
    linked = kernel.store.get_memories(cube.id, [memory_id for _, memory_id, _ in found])
    order = {kind: place for place, kind in enumerate(LinkKind)}
    return [MemoryLink(kind=kind, memory=linked[linked_id], via=via)
            for kind, linked_id, via in sorted(found, key=lambda link: order[link[0]]) if linked_id in linked]
