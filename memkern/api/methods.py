"""The Python methods of the operation table, written once for in-process use and the HTTP client.

``CubeMethods`` (the operations on one cube) and ``StoreMethods`` (the operations on the
store) give each operation of ``memkern.api.table`` a typed, documented signature and send
it to ``_call(name, args)``: in-process that is the dispatcher (``memkern.mos``), over HTTP
the client's transport (``memkern.client``). Both therefore take the same parameters with
the same defaults and return the same models; ``tests/test_surfaces.py`` checks every
signature against the table.

Each method passes every argument it has, so the operation's input model sees exactly what
the caller wrote; ``UNSET`` marks "leave as is" where ``None`` is a value (``set_policy``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

from memkern.models import (
    ActivationReport,
    AdapterReport,
    AddResult,
    ApiKeyInfo,
    AuditEntry,
    ChatAnswer,
    ComposeReport,
    CubeFile,
    CubeInfo,
    CubePolicy,
    CubeStats,
    Deleted,
    Filters,
    FuseReport,
    Grant,
    Hit,
    Job,
    LinkKind,
    MemoryItem,
    MemoryKind,
    MemoryLink,
    MemoryPage,
    Message,
    MigrateResult,
    Operation,
    ParametricAnswer,
    Permission,
    ProfileValue,
    Provenance,
    RetentionReport,
    Role,
    SchedulerStatus,
    TimelineNode,
    User,
)
from memkern.retrieval.config import SearchConfig


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


#: "Not given": the value stays as it is.
UNSET: Any = _Unset()


def ref(value: Any) -> Any:
    """A cube handle or a ``User`` given where an id is expected stands for its id; a path (or the
    ``CubeFile`` that ``dump`` returned) for its text."""
    if isinstance(value, (CubeMethods, CubeInfo, User)):
        return value.id
    if isinstance(value, CubeFile):
        return value.path
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def _given(**args: Any) -> dict[str, Any]:
    return {k: v for k, v in args.items() if v is not UNSET}


class CubeMethods:
    """The operations on one cube. ``info`` is the cube's record when the handle was opened."""

    info: CubeInfo

    def _call(self, name: str, args: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _on_cube(self, name: str, **args: Any) -> Any:
        return self._call(name, {"cube": self.info.id, **args})

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def name(self) -> str:
        return self.info.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, owner={self.info.owner!r}, id={self.id!r})"

    # -- writing -----------------------------------------------------------------------------------
    def add(self, messages: Sequence[Mapping[str, Any] | Message] | None = None, *, text: str | None = None,
            session_id: str | None = None, kind: MemoryKind | str = MemoryKind.FACT, tags: Sequence[str] = (),
            metadata: Mapping[str, Any] | None = None, time: datetime | str | None = None,
            actor: str | None = None, infer: bool | None = None, background: bool = False) -> AddResult:
        """Store chat ``messages`` as turn memories, or one ``text`` memory of ``kind``.

        A message already stored (same id, or same content, time and session) is not stored
        again: its existing id is reported in ``duplicates``. Turns are stored first, with no
        LLM; then, with an LLM and ``infer`` not False, facts are extracted from them and
        decided on against the cube's facts (``extraction``, ``decisions``). A ``text`` of kind
        fact, event or preference is decided on the same way (by rules without an LLM): a
        duplicate is not stored again and a changed slot ("lives in") supersedes the old
        memory. ``infer=False`` stores as given; ``background=True`` queues the extraction
        as a scheduler job (its id in ``jobs``) and returns at once."""
        return self._on_cube("add", messages=messages, text=text,
                             session_id=session_id, kind=kind, tags=tags, metadata=metadata, time=time,
                             actor=actor, infer=infer, background=background)

    def add_document(self, text: str, *, path: str | Path | None = None, time: datetime | str | None = None,
                     tags: Sequence[str] = (), actor: str | None = None) -> AddResult:
        """Store a document, split into passages that keep their position and the document's path."""
        return self._on_cube("add_document", text=text, path=ref(path), time=time, tags=tags, actor=actor)

    def update(self, memory_id: str, text: str | None = None, *, tags: Sequence[str] | None = None,
               metadata: Mapping[str, Any] | None = None, valid_from: datetime | str | None = None,
               event_time: datetime | str | None = None, provenance: Provenance | Mapping[str, Any] | None = None,
               reason: str | None = None, actor: str | None = None) -> MemoryItem:
        """Write version n+1 of a memory and close version n (kept in ``history``). ``valid_from``
        says the world changed then (the old version's ``valid_to``); without it, a correction."""
        return self._on_cube("update", memory_id=memory_id, text=text, tags=tags,
                             metadata=metadata, valid_from=valid_from, event_time=event_time,
                             provenance=provenance, reason=reason, actor=actor)

    def invalidate(self, memory_id: str, *, at: datetime | str | None = None, reason: str | None = None,
                   metadata: Mapping[str, Any] | None = None, actor: str | None = None) -> MemoryItem:
        """Say a memory stopped being true ``at`` (default now): a new version with ``valid_to`` set."""
        return self._on_cube("invalidate", memory_id=memory_id, at=at, reason=reason, metadata=metadata,
                             actor=actor)

    def delete(self, memory_id: str, *, reason: str | None = None, actor: str | None = None) -> Deleted:
        """Delete a memory: every version, vector, index entry and what was derived from it."""
        return self._on_cube("delete", memory_id=memory_id, reason=reason, actor=actor)

    def archive(self, memory_id: str, *, reason: str | None = None, actor: str | None = None) -> MemoryItem:
        """Take a memory out of search and chat, keeping it (``restore`` brings it back)."""
        return self._on_cube("archive", memory_id=memory_id, reason=reason, actor=actor)

    def restore(self, memory_id: str, *, reason: str | None = None, actor: str | None = None) -> MemoryItem:
        """Bring an archived memory back (a quarantined one only for a cube admin)."""
        return self._on_cube("restore", memory_id=memory_id, reason=reason, actor=actor)

    def release(self, memory_id: str, *, reason: str | None = None, actor: str | None = None) -> MemoryItem:
        """Release a memory the poisoning guard quarantined (cube admins)."""
        return self._on_cube("release", memory_id=memory_id, reason=reason, actor=actor)

    def migrate(self, memory_id: str, to: str, *, reason: str, text: str | None = None,
                actor: str | None = None) -> MigrateResult:
        """Move a memory to another type (a turn to a fact, plaintext to activation or parametric memory)."""
        return self._on_cube("migrate", memory_id=memory_id, to=to, reason=reason, text=text, actor=actor)

    # -- reading -----------------------------------------------------------------------------------
    def search(self, query: str, top_k: int = 5, *, filters: Filters | Mapping[str, Any] | None = None,
               config: SearchConfig | str | None = None) -> list[Hit]:
        """The memories that best answer ``query``, best first, each with the parts of its score."""
        return self._on_cube("search", query=query, top_k=top_k, filters=filters, config=config)

    def stats(self) -> CubeStats:
        """How many memories the cube holds, by kind, state and session."""
        return self._on_cube("stats")

    def get(self, memory_id: str) -> MemoryItem:
        """The current version of a memory."""
        return self._on_cube("get", memory_id=memory_id)

    def get_all(self, filters: Filters | Mapping[str, Any] | None = None, *, limit: int = 100,
                offset: int = 0) -> MemoryPage:
        """One page of the cube's memories (active ones unless ``filters`` say otherwise)."""
        return self._on_cube("get_all", filters=filters, limit=limit, offset=offset)

    def history(self, memory_id: str) -> list[MemoryItem]:
        """Every version of a memory, oldest first, with its validity and recorded intervals."""
        return self._on_cube("history", memory_id=memory_id)

    def links(self, memory_id: str, kinds: Sequence[LinkKind | str] | None = None, *,
              limit: int = 10) -> list[MemoryLink]:
        """The memories linked to one: the turns said before and after it, the facts read from it (or the turns
        a fact was read from), the slot values it replaced or that replaced it, the turns that made an LLM
        invalidate it, the memories naming what it names, and those of other conversations naming it on the
        same day (the same event); at most ``limit`` of each kind, found without an LLM call
        (``memkern.organize.links``)."""
        return self._on_cube("links", memory_id=memory_id, kinds=kinds, limit=limit)

    def timeline(self, level: str = "month", *, since: date | None = None, until: date | None = None,
                 summarize: bool = False, limit: int = 100) -> list[TimelineNode]:
        """The cube's sessions under days, ISO weeks and months: the nodes of ``level`` oldest first, each with
        its sessions, memory count, most named entities and representative memories; with ``summarize`` (an
        LLM configured) a summary of each, written from its parts' summaries and kept until they change."""
        return self._on_cube("timeline", level=level, since=since, until=until, summarize=summarize, limit=limit)

    def profile(self, subject: str | None = None) -> list[ProfileValue]:
        """What each subject's slots (residence, job, partner, pets, diet, likes) hold now and held before,
        read from first-person turns without an LLM; each value names the turns that said it."""
        return self._on_cube("profile", subject=subject)

    def operations(self, memory_id: str | None = None, limit: int | None = None) -> list[Operation]:
        """The cube's operation log (or one memory's), oldest first; ids only, never text."""
        return self._on_cube("operations", memory_id=memory_id, limit=limit)

    def chat(self, query: str, *, top_k: int = 8, write_back: bool = False, session_id: str | None = None,
             filters: Filters | Mapping[str, Any] | None = None, config: SearchConfig | str | None = None,
             use_activation: bool | None = None) -> ChatAnswer:
        """Answer ``query`` with the LLM from the cube's memories; the answer names the memories it used."""
        return self._on_cube("chat", query=query, top_k=top_k, write_back=write_back, session_id=session_id,
                             filters=filters, config=config, use_activation=use_activation)

    # -- files and derived memory -----------------------------------------------------------------
    def dump(self, path: str | Path) -> CubeFile:
        """Write the cube to a portable file (``MemOS.load_cube`` reads it back)."""
        return self._on_cube("dump", path=ref(path))

    def activation_build(self, *, max_tokens: int = 1024) -> ActivationReport:
        """Build the cube's activation memory: its hottest memories as the local model's KV cache."""
        return self._on_cube("activation_build", max_tokens=max_tokens)

    def activation_status(self) -> ActivationReport:
        """Whether the activation memory is built and fresh, and why not."""
        return self._on_cube("activation_status")

    def activation_drop(self) -> bool:
        """Delete the activation memory; False if there was none."""
        return self._on_cube("activation_drop")

    def parametric_distil(self, *, max_facts: int = 64, epochs: int = 8, rank: int = 8) -> AdapterReport:
        """Distil the cube's facts into a LoRA adapter (``memkern[lora]``)."""
        return self._on_cube("parametric_distil", max_facts=max_facts, epochs=epochs, rank=rank)

    def parametric_ask(self, query: str, *, use_adapter: bool = True) -> ParametricAnswer:
        """Answer closed-book with the adapter (``use_adapter=False``: the base model alone)."""
        return self._on_cube("parametric_ask", query=query, use_adapter=use_adapter)

    def parametric_status(self) -> AdapterReport:
        """Whether an adapter exists and which of its facts changed since."""
        return self._on_cube("parametric_status")

    def parametric_forget(self) -> bool:
        """Delete the adapter; False if there was none."""
        return self._on_cube("parametric_forget")


