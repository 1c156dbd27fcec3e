"""What a worker can run: job handlers by type, and hooks by extension point.

A registry instance, held by the kernel, instead of module-level state filled by import
side effects: the scheduler registers the built-in job types and the activation and
parametric hooks into it when it starts (``memkern.scheduler.handlers.register_builtins``),
a test or a plugin registers its own (``$MEMKERN_SCHEDULER_PLUGINS`` names modules with a
``register(registry)`` function), and the ``enqueue_job`` operation asks it which types
exist. Hooks are the extension points of the built-in handlers:

============  ==========================================================================================
``promote``   ``fn(ctx: OpContext, memories) -> list[str]``: load hot plaintext memories into activation
              memory; returns the ids it took (the scheduler marks them ``activated``)
``distil``    the same for parametric memory (marker ``distilled``)
``rebuild``   ``fn(ctx: OpContext) -> dict | None``: rebuild a stale cache of the cube
============  ==========================================================================================
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from memkern.errors import InvalidInputError

HOOK_KINDS = ("promote", "distil", "rebuild")
#: The job types every worker runs (``memkern.scheduler.handlers``).
BUILTIN_JOB_TYPES = ("extract", "organize", "promote", "distil", "demote", "rebuild")


class JobRegistry:
    """Handlers by job type and hooks by kind, safe to use from several threads."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._handlers: dict[str, Callable[..., Any]] = {}
        self._hooks: dict[str, dict[str, Callable[..., Any]]] = {kind: {} for kind in HOOK_KINDS}

    def register_job_type(self, job_type: str, handler: Callable[..., Any], *, replace: bool = False) -> None:
        if not isinstance(job_type, str) or not job_type.strip():
            raise InvalidInputError("a job type is a non-empty string")
        if not callable(handler):
            raise InvalidInputError("a job handler must be callable")
        with self._lock:
            if job_type in self._handlers and not replace and self._handlers[job_type] is not handler:
                raise InvalidInputError(f"job type {job_type!r} already has a handler (pass replace=True)")
            self._handlers[job_type] = handler

    def unregister_job_type(self, job_type: str) -> None:
        with self._lock:
            self._handlers.pop(job_type, None)

    def handler(self, job_type: str) -> Callable[..., Any] | None:
        with self._lock:
            return self._handlers.get(job_type)

    def job_types(self) -> list[str]:
        with self._lock:
            return sorted(set(self._handlers) | set(BUILTIN_JOB_TYPES))

    def register_hook(self, kind: str, fn: Callable[..., Any], *, name: str = "default") -> None:
        """Register ``fn`` at extension point ``kind`` under ``name`` (replacing one of that name)."""
        if kind not in HOOK_KINDS:
            raise InvalidInputError(f"unknown hook kind {kind!r}; known: {', '.join(HOOK_KINDS)}")
        if not callable(fn):
            raise InvalidInputError("a hook must be callable")
        with self._lock:
            self._hooks[kind][name] = fn

    def unregister_hook(self, kind: str, name: str = "default") -> None:
        with self._lock:
            self._hooks.get(kind, {}).pop(name, None)

    def hooks(self, kind: str) -> dict[str, Callable[..., Any]]:
        with self._lock:
            return dict(self._hooks.get(kind, {}))

    def hook_names(self) -> dict[str, list[str]]:
        with self._lock:
            return {kind: sorted(found) for kind, found in self._hooks.items()}
