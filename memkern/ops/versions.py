"""New versions of a memory: update (a correction or a change in the world) and invalidate.

Nothing is destroyed: the old version keeps its text with ``expired_at`` (when this store
stopped believing it) and, when the world changed, ``valid_to`` (when it stopped being
true): bi-temporal history, shown whole by ``history``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from memkern.errors import InvalidInputError, NotFoundError
from memkern.models import LifecycleState, MemoryItem, Permission, Provenance, utcnow
from memkern.ops.context import OpContext
from memkern.ops.writes import write_version
from memkern.reader.entities import find_entities


def current(ctx: OpContext, memory_id: str) -> MemoryItem:
    """The current version of a memory, read without counting as a recall; quarantined
    memories exist only for cube admins (``NotFoundError`` for anyone else)."""
    found = ctx.kernel.store.get_memories(ctx.cube.id, [memory_id]).get(memory_id)
    if found is None or (found.state is LifecycleState.QUARANTINED and not ctx.may(Permission.ADMIN)):
        raise NotFoundError(f"no memory {memory_id!r} in cube {ctx.cube.name!r}")
    return found


def update(ctx: OpContext, memory_id: str, text: str | None = None, *, tags: Sequence[str] | None = None,
           metadata: dict[str, Any] | None = None, valid_from: datetime | None = None,
           event_time: datetime | None = None, provenance: Provenance | None = None, reason: str | None = None,
           actor: str | None = None) -> MemoryItem:
    """Write a new version of a memory; the old one stays in ``history``.

    ``valid_from`` says the world changed at that time (the old version stops being true
    then); without it the update is a correction of the same fact. ``provenance`` replaces
    the source of the new version; without it the old one is kept.
    """
    before = current(ctx, memory_id)
    changes: dict[str, Any] = {}
    if text is not None:
        changes["text"] = text
    if tags is not None:
        changes["tags"] = list(tags)
    if metadata is not None:
        changes["metadata"] = dict(metadata)
    if valid_from is not None:
        changes["valid_from"] = valid_from
    if event_time is not None:
        changes["event_time"] = event_time
    if provenance is not None:
        changes["provenance"] = provenance
    if not changes:
        raise InvalidInputError("nothing to update: give text, tags, metadata, valid_from, event_time or provenance")
    if text is not None:
        speaker = (provenance or before.provenance).speaker
        changes["entities"] = find_entities(text, speaker)
    new_version = before.model_copy(update={
        **changes, "version": before.version + 1, "supersedes": before.version_id, "recorded_at": utcnow(),
        "expired_at": None, "valid_to": None, "changed_by": ctx.actor(actor), "change_reason": reason,
    })
    return write_version(ctx.kernel, ctx.cube, new_version, expected_version=before.version)


def invalidate(ctx: OpContext, memory_id: str, *, at: datetime | None = None, reason: str | None = None,
               metadata: dict[str, Any] | None = None, actor: str | None = None) -> MemoryItem:
    """Record that a memory stopped being true at ``at`` (default now), and archive it.

    Nothing is destroyed: a new version is written with ``valid_to = at`` and state
    archived (out of default search; in ``history``), in one store write. ``metadata`` is
    merged into the new version's metadata (the evidence for the invalidation).
    """
    when = at or utcnow()
    before = current(ctx, memory_id)
    if before.valid_from is not None and when < before.valid_from:
        raise InvalidInputError(f"cannot invalidate {memory_id!r} at {when.isoformat()}: it only became true at "
                                f"{before.valid_from.isoformat()}")
    new_version = before.model_copy(update={
        "metadata": {**before.metadata, **(metadata or {})}, "version": before.version + 1,
        "supersedes": before.version_id, "recorded_at": utcnow(), "expired_at": None, "valid_to": when,
        "state": LifecycleState.ARCHIVED, "changed_by": ctx.actor(actor),
        "change_reason": reason if reason is not None else "invalidated",
    })
    return write_version(ctx.kernel, ctx.cube, new_version, expected_version=before.version)
