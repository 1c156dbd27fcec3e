"""The scheduler's hooks on activation memory (registered by ``memkern.scheduler.handlers``).

Both do nothing without the local model: a queued job must not fail because the model it would
use is not installed.
"""

from __future__ import annotations

from typing import Any

from memkern.memory.activation.builder import build, rebuild
from memkern.memory.activation.engine import is_local
from memkern.memory.activation.freshness import status
from memkern.models import MemoryItem, parse_version_id
from memkern.ops.context import OpContext


def promote_hook(ctx: OpContext, memories: list[MemoryItem]) -> list[str]:
    """Scheduler ``promote``: rebuild the block preferring these memories; returns the ids it holds
    (none without the local model)."""
    if not is_local(ctx.kernel.llm) or not memories:
        return []
    manifest = build(ctx, prefer=[m.id for m in memories])
    taken = {parse_version_id(v)[0] for v in manifest.versions}
    return [m.id for m in memories if m.id in taken]


def rebuild_hook(ctx: OpContext) -> dict[str, Any]:
    """Scheduler ``rebuild``: rebuild the cube's activation when it is stale (a fresh one is kept)."""
    found = status(ctx)
    if found.state != "stale":
        return {"state": found.state, "rebuilt": False}
    if not is_local(ctx.kernel.llm):
        return {"state": "stale", "rebuilt": False, "skipped": "no local model"}
    manifest = rebuild(ctx)
    return {"state": "fresh", "rebuilt": True, "n_tokens": manifest.n_tokens, "memories": len(manifest.versions)}
