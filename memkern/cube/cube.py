"""MemCube: one user's (or agent's) memory, and every operation on it.

A cube is a handle: its state lives in the store, so several cubes, threads or
processes can work on the same memories. Every method validates its input before it
touches the store and either completes or raises; nothing half-happens.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from pydantic import TypeAdapter, ValidationError

from memkern.errors import InvalidInputError, NotFoundError
from memkern.lifecycle.access import quiet
from memkern.memory.updates import FACT_KINDS, apply_facts
from memkern.models import (
    MAX_TEXT_CHARS,
    AddResult,
    ChatAnswer,
    CubeInfo,
    Filters,
    Hit,
    LifecycleState,
    MemoryItem,
    MemoryKind,
    Message,
    Operation,
    Provenance,
    as_utc,
    utcnow,
)
from memkern.reader.chat import read_messages
from memkern.reader.document import read_document
from memkern.reader.entities import find_entities
from memkern.reader.llm_reader import NewFact
from memkern.retrieval.config import SearchConfig, resolve_config
from memkern.retrieval.search import search as hybrid_search

if TYPE_CHECKING:
    from memkern.llm.base import LLM
    from memkern.mos import MemOS

_MESSAGES = TypeAdapter(list[Message])
#: Most messages one ``add`` call takes; larger imports are split by the caller (or the CLI).
MAX_MESSAGES_PER_ADD = 10_000
MAX_TOP_K = 1_000


def _describe(error: ValidationError) -> str:
    parts = []
    for issue in error.errors()[:5]:
        where = ".".join(str(p) for p in issue["loc"]) or "input"
        parts.append(f"{where}: {issue['msg']}")
    more = len(error.errors()) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def check_unicode(value: str, what: str) -> str:
    """Refuse strings that cannot be stored as UTF-8 (lone surrogates from bad decoding)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(f"{what} is not valid Unicode (at character {exc.start})") from exc
    return value


def check_text(text: object, what: str = "text") -> str:
    """Refuse text that is not a non-empty, valid-Unicode string within the size limit."""
    if not isinstance(text, str):
        raise InvalidInputError(f"{what} must be a string, not {type(text).__name__}")
    if not text.strip():
        raise InvalidInputError(f"{what} is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidInputError(f"{what} is {len(text):,} characters; the limit is {MAX_TEXT_CHARS:,}")
    return check_unicode(text, what)


def check_name(value: object, what: str) -> str:
    """A short identifier-like string: a cube name, an owner, a session or memory id, a tag."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"{what} must be a non-empty string, not {value!r}")
    if len(value) > 1_000:
        raise InvalidInputError(f"{what} is longer than 1,000 characters")
    return check_unicode(value, what)


def check_optional_text(value: object, what: str) -> str | None:
    """An optional free-text note (actor, reason, description): a string or None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string, not {type(value).__name__}")
    if len(value) > 10_000:
        raise InvalidInputError(f"{what} is longer than 10,000 characters")
    return check_unicode(value, what)


_DATETIME = TypeAdapter(datetime)


def check_time(value: object, what: str) -> datetime | None:
    """A datetime, or an ISO 8601 string; naive times are taken as UTC."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (datetime, str)):
        raise InvalidInputError(f"{what} must be a datetime or an ISO 8601 string, not {type(value).__name__}")
    try:
        return as_utc(_DATETIME.validate_python(value))
    except ValidationError as exc:
        raise InvalidInputError(f"{what} is not a valid time: {value!r}") from exc


def check_metadata(metadata: object) -> dict[str, Any]:
    """A JSON object: string keys, JSON-serialisable values, of a sane size."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidInputError(f"metadata must be a mapping, not {type(metadata).__name__}")
    try:
        encoded = json.dumps(dict(metadata), ensure_ascii=False, allow_nan=False)
        encoded.encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"metadata must be JSON-serialisable with string keys: {exc}") from exc
    if not all(isinstance(key, str) for key in metadata):
        raise InvalidInputError("metadata keys must be strings")
    if len(encoded) > MAX_TEXT_CHARS:
        raise InvalidInputError(f"metadata is {len(encoded):,} characters as JSON; the limit is {MAX_TEXT_CHARS:,}")
    return dict(metadata)


