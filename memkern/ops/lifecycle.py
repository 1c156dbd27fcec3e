"""Lifecycle transitions: each one explicit, checked, and in the operation log with its reason.

States (``LifecycleState``) decide visibility and are mutually exclusive:

    active ⇄ archived          archive / restore (reversible; demotion and retention archive)
    quarantined → active       release (a cube admin let a held-back memory through)
    quarantined → archived     archive (a cube admin set it aside without releasing it)
    any → deleted              delete (final: every version goes, the log keeps the id)

A transition from a state it does not start from is refused (``InvalidInputError``):
archiving an archived memory, restoring an active one. State changes are written in place
(``Store.set_state``) and logged with op ``archived`` or ``active`` and the reason
``"<transition>: <why>"`` (``operations``).

Markers are *not* states. ``activated`` (loaded into activation memory, the KV cache)
and ``distilled`` (trained into parametric memory, a LoRA) say where else a memory lives;
the plaintext memory stays active and searchable, so making them states would hide it
from search and clash with archive/quarantine. They live in ``metadata["lifecycle"]``
(``{"activated": {"at", "by", "reason", ...}}``, and ``activation_requested`` /
``distillation_requested`` while a request waits for a handler) and each change writes a
new version: it shows in ``history`` (with ``changed_by`` and ``change_reason``) and in
the log as an ``update`` whose reason starts with the transition (``activate: ...``).
Markers travel with dump/load and compose.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from memkern.errors import InvalidInputError
from memkern.models import LifecycleState, MemoryItem, utcnow
from memkern.ops import versions
from memkern.ops.context import OpContext

LIFECYCLE_KEY = "lifecycle"
ACTIVATED = "activated"
DISTILLED = "distilled"
ACTIVATION_REQUESTED = "activation_requested"
DISTILLATION_REQUESTED = "distillation_requested"
MARKERS = (ACTIVATED, DISTILLED, ACTIVATION_REQUESTED, DISTILLATION_REQUESTED)
#: Setting a marker clears the request it fulfils.
_FULFILS = {ACTIVATED: ACTIVATION_REQUESTED, DISTILLED: DISTILLATION_REQUESTED}
_VERB = {ACTIVATED: "activate", DISTILLED: "distil", ACTIVATION_REQUESTED: "request activation",
         DISTILLATION_REQUESTED: "request distillation"}


def why(transition: str, reason: str | None) -> str:
    """The operation log's reason: ``"archive: stale"``, or the transition alone."""
    return f"{transition}: {reason.strip()}" if reason and reason.strip() else transition


def markers(item: MemoryItem) -> dict[str, dict[str, Any]]:
    found = item.metadata.get(LIFECYCLE_KEY)
    return {k: v for k, v in found.items() if k in MARKERS} if isinstance(found, Mapping) else {}


def has_marker(item: MemoryItem, marker: str) -> bool:
    return marker in markers(item)


def _require(item: MemoryItem, allowed: tuple[LifecycleState, ...], transition: str) -> None:
    if item.state not in allowed:
        names = " or ".join(s.value for s in allowed)
        raise InvalidInputError(f"cannot {transition} memory {item.id!r}: it is {item.state.value}, not {names}")


def archive(ctx: OpContext, memory_id: str, *, reason: str | None = None, actor: str | None = None) -> MemoryItem:
    """active (or quarantined) → archived: kept, out of search, reversible with ``restore``. An
    ``activated`` memory loses its marker first (it must leave the KV cache: a rebuild is queued)."""
    item = versions.current(ctx, memory_id)
    _require(item, (LifecycleState.ACTIVE, LifecycleState.QUARANTINED), "archive")
    who = ctx.actor(actor)
    if has_marker(item, ACTIVATED):
        unmark(ctx, memory_id, ACTIVATED, f"archived ({reason or 'no reason given'})", actor=who)
        ctx.kernel.jobs.enqueue("rebuild", ctx.cube.id, {"reason": f"archived an activated memory {memory_id}"},
                                dedup_key=f"rebuild:{ctx.cube.id}")
    return ctx.kernel.store.set_state(ctx.cube.id, memory_id, LifecycleState.ARCHIVED, who,
                                      why("archive", reason))


def restore(ctx: OpContext, memory_id: str, *, reason: str | None = None, actor: str | None = None) -> MemoryItem:
    """archived → active (a quarantined memory is released: see ``release``)."""
    item = versions.current(ctx, memory_id)
    if item.state is LifecycleState.QUARANTINED:
        return release(ctx, memory_id, reason=reason, actor=actor)
    _require(item, (LifecycleState.ARCHIVED,), "restore")
    return ctx.kernel.store.set_state(ctx.cube.id, memory_id, LifecycleState.ACTIVE, ctx.actor(actor),
                                      why("restore", reason))


def release(ctx: OpContext, memory_id: str, *, reason: str | None = None, actor: str | None = None) -> MemoryItem:
    """quarantined → active: the poisoning guard's hold is lifted (cube admins)."""
    _require(versions.current(ctx, memory_id), (LifecycleState.QUARANTINED,), "release")
    return ctx.kernel.store.set_state(ctx.cube.id, memory_id, LifecycleState.ACTIVE, ctx.actor(actor),
                                      why("release", reason))


def mark(ctx: OpContext, memory_id: str, marker: str, reason: str, *, actor: str | None = None,
         detail: Mapping[str, Any] | None = None) -> MemoryItem:
    """Set a marker (a new version); active memories only. Idempotent: an existing marker
    is left alone and the current version returned."""
    why = reason.strip()
    if marker not in MARKERS:
        raise InvalidInputError(f"unknown lifecycle marker {marker!r}; known: {', '.join(MARKERS)}")
    item = versions.current(ctx, memory_id)
    _require(item, (LifecycleState.ACTIVE,), _VERB[marker])
    current = markers(item)
    if marker in current:
        return item
    current[marker] = {"at": utcnow().isoformat(), "by": actor, "reason": why, **dict(detail or {})}
    current.pop(_FULFILS.get(marker, ""), None)
    return _write_markers(ctx, item, current, f"{_VERB[marker]}: {why}", actor)


def unmark(ctx: OpContext, memory_id: str, marker: str, reason: str, *, actor: str | None = None) -> MemoryItem:
    """Clear a marker (evicted from the KV cache, adapter retired); no-op if absent."""
    why = reason.strip()
    item = versions.current(ctx, memory_id)
    current = markers(item)
    if marker not in current:
        return item
    del current[marker]
    return _write_markers(ctx, item, current, f"un{_VERB.get(marker, marker).split()[-1]}: {why}", actor)


def _write_markers(ctx: OpContext, item: MemoryItem, found: dict[str, Any], reason: str,
                   actor: str | None) -> MemoryItem:
    metadata = dict(item.metadata)
    if found:
        metadata[LIFECYCLE_KEY] = found
    else:
        metadata.pop(LIFECYCLE_KEY, None)
    return versions.update(ctx, item.id, metadata=metadata, reason=reason, actor=actor)
