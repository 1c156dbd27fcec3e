"""Whether a cube's activation is fresh: every version it was built from still current and active.

Any update, invalidation, archive or delete of a listed memory makes it stale; ``status`` tells
with one manifest read and one store read, and chat never uses a stale activation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from memkern.memory.activation.directory import cube_dir, read_manifest
from memkern.memory.activation.manifest import ActivationManifest
from memkern.models import ActivationReport, LifecycleState, parse_version_id
from memkern.ops.context import OpContext

if TYPE_CHECKING:
    from memkern.store.base import Store


@dataclass
class ActivationStatus:
    """What ``status`` found: ``state`` is ``fresh``, ``stale`` or ``missing``."""

    state: str
    manifest: ActivationManifest | None = None
    #: Why it is stale: ``"<id>@vN: updated to v3"``, ``"<id>@vN: deleted"``...
    reasons: list[str] = field(default_factory=list)
    directory: Path | None = None

    @property
    def fresh(self) -> bool:
        return self.state == "fresh"

    def report(self) -> ActivationReport:
        m = self.manifest
        if m is None:
            return ActivationReport(state=self.state, reasons=self.reasons)
        return ActivationReport(state=self.state, reasons=self.reasons, n_tokens=m.n_tokens, memories=len(m.versions),
                                model=m.model.name, built_at=m.built_at, kv_bytes=m.kv_file.size)


def staleness(store: Store, cube_id: str, versions: Sequence[str]) -> list[str]:
    """Why ``versions`` are no longer the cube's current, active versions (empty: all still are)."""
    wanted = [parse_version_id(v) for v in versions]
    current = store.get_memories(cube_id, [memory_id for memory_id, _ in wanted])
    reasons = []
    for (memory_id, number), version_id in zip(wanted, versions):
        now = current.get(memory_id)
        if now is None:
            reasons.append(f"{version_id}: deleted")
        elif now.version != number:
            reasons.append(f"{version_id}: now v{now.version}")
        elif now.state is not LifecycleState.ACTIVE:
            reasons.append(f"{version_id}: {now.state.value}")
    return reasons


def status(ctx: OpContext) -> ActivationStatus:
    """Fresh, stale (with reasons) or missing; one manifest read and one store read."""
    cube, store = ctx.cube, ctx.kernel.store
    directory = cube_dir(store, cube.id)
    manifest = read_manifest(directory)
    if manifest is None:
        return ActivationStatus("missing", directory=directory)
    reasons = staleness(store, cube.id, manifest.versions)
    if manifest.cube_id != cube.id:
        reasons.insert(0, f"built for cube {manifest.cube_id}")
    return ActivationStatus("stale" if reasons else "fresh", manifest, reasons, directory)
