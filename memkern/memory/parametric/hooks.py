"""The scheduler's hook on parametric memory (registered by ``memkern.scheduler.handlers``)."""

from __future__ import annotations

from memkern.errors import LLMError
from memkern.memory.parametric.base_model import training_libraries
from memkern.memory.parametric.training import distil
from memkern.models import MemoryItem, parse_version_id
from memkern.ops.context import OpContext


def distil_hook(ctx: OpContext, memories: list[MemoryItem]) -> list[str]:
    """Scheduler ``distil``: train an adapter on the cube's facts (the requested ones included);
    returns the ids it was distilled from (none without the ``lora`` extra)."""
    try:
        training_libraries()
    except LLMError:
        return []
    info = distil(ctx, max_facts=max(64, len(memories)))
    taken = {parse_version_id(source)[0] for source in info.sources}
    return [m.id for m in memories if m.id in taken]
