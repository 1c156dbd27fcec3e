"""The one write path: every memory any operation stores passes through here.

Before a memory reaches the store it gets the cube's write policy: PII found in it is
tagged (and redacted when the cube's policy says ``redact_pii``), and text the poisoning
guard flags is stored quarantined (never searched until a cube admin releases it). It is
embedded while the guard reads it (part of a large write in the guard's helper process), and
written in one store transaction. ``add``, ``update``, extraction, compose, migrate, chat's
write-back and loading a cube file all call these two functions, so that no path can skip the
policy. A bulk import may say which turns its next ``add`` will hold (``read_turns_ahead``), so
that the guard's helper reads them while this write is embedded and stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from memkern.governance import guard, guard_helper, pii
from memkern.kernel import Kernel
from memkern.models import AddResult, CubeInfo, CubePolicy, LifecycleState, MemoryItem, Message
from memkern.reader.chat import render_turn
from memkern.reader.entities import find_entities

if TYPE_CHECKING:
    from memkern.llm.base import LLM


class _PolicyRun:
    """The write policy on a batch of items, begun: the guard reading (possibly in a helper process,
    ``guard_helper``) while PII is handled here and the caller embeds. ``items()`` finishes it."""

    def __init__(self, policy: CubePolicy, items: Sequence[MemoryItem], llm: LLM | None) -> None:
        # Any state but quarantined: an archived memory read from a cube file can be restored later. The
        # guard reads the text as written, before any redaction (an address it would send data to counts),
        # so it starts first.
        self._checked = [index for index, item in enumerate(items)
                         if policy.guard and item.state is not LifecycleState.QUARANTINED]
        self._texts = [items[index].text for index in self._checked]
        self._llm = llm
        self._guard = guard_helper.start(self._texts, guard.classifier_enabled()) if self._texts else None
        try:
            #: The items with their PII tagged (and redacted if the policy says so): what is embedded and stored.
            self.prepared = [_with_pii_policy(policy, item) for item in items]
        except BaseException:
            self.abandon()
            raise

    def abandon(self) -> None:
        """Free the guard's helper process when the write failed before ``items()``."""
        if self._guard is not None:
            self._guard.abandon()

    def items(self) -> list[MemoryItem]:
        out = list(self.prepared)
        if self._guard is None:
            return out
        verdicts = guard.model_checks(self._guard.verdicts(), self._texts, self._llm)
        for index, verdict in zip(self._checked, verdicts):
            if verdict.quarantine:
                metadata = {**out[index].metadata, "quarantine_reasons": verdict.reasons}
                if verdict.model_note is not None:
                    metadata["quarantine_model_note"] = verdict.model_note
                out[index] = out[index].model_copy(update={"state": LifecycleState.QUARANTINED, "metadata": metadata})
        return out


def apply_write_policy(policy: CubePolicy, items: Sequence[MemoryItem], llm: LLM | None = None) -> list[MemoryItem]:
    """``items`` as the cube's policy lets them be stored: PII tagged or redacted, poison quarantined
    (with ``llm``, texts the guard's rules find uncertain are also checked by the model)."""
    return _PolicyRun(policy, items, llm).items()


def _with_pii_policy(policy: CubePolicy, item: MemoryItem) -> MemoryItem:
    """``item`` with the PII found in it tagged, and redacted when the policy says ``redact_pii``."""
    findings = pii.find_pii(item.text)
    if not findings:
        return item
    tags = list(item.tags)
    tags += [t for t in pii.pii_tags(findings) if t not in tags]
    changes: dict[str, Any] = {"tags": tags}
    if policy.redact_pii:
        changes["text"] = pii.redact(item.text, findings)
        changes["entities"] = find_entities(changes["text"], item.provenance.speaker)
    return item.model_copy(update=changes)


def write_items(kernel: Kernel, info: CubeInfo, items: list[MemoryItem], actor: str | None) -> AddResult:
    """Store new memories (after the write policy); duplicates of stored ones are reported, not stored."""
    kernel.check_embedder(info)
    policy = CubePolicy.of(info.metadata)
    run = _PolicyRun(policy, items, _guard_model(kernel))
    # Embedded while the guard reads: a quarantined memory is stored with its vector, never searched.
    try:
        vectors = kernel.embed([item.text for item in run.prepared])
    except BaseException:
        run.abandon()
        raise
    items = run.items()
    outcome = kernel.store.add_memories(info.id, items, vectors, actor)
    return AddResult(added=outcome.added, duplicates=list(outcome.duplicates.values()))


def write_version(kernel: Kernel, info: CubeInfo, item: MemoryItem, expected_version: int) -> MemoryItem:
    """Store a new version of a memory (after the write policy); ``ConflictError`` if it moved meanwhile."""
    kernel.check_embedder(info)
    (item,) = apply_write_policy(CubePolicy.of(info.metadata), [item], _guard_model(kernel))
    vector = kernel.embed([item.text])[0]
    return kernel.store.update_memory(info.id, item, vector, expected_version)


def read_turns_ahead(messages: Sequence[Message | dict[str, Any]]) -> None:
    """Say that this thread's next ``add`` (or the one after it) will hold ``messages``: the guard's
    helper process starts reading their turns now (``guard_helper.read_ahead``), while this process
    embeds and stores the write before. ``memkern add --messages FILE`` calls it with each chunk and
    the next before adding the chunk; the verdicts are the same, and a large ``add`` of other messages
    drops what was read ahead."""
    try:
        turns = [render_turn(m if isinstance(m, Message) else Message.model_validate(m)) for m in messages]
    except ValueError:  # pydantic's ValidationError included: the add itself will say what is wrong
        return
    guard_helper.read_ahead(turns, guard.classifier_enabled())


def _guard_model(kernel: Kernel) -> LLM | None:
    """The model that checks the guard's uncertain band: the kernel's, when ``MEMKERN_GUARD_LLM=on``."""
    return kernel.llm if guard.model_check_enabled() else None
