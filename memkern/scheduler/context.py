"""What a job handler runs with: the job, the context of its operations, and its worker's registry.

Kept apart from the worker loop (``memkern.scheduler.scheduler``) so that handlers
(``memkern.scheduler.handlers``) depend on it and the worker depends on both, with no cycle.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from memkern.api.dispatch import Dispatcher
from memkern.api.spec import Need, OnCube, StoreAdmin
from memkern.errors import MemkernError, NotFoundError, PermissionDeniedError
from memkern.jobs import JobRegistry
from memkern.models import CubeInfo, Job, Permission, SchedulerPolicy, User
from memkern.ops.context import OpContext
from memkern.store.queue import JobQueue

log = logging.getLogger("memkern.scheduler")


class JobFailed(MemkernError):
    """Raised by a handler for a failure that retrying will not fix: the job is dead-lettered."""


class LeaseLost(MemkernError):
    """The worker no longer holds the job's lease (another worker took it over)."""


class JobContext:
    """What a handler gets: the job, its cube, the operation context it runs in (as the user
    who queued it, checked by the dispatcher), the policy, and a way to check that it still
    holds the lease (``job.check()`` raises ``LeaseLost``)."""

    def __init__(self, dispatcher: Dispatcher, policy: SchedulerPolicy, queue: JobQueue, registry: JobRegistry,
                 job: Job, *, enqueue: Callable[..., Job]) -> None:
        self.dispatcher = dispatcher
        self.job = job
        self.policy = policy
        self.queue = queue
        #: The job types and hooks of this worker.
        self.registry = registry
        #: Queue a follow-up job (the scheduler's ``enqueue``).
        self.enqueue = enqueue
        self.lease_lost = threading.Event()
        self.notes: list[str] = []
        self.user: User | None = None
        self._op: OpContext | None = None

    @property
    def payload(self) -> dict[str, Any]:
        return self.job.payload

    @property
    def actor(self) -> str:
        return f"scheduler:{self.job.type}"

    @property
    def name(self) -> str:
        """The job as the audit log names it."""
        return f"job:{self.job.type}"

    @property
    def op(self) -> OpContext:
        """The context the job's operations run in: the queuing user's permissions on its cube
        (write), or the admin role for a job of no cube. Refused: ``JobFailed``."""
        if self._op is None:
            kernel = self.dispatcher.kernel
            as_user = self.payload.get("as_user")
            try:
                self.user = kernel.store.get_user(str(as_user)) if as_user else None
            except NotFoundError as exc:
                raise JobFailed(f"user {as_user!r} who queued the job no longer exists") from exc
            info: CubeInfo | None = None
            if self.job.cube_id is not None:
                try:
                    info = kernel.store.get_cube(self.job.cube_id)
                except NotFoundError as exc:
                    raise JobFailed(f"cube {self.job.cube_id!r} no longer exists") from exc
            needs: list[Need] = [OnCube(info.id, Permission.WRITE)] if info is not None else [StoreAdmin()]
            try:
                self._op = self.dispatcher.enter(self.user, self.name, info, needs)
            except PermissionDeniedError as exc:
                raise JobFailed(str(exc)) from exc
        return self._op

    @property
    def cube(self) -> CubeInfo:
        if self.job.cube_id is None:
            raise JobFailed(f"job {self.job.type!r} needs a cube")
        return self.op.cube

    def check(self) -> None:
        if self.lease_lost.is_set():
            raise LeaseLost(f"lost the lease of job {self.job.id}")

    def note(self, message: str) -> None:
        """A line for the job's result and the log (why something was skipped)."""
        self.notes.append(message)
        log.info("job %s (%s): %s", self.job.id, self.job.type, message)
