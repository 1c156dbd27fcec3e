"""Lifecycle transitions: each one explicit, with a reason, in the operation log.

States (``LifecycleState``) decide visibility and are mutually exclusive:

    active ⇄ archived          archive / restore (reversible; demotion archives)
    quarantined → active       release (an admin let a held-back memory through)
    any → deleted              delete (final: every version goes, the log keeps the id)

State changes are written in place (``Store.set_state``) and logged with op ``archived``
or ``active`` and the reason ``"<transition>: <why>"`` (``cube.operations(id)``).

Markers are *not* states. ``activated`` (loaded into activation memory, the KV cache)
and ``distilled`` (trained into parametric memory, a LoRA) say where else a memory lives;
the plaintext memory stays active and searchable, so making them states would hide it
from search and clash with archive/quarantine. They live in ``metadata["lifecycle"]``
(``{"activated": {"at", "by", "reason", ...}}``, and ``activation_requested`` /
``distillation_requested`` while a request waits for a handler) and each change writes a
new version through ``MemCube.update``: it shows in ``history`` (with ``changed_by`` and
``change_reason``) and in the log as an ``update`` whose reason starts with the
transition (``activate: ...``). Markers travel with dump/load and compose.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from memkern.errors import InvalidInputError
from memkern.lifecycle.access import quiet
from memkern.models import LifecycleState, MemoryItem, utcnow

if TYPE_CHECKING:
    from memkern.cube.cube import MemCube

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


def _reason(reason: object) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInputError("a lifecycle transition needs a reason")
    if len(reason) > 5_000:
        raise InvalidInputError("reason is longer than 5,000 characters")
    return reason.strip()


def _current(cube: MemCube, memory_id: str) -> MemoryItem:
    with quiet():
        return cube.get(memory_id)


def markers(item: MemoryItem) -> dict[str, dict[str, Any]]:
    found = item.metadata.get(LIFECYCLE_KEY)
    return {k: v for k, v in found.items() if k in MARKERS} if isinstance(found, Mapping) else {}


def has_marker(item: MemoryItem, marker: str) -> bool:
    return marker in markers(item)


def _require(item: MemoryItem, allowed: tuple[LifecycleState, ...], transition: str) -> None:
    if item.state not in allowed:
        names = " or ".join(s.value for s in allowed)
        raise InvalidInputError(f"cannot {transition} memory {item.id!r}: it is {item.state.value}, not {names}")


def archive(cube: MemCube, memory_id: str, reason: str, *, actor: str | None = None) -> MemoryItem:
    """active → archived. An ``activated`` memory loses its marker first (it must leave the
    KV cache: a rebuild of the cube's activation caches is queued if a hook exists)."""
    why = _reason(reason)
    item = _current(cube, memory_id)
    _require(item, (LifecycleState.ACTIVE,), "archive")
    if has_marker(item, ACTIVATED):
        unmark(cube, memory_id, ACTIVATED, f"archived ({why})", actor=actor)
        _queue_activation_rebuild(cube, why)
    return cube.archive(memory_id, reason=f"archive: {why}", actor=actor)


def restore(cube: MemCube, memory_id: str, reason: str, *, actor: str | None = None) -> MemoryItem:
    """archived → active."""
    why = _reason(reason)
    _require(_current(cube, memory_id), (LifecycleState.ARCHIVED,), "restore")
    return cube.restore(memory_id, reason=f"restore: {why}", actor=actor)


def release(cube: MemCube, memory_id: str, reason: str, *, actor: str | None = None) -> MemoryItem:
    """quarantined → active (the poisoning guard's hold is lifted)."""
    why = _reason(reason)
    _require(_current(cube, memory_id), (LifecycleState.QUARANTINED,), "release")
    return cube.release(memory_id, reason=f"release: {why}", actor=actor)


def delete(cube: MemCube, memory_id: str, reason: str, *, actor: str | None = None) -> None:
    """any → deleted. Final: every version is removed, the log keeps the id and the reason."""
    why = _reason(reason)
    cube.delete(memory_id, reason=f"delete: {why}", actor=actor)


def mark(cube: MemCube, memory_id: str, marker: str, reason: str, *, actor: str | None = None,
         detail: Mapping[str, Any] | None = None) -> MemoryItem:
    """Set a marker (a new version); active memories only. Idempotent: an existing marker
    is left alone and the current version returned."""
    why = _reason(reason)
    if marker not in MARKERS:
        raise InvalidInputError(f"unknown lifecycle marker {marker!r}; known: {', '.join(MARKERS)}")
    item = _current(cube, memory_id)
    _require(item, (LifecycleState.ACTIVE,), _VERB[marker])
    current = markers(item)
    if marker in current:
        return item
    current[marker] = {"at": utcnow().isoformat(), "by": actor, "reason": why, **dict(detail or {})}
    current.pop(_FULFILS.get(marker, ""), None)
    return _write_markers(cube, item, current, f"{_VERB[marker]}: {why}", actor)


def unmark(cube: MemCube, memory_id: str, marker: str, reason: str, *, actor: str | None = None) -> MemoryItem:
    """Clear a marker (evicted from the KV cache, adapter retired); no-op if absent."""
    why = _reason(reason)
    item = _current(cube, memory_id)
    current = markers(item)
    if marker not in current:
        return item
    del current[marker]
    return _write_markers(cube, item, current, f"un{_VERB.get(marker, marker).split()[-1]}: {why}", actor)


def _write_markers(cube: MemCube, item: MemoryItem, found: dict[str, Any], reason: str,
                   actor: str | None) -> MemoryItem:
    metadata = dict(item.metadata)
    if found:
        metadata[LIFECYCLE_KEY] = found
    else:
        metadata.pop(LIFECYCLE_KEY, None)
    with quiet():
        return cube.update(item.id, metadata=metadata, reason=reason, actor=actor)


def _queue_activation_rebuild(cube: MemCube, why: str) -> None:
    from memkern.scheduler.registry import hooks

    if hooks("rebuild"):
        cube._mos.scheduler.enqueue("rebuild", cube, {"reason": f"archived an activated memory: {why}"},
                                    dedup_key=f"rebuild:{cube.id}")
