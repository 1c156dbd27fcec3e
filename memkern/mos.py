"""MemOS: the entry point that owns a store, an embedder and the cubes in them.

``MemOS()`` with no arguments is the embedded default: one SQLite file under
``~/.memkern`` (or ``$MEMKERN_HOME``) and the bundled offline embedder. Nothing here
needs a server, an LLM or the network.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import numpy as np

from memkern.cube.cube import MemCube, check_name, check_optional_text
from memkern.embed import Embedder, default_embedder
from memkern.errors import EmbedderError, InvalidInputError
from memkern.files import memkern_home
from memkern.governance.api import GovernanceMixin
from memkern.lifecycle.access import AccessRecorder
from memkern.llm import llm_from_env
from memkern.models import AddResult, CubeInfo, MemoryItem
from memkern.retrieval.index import IndexCache
from memkern.store import STORE_ENV, open_store
from memkern.store.base import Store
from memkern.store.sqlite import SQLiteStore

if TYPE_CHECKING:
    from memkern.cube.operations import ComposeReport, FuseReport
    from memkern.llm.base import LLM
    from memkern.scheduler import Scheduler

#: Default of ``MemOS(llm=...)``: the model ``MEMKERN_LLM`` asks for, if any.
_FROM_ENV: Any = object()


#: Largest number of texts embedded in one call while adding.
_EMBED_BATCH = 512


def default_path() -> Path:
    """Where the embedded store lives unless told otherwise."""
    return memkern_home() / "memkern.db"


def _default_store(path: str | Path | None) -> Store:
    """The SQLite file at ``path``; else the store ``$MEMKERN_STORE`` names (a path or URL); else ``default_path()``."""
    if path:
        return SQLiteStore(Path(path))
    url = os.environ.get(STORE_ENV, "").strip()
    return open_store(url) if url else SQLiteStore(default_path())


class MemOS(GovernanceMixin):
    """The memory operating system: create, open, load and delete cubes.

    Give ``path`` for another SQLite file, or ``store`` for another back end (without
    either, ``$MEMKERN_STORE`` may name one: a path or URL, see ``memkern.store.open_store``); give
    ``embedder`` to use another embedding model (the cube records which one built its
    vectors and refuses a different one). ``llm`` is the model for fact extraction and
    update decisions; by default the one ``MEMKERN_LLM`` names (none if unset), ``None``
    for none. It is never needed to store or retrieve.
    """

    def __init__(self, path: str | Path | None = None, *, store: Store | None = None,
                 embedder: Embedder | None = None, llm: Any = _FROM_ENV) -> None:
        if store is not None and path is not None:
            raise InvalidInputError("give either a path or a store, not both")
        if llm is not _FROM_ENV and llm is not None and not callable(getattr(llm, "complete", None)):
            raise InvalidInputError(f"llm must have a complete() method (memkern.llm.LLM), not {type(llm).__name__}")
        resolved_llm = llm_from_env() if llm is _FROM_ENV else llm
        self._store: Store = store if store is not None else _default_store(path)
        self.embedder: Embedder = embedder if embedder is not None else default_embedder()
        #: The model used for extraction and update decisions; ``None``: zero-LLM (rules only).
        self.llm: LLM | None = resolved_llm
        self._indexes = IndexCache(self._store)
        #: Reads of search/get, counted in memory and written in batches (memkern.lifecycle.access).
        self._access = AccessRecorder(self._store)

    # -- context management ------------------------------------------------------------------------
    def close(self) -> None:
        scheduler = self.__dict__.get("_scheduler")
        if scheduler is not None:
            scheduler.stop()
        self._access.flush()
        self._store.close()

    def __enter__(self) -> MemOS:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- cubes -------------------------------------------------------------------------------------
    def create_cube(self, name: str, owner: str = "default", description: str = "") -> MemCube:
        """A new, empty cube. Names are unique within the store."""
        check_name(name, "cube name")
        check_name(owner, "owner")
        description = check_optional_text(description, "description") or ""
        if len(name) > 200:
            raise InvalidInputError("cube name is longer than 200 characters")
        info = CubeInfo(id=uuid4().hex, name=name, owner=owner, description=description,
                        embedder=self.embedder.name, dim=self.embedder.dim)
        return MemCube(self, self._store.create_cube(info))

    def get_cube(self, name_or_id: str) -> MemCube:
        """Open an existing cube by name or id; refuses one built with another embedder."""
        info = self._store.get_cube(check_name(name_or_id, "cube name"))
        self._check_embedder(info)
        return MemCube(self, info)

    def list_cubes(self, owner: str | None = None) -> list[CubeInfo]:
        return self._store.list_cubes(owner)

    def delete_cube(self, name_or_id: str, actor: str | None = None) -> None:
        """Remove a cube and everything in it. Final."""
        from memkern.memory.erasure import erase_derived

        info = self._store.get_cube(check_name(name_or_id, "cube name"))
        erase_derived(self._store, info.id)
        self._store.delete_cube(info.id, check_optional_text(actor, "actor"))
        self._indexes.forget(info.id)

    def load_cube(self, path: str | Path, name: str | None = None, owner: str | None = None) -> MemCube:
        """Load a cube file written by ``MemCube.dump``; verifies it whole before writing anything."""
        from memkern.cube.portable import load_cube

        info = load_cube(self._store, self.embedder, Path(path), name=name, owner=owner)
        return MemCube(self, info)

    # -- scheduler and cube operations (memkern.scheduler, memkern.cube.operations) ----------------
    @property
    def scheduler(self) -> Scheduler:
        """The memory scheduler of this store (created on first use; see docs/scheduler.md)."""
        found = self.__dict__.get("_scheduler")
        if found is None:
            from memkern.scheduler import Scheduler

            found = self.__dict__.setdefault("_scheduler", Scheduler(self))
        return found

    def compose_cubes(self, a: Any, b: Any, name: str, *, owner: str | None = None, description: str = "",
                      actor: str | None = None) -> ComposeReport:
        """A new cube with every version of cubes ``a`` and ``b``, their origin in metadata."""
        from memkern.cube.operations import compose

        return compose(self, a, b, name, owner=owner, description=description, actor=actor)

    def fuse_duplicates(self, cubes: Sequence[Any], *, cosine: float = 0.95, actor: str | None = None,
                        reason: str = "duplicate") -> FuseReport:
        """Fuse memories that say the same thing across ``cubes``: one survivor with merged
        provenance, the others archived with a reason naming it."""
        from memkern.cube.operations import fuse_duplicates

        return fuse_duplicates(self, cubes, cosine=cosine, actor=actor, reason=reason)

    # -- internals used by MemCube -----------------------------------------------------------------
    def _check_embedder(self, info: CubeInfo) -> None:
        if info.embedder != self.embedder.name or info.dim != self.embedder.dim:
            raise EmbedderError(
                f"cube {info.name!r} was built with embedder {info.embedder!r} ({info.dim} dimensions) but "
                f"this MemOS uses {self.embedder.name!r} ({self.embedder.dim} dimensions); open it with "
                "the same embedder, or dump it and load the file here to re-embed it"
            )

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        chunks = [self.embedder.embed(texts[i:i + _EMBED_BATCH]) for i in range(0, len(texts), _EMBED_BATCH)]
        vectors = np.concatenate(chunks) if chunks else np.zeros((0, self.embedder.dim), dtype=np.float32)
        if vectors.shape != (len(texts), self.embedder.dim):
            raise EmbedderError(
                f"embedder {self.embedder.name!r} returned vectors of shape {vectors.shape}, "
                f"expected ({len(texts)}, {self.embedder.dim})"
            )
        return vectors.astype(np.float32, copy=False)

    def _write_items(self, info: CubeInfo, items: list[MemoryItem], actor: str | None) -> AddResult:
        self._check_embedder(info)
        items = self._governed_items(info, items)  # PII tags/redaction, quarantine (memkern.governance)
        vectors = self._embed([item.text for item in items])
        outcome = self._store.add_memories(info.id, items, vectors, actor)
        return AddResult(added=outcome.added, duplicates=list(outcome.duplicates.values()))

    def _update_item(self, info: CubeInfo, item: MemoryItem, expected_version: int) -> MemoryItem:
        self._check_embedder(info)
        item = self._governed_items(info, [item])[0]  # PII tags/redaction, quarantine (memkern.governance)
        vector = self._embed([item.text])[0]
        return self._store.update_memory(info.id, item, vector, expected_version)
