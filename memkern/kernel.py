"""The kernel: the ports every operation works through, held in one small object.

A ``MemOS`` builds one kernel; every operation (``memkern.ops``) is a function of the
kernel (through an ``OpContext``) and the cube it addresses. Nothing below the kernel
knows about it, and nothing in it knows about the surfaces above (Python handles, REST,
MCP, the CLI): they all reach the kernel through the one dispatcher of
``memkern.api.dispatch``.

The ports:

============  ===================================================================================
store         durable cubes, versions, vectors, lexical index, logs (``memkern.store.base.Store``)
embedder      text -> vectors (``memkern.embed.base.Embedder``)
llm           optional: extraction, decisions, chat (``memkern.llm.base.LLM``); ``None`` = zero-LLM
indexes       in-memory search indexes per cube, following the store (``memkern.retrieval.index``)
profiles      the zero-LLM profile per cube, following its index, saved with its copy (``memkern.organize.profile``)
timelines     the session -> day -> week -> month tree per cube, following its index (``memkern.organize.timeline``)
summaries     an LLM's summaries of the tree's nodes, each with what it was written from (``memkern.organize.digest``)
access        buffered read statistics (``memkern.lifecycle.access.AccessRecorder``)
authorizer    what a user holds on a cube (``memkern.governance.access.Authorizer``)
jobs          the durable job queue in the store's database (``memkern.store.base.JobQueue``)
job_registry  what a worker of this process can run: job types and hooks (``memkern.jobs``)
============  ===================================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from memkern.embed.base import Embedder
from memkern.errors import EmbedderError
from memkern.governance.access import Authorizer
from memkern.jobs import JobRegistry
from memkern.lifecycle.access import AccessRecorder
from memkern.models import AuditEntry, CubeInfo
from memkern.organize.digest import SummaryCache
from memkern.organize.profile import ProfileCache
from memkern.organize.timeline import TimelineCache
from memkern.retrieval.index import IndexCache
from memkern.store.base import Store

if TYPE_CHECKING:
    from memkern.llm.base import LLM
    from memkern.store.queue import JobQueue

#: Largest number of texts embedded in one call.
EMBED_BATCH = 512


class Kernel:
    """One store, one embedder, an optional LLM, and what is derived from them in this process."""

    def __init__(self, store: Store, embedder: Embedder, llm: LLM | None) -> None:
        self.store = store
        self.embedder = embedder
        self.llm = llm
        self.indexes = IndexCache(store)
        self.profiles = ProfileCache(store, self.indexes)
        self.timelines = TimelineCache()
        self.summaries = SummaryCache(store)
        self.access = AccessRecorder(store)
        self.authorizer = Authorizer(store)
        self.job_registry = JobRegistry()

    @property
    def jobs(self) -> JobQueue:
        """The job queue in the store's own database."""
        queue = self.__dict__.get("_jobs")
        if queue is None:
            queue = self.__dict__.setdefault("_jobs", self.store.job_queue())
        return queue

    def close(self) -> None:
        self.access.flush()
        self.indexes.close()  # saves large cubes' index copies for the next process (memkern.retrieval.snapshot)
        self.store.close()

    # -- embedding -------------------------------------------------------------------------------
    def check_embedder(self, info: CubeInfo) -> None:
        """Refuse a cube whose vectors another embedder made: mixing them would rank garbage."""
        if info.embedder != self.embedder.name or info.dim != self.embedder.dim:
            raise EmbedderError(
                f"cube {info.name!r} was built with embedder {info.embedder!r} ({info.dim} dimensions) but "
                f"this MemOS uses {self.embedder.name!r} ({self.embedder.dim} dimensions); open it with "
                "the same embedder, or dump it and load the file here to re-embed it"
            )

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of ``texts`` (float32, one row each), checked for the shape the cube expects."""
        chunks = [self.embedder.embed(texts[i:i + EMBED_BATCH]) for i in range(0, len(texts), EMBED_BATCH)]
        vectors = np.concatenate(chunks) if chunks else np.zeros((0, self.embedder.dim), dtype=np.float32)
        if vectors.shape != (len(texts), self.embedder.dim):
            raise EmbedderError(
                f"embedder {self.embedder.name!r} returned vectors of shape {vectors.shape}, "
                f"expected ({len(texts)}, {self.embedder.dim})"
            )
        return vectors.astype(np.float32, copy=False)

    # -- audit -----------------------------------------------------------------------------------
    def audit(self, *entries: AuditEntry) -> None:
        """Append to the audit log (ids only). Only the dispatcher and the operations it runs call this."""
        self.store.append_audit(list(entries))
