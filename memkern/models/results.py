"""What operations return: add and extraction reports, update decisions, answers, pages."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from memkern.models.cube import CubeInfo
from memkern.models.memory import Hit, MemoryItem


class ExtractionBatch(BaseModel):
    """What happened to one window of turns sent to the LLM for extraction."""

    #: ``ok`` (valid at once), ``repaired`` (valid after stripping fences, taking the first
    #: JSON object or dropping invalid items), ``retried`` (valid after one retry with the
    #: validation error), ``fallback`` (no usable answer: the turns stay, no facts derived).
    status: str = "ok"
    turns: int = 0
    llm_calls: int = 0
    facts_proposed: int = 0
    facts_accepted: int = 0
    facts_rejected: int = 0
    error: str | None = None


class ExtractionReport(BaseModel):
    """What LLM extraction did during one ``add``: per window and in total.

    ``status`` is the worst status of any window (ok < repaired < retried < fallback).
    Extraction never decides whether the turns are stored: they are stored before it runs.
    """

    status: str = "ok"
    model: str | None = None
    turns: int = 0
    llm_calls: int = 0
    facts_proposed: int = 0
    facts_accepted: int = 0
    facts_rejected: int = 0
    #: Why facts were rejected or items dropped (one line each, capped).
    rejections: list[str] = Field(default_factory=list)
    error: str | None = None
    batches: list[ExtractionBatch] = Field(default_factory=list)


class UpdateDecision(BaseModel):
    """What was done with one new fact against the memories already in the cube."""

    #: ``add``, ``update`` (supersede an existing memory), ``invalidate``, ``noop``, ``quarantine`` (a
    #: supersession held back: its message contradicts too many memories at once) or ``failed``.
    action: str
    #: The new fact's text (not logged in the operation log, which holds ids only).
    fact: str
    #: The memory written or touched: the new one (add), the superseded or invalidated one
    #: (update, invalidate), the existing duplicate (noop).
    memory_id: str | None = None
    #: The existing memory the decision was about, if any.
    target_id: str | None = None
    reason: str = ""
    #: ``"llm:<model>"`` or ``"rules"``.
    decided_by: str = "rules"
    #: Anything unusual: a hallucinated target handle, a failed call that fell back to rules.
    note: str | None = None


class AddResult(BaseModel):
    """What ``add`` did: the memories written, and the inputs that were already stored."""

    added: list[MemoryItem] = Field(default_factory=list)
    #: Ids of existing memories that the input duplicated (nothing new was written for them).
    duplicates: list[str] = Field(default_factory=list)
    #: New versions written when a new fact superseded or invalidated an existing memory.
    updated: list[MemoryItem] = Field(default_factory=list)
    #: What LLM extraction did, when it ran (``None``: no LLM, or ``infer=False``).
    extraction: ExtractionReport | None = None
    #: One decision per new fact (extracted, or given as ``text`` of kind fact/event/preference).
    decisions: list[UpdateDecision] = Field(default_factory=list)
    #: Ids of jobs queued for later (``add(..., background=True)``: extraction runs in the scheduler).
    jobs: list[str] = Field(default_factory=list)


class ChatUsage(BaseModel):
    """What one ``chat`` call cost: LLM calls and tokens (0 calls when nothing was asked)."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: True when the answer came from the LLM call cache.
    cached: bool = False


class ChatAnswer(BaseModel):
    """An answer from memory: the text, the memories it was given, the model and what it cost."""

    query: str
    answer: str
    #: The retrieved memories put in the prompt, best first (the prompt lists them oldest first).
    hits: list[Hit] = Field(default_factory=list)
    model: str
    usage: ChatUsage = Field(default_factory=ChatUsage)
    #: sha256 of the answer prompt template (the instructions, not the memories).
    prompt_sha256: str | None = None
    #: With ``write_back``: the session the exchange was stored in, and the two turn memories written.
    session_id: str | None = None
    stored: list[MemoryItem] = Field(default_factory=list)


