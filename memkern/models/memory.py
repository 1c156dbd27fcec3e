"""Records of plaintext memory: what a memory is, where it came from, how it is found.

Everything a user passes in or gets back is a Pydantic model, so that input is validated
once at the edge and output serialises to JSON the same way on every surface (Python,
CLI, REST, MCP).
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Any, overload

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

    @property
    def said_at(self) -> datetime | None:
        """When it was said or happened: ``event_time``, else the start of its validity (``None``: undated)."""
        return self.event_time or self.valid_from


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


@overload
def as_utc(value: datetime) -> datetime: ...


@overload
def as_utc(value: None) -> None: ...


def as_utc(value: datetime | None) -> datetime | None:
    """Naive times are taken as UTC, so that every stored time compares with every other."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


class ScoreParts(BaseModel):
    """Why a hit came back: each signal's contribution to its final score."""

    lexical: float = 0.0
    dense: float = 0.0
    session: float = 0.0
    neighbour: float = 0.0
    speaker: float = 0.0
    date: float = 0.0
    recency: float = 0.0
    #: Lift for the turns that state the current value of the slot a question asks about
    #: ("Where does Alice live?"; ``memkern.organize.profile``).
    profile: float = 0.0
    #: Raw similarity and BM25 values, for people reading the breakdown.
    cosine: float | None = None
    bm25: float | None = None


class SlotNote(BaseModel):
    """What a hit says about the slot a question asks about: a value, and whether it still holds."""

    subject: str
    slot: str
    value: str
    current: bool
    since: datetime | None = None
    #: When a later value replaced it, and which (None while current).
    until: datetime | None = None
    superseded_by: str | None = None


class Restatement(BaseModel):
    """A quantity a speaker stated and, on a later day, stated again with another value
    (``memkern.organize.restated``): "pre-approved for $350,000", later "$400,000"."""

    model_config = ConfigDict(frozen=True)

    earlier_id: str
    earlier_value: str
    later_id: str
    later_value: str
    #: The later memory's words around its value ("I got pre-approved for $400,000 from Wells Fargo").
    phrase: str
    later_said: datetime


class ProfileValue(SlotNote):
    """One value a subject's slot held (``memkern.organize.profile``), with the turns that said it."""

    #: The turns that state the value, in the order they were read.
    sources: list[str] = Field(default_factory=list)


class LinkKind(str, Enum):
    """How one memory relates to another (``memkern.organize.links``)."""

    #: The turn said just before it in the same conversation (the one it follows up).
    FOLLOWS = "follows"
    #: The turn said just after it in the same conversation (its follow-up or reply).
    FOLLOWED_BY = "followed_by"
    #: A turn a fact or event was extracted from (with an LLM: ``add(..., infer=True)``).
    DERIVED_FROM = "derived_from"
    #: A fact or event extracted from this turn.
    SOURCE_OF = "source_of"
    #: Names the same person, place or thing (``via`` says which).
    SAME_ENTITY = "same_entity"
    #: Another conversation's memory naming the same name and day (``via``: "Lisbon, 20 May 2024").
    SAME_EVENT = "same_event"
    #: States an older value of a slot that this memory's value replaced ("I live in Paris" for "I moved to Lisbon").
    UPDATES = "updates"
    #: States a newer value of a slot, replacing this memory's value.
    UPDATED_BY = "updated_by"
    #: A turn that made an LLM's update decision invalidate this fact (``metadata.invalidated_by``).
    CONTRADICTED_BY = "contradicted_by"


class MemoryLink(BaseModel):
    """One memory linked to the memory asked about, how, and through what."""

    kind: LinkKind
    memory: MemoryItem
    #: The entity both name (``same_entity``) or the slot change (``updates``: "user residence: Paris -> Lisbon").
    via: str | None = None


class Hit(BaseModel):
    """One search result: the memory, its final score and the parts of that score."""

    memory: MemoryItem
    score: float
    parts: ScoreParts
    #: Set when the memory states a value of the slot the query asks about (current or superseded).
    slot: SlotNote | None = None

    @property
    def id(self) -> str:
        return self.memory.id

    @property
    def text(self) -> str:
        return self.memory.text


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
