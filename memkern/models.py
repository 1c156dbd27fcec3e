"""Typed records that cross memkern's public boundary.

Everything a user passes in or gets back is one of these Pydantic models, so that
input is validated once at the edge and output serialises to JSON the same way in the
Python API, the CLI and (later) the REST API.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Largest text a single memory may hold. Larger input is refused, never truncated.
MAX_TEXT_CHARS = 1_000_000


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class MemoryKind(str, Enum):
    """What a plaintext memory is. Turns are what was said; the rest is derived."""

    TURN = "turn"
    FACT = "fact"
    EVENT = "event"
    PREFERENCE = "preference"
    SUMMARY = "summary"
    DOCUMENT = "document"


class LifecycleState(str, Enum):
    """Where a memory is in its life. Deleted memories are gone; the state names the log entry."""

    ACTIVE = "active"
    ARCHIVED = "archived"
    DELETED = "deleted"
    #: Held back by the poisoning guard: stored, never searched, until an admin releases it.
    QUARANTINED = "quarantined"


class Provenance(BaseModel):
    """Where a memory came from, so that every answer can be traced to its source."""

    model_config = ConfigDict(extra="forbid")

    message_ids: list[str] = Field(default_factory=list)
    session_id: str | None = None
    speaker: str | None = None
    document_path: str | None = None
    #: Position of the turn within its session (0-based), or of the chunk within its document.
    position: int | None = None


class MemoryItem(BaseModel):
    """One version of one plaintext memory.

    ``id`` is stable across versions; ``version`` counts from 1. An update writes a new
    version and closes the old one (``expired_at``); ``history`` returns them all.
    Times are bi-temporal: ``valid_from``/``valid_to`` say when the memory was true in
    the world, ``recorded_at``/``expired_at`` when this store believed it.
    """

    model_config = ConfigDict(extra="forbid")

    id: str
    cube_id: str
    owner: str
    kind: MemoryKind = MemoryKind.TURN
    text: str
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    provenance: Provenance = Field(default_factory=Provenance)
    entities: list[str] = Field(default_factory=list)
    #: When it happened or was said (the message time for a turn).
    event_time: datetime | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    recorded_at: datetime = Field(default_factory=utcnow)
    expired_at: datetime | None = None
    version: int = 1
    #: ``"<id>@v<version>"`` of the version this one replaced, if any.
    supersedes: str | None = None
    state: LifecycleState = LifecycleState.ACTIVE
    importance: float = 0.5
    access_count: int = 0
    last_accessed_at: datetime | None = None
    #: Who wrote this version and why (``None`` for the first version written by ``add``).
    changed_by: str | None = None
    change_reason: str | None = None

    @property
    def version_id(self) -> str:
        return f"{self.id}@v{self.version}"


def parse_version_id(version_id: str) -> tuple[str, int]:
    """``"<memory id>@v<N>"`` (``MemoryItem.version_id``) as ``(memory id, N)``; ``ValueError`` otherwise."""
    memory_id, sep, number = version_id.rpartition("@v")
    if not sep or not memory_id or not number.isdigit():
        raise ValueError(f"{version_id!r} is not an id@vN version id")
    return memory_id, int(number)


class Message(BaseModel):
    """A chat message as users hand it to ``add``: the mem0 shape plus time and id."""

    model_config = ConfigDict(extra="forbid")

    role: str = "user"
    content: str
    #: Who spoke, when the role alone does not say (multi-party chats).
    name: str | None = None
    time: datetime | None = None
    id: str | None = None
    #: Caption of an image attached to the message; stored as text.
    image_caption: str | None = None

    @field_validator("content")
    @classmethod
    def _content_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("message content is empty")
        if len(value) > MAX_TEXT_CHARS:
            raise ValueError(f"message content is {len(value):,} characters; the limit is {MAX_TEXT_CHARS:,}")
        return value

    @field_validator("role")
    @classmethod
    def _role_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("message role is empty")
        return value

    @field_validator("time")
    @classmethod
    def _time_aware(cls, value: datetime | None) -> datetime | None:
        return as_utc(value)


def as_utc(value: datetime | None) -> datetime | None:
    """Naive times are taken as UTC, so that every stored time compares with every other."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


class CubeInfo(BaseModel):
    """A MemCube's metadata: who owns it, what it holds and in which format."""

    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    owner: str
    description: str = ""
    schema_version: int = 1
    created_at: datetime = Field(default_factory=utcnow)
    embedder: str
    dim: int
    metadata: dict[str, Any] = Field(default_factory=dict)


class ScoreParts(BaseModel):
    """Why a hit came back: each signal's contribution to its final score."""

    lexical: float = 0.0
    dense: float = 0.0
    session: float = 0.0
    neighbour: float = 0.0
    speaker: float = 0.0
    date: float = 0.0
    recency: float = 0.0
    #: Raw similarity and BM25 values, for people reading the breakdown.
    cosine: float | None = None
    bm25: float | None = None


class Hit(BaseModel):
    """One search result: the memory, its final score and the parts of that score."""

    memory: MemoryItem
    score: float
    parts: ScoreParts

    @property
    def id(self) -> str:
        return self.memory.id

    @property
    def text(self) -> str:
        return self.memory.text


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


class Filters(BaseModel):
    """Restrictions for ``search`` and ``get_all``; every field is optional and they combine with AND."""

    model_config = ConfigDict(extra="forbid")

    session_id: str | list[str] | None = None
    kind: MemoryKind | list[MemoryKind] | None = None
    tags: list[str] | None = None
    speaker: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    state: LifecycleState | None = LifecycleState.ACTIVE

    @field_validator("since", "until")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return as_utc(value)

    def session_ids(self) -> list[str] | None:
        if self.session_id is None:
            return None
        return [self.session_id] if isinstance(self.session_id, str) else list(self.session_id)

    def kinds(self) -> list[MemoryKind] | None:
        if self.kind is None:
            return None
        return [self.kind] if isinstance(self.kind, MemoryKind) else list(self.kind)


class Operation(BaseModel):
    """One entry of a cube's operation log: what happened, when, by whom and why.

    The log holds ids and field names, never memory text, so that a deletion leaves
    only an id-level trace.
    """

    seq: int
    at: datetime
    op: str
    cube_id: str
    memory_id: str | None = None
    version: int | None = None
    actor: str | None = None
    reason: str | None = None


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
