"""What runs a job: handlers by job type, and hooks other memory types register into.

Two levels:

- ``register_job_type(type, handler)``: the whole handler of a job type
  (``handler(ctx: JobContext) -> dict | None``). The built-in types (extract, organize,
  promote, distil, demote, rebuild) are registered by ``memkern.scheduler.handlers``.
- ``register_hook(kind, fn, name=...)``: an extension point of a built-in handler, for
  the memory types that live outside plaintext:

  ``promote``  ``fn(ctx, memories: list[MemoryItem]) -> list[str]``: load hot plaintext
               memories into activation memory (KV cache); returns the ids it took. The
               scheduler then marks them ``activated`` (``memkern.lifecycle``).
  ``distil``   same shape, for parametric memory (LoRA); marks ``distilled``.
  ``rebuild``  ``fn(ctx) -> dict | None``: rebuild a stale cache of the job's cube
               (``name`` is the cache's name; a rebuild job names the caches it wants).

  With no hook registered, promote and distil finish as no-ops whose result says why.

Registration is per process: a worker registers what it can run at import time, e.g.
``memkern.memory.activation`` (imported by the scheduler if present) or any module named
in ``$MEMKERN_SCHEDULER_PLUGINS`` (comma-separated).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from memkern.errors import InvalidInputError

if TYPE_CHECKING:
    from memkern.scheduler.scheduler import JobContext

log = logging.getLogger("memkern.scheduler")

JobHandler = Callable[["JobContext"], "dict[str, Any] | None"]
HOOK_KINDS = ("promote", "distil", "rebuild")
PLUGINS_ENV = "MEMKERN_SCHEDULER_PLUGINS"
#: Modules imported (if they exist) so that they can register their hooks.
KNOWN_PLUGINS = ("memkern.memory.activation", "memkern.memory.parametric")

_lock = threading.RLock()
_job_types: dict[str, JobHandler] = {}
_hooks: dict[str, dict[str, Callable[..., Any]]] = {kind: {} for kind in HOOK_KINDS}
_plugins_loaded = False


def register_job_type(job_type: str, handler: JobHandler, *, replace: bool = False) -> None:
    if not isinstance(job_type, str) or not job_type.strip():
        raise InvalidInputError("a job type is a non-empty string")
    if not callable(handler):
        raise InvalidInputError("a job handler must be callable")
    with _lock:
        if job_type in _job_types and not replace and _job_types[job_type] is not handler:
            raise InvalidInputError(f"job type {job_type!r} already has a handler (pass replace=True)")
        _job_types[job_type] = handler


def unregister_job_type(job_type: str) -> None:
    with _lock:
        _job_types.pop(job_type, None)


def job_handler(job_type: str) -> JobHandler | None:
    load_plugins()
    with _lock:
        return _job_types.get(job_type)


def job_types() -> list[str]:
    with _lock:
        return sorted(_job_types)


def register_hook(kind: str, fn: Callable[..., Any], *, name: str = "default") -> None:
    """Register ``fn`` at extension point ``kind`` (promote, distil, rebuild) under ``name``;
    a second registration under the same name replaces the first."""
    if kind not in HOOK_KINDS:
        raise InvalidInputError(f"unknown hook kind {kind!r}; known: {', '.join(HOOK_KINDS)}")
    if not callable(fn):
        raise InvalidInputError("a hook must be callable")
    with _lock:
        _hooks[kind][name] = fn


def unregister_hook(kind: str, name: str = "default") -> None:
    with _lock:
        _hooks.get(kind, {}).pop(name, None)


def hooks(kind: str) -> dict[str, Callable[..., Any]]:
    load_plugins()
    with _lock:
        return dict(_hooks.get(kind, {}))


def hook_names() -> dict[str, list[str]]:
    load_plugins()
    with _lock:
        return {kind: sorted(found) for kind, found in _hooks.items()}


def load_plugins(force: bool = False) -> None:
    """Import the known memory modules and ``$MEMKERN_SCHEDULER_PLUGINS`` once, so that they
    register their hooks. A module that fails to import is logged and skipped."""
    global _plugins_loaded
    with _lock:
        if _plugins_loaded and not force:
            return
        _plugins_loaded = True
    names = list(KNOWN_PLUGINS) + [n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(",") if n.strip()]
    for name in names:
        try:
            if name in KNOWN_PLUGINS and importlib.util.find_spec(name) is None:
                continue
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not stop the scheduler
            log.warning("scheduler plugin %s could not be imported: %s", name, exc)
