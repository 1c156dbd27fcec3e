"""The memory scheduler: a worker loop over the durable job queue.

``Scheduler(dispatcher)`` (or ``mos.scheduler``) runs jobs one at a time
(``run_once``), in a loop (``run``) or in background threads (``start``/``stop``), and
reports (``status``). While a handler runs, a heartbeat thread extends the job's lease;
if the worker dies, the lease expires and another worker claims the job again (a new
attempt). Handlers are idempotent, so a job re-run after a crash has its effect once
(see docs/scheduler.md for how each built-in handler achieves that).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from memkern.api.dispatch import Dispatcher
from memkern.errors import InvalidInputError, MemkernError, NotFoundError, PermissionDeniedError
from memkern.jobs import JobRegistry
from memkern.models import CubeInfo, Job, JobStatus, SchedulerPolicy, SchedulerStatus, User
from memkern.ops.context import OpContext
from memkern.ops.jobs import scheduler_status
from memkern.scheduler.context import JobContext, JobFailed, LeaseLost
from memkern.scheduler.handlers import register_builtins
from memkern.scheduler.plugins import load_plugins

if TYPE_CHECKING:
    from memkern.store.queue import JobQueue

log = logging.getLogger("memkern.scheduler")

#: Jobs the maintenance tick enqueues for every cube.
MAINTENANCE_TYPES = ("organize", "promote", "demote")


class Scheduler:
    """Runs the jobs of one store (see the module docstring)."""

    def __init__(self, dispatcher: Dispatcher, *, policy: SchedulerPolicy | Mapping[str, Any] | None = None,
                 worker_id: str | None = None) -> None:
        self.dispatcher = dispatcher
        kernel = dispatcher.kernel
        self.policy = policy if isinstance(policy, SchedulerPolicy) else SchedulerPolicy.model_validate(policy or {})
        self.queue: JobQueue = kernel.jobs
        self.registry: JobRegistry = kernel.job_registry
        register_builtins(self.registry)
        load_plugins(self.registry)
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._last_maintenance = 0.0
        self._rng = random.Random()

    # -- enqueueing ----------------------------------------------------------------------------------
    def _cube_id(self, cube: Any) -> str | None:
        if cube is None:
            return None
        if hasattr(cube, "info"):
            return str(cube.info.id)
        if isinstance(cube, CubeInfo):
            return cube.id
        return self.dispatcher.kernel.store.get_cube(str(cube)).id

    def enqueue(self, job_type: str, cube: Any = None, payload: Mapping[str, Any] | None = None, *,
                dedup_key: str | None = None, delay_s: float = 0.0, max_attempts: int | None = None,
                as_user: User | None = None) -> Job:
        """Queue one of the worker's own jobs (maintenance, a rebuild after a promote) for ``cube``
        (a handle, record, name or id; None for a job of no cube), run as ``as_user`` (None: the
        store itself). Callers outside the worker queue jobs with the ``enqueue_job`` operation."""
        if job_type not in self.registry.job_types() or self.registry.handler(job_type) is None:
            raise InvalidInputError(f"unknown job type {job_type!r}; known: {', '.join(self.registry.job_types())}")
        body = {**dict(payload or {}), "as_user": as_user.id if as_user is not None else None}
        return self.queue.enqueue(job_type, self._cube_id(cube), body, dedup_key=dedup_key,
                                  delay_s=delay_s, max_attempts=max_attempts or self.policy.max_attempts)

    def enqueue_maintenance(self, cube: Any = None) -> list[Job]:
        """Queue organize, promote and demote for ``cube`` (or every cube); at most one pending each."""
        ids = [self._cube_id(cube)] if cube is not None else \
            [info.id for info in self.dispatcher.kernel.store.list_cubes()]
        return [self.enqueue(t, cid, dedup_key=f"maintenance:{t}:{cid}") for cid in ids for t in MAINTENANCE_TYPES]

    # -- running -------------------------------------------------------------------------------------
    def run_once(self, cube: Any = None, *, types: Sequence[str] | None = None) -> Job | None:
        """Claim one due job (of ``cube``, of ``types``) and run it; the job as it ended, or None."""
        job = self.queue.claim(self.worker_id, self.policy.lease_s, cube_id=self._cube_id(cube), types=types)
        if job is None:
            return None
        return self._execute(job)

    def run(self, cube: Any = None, *, until_idle: bool = False, max_jobs: int | None = None,
            stop: threading.Event | None = None) -> int:
        """Run jobs until ``stop`` is set (or, with ``until_idle``, until none is due).
        Returns the number of jobs run."""
        stop = stop or self._stop
        done = 0
        while not stop.is_set() and (max_jobs is None or done < max_jobs):
            self._maintenance_tick()
            if self.run_once(cube) is not None:
                done += 1
                continue
            if until_idle:
                break
            stop.wait(self.policy.poll_s)
        return done

    def start(self, workers: int | None = None, cube: Any = None) -> None:
        """Run jobs in background threads (``policy.workers`` of them) until ``stop``."""
        if self._threads:
            return
        self._stop.clear()
        for n in range(workers or self.policy.workers):
            thread = threading.Thread(target=self._thread_main, args=(cube,), daemon=True,
                                      name=f"memkern-scheduler-{n}")
            thread.start()
            self._threads.append(thread)

    def _thread_main(self, cube: Any) -> None:
        while not self._stop.is_set():
            try:
                self.run(cube, stop=self._stop)
            except Exception:  # noqa: BLE001 - e.g. a store error while claiming: wait and go on
                log.exception("scheduler worker loop failed; retrying")
                self._stop.wait(self.policy.poll_s)

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def stop(self, timeout: float | None = 30.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def wait_quiescent(self, cube: Any = None, timeout: float = 30.0) -> bool:
        """Wait until ``cube`` (or the store) has no pending or running job. Without background
        workers in this process, runs the jobs itself. False on timeout."""
        cube_id = self._cube_id(cube)
        deadline = time.monotonic() + timeout
        while True:
            if self.queue.open_jobs(cube_id) == 0:
                return True
            if time.monotonic() >= deadline:
                return False
            if not self.running and self.run_once(cube_id) is not None:
                continue
            time.sleep(min(self.policy.poll_s, 0.05, max(0.0, deadline - time.monotonic())))

    def _maintenance_tick(self) -> None:
        interval = self.policy.maintenance_interval_s
        if interval is None or time.monotonic() - self._last_maintenance < interval:
            return
        self._last_maintenance = time.monotonic()
        try:
            self.enqueue_maintenance()
            self.queue.purge(self.policy.keep_finished_s)
        except MemkernError as exc:
            log.warning("maintenance enqueue failed: %s", exc)

    def _execute(self, job: Job) -> Job:
        assert job.lease_token is not None
        token = job.lease_token
        ctx = JobContext(self.dispatcher, self.policy, self.queue, self.registry, job, enqueue=self.enqueue)
        beating = threading.Event()
        heart = threading.Thread(target=self._heartbeat, args=(job, token, ctx, beating), daemon=True,
                                 name=f"memkern-heartbeat-{job.id[:8]}")
        heart.start()
        outcome = "done"
        try:
            handler = self.registry.handler(job.type)
            if handler is None:
                raise JobFailed(f"no handler for job type {job.type!r} in this worker")
            result = handler(ctx) or {}
            self.dispatcher.record(ctx.user, ctx.name, ctx.op.cube_info, _ids(result), None)
            if ctx.notes:
                result = {**result, "notes": ctx.notes}
            beating.set()
            heart.join()
            if not self.queue.complete(job.id, token, result):
                outcome = "lease lost"
                log.warning("job %s finished after its lease was lost; its completion was not recorded", job.id)
        except (JobFailed, InvalidInputError, PermissionDeniedError, LeaseLost) as exc:
            self._record_failure(ctx, exc)
            beating.set()
            heart.join()
            outcome = "failed"
            status = self.queue.fail(job.id, token, f"{type(exc).__name__}: {exc}", None)
            log.warning("job %s (%s) failed for good (%s): %s", job.id, job.type, status, exc)
        except Exception as exc:  # noqa: BLE001 - any other failure is retried with backoff
            self._record_failure(ctx, exc)
            beating.set()
            heart.join()
            outcome = "failed"
            delay = self.policy.backoff(job.attempts, self._rng.random())
            status = self.queue.fail(job.id, token, f"{type(exc).__name__}: {exc}", delay)
            log.warning("job %s (%s) attempt %d failed (%s, retry in %.1fs): %s", job.id, job.type, job.attempts,
                        status.value if status else "lease lost", delay, exc)
        finally:
            beating.set()
        log.debug("job %s (%s): %s", job.id, job.type, outcome)
        try:
            return self.queue.get(job.id)
        except NotFoundError:  # its cube was deleted meanwhile
            return job

    def _heartbeat(self, job: Job, token: str, ctx: JobContext, done: threading.Event) -> None:
        interval = self.policy.heartbeat_interval()
        while not done.wait(interval):
            try:
                if not self.queue.heartbeat(job.id, token, self.policy.lease_s):
                    ctx.lease_lost.set()
                    return
            except MemkernError as exc:  # the store is busy or away: try again next beat
                log.warning("heartbeat of job %s failed: %s", job.id, exc)

    def _record_failure(self, ctx: JobContext, exc: Exception) -> None:
        if ctx._op is not None:  # a job refused before it ran was audited as denied already
            error = exc if isinstance(exc, MemkernError) else MemkernError(type(exc).__name__)
            self.dispatcher.record(ctx.user, ctx.name, ctx._op.cube_info, [], error)

    # -- reporting -----------------------------------------------------------------------------------
    def status(self, cube: Any = None) -> SchedulerStatus:
        cube_id = self._cube_id(cube)
        info = self.dispatcher.kernel.store.get_cube(cube_id) if cube_id else None
        return scheduler_status(OpContext(self.dispatcher.kernel, None, info))

    def jobs(self, cube: Any = None, status: JobStatus | str | None = None, job_type: str | None = None,
             limit: int = 100) -> list[Job]:
        return self.queue.list(self._cube_id(cube), JobStatus(status) if status else None, job_type, limit)

    def get(self, job_id: str) -> Job:
        return self.queue.get(job_id)

    def retry(self, job_id: str) -> Job:
        return self.queue.retry(job_id)

    def cancel(self, job_id: str) -> Job:
        return self.queue.cancel(job_id)


def _ids(result: Mapping[str, Any]) -> list[str]:
    """Memory ids a handler reports (added, updated, marked), for the audit entry."""
    found: list[str] = []
    for key in ("added", "updated", "marked"):
        value = result.get(key)
        if isinstance(value, list):
            found += [v for v in value if isinstance(v, str)]
    return found
