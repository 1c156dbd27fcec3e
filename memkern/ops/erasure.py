"""Erasure of what was derived from memories: activation KV caches and LoRA adapters.

A KV cache is the model's reading of the memory text (its prefix file holds that text verbatim),
and an adapter memorises the facts it was trained on and lists its training questions. Marking
them stale when a memory is deleted would leave the deleted text on disk, so deleting a memory
removes every derived artefact built from it, and deleting a cube (or forgetting a user) removes
all of the cube's. Updates and archiving only make them stale: the old text stays in the
memory's history anyway, and the scheduler rebuilds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from memkern.memory import activation, parametric

if TYPE_CHECKING:
    from memkern.store.base import Store


def erase_derived(store: Store, cube_id: str, memory_ids: Iterable[str] | None = None) -> list[str]:
    """Remove the cube's activation and adapters -- only those built from ``memory_ids`` when
    given. Returns what went (``"activation"``, ``"parametric"``), for the audit log."""
    built_from = None if memory_ids is None else list(memory_ids)
    erased = []
    if activation.drop_files(store, cube_id, if_built_from=built_from):
        erased.append("activation")
    if parametric.forget_files(store, cube_id, if_built_from=built_from):
        erased.append("parametric")
    return erased
