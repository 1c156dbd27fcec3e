"""Search: the memories of a cube that best answer a query, each with the parts of its score."""

from __future__ import annotations

from memkern.models import Filters, Hit, LifecycleState, Permission
from memkern.ops.context import OpContext
from memkern.retrieval.config import SearchConfig, resolve_config
from memkern.retrieval.search import search as hybrid_search


def search(ctx: OpContext, query: str, top_k: int = 5, *, filters: Filters | None = None,
           config: SearchConfig | str | None = None) -> list[Hit]:
    """Hybrid retrieval (``memkern.retrieval``); a recall of every hit returned (reinforcement)."""
    hits = find(ctx, query, top_k, filters=filters, config=config)
    ctx.kernel.access.note(ctx.cube.id, [hit.id for hit in hits])  # buffered (memkern.lifecycle.access)
    return hits


def find(ctx: OpContext, query: str, top_k: int, *, filters: Filters | None = None,
         config: SearchConfig | str | None = None) -> list[Hit]:
    """The same ranking without counting a recall: for operations looking for related memories."""
    kernel, cube = ctx.kernel, ctx.cube
    kernel.check_embedder(cube)
    index = kernel.indexes.get(cube.id, cube.dim)
    hits = hybrid_search(kernel.store, index, kernel.embedder, cube.id, query, top_k=top_k,
                         filters=filters or Filters(), config=resolve_config(config))
    if not ctx.may(Permission.ADMIN):
        hits = [hit for hit in hits if hit.memory.state is not LifecycleState.QUARANTINED]
    return hits