class MemoryPage(BaseModel):
    """One page of ``get_all``: memories oldest first; ``next_offset`` is ``None`` on the last page."""

    items: list[MemoryItem]
    offset: int
    limit: int
    next_offset: int | None = None

    # A page reads like the list of its memories: ``len(page)``, ``page[0]``, ``for m in page``.
    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> MemoryItem:
        return self.items[index]

    def __iter__(self) -> Iterator[MemoryItem]:  # type: ignore[override]
        return iter(self.items)


class CubeStats(BaseModel):
    """How many memories a cube holds (current versions), by kind, state and session. Quarantined
    memories are counted only for cube admins, the only ones who may see them."""

    cube_id: str
    total: int
    by_kind: dict[str, int] = Field(default_factory=dict)
    by_state: dict[str, int] = Field(default_factory=dict)
    #: Memories per session id (``""`` for memories of no session), largest first.
    by_session: dict[str, int] = Field(default_factory=dict)


class TimelineNode(BaseModel):
    """One node of a cube's timeline (session -> day -> week -> month): what it holds and what it is about."""

    level: Literal["session", "day", "week", "month"]
    #: The session id, ``2024-05-02``, ``2024-W18`` or ``2024-05`` (``undated`` for sessions without a time).
    key: str
    #: Earliest and latest time said among its memories.
    start: datetime | None = None
    end: datetime | None = None
    #: Its sessions, oldest first, and how many active memories they hold.
    sessions: list[str] = Field(default_factory=list)
    memories: int = 0
    #: The names said most often in it, most frequent first (speakers left out).
    entities: list[str] = Field(default_factory=list)
    #: Its representative memories: per session, the one nearest the session's mean (for a longer period,
    #: that of each of its largest sessions).
    representatives: list[MemoryItem] = Field(default_factory=list)
    #: An LLM's summary when asked for (``summarize``), else ``None``.
    summary: str | None = None
    #: The model that wrote ``summary``.
    summarized_by: str | None = None


class Deleted(BaseModel):
    """What a delete removed: a memory (``memory_id``) or a whole cube."""

    cube_id: str
    memory_id: str | None = None


class CubeFile(BaseModel):
    """A cube written to a portable file by ``dump``."""

    cube: CubeInfo
    path: str
    bytes: int
    sha256: str


class ComposeReport(BaseModel):
    """What ``compose_cubes`` built."""

    cube: CubeInfo
    versions: int = 0
    #: Memories of a later source that an earlier one already held (same dedup key): kept once,
    #: the duplicate's origin added to the kept memory's ``metadata["origin"]["also"]``.
    merged: list[dict[str, str]] = Field(default_factory=list)
    #: Ids taken by an earlier source: the memory got a new id (``origin.memory_id`` has the old one).
    renamed: dict[str, str] = Field(default_factory=dict)


class FuseGroup(BaseModel):
    survivor: dict[str, str]
    fused: list[dict[str, str]]
    reason: str


class FuseReport(BaseModel):
    """What ``fuse_duplicates`` did: one group per set of memories that said the same thing."""

    groups: list[FuseGroup] = Field(default_factory=list)
    examined: int = 0

    @property
    def archived(self) -> int:
        return sum(len(g.fused) for g in self.groups)


class MigrateResult(BaseModel):
    """What ``migrate`` did: the memory (a new version, linked), what it became, the job queued."""

    memory: MemoryItem
    created: MemoryItem | None = None
    job_id: str | None = None


class ActivationReport(BaseModel):
    """A cube's activation memory: ``fresh``, ``stale`` (with one reason per changed version) or ``missing``."""

    state: str
    reasons: list[str] = Field(default_factory=list)
    n_tokens: int | None = None
    memories: int = 0
    model: str | None = None
    built_at: datetime | None = None
    kv_bytes: int | None = None


class AdapterReport(BaseModel):
    """A cube's parametric memory (LoRA adapter), and whether the memories it learnt changed since."""

    adapter: str | None = None
    path: str | None = None
    created_at: str | None = None
    rank: int | None = None
    sources: int = 0
    stale: bool = False
    changed: list[str] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict)


class ParametricAnswer(BaseModel):
    """A closed-book answer of the base model with (or without) the cube's adapter."""

    answer: str
    adapter_id: str | None = None
    seconds: float
    model: str