def _check_messages(messages: object) -> list[Message]:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise InvalidInputError("messages must be a list of {'role', 'content', ...} objects")
    if not messages:
        raise InvalidInputError("messages is empty")
    if len(messages) > MAX_MESSAGES_PER_ADD:
        raise InvalidInputError(f"{len(messages):,} messages in one add; the limit is {MAX_MESSAGES_PER_ADD:,}")
    try:
        parsed = _MESSAGES.validate_python(list(messages))
    except ValidationError as exc:
        raise InvalidInputError(f"invalid messages: {_describe(exc)}") from exc
    for position, message in enumerate(parsed):
        check_text(message.content, f"messages[{position}].content")
        check_name(message.role, f"messages[{position}].role")
        for field in ("image_caption", "name", "id"):
            if getattr(message, field) is not None:
                check_text(getattr(message, field), f"messages[{position}].{field}")
    return parsed


def _check_filters(filters: Filters | Mapping[str, Any] | None) -> Filters:
    if filters is None:
        return Filters()
    if isinstance(filters, Filters):
        return filters
    try:
        return Filters.model_validate(filters)
    except ValidationError as exc:
        raise InvalidInputError(f"invalid filters: {_describe(exc)}") from exc


class MemCube:
    """A cube of memories. Obtain one from ``MemOS.create_cube`` or ``MemOS.get_cube``."""

    def __init__(self, mos: MemOS, info: CubeInfo) -> None:
        self._mos = mos
        self.info = info

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def name(self) -> str:
        return self.info.name

    def __repr__(self) -> str:
        return f"MemCube(name={self.name!r}, owner={self.info.owner!r}, id={self.id!r})"

    # -- writing -----------------------------------------------------------------------------------
    def add(self, messages: Sequence[Mapping[str, Any] | Message] | None = None, *, text: str | None = None,
            session_id: str | None = None, kind: MemoryKind | str = MemoryKind.FACT,
            tags: Sequence[str] = (), metadata: Mapping[str, Any] | None = None,
            time: datetime | None = None, actor: str | None = None, infer: bool | None = None,
            background: bool = False) -> AddResult:
        """Store chat ``messages`` as turn memories, or one ``text`` memory of ``kind``.

        A message already stored (same id, or same content, time and session) is not
        stored again: its existing id is reported in ``duplicates``.

        Turns are always stored first, with no LLM. Then, if the MemOS has an LLM and
        ``infer`` is not False, facts are extracted from the new turns (one call per window
        of turns; ``extraction`` reports how it went) and each is decided on against the
        cube's facts (``decisions``). A ``text`` of kind fact, event or preference is decided
        on the same way, by the LLM or, without one, by deterministic rules: a duplicate is
        not stored again (NOOP) and a changed slot ("lives in", "works as") supersedes the
        old memory (its new version is in ``updated``). ``infer=False`` stores as given.

        ``background=True`` stores the turns and returns at once: extraction is queued as an
        ``extract`` job of the scheduler (its id in ``jobs``) instead of running inline.
        """
        if not isinstance(background, bool):
            raise InvalidInputError(f"background must be True or False, not {background!r}")
        if infer is not None and not isinstance(infer, bool):
            raise InvalidInputError(f"infer must be True, False or None, not {infer!r}")
        if (messages is None) == (text is None):
            raise InvalidInputError("give either messages or text to add")
        if session_id is not None:
            check_name(session_id, "session_id")
        tags = self._check_tags(tags)
        actor = check_optional_text(actor, "actor")
        if messages is not None:
            parsed = _check_messages(messages)
            llm = self._mos.llm
            if infer is True and llm is None:
                raise InvalidInputError("infer=True needs an LLM: give MemOS(llm=...) or set MEMKERN_LLM")
            items = read_messages(parsed, cube_id=self.id, owner=self.info.owner, session_id=session_id,
                                  tags=tags)
            result = self._mos._write_items(self.info, items, actor)
            if llm is not None and infer is not False:
                if background:
                    turns = [item.id for item in result.added if item.kind is MemoryKind.TURN]
                    if turns:
                        job = self._mos.scheduler.enqueue("extract", self, {"memory_ids": turns, "actor": actor})
                        result.jobs.append(job.id)
                else:
                    self._infer(result, llm, actor)
            return result
        item_kind = self._check_kind(kind)
        content = check_text(text)
        when = check_time(time, "time")
        meta = check_metadata(metadata)
        if infer is True and self._mos.llm is None and item_kind not in FACT_KINDS:
            raise InvalidInputError("infer=True needs an LLM: give MemOS(llm=...) or set MEMKERN_LLM")
        if item_kind in FACT_KINDS and infer is not False:
            subject = meta.get("subject")
            fact = NewFact(text=content, kind=item_kind, subject=subject if isinstance(subject, str) else None,
                           time=when, provenance=Provenance(session_id=session_id), tags=tags, metadata=meta)
            with quiet():
                return apply_facts(self, [fact], llm=self._mos.llm, actor=actor)
        items = [MemoryItem(
            id=uuid4().hex, cube_id=self.id, owner=self.info.owner, kind=item_kind, text=content,
            tags=tags, metadata=meta, provenance=Provenance(session_id=session_id),
            entities=find_entities(content), event_time=when, valid_from=when,
        )]
        return self._mos._write_items(self.info, items, actor)

    def _infer(self, result: AddResult, llm: Any, actor: str | None) -> None:
        """Extract facts from the turns ``result`` just stored and apply the decisions on them.

        The turns are already durable: whatever happens here is reported in ``result``
        (``extraction``, ``decisions``), never raised, except errors of the store itself.
        """
        from memkern.reader.llm_reader import extract_facts

        turns = [item for item in result.added if item.kind is MemoryKind.TURN]
        if not turns:
            return
        facts, report = extract_facts(llm, turns)
        result.extraction = report
        if facts:
            with quiet():
                apply_facts(self, facts, llm=llm, actor=actor or f"llm:{getattr(llm, 'name', 'llm')}", result=result)

    def add_document(self, text: str, *, path: str | Path | None = None, time: datetime | None = None,
                     tags: Sequence[str] = (), actor: str | None = None) -> AddResult:
        """Store a plain-text document as chunk memories that remember their path and position."""
        content = check_text(text, "document text")
        source = check_name(str(path), "path") if path is not None else None
        items = read_document(content, cube_id=self.id, owner=self.info.owner, path=source,
                              time=check_time(time, "time"), tags=self._check_tags(tags))
        return self._mos._write_items(self.info, items, check_optional_text(actor, "actor"))

    def update(self, memory_id: str, text: str | None = None, *, tags: Sequence[str] | None = None,
               metadata: Mapping[str, Any] | None = None, valid_from: datetime | None = None,
               reason: str | None = None, actor: str | None = None, event_time: datetime | None = None,
               provenance: Provenance | Mapping[str, Any] | None = None) -> MemoryItem:
        """Write a new version of a memory; the old one stays in ``history``.

        ``valid_from`` says the world changed at that time (the old version stops being
        true then); without it the update is a correction of the same fact.
        ``provenance`` replaces the source of the new version (a fact superseded by one
        said in later turns points at those turns); without it the old one is kept.
        """
        reason = check_optional_text(reason, "reason")
        actor = check_optional_text(actor, "actor")
        with quiet():  # reading the version to replace is not a recall
            current = self.get(memory_id)
        changes: dict[str, Any] = {}
        if text is not None:
            changes["text"] = check_text(text)
            changes["entities"] = find_entities(changes["text"], current.provenance.speaker)
        if tags is not None:
            changes["tags"] = self._check_tags(tags)
        if metadata is not None:
            changes["metadata"] = check_metadata(metadata)
        if valid_from is not None:
            changes["valid_from"] = check_time(valid_from, "valid_from")
        if event_time is not None:
            changes["event_time"] = check_time(event_time, "event_time")
        if provenance is not None:
            changes["provenance"] = self._check_provenance(provenance)
            if text is not None:
                changes["entities"] = find_entities(changes["text"], changes["provenance"].speaker)
        if not changes:
            raise InvalidInputError("nothing to update: give text, tags, metadata or valid_from")
        new_version = current.model_copy(update={
            **changes,
            "version": current.version + 1,
            "supersedes": current.version_id,
            "recorded_at": utcnow(),
            "expired_at": None,
            "valid_to": None,
            "changed_by": actor,
            "change_reason": reason,
        })
        return self._mos._update_item(self.info, new_version, expected_version=current.version)

    def invalidate(self, memory_id: str, *, at: datetime | None = None, reason: str | None = None,
                   actor: str | None = None, metadata: Mapping[str, Any] | None = None) -> MemoryItem:
        """Record that a memory stopped being true at ``at`` (default now), and archive it.

        Nothing is destroyed: a new version is written with ``valid_to = at`` and state
        archived (out of default search; in ``history`` and in
        ``get_all(filters={"state": "archived"})``), in one store write. ``metadata`` is
        merged into the new version's metadata (the evidence for the invalidation).
        """
        reason = check_optional_text(reason, "reason")
        actor = check_optional_text(actor, "actor")
        when = check_time(at, "at") or utcnow()
        extra = check_metadata(metadata)
        with quiet():
            current = self.get(memory_id)
        if current.valid_from is not None and when < current.valid_from:
            raise InvalidInputError(
                f"cannot invalidate {memory_id!r} at {when.isoformat()}: it only became true at "
                f"{current.valid_from.isoformat()}")
        new_version = current.model_copy(update={
            "metadata": {**current.metadata, **extra},
            "version": current.version + 1,
            "supersedes": current.version_id,
            "recorded_at": utcnow(),
            "expired_at": None,
            "valid_to": when,
            "state": LifecycleState.ARCHIVED,
            "changed_by": actor,
            "change_reason": reason if reason is not None else "invalidated",
        })
        return self._mos._update_item(self.info, new_version, expected_version=current.version)

    def delete(self, memory_id: str, *, reason: str | None = None, actor: str | None = None) -> None:
        """Remove a memory with all its versions, index entries and whatever was derived from it
        (a KV cache or LoRA adapter built from it; see ``memkern.memory.erasure``). Final; logged by id."""
        from memkern.memory.erasure import erase_derived

        memory_id = self._check_id(memory_id)
        self._mos._store.delete_memory(self.id, memory_id, actor=check_optional_text(actor, "actor"),
                                       reason=check_optional_text(reason, "reason"))
        erase_derived(self._mos._store, self.id, [memory_id])

    def archive(self, memory_id: str, *, reason: str | None = None, actor: str | None = None) -> MemoryItem:
        """Keep a memory but leave it out of search (reversible with ``restore``)."""
        return self._mos._store.set_state(self.id, self._check_id(memory_id), LifecycleState.ARCHIVED,
                                          check_optional_text(actor, "actor"), check_optional_text(reason, "reason"))

    def restore(self, memory_id: str, *, reason: str | None = None, actor: str | None = None) -> MemoryItem:
        """Bring an archived memory back into search."""
        return self._mos._store.set_state(self.id, self._check_id(memory_id), LifecycleState.ACTIVE,
                                          check_optional_text(actor, "actor"), check_optional_text(reason, "reason"))

    def release(self, memory_id: str, *, reason: str | None = None, actor: str | None = None) -> MemoryItem:
        """Release a memory the poisoning guard quarantined back into search (cube admins)."""
        return self._mos._store.set_state(self.id, self._check_id(memory_id), LifecycleState.ACTIVE,
                                          check_optional_text(actor, "actor"),
                                          check_optional_text(reason, "reason") or "released")

    # -- reading -----------------------------------------------------------------------------------
    def search(self, query: str, top_k: int = 5, *, filters: Filters | Mapping[str, Any] | None = None,
               config: SearchConfig | str | None = None) -> list[Hit]:
        """The memories that best answer ``query``, best first, each with its score parts."""
        query = check_text(query, "query")
        if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= MAX_TOP_K:
            raise InvalidInputError(f"top_k must be an integer from 1 to {MAX_TOP_K}, not {top_k!r}")
        mos = self._mos
        index = mos._indexes.get(self.id, self.info.dim)
        hits = hybrid_search(mos._store, index, mos.embedder, self.id, query, top_k=top_k,
                             filters=_check_filters(filters), config=resolve_config(config))
        mos._access.note(self.id, [hit.id for hit in hits])  # buffered (memkern.lifecycle.access)
        return hits

    def get(self, memory_id: str) -> MemoryItem:
        found = self._mos._store.get_memories(self.id, [self._check_id(memory_id)])
        if memory_id not in found:
            raise NotFoundError(f"no memory {memory_id!r} in cube {self.name!r}")
        self._mos._access.note(self.id, [memory_id])
        return found[memory_id]

    def get_all(self, filters: Filters | Mapping[str, Any] | None = None, *, limit: int | None = None,
                offset: int = 0) -> list[MemoryItem]:
        """Current memories matching ``filters``, oldest first."""
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise InvalidInputError(f"limit must be a non-negative integer, not {limit!r}")
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise InvalidInputError(f"offset must be a non-negative integer, not {offset!r}")
        return self._mos._store.list_memories(self.id, _check_filters(filters), limit, offset)

    def history(self, memory_id: str) -> list[MemoryItem]:
        """Every version of a memory, oldest first."""
        return self._mos._store.history(self.id, self._check_id(memory_id))

    def operations(self, memory_id: str | None = None, limit: int | None = None) -> list[Operation]:
        """The cube's operation log (ids only, never memory text), oldest first."""
        return self._mos._store.operations(self.id, memory_id, limit)

    def chat(self, query: str, *, top_k: int = 8, write_back: bool = False, session_id: str | None = None,
             llm: LLM | None = None, filters: Filters | Mapping[str, Any] | None = None,
             config: SearchConfig | str | None = None, use_activation: bool | None = None) -> ChatAnswer:
        """Answer ``query`` from this cube's memories with the MemOS LLM (or ``llm``).

        Returns the answer with the memories it was given; with ``write_back`` the
        exchange is stored as two turns of ``session_id``. ``use_activation``: see
        ``memkern.chat.answer`` (by default a fresh activation is used with the local model).
        """
        from memkern.chat import answer

        return answer(self, llm, query, top_k=top_k, write_back=write_back, session_id=session_id,
                      filters=filters, config=config, use_activation=use_activation)

    def dump(self, path: str | Path) -> Path:
        """Write the cube to one portable file (see ``memkern.cube.portable``)."""
        from memkern.cube.portable import dump_cube

        return dump_cube(self._mos._store, self.info, Path(path))

    # -- input checks ------------------------------------------------------------------------------
    @staticmethod
    def _check_id(memory_id: object) -> str:
        return check_name(memory_id, "memory id")

    @staticmethod
    def _check_tags(tags: object) -> list[str]:
        if isinstance(tags, str) or not isinstance(tags, Sequence):
            raise InvalidInputError("tags must be a list of strings")
        return [check_name(tag, "tag") for tag in tags]

    @staticmethod
    def _check_provenance(provenance: object) -> Provenance:
        if isinstance(provenance, Provenance):
            return provenance
        if not isinstance(provenance, Mapping):
            raise InvalidInputError(f"provenance must be a Provenance or a mapping, not {type(provenance).__name__}")
        try:
            return Provenance.model_validate(dict(provenance))
        except ValidationError as exc:
            raise InvalidInputError(f"invalid provenance: {_describe(exc)}") from exc

    @staticmethod
    def _check_kind(kind: object) -> MemoryKind:
        try:
            return MemoryKind(kind)
        except ValueError as exc:
            known = ", ".join(k.value for k in MemoryKind)
            raise InvalidInputError(f"unknown memory kind {kind!r}; known: {known}") from exc
