"""MemOS: the entry point that owns a kernel (store, embedder, LLM) and opens cubes in it.

``MemOS()`` with no arguments is the embedded default: one SQLite file under
``~/.memkern`` (or ``$MEMKERN_HOME``) and the bundled offline embedder. Nothing here
needs a server, an LLM or the network.

``MemOS`` and ``MemCube`` only bind the Python methods (``memkern.api.methods``) to the
dispatcher: every call goes through ``Dispatcher.call``, which validates, checks the
caller's permissions, runs the operation (``memkern.ops``) and audits it.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from memkern.api.dispatch import Dispatcher
from memkern.api.methods import CubeMethods, StoreMethods
from memkern.embed import Embedder, default_embedder
from memkern.errors import InvalidInputError, PermissionDeniedError
from memkern.files import memkern_home
from memkern.kernel import Kernel
from memkern.llm import llm_from_env
from memkern.models import AuditEntry, AuditResult, CubeInfo, User
from memkern.ops.governance import authenticate
from memkern.scheduler import Scheduler
from memkern.scheduler.handlers import register_builtins
from memkern.scheduler.plugins import load_plugins
from memkern.store import STORE_ENV, open_store
from memkern.store.base import Store
from memkern.store.sqlite import SQLiteStore

if TYPE_CHECKING:
    from memkern.llm.base import LLM

#: Default of ``MemOS(llm=...)``: the model ``MEMKERN_LLM`` asks for, if any.
_FROM_ENV: Any = object()


def default_path() -> Path:
    """Where the embedded store lives unless told otherwise."""
    return memkern_home() / "memkern.db"


def _default_store(path: str | Path | None) -> Store:
    """The SQLite file at ``path``; else the store ``$MEMKERN_STORE`` names (a path or URL); else ``default_path()``."""
    if path:
        return SQLiteStore(Path(path))
    url = os.environ.get(STORE_ENV, "").strip()
    return open_store(url) if url else SQLiteStore(default_path())


class MemCube(CubeMethods):
    """A handle on one cube: its record (``info``) and the operations on it, run as the
    session's user. Obtain one from ``MemOS.create_cube``, ``get_cube`` or ``load_cube``."""

    def __init__(self, session: MemOS, info: CubeInfo) -> None:
        self.session = session
        self.info = info

    def _call(self, name: str, args: dict[str, Any]) -> Any:
        return self.session._call(name, args)


class MemOS(StoreMethods):
    """The memory operating system: cubes, users, grants, audit and the scheduler of one store.

    Give ``path`` for another SQLite file, or ``store`` for another back end (without either,
    ``$MEMKERN_STORE`` may name one: a path or URL, see ``memkern.store.open_store``); give
    ``embedder`` to use another embedding model (a cube records which one built its vectors
    and refuses a different one). ``llm`` is the model for fact extraction, update decisions
    and chat; by default the one ``MEMKERN_LLM`` names (none if unset), ``None`` for none. It
    is never needed to store or retrieve.

    A plain ``MemOS`` is the embedded single-user default: nothing is checked or audited.
    ``as_user(key_or_user)`` gives a view acting as one user, where every call is checked
    against the user's role and grants and audited.
    """

    def __init__(self, path: str | Path | None = None, *, store: Store | None = None,
                 embedder: Embedder | None = None, llm: Any = _FROM_ENV) -> None:
        if store is not None and path is not None:
            raise InvalidInputError("give either a path or a store, not both")
        if llm is not _FROM_ENV and llm is not None and not callable(getattr(llm, "complete", None)):
            raise InvalidInputError(f"llm must have a complete() method (memkern.llm.LLM), not {type(llm).__name__}")
        resolved_llm = llm_from_env() if llm is _FROM_ENV else llm
        self.kernel = Kernel(store if store is not None else _default_store(path),
                             embedder if embedder is not None else default_embedder(), resolved_llm)
        # Every process knows the job types and hooks (built-ins and $MEMKERN_SCHEDULER_PLUGINS), so
        # that a plugin's job can be queued from the CLI, REST or MCP, not only run by a worker.
        register_builtins(self.kernel.job_registry)
        load_plugins(self.kernel.job_registry)
        self.dispatcher = Dispatcher(self.kernel)
        self._user: User | None = None
        #: The MemOS that built the kernel: it closes it and holds the scheduler; views share both.
        self._root: MemOS = self
        self._scheduler: Scheduler | None = None

    # -- what it runs on ---------------------------------------------------------------------------
    @property
    def store(self) -> Store:
        return self.kernel.store

    @property
    def embedder(self) -> Embedder:
        return self.kernel.embedder

    @property
    def llm(self) -> LLM | None:
        """The model used for extraction, decisions and chat; ``None``: zero-LLM (rules only)."""
        return self.kernel.llm

    @llm.setter
    def llm(self, llm: LLM | None) -> None:
        """Switch the model for every later call of this MemOS and its views (``None``: zero-LLM)."""
        self.kernel.llm = llm

    @property
    def user(self) -> User | None:
        """The user this MemOS acts as (``None``: the embedded single-user default)."""
        return self._user

    # -- the binding -------------------------------------------------------------------------------
    def _call(self, name: str, args: dict[str, Any]) -> Any:
        return self.dispatcher.call(self._user, name, args)

    def _handle(self, info: CubeInfo) -> MemCube:
        return MemCube(self, info)

    # -- identity ----------------------------------------------------------------------------------
    def authenticate(self, key: str) -> User:
        """The user an API key belongs to; ``AuthenticationError`` if it is malformed, unknown or
        revoked (the message never repeats the key)."""
        return authenticate(self.kernel, key)

    def as_user(self, user_or_key: User | str) -> MemOS:
        """A view of this MemOS acting as a user: every operation is checked and audited.

        Give an API key (``create_api_key``), or a ``User`` (trusted in-process callers; a
        view acting as a non-admin may only give itself). The view shares the kernel;
        closing it does not close the store.
        """
        if isinstance(user_or_key, User):
            user = self.kernel.store.get_user(user_or_key.id)
            if self._user is not None and not self._user.is_admin and self._user.id != user.id:
                self.kernel.audit(AuditEntry(user_id=self._user.id, operation="as_user", item_ids=[user.id],
                                             result=AuditResult.DENIED, detail="PermissionDeniedError"))
                raise PermissionDeniedError(f"user {self._user.id!r} may not act as user {user.id!r}")
        elif isinstance(user_or_key, str):
            user = self.authenticate(user_or_key)
        else:
            raise InvalidInputError(f"as_user takes a User or an API key, not {type(user_or_key).__name__}")
        view = object.__new__(MemOS)
        view.kernel, view.dispatcher, view._user, view._root = self.kernel, self.dispatcher, user, self._root
        view._scheduler = None
        return view

    # -- the scheduler -----------------------------------------------------------------------------
    @property
    def scheduler(self) -> Scheduler:
        """The memory scheduler of this store, running jobs as the users who queued them
        (created on first use; see docs/scheduler.md)."""
        root = self._root
        if root._scheduler is None:
            root._scheduler = Scheduler(self.dispatcher)
        return root._scheduler

    # -- context management ------------------------------------------------------------------------
    def close(self) -> None:
        """Stop this MemOS's scheduler and close the store (a view from ``as_user`` closes nothing)."""
        if self._root is self:
            if self._scheduler is not None:
                self._scheduler.stop()
            self.kernel.close()

    def __enter__(self) -> MemOS:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
