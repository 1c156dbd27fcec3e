"""Plaintext memories of one cube: add, read, delete (updates are in ``memkern.ops.versions``).

Each function is one operation of the table (``memkern.api.table``): the dispatcher has
validated its arguments (``memkern.api.inputs``) and authorized the caller before it
runs, so these functions only do the work. Updates never destroy: a new version is
written and the old one keeps its text (``memkern.ops.versions``), so ``history`` shows
every version.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import uuid4

from memkern.errors import InvalidInputError, LLMNotConfiguredError
from memkern.llm import NO_LLM_MESSAGE, deadline
from memkern.models import (
    AddResult,
    Deleted,
    Filters,
    LifecycleState,
    MemoryItem,
    MemoryKind,
    MemoryPage,
    Message,
    Operation,
    Permission,
    Provenance,
)
from memkern.ops import erasure, facts, lifecycle
from memkern.ops.context import OpContext
from memkern.ops.versions import current
from memkern.ops.writes import write_items
from memkern.reader.chat import read_messages
from memkern.reader.document import read_document
from memkern.reader.entities import find_entities
from memkern.reader.llm_reader import NewFact, extract_facts


# -- writing -----------------------------------------------------------------------------------------
def add(ctx: OpContext, messages: Sequence[Message] | None = None, *, text: str | None = None,
        session_id: str | None = None, kind: MemoryKind = MemoryKind.FACT, tags: Sequence[str] = (),
        metadata: dict[str, Any] | None = None, time: datetime | None = None, actor: str | None = None,
        infer: bool | None = None, background: bool = False) -> AddResult:
    """Store chat ``messages`` as turn memories, or one ``text`` memory of ``kind``.

    Turns are always stored first, with no LLM. Then, with an LLM and ``infer`` not False,
    facts are extracted from the new turns and decided on against the cube's facts (or,
    with ``background``, an ``extract`` job is queued). A ``text`` of kind fact, event or
    preference is decided on the same way, by the LLM or by the deterministic rules.
    """
    if (messages is None) == (text is None):
        raise InvalidInputError("give either messages or text to add")
    cube, llm, who = ctx.cube, ctx.kernel.llm, ctx.actor(actor)
    if messages is not None:
        if infer is True and llm is None:
            raise LLMNotConfiguredError("infer=True needs an LLM: " + NO_LLM_MESSAGE)
        items = read_messages(list(messages), cube_id=cube.id, owner=cube.owner, session_id=session_id,
                              tags=list(tags))
        result = write_items(ctx.kernel, cube, items, who)
        if llm is not None and infer is not False:
            turns = [item for item in result.added if item.kind is MemoryKind.TURN]
            if turns and background:
                payload = {"memory_ids": [t.id for t in turns], "actor": who,
                           "as_user": ctx.user.id if ctx.user is not None else None}
                result.jobs.append(ctx.kernel.jobs.enqueue("extract", cube.id, payload).id)
            elif turns:
                with deadline.llm_deadline():  # extraction and decisions together (memkern.llm.deadline)
                    found, report = extract_facts(llm, turns)
                    if deadline.passed():
                        report.error = (f"{deadline.timed_out_reason()}; the {len(turns)} turn{'s are' if len(turns) != 1 else ' is'} stored, "
                                        f"{len(found)} facts were extracted before it ({report.error})")
                    result.extraction = report
                    if found:
                        facts.apply_facts(ctx, found, llm=llm, actor=who or f"llm:{getattr(llm, 'name', 'llm')}",
                                          result=result)
        return result
    assert text is not None
    meta = dict(metadata or {})
    if infer is True and llm is None and kind not in facts.FACT_KINDS:
        raise LLMNotConfiguredError("infer=True needs an LLM: " + NO_LLM_MESSAGE)
    if kind in facts.FACT_KINDS and infer is not False:
        subject = meta.get("subject")
        fact = NewFact(text=text, kind=kind, subject=subject if isinstance(subject, str) else None, time=time,
                       provenance=Provenance(session_id=session_id), tags=list(tags), metadata=meta)
        return facts.apply_facts(ctx, [fact], llm=llm, actor=who)
    item = MemoryItem(id=uuid4().hex, cube_id=cube.id, owner=cube.owner, kind=kind, text=text, tags=list(tags),
                      metadata=meta, provenance=Provenance(session_id=session_id), entities=find_entities(text),
                      event_time=time, valid_from=time)
    return write_items(ctx.kernel, cube, [item], who)


def add_document(ctx: OpContext, text: str, *, path: str | None = None, time: datetime | None = None,
                 tags: Sequence[str] = (), actor: str | None = None) -> AddResult:
    """Store a plain-text document as chunk memories that remember their path and position."""
    items = read_document(text, cube_id=ctx.cube.id, owner=ctx.cube.owner, path=path, time=time, tags=list(tags))
    return write_items(ctx.kernel, ctx.cube, items, ctx.actor(actor))


def delete(ctx: OpContext, memory_id: str, *, reason: str | None = None, actor: str | None = None) -> Deleted:
    """Remove a memory with all its versions, index entries and whatever was derived from it
    (a KV cache or LoRA adapter built from it; ``memkern.ops.erasure``). Final; logged by id."""
    ctx.kernel.store.delete_memory(ctx.cube.id, memory_id, actor=ctx.actor(actor), reason=lifecycle.why("delete", reason))
    erasure.erase_derived(ctx.kernel.store, ctx.cube.id, [memory_id])
    return Deleted(cube_id=ctx.cube.id, memory_id=memory_id)


# -- reading -----------------------------------------------------------------------------------------
def get(ctx: OpContext, memory_id: str) -> MemoryItem:
    """One memory, current version (a recall: it counts for reinforcement)."""
    item = current(ctx, memory_id)
    ctx.kernel.access.note(ctx.cube.id, [memory_id])
    return item


def get_all(ctx: OpContext, filters: Filters | None = None, *, limit: int = 100, offset: int = 0) -> MemoryPage:
    """Current memories matching ``filters``, oldest first, one page at a time."""
    filters = filters or Filters()
    items = ctx.kernel.store.list_memories(ctx.cube.id, filters, limit + 1, offset)
    if not ctx.may(Permission.ADMIN):
        items = [item for item in items if item.state is not LifecycleState.QUARANTINED]
    more = len(items) > limit
    return MemoryPage(items=items[:limit], offset=offset, limit=limit, next_offset=offset + limit if more else None)


def history(ctx: OpContext, memory_id: str) -> list[MemoryItem]:
    """Every version of a memory, oldest first."""
    current(ctx, memory_id)  # a quarantined memory's versions are no more visible than it is
    return ctx.kernel.store.history(ctx.cube.id, memory_id)


def operations(ctx: OpContext, memory_id: str | None = None, limit: int | None = None) -> list[Operation]:
    """The cube's operation log (ids only, never memory text), oldest first."""
    return ctx.kernel.store.operations(ctx.cube.id, memory_id, limit)