class StoreMethods:
    """The operations on the store: cubes, users and keys, grants and policy, audit, the queue."""

    def _call(self, name: str, args: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _handle(self, info: CubeInfo) -> CubeMethods:
        """The cube handle of this surface."""
        raise NotImplementedError

    # -- cubes -------------------------------------------------------------------------------------
    def create_cube(self, name: str, owner: str | None = None, description: str = "") -> Any:
        """A new, empty cube owned by ``owner`` (default: the caller; ``default`` when there is no user)."""
        return self._handle(self._call("create_cube", {"name": name, "owner": ref(owner),
                                                       "description": description}))

    def get_cube(self, cube: str) -> Any:
        """Open a cube by name or id; refuses one built with another embedder."""
        return self._handle(self._call("get_cube", {"cube": ref(cube)}))

    def list_cubes(self, owner: str | None = None) -> list[CubeInfo]:
        """The cubes the caller may open, or one owner's."""
        return self._call("list_cubes", {"owner": ref(owner)})

    def delete_cube(self, cube: str, *, actor: str | None = None) -> Deleted:
        """Remove a cube and everything in it and derived from it. Final."""
        return self._call("delete_cube", {"cube": ref(cube), "actor": actor})

    def load_cube(self, path: str | Path, name: str | None = None, owner: str | None = None, *,
                  keep_policy: bool = False) -> Any:
        """Load a cube file written by ``dump`` as a new cube; the file is verified whole first, every
        memory passes the write policy, and the file's own policy is kept only with ``keep_policy``
        (admin role)."""
        return self._handle(self._call("load_cube", {"path": ref(path), "name": name, "owner": ref(owner),
                                                     "keep_policy": keep_policy}))

    def compose_cubes(self, a: Any, b: Any, name: str, *, owner: str | None = None, description: str = "",
                      actor: str | None = None) -> ComposeReport:
        """A new cube with every version of cubes ``a`` and ``b``, their origin in metadata."""
        return self._call("compose_cubes", {"a": ref(a), "b": ref(b), "name": name, "owner": ref(owner),
                                            "description": description, "actor": actor})

    def fuse_duplicates(self, cubes: Sequence[Any], *, cosine: float = 0.95, actor: str | None = None,
                        reason: str = "duplicate") -> FuseReport:
        """Fuse memories that say the same thing across ``cubes`` into one survivor (the others archived)."""
        return self._call("fuse_duplicates", {"cubes": [ref(c) for c in cubes] if isinstance(cubes, (list, tuple)) else cubes, "cosine": cosine, "actor": actor,
                                              "reason": reason})

    # -- grants and policy -------------------------------------------------------------------------
    def grant(self, cube: Any, user_id: Any, permission: Permission | str) -> Grant:
        """Share a cube: give a user read, write or admin on it (replacing an earlier grant)."""
        return self._call("grant", {"cube": ref(cube), "user_id": ref(user_id), "permission": permission})

    def revoke(self, cube: Any, user_id: Any) -> bool:
        """Take a user's grant on a cube away; False if they had none."""
        return self._call("revoke", {"cube": ref(cube), "user_id": ref(user_id)})

    def grants(self, cube: Any) -> list[Grant]:
        """The grants on a cube."""
        return self._call("grants", {"cube": ref(cube)})

    def policy(self, cube: Any) -> CubePolicy:
        """The cube's governance policy: retention, PII redaction, the guard."""
        return self._call("policy", {"cube": ref(cube)})

    def set_policy(self, cube: Any, *, archive_after_days: float | None = UNSET,
                   forget_after_days: float | None = UNSET, redact_pii: bool | None = UNSET,
                   guard: bool | None = UNSET) -> CubePolicy:
        """Change the keys given of the cube's policy (``None`` clears a retention period)."""
        return self._call("set_policy", _given(cube=ref(cube), archive_after_days=archive_after_days,
                                               forget_after_days=forget_after_days, redact_pii=redact_pii,
                                               guard=guard))

    # -- users and keys ----------------------------------------------------------------------------
    def create_user(self, name: str, role: Role | str = Role.USER, *, user_id: str | None = None) -> User:
        """A new user (store admins only, once there is a user)."""
        return self._call("create_user", {"name": name, "role": role, "user_id": user_id})

    def get_user(self, user_id: Any) -> User:
        """A user's record (themselves, or anyone for an admin)."""
        return self._call("get_user", {"user_id": ref(user_id)})

    def list_users(self) -> list[User]:
        """Every user (admins)."""
        return self._call("list_users", {})

    def whoami(self) -> User | None:
        """The authenticated user; ``None`` for the embedded default."""
        return self._call("whoami", {})

    def forget_user(self, user_id: Any) -> list[str]:
        """Erase a user: their cubes, grants, keys and audit trail. Returns the purged cube ids."""
        return self._call("forget_user", {"user_id": ref(user_id)})

    def create_api_key(self, user_id: Any) -> str:
        """A new API key for a user: returned once, stored only as its sha256."""
        return self._call("create_api_key", {"user_id": ref(user_id)})

    def api_keys(self, user_id: Any) -> list[ApiKeyInfo]:
        """A user's keys, by prefix (never the key)."""
        return self._call("api_keys", {"user_id": ref(user_id)})

    def revoke_api_key(self, key: str) -> ApiKeyInfo:
        """Revoke a key, given whole or by its prefix."""
        return self._call("revoke_api_key", {"key": key})

    # -- audit and retention -----------------------------------------------------------------------
    def audit(self, cube: Any = None, user: Any = None, since: datetime | str | None = None,
              limit: int | None = 100) -> list[AuditEntry]:
        """Audit entries, newest first (``limit=None``: all); a non-admin sees only their own."""
        return self._call("audit", {"cube": ref(cube), "user": ref(user), "since": since, "limit": limit})

    def apply_retention(self, now: datetime | str | None = None) -> RetentionReport:
        """Archive or delete memories of every cube whose policy says so, by age (admins)."""
        return self._call("apply_retention", {"now": now})

    # -- the scheduler's queue ---------------------------------------------------------------------
    def enqueue_job(self, type: str, cube: Any = None, payload: Mapping[str, Any] | None = None, *,
                    dedup_key: str | None = None, delay_s: float = 0.0) -> Job:
        """Queue a job for a cube (or the store); it runs as the caller."""
        return self._call("enqueue_job", {"type": type, "cube": ref(cube), "payload": payload,
                                          "dedup_key": dedup_key, "delay_s": delay_s})

    def scheduler_status(self, cube: Any = None) -> SchedulerStatus:
        """What the queue holds for a cube (or the whole store)."""
        return self._call("scheduler_status", {"cube": ref(cube)})

    def retry_job(self, job_id: str) -> Job:
        """Bring a dead job back to the queue with fresh attempts (admins)."""
        return self._call("retry_job", {"job_id": job_id})
