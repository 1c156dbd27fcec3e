"""Whether a cube's adapter is stale: a memory it was distilled from changed since."""

from __future__ import annotations

from collections.abc import Sequence

from memkern.memory.parametric.storage import read_adapter, reference_of
from memkern.models import AdapterReport, LifecycleState, parse_version_id
from memkern.ops.context import OpContext


def adapter_status(ctx: OpContext) -> AdapterReport:
    """Whether the cube has an adapter, and whether the memories it was distilled from are still current."""
    info = ctx.kernel.store.get_cube(ctx.cube.id)
    if reference_of(info) is None:
        return AdapterReport()
    adapter, _ = read_adapter(info)
    changed = changed_sources(ctx, adapter.sources)
    return AdapterReport(adapter=adapter.adapter_id, path=adapter.path, created_at=adapter.created_at,
                         rank=adapter.rank, sources=len(adapter.sources), stale=bool(changed), changed=changed,
                         metrics=adapter.metrics)


def changed_sources(ctx: OpContext, sources: Sequence[str]) -> list[str]:
    """The source versions (``id@vN``) whose memory is gone, no longer active, or now says something
    else. A new version with the same text (a lifecycle marker, metadata) does not count: the adapter
    learnt the text."""
    store, cube_id = ctx.kernel.store, ctx.cube.id
    wanted = dict(parse_version_id(v) for v in sources)
    current = store.get_memories(cube_id, list(wanted))
    changed = []
    for memory_id, number in wanted.items():
        now = current.get(memory_id)
        if now is None or now.state is not LifecycleState.ACTIVE:
            changed.append(f"{memory_id}@v{number}")
        elif now.version != number:
            learnt = next((v for v in store.history(cube_id, memory_id) if v.version == number), None)
            if learnt is None or learnt.text != now.text:
                changed.append(f"{memory_id}@v{number}")
    return sorted(changed)
