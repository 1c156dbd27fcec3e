"""The one write path: every memory any operation stores passes through here.

Before a memory reaches the store it gets the cube's write policy: PII found in it is
tagged (and redacted when the cube's policy says ``redact_pii``), and text the poisoning
guard flags is stored quarantined (never searched until a cube admin releases it). Then
it is embedded and written in one store transaction. ``add``, ``update``, extraction,
compose, migrate, chat's write-back and loading a cube file all call these two functions,
so that no path can skip the policy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from memkern.governance import guard, pii
from memkern.kernel import Kernel
from memkern.models import AddResult, CubeInfo, CubePolicy, LifecycleState, MemoryItem
from memkern.reader.entities import find_entities

if TYPE_CHECKING:
    from memkern.llm.base import LLM


def apply_write_policy(policy: CubePolicy, item: MemoryItem, llm: LLM | None = None) -> MemoryItem:
    """``item`` as the cube's policy lets it be stored: PII tagged or redacted, poison quarantined
    (with ``llm``, texts the guard's rules find uncertain are also checked by the model)."""
    changes: dict[str, Any] = {}
    findings = pii.find_pii(item.text)
    if findings:
        tags = list(item.tags)
        tags += [t for t in pii.pii_tags(findings) if t not in tags]
        changes["tags"] = tags
        if policy.redact_pii:
            changes["text"] = pii.redact(item.text, findings)
            changes["entities"] = find_entities(changes["text"], item.provenance.speaker)
    # Any state but quarantined: an archived memory read from a cube file can be restored later.
    if policy.guard and item.state is not LifecycleState.QUARANTINED:
        verdict = guard.check(item.text, llm)
        if verdict.quarantine:
            changes["state"] = LifecycleState.QUARANTINED
            changes["metadata"] = {**item.metadata, "quarantine_reasons": verdict.reasons}
            if verdict.model_note is not None:
                changes["metadata"]["quarantine_model_note"] = verdict.model_note
    return item.model_copy(update=changes) if changes else item


def write_items(kernel: Kernel, info: CubeInfo, items: list[MemoryItem], actor: str | None) -> AddResult:
    """Store new memories (after the write policy); duplicates of stored ones are reported, not stored."""
    kernel.check_embedder(info)
    policy = CubePolicy.of(info.metadata)
    items = [apply_write_policy(policy, item, _guard_model(kernel)) for item in items]
    vectors = kernel.embed([item.text for item in items])
    outcome = kernel.store.add_memories(info.id, items, vectors, actor)
    return AddResult(added=outcome.added, duplicates=list(outcome.duplicates.values()))


def write_version(kernel: Kernel, info: CubeInfo, item: MemoryItem, expected_version: int) -> MemoryItem:
    """Store a new version of a memory (after the write policy); ``ConflictError`` if it moved meanwhile."""
    kernel.check_embedder(info)
    item = apply_write_policy(CubePolicy.of(info.metadata), item, _guard_model(kernel))
    vector = kernel.embed([item.text])[0]
    return kernel.store.update_memory(info.id, item, vector, expected_version)


def _guard_model(kernel: Kernel) -> LLM | None:
    """The model that checks the guard's uncertain band: the kernel's, when ``MEMKERN_GUARD_LLM=on``."""
    return kernel.llm if guard.model_check_enabled() else None
