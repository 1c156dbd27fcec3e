"""Operations across cubes and memory types: compose, migrate, fuse.

- ``compose(ctx, a, b, name)``: a new cube holding every version of every memory of both
  cubes (history, states, access statistics and provenance as they were), each version's
  origin in ``metadata["origin"]`` and the sources in the new cube's metadata. The source
  cubes are not changed.
- ``migrate(ctx, memory_id, to)``: move a memory to another type: a turn (or any
  plaintext) to a fact/event/preference (a new memory derived from it, linked both ways
  through metadata and provenance), or a plaintext memory to activation or parametric
  memory (marked ``activation_requested`` / ``distillation_requested`` and a promote or
  distil job queued: the registered handler does the loading and sets the final marker).
- ``fuse_duplicates(ctx, cubes)``: memories that say the same thing (same normalised text,
  or cosine >= ``cosine``) in one or several cubes become one: the survivor gets a new
  version whose ``metadata["fused_from"]`` lists the others with their provenance (and
  whose provenance gains their message ids); the others are archived with a reason that
  names the survivor. Nothing is deleted; every history stays whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import uuid4

import numpy as np

from memkern.errors import InvalidInputError
from memkern.models import (
    ComposeReport,
    CubeInfo,
    FuseGroup,
    FuseReport,
    LifecycleState,
    MemoryItem,
    MemoryKind,
    MigrateResult,
    Permission,
    Provenance,
    utcnow,
)
from memkern.ops import lifecycle, versions
from memkern.ops.context import OpContext
from memkern.ops.facts import FACT_KINDS, normalise
from memkern.ops.writes import write_items
from memkern.reader.entities import find_entities
from memkern.store.base import dedup_keys


# -- compose ---------------------------------------------------------------------------------------
def compose(ctx: OpContext, a: str, b: str, name: str, *, owner: str | None = None, description: str = "",
            actor: str | None = None) -> ComposeReport:
    """A new cube named ``name`` with every version of cubes ``a`` and ``b``, owned by ``owner``
    (default: the caller, or ``a``'s owner for the embedded default). Quarantined memories of a
    source are copied only for a caller who holds admin on it: the others never saw them."""
    kernel = ctx.kernel
    sources = [kernel.store.get_cube(ref) for ref in (a, b)]
    if len({s.id for s in sources}) != len(sources):
        raise InvalidInputError("compose needs distinct cubes")
    for source in sources:
        kernel.check_embedder(source)
    new_owner = owner or (ctx.user.id if ctx.user is not None else sources[0].owner)
    info = CubeInfo(id=uuid4().hex, name=name, owner=new_owner,
                    description=description or f"composed of {', '.join(s.name for s in sources)}",
                    embedder=kernel.embedder.name, dim=kernel.embedder.dim,
                    metadata={"composed_from": [{"cube_id": s.id, "cube_name": s.name} for s in sources],
                              "composed_at": utcnow().isoformat()})
    report = ComposeReport(cube=info)
    versions: list[MemoryItem] = []
    vectors: list[np.ndarray] = []
    taken_ids: set[str] = set()
    keys: dict[tuple[str, str], int] = {}  # dedup key of a current version -> index in versions
    for source in sources:
        sees_quarantine = ctx.on(source).may(Permission.ADMIN)
        items, vecs = kernel.store.export_versions(source.id)
        current = iter(vecs)
        by_id: dict[str, list[MemoryItem]] = {}
        vector_of: dict[str, np.ndarray] = {}
        for item in items:
            by_id.setdefault(item.id, []).append(item)
            if item.expired_at is None:
                vector_of[item.id] = next(current)
        for memory_id, chain in by_id.items():
            chain.sort(key=lambda v: v.version)
            head = chain[-1]
            if head.state is LifecycleState.QUARANTINED and not sees_quarantine:
                continue
            probe = head.model_copy(update={"cube_id": info.id})
            found = next((keys[k] for k in _keys(dedup_keys(probe)) if k in keys), None)
            origin = {"cube_id": source.id, "cube_name": source.name, "memory_id": memory_id}
            if found is not None:  # the same memory already came from an earlier source
                kept = versions[found]
                also = list(kept.metadata["origin"].get("also", [])) + [origin]
                kept.metadata["origin"] = {**kept.metadata["origin"], "also": also}
                report.merged.append({**origin, "kept": kept.id})
                continue
            new_id = memory_id if memory_id not in taken_ids else uuid4().hex
            if new_id != memory_id:
                report.renamed[f"{source.id}/{memory_id}"] = new_id
            taken_ids.add(new_id)
            for version in chain:
                supersedes = f"{new_id}@v{version.version - 1}" if version.supersedes else None
                versions.append(version.model_copy(update={
                    "id": new_id, "cube_id": info.id, "supersedes": supersedes,
                    "metadata": {**version.metadata, "origin": dict(origin)}}))
                if version.expired_at is None:
                    vectors.append(vector_of[memory_id])
                    for k in _keys(dedup_keys(versions[-1])):
                        keys[k] = len(versions) - 1
    matrix = np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, info.dim), dtype=np.float32)
    kernel.store.import_cube(info, versions, matrix, actor=ctx.actor(actor))
    report.versions = len(versions)
    return report


def _keys(pair: tuple[str | None, str]) -> list[tuple[str, str]]:
    source, content = pair
    return ([("source", source)] if source else []) + [("content", content)]


# -- migrate ---------------------------------------------------------------------------------------
_TARGETS = {"activation": lifecycle.ACTIVATION_REQUESTED, "parametric": lifecycle.DISTILLATION_REQUESTED}


def migrate(ctx: OpContext, memory_id: str, to: str, *, reason: str, text: str | None = None,
            actor: str | None = None) -> MigrateResult:
    """Move a memory to another type (module docstring). ``text`` rewrites a turn as a fact."""
    if not reason.strip():
        raise InvalidInputError("a migration needs a reason")
    cube, who = ctx.cube, ctx.actor(actor)
    item = versions.current(ctx, memory_id)
    target = to
    if target in _TARGETS:
        marker = _TARGETS[target]
        marked = lifecycle.mark(ctx, memory_id, marker, f"migrate to {target}: {reason}", actor=who)
        job_type = "promote" if target == "activation" else "distil"
        job = ctx.kernel.jobs.enqueue(job_type, cube.id, {"memory_ids": [memory_id], "reason": reason,
                                                          "as_user": ctx.user.id if ctx.user else None})
        return MigrateResult(memory=marked, job_id=job.id)
    try:
        kind = MemoryKind(target)
    except ValueError:
        known = ", ".join([*(k.value for k in MemoryKind), *_TARGETS])
        raise InvalidInputError(f"cannot migrate to {target!r}; known: {known}") from None
    if kind is item.kind:
        raise InvalidInputError(f"memory {memory_id!r} is already a {kind.value}")
    if kind is MemoryKind.TURN:
        raise InvalidInputError("turns are what was said: nothing migrates into a turn")
    new = MemoryItem(
        id=uuid4().hex, cube_id=cube.id, owner=cube.owner, kind=kind, text=text or item.text,
        tags=list(item.tags), metadata={**{k: v for k, v in item.metadata.items() if k != "lifecycle"},
                                        "migrated_from": item.version_id, "migrate_reason": reason,
                                        "source_memory_ids": [item.id]},
        provenance=item.provenance.model_copy(), entities=find_entities(text or item.text, item.provenance.speaker),
        event_time=item.event_time, valid_from=item.valid_from or item.event_time, importance=item.importance,
    )
    written = write_items(ctx.kernel, cube, [new], who or "migrate")
    created = written.added[0] if written.added else None
    if created is None:
        raise InvalidInputError(f"a {kind.value} with this text already exists: {written.duplicates[0]}")
    linked = versions.update(ctx, memory_id, metadata={**item.metadata, "migrated_to": created.id},
                             reason=f"migrate: became {kind.value} {created.id}: {reason}", actor=who)
    return MigrateResult(memory=linked, created=created)


# -- fuse ------------------------------------------------------------------------------------------
def fuse_duplicates(ctx: OpContext, cubes: Sequence[str], *, cosine: float = 0.95, actor: str | None = None,
                    reason: str = "duplicate", kinds: Sequence[MemoryKind] | None = FACT_KINDS) -> FuseReport:
    """Fuse memories that say the same thing across ``cubes`` (module docstring)."""
    if not 0 < cosine <= 1:
        raise InvalidInputError("cosine must be in (0, 1]")
    opened = [ctx.on(ctx.kernel.store.get_cube(ref)) for ref in cubes]
    if not opened:
        raise InvalidInputError("fuse_duplicates needs at least one cube")
    members: list[tuple[OpContext, MemoryItem]] = []
    rows: list[np.ndarray] = []
    for cube in opened:
        items, vecs = ctx.kernel.store.export_versions(cube.cube.id)
        current = [i for i in items if i.expired_at is None]
        for item, vec in zip(current, vecs):
            if item.state is LifecycleState.ACTIVE and (kinds is None or item.kind in kinds):
                members.append((cube, item))
                rows.append(vec)
    report = FuseReport(examined=len(members))
    if len(members) < 2:
        return report
    parent = list(range(len(members)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)

    by_text: dict[tuple[str, str], int] = {}
    for i, (_, item) in enumerate(members):
        key = (item.kind.value, normalise(item.text))
        if key in by_text:
            union(by_text[key], i)
        else:
            by_text[key] = i
    stacked = np.stack(rows).astype(np.float32)
    norms = np.linalg.norm(stacked, axis=1, keepdims=True)
    matrix = (stacked / np.where(norms == 0, 1, norms)).astype(np.float32)
    for start in range(0, len(members), 512):
        sims = matrix[start:start + 512] @ matrix.T
        for a, b in zip(*np.nonzero(sims >= cosine)):
            i, j = start + int(a), int(b)
            if i < j and members[i][1].kind is members[j][1].kind:
                union(i, j)
    groups: dict[int, list[int]] = {}
    for i in range(len(members)):
        groups.setdefault(find(i), []).append(i)
    for indexes in groups.values():
        if len(indexes) > 1:
            report.groups.append(_fuse_group([members[i] for i in indexes], ctx.actor(actor), reason))
    return report


def _rank(member: tuple[OpContext, MemoryItem]) -> tuple[float, int, float]:
    item = member[1]
    return (-item.importance, -item.access_count, item.recorded_at.timestamp())


def _fuse_group(group: list[tuple[OpContext, MemoryItem]], actor: str | None, reason: str) -> FuseGroup:
    ordered = sorted(group, key=lambda m: (*_rank(m), m[1].id))
    s_cube, survivor = ordered[0]
    fused_from = list(survivor.metadata.get("fused_from", []))
    seen = {(f.get("cube_id"), f.get("memory_id")) for f in fused_from if isinstance(f, dict)}
    message_ids = list(survivor.provenance.message_ids)
    others = []
    for cube, item in ordered[1:]:
        entry = {"cube_id": cube.cube.id, "memory_id": item.id, "version": item.version,
                 "provenance": item.provenance.model_dump(exclude_none=True)}
        if (cube.cube.id, item.id) not in seen:
            fused_from.append(entry)
        message_ids += [m for m in item.provenance.message_ids if m not in message_ids]
        others.append((cube, item))
    survivor_ref = f"{s_cube.cube.name}/{survivor.id}"
    why = f"{reason}: fused into {survivor_ref}"
    provenance = Provenance(**{**survivor.provenance.model_dump(), "message_ids": message_ids})
    versions.update(s_cube, survivor.id, metadata={**survivor.metadata, "fused_from": fused_from},
                    provenance=provenance, reason=f"fuse: absorbed {len(others)} duplicate(s)", actor=actor)
    for cube, item in others:
        lifecycle.archive(cube, item.id, reason=why, actor=actor)
    return FuseGroup(survivor={"cube_id": s_cube.cube.id, "memory_id": survivor.id},
                     fused=[{"cube_id": c.cube.id, "memory_id": i.id} for c, i in others], reason=why)
