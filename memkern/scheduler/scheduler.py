"""The memory scheduler: a worker loop over the durable job queue.

``Scheduler(mos)`` (or ``mos.scheduler``) enqueues jobs, runs them one at a time
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

from memkern.errors import InvalidInputError, MemkernError, NotFoundError, PermissionDeniedError
from memkern.scheduler import registry
from memkern.models import Job, JobStatus, SchedulerPolicy, SchedulerStatus, epoch_to_dt
from memkern.scheduler.queue import SQLJobQueue, queue_for

if TYPE_CHECKING:
    from memkern.cube.cube import MemCube
    from memkern.mos import MemOS

log = logging.getLogger("memkern.scheduler")

#: Jobs the maintenance tick enqueues for every cube.
MAINTENANCE_TYPES = ("organize", "promote", "demote")


class JobFailed(MemkernError):
    """Raised by a handler for a failure that retrying will not fix: the job is dead-lettered."""


class LeaseLost(MemkernError):
    """The worker no longer holds the job's lease (another worker took it over)."""


class JobContext:
    """What a handler gets: the job, the MemOS, the job's cube, the policy, and a way to
    check that it still holds the lease (``ctx.check()`` raises ``LeaseLost``)."""

    def __init__(self, scheduler: Scheduler, job: Job) -> None:
        self.scheduler = scheduler
        self.job = job
        self.mos: MemOS = scheduler.mos
        self.policy: SchedulerPolicy = scheduler.policy
        self.queue = scheduler.queue
        self.lease_lost = threading.Event()
        self._cube: MemCube | None = None
        self.notes: list[str] = []

    @property
    def payload(self) -> dict[str, Any]:
        return self.job.payload

    @property
    def actor(self) -> str:
        return f"scheduler:{self.job.type}"

    @property
    def cube(self) -> MemCube:
        if self.job.cube_id is None:
            raise JobFailed(f"job {self.job.type!r} needs a cube")
        if self._cube is None:
            try:
                self._cube = self.mos.get_cube(self.job.cube_id)
            except NotFoundError as exc:
                raise JobFailed(f"cube {self.job.cube_id!r} no longer exists") from exc
        return self._cube

    def check(self) -> None:
        if self.lease_lost.is_set():
            raise LeaseLost(f"lost the lease of job {self.job.id}")

    def note(self, message: str) -> None:
        """A line for the job's result and the log (why something was skipped)."""
        self.notes.append(message)
        log.info("job %s (%s): %s", self.job.id, self.job.type, message)


class Scheduler:
    """Runs the jobs of one store (see the module docstring)."""

    def __init__(self, mos: MemOS, *, policy: SchedulerPolicy | Mapping[str, Any] | None = None,
                 queue: SQLJobQueue | None = None, worker_id: str | None = None) -> None:
        from memkern.scheduler import handlers  # noqa: F401 - registers the built-in job types

        self.mos = mos
        self.policy = policy if isinstance(policy, SchedulerPolicy) else SchedulerPolicy.model_validate(policy or {})
        self.queue = queue if queue is not None else queue_for(mos._store)
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._last_maintenance = 0.0
        self._rng = random.Random()
        registry.load_plugins()

    # -- enqueueing ----------------------------------------------------------------------------------
    def _cube_id(self, cube: Any) -> str | None:
        if cube is None:
            return None
        if hasattr(cube, "info"):
            return cube.id
        return self.mos._store.get_cube(str(cube)).id

    def enqueue(self, job_type: str, cube: Any = None, payload: Mapping[str, Any] | None = None, *,
                dedup_key: str | None = None, delay_s: float = 0.0, max_attempts: int | None = None) -> Job:
        """Queue a job for ``cube`` (a ``MemCube``, name or id; None for a job of no cube).
        Returns at once; a job with the ``dedup_key`` of a pending one is that job."""
        if registry.job_handler(job_type) is None:
            raise InvalidInputError(f"unknown job type {job_type!r}; known: {', '.join(registry.job_types())}")
        return self.queue.enqueue(job_type, self._cube_id(cube), dict(payload or {}), dedup_key=dedup_key,
                                  delay_s=delay_s, max_attempts=max_attempts or self.policy.max_attempts)

    def enqueue_maintenance(self, cube: Any = None) -> list[Job]:
        """Queue organize, promote and demote for ``cube`` (or every cube); at most one pending each."""
        ids = [self._cube_id(cube)] if cube is not None else [info.id for info in self.mos._store.list_cubes()]
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
        ctx = JobContext(self, job)
        beating = threading.Event()
        heart = threading.Thread(target=self._heartbeat, args=(job, token, ctx, beating), daemon=True,
                                 name=f"memkern-heartbeat-{job.id[:8]}")
        heart.start()
        outcome = "done"
        try:
            handler = registry.job_handler(job.type)
            if handler is None:
                raise JobFailed(f"no handler for job type {job.type!r} in this worker")
            result = handler(ctx) or {}
            if ctx.notes:
                result = {**result, "notes": ctx.notes}
            beating.set()
            heart.join()
            if not self.queue.complete(job.id, token, result):
                outcome = "lease lost"
                log.warning("job %s finished after its lease was lost; its completion was not recorded", job.id)
        except (JobFailed, InvalidInputError, PermissionDeniedError, LeaseLost) as exc:
            beating.set()
            heart.join()
            outcome = "failed"
            status = self.queue.fail(job.id, token, f"{type(exc).__name__}: {exc}", None)
            log.warning("job %s (%s) failed for good (%s): %s", job.id, job.type, status, exc)
        except Exception as exc:  # noqa: BLE001 - any other failure is retried with backoff
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

    # -- reporting -----------------------------------------------------------------------------------
    def status(self, cube: Any = None) -> SchedulerStatus:
        cube_id = self._cube_id(cube)
        by_type = self.queue.counts(cube_id)
        counts: dict[str, int] = {s.value: 0 for s in JobStatus}
        for per_status in by_type.values():
            for status, n in per_status.items():
                counts[status] = counts.get(status, 0) + n
        return SchedulerStatus(
            cube_id=cube_id, counts=counts, by_type=by_type,
            oldest_pending_at=epoch_to_dt(self.queue.oldest_pending(cube_id)),
            running=self.queue.list(cube_id, JobStatus.RUNNING, limit=50),
            dead=self.queue.list(cube_id, JobStatus.DEAD, limit=50),
            hooks=registry.hook_names(),
        )

    def jobs(self, cube: Any = None, status: JobStatus | str | None = None, job_type: str | None = None,
             limit: int = 100) -> list[Job]:
        return self.queue.list(self._cube_id(cube), JobStatus(status) if status else None, job_type, limit)

    def get(self, job_id: str) -> Job:
        return self.queue.get(job_id)

    def retry(self, job_id: str) -> Job:
        return self.queue.retry(job_id)

    def cancel(self, job_id: str) -> Job:
        return self.queue.cancel(job_id)
