"""The scheduler's queue as operations: queue a job, see the queue, retry a dead job.

Running jobs is not an operation: a worker (``memkern.scheduler``, ``memkern scheduler run``)
claims them and runs each through the dispatcher as the user who queued it.
"""

from __future__ import annotations

from typing import Any

from memkern.errors import InvalidInputError
from memkern.models import Job, JobStatus, SchedulerPolicy, SchedulerStatus, epoch_to_dt
from memkern.ops.context import OpContext

#: Attempts before a job is dead-lettered, unless its worker's policy says otherwise.
DEFAULT_ATTEMPTS = SchedulerPolicy().max_attempts


def enqueue_job(ctx: OpContext, type: str, payload: dict[str, Any] | None = None,
                dedup_key: str | None = None, delay_s: float = 0.0) -> Job:
    """Queue a job of ``type`` for ``cube`` (or for the store); returns at once. A job with the
    ``dedup_key`` of a pending one is that job. It will run as the caller."""
    known = ctx.kernel.job_registry.job_types()
    if type not in known:
        raise InvalidInputError(f"unknown job type {type!r}; known: {', '.join(known)}")
    body = {**(payload or {}), "as_user": ctx.user.id if ctx.user is not None else None}
    return ctx.kernel.jobs.enqueue(type, ctx.cube_info.id if ctx.cube_info else None, body, dedup_key=dedup_key,
                                   delay_s=delay_s, max_attempts=DEFAULT_ATTEMPTS)


def scheduler_status(ctx: OpContext) -> SchedulerStatus:
    """What the queue holds for ``cube`` (or the store): counts by status and type, dead letters."""
    queue = ctx.kernel.jobs
    cube_id = ctx.cube_info.id if ctx.cube_info else None
    by_type = queue.counts(cube_id)
    counts: dict[str, int] = {s.value: 0 for s in JobStatus}
    for per_status in by_type.values():
        for status, n in per_status.items():
            counts[status] = counts.get(status, 0) + n
    return SchedulerStatus(
        cube_id=cube_id, counts=counts, by_type=by_type, oldest_pending_at=epoch_to_dt(queue.oldest_pending(cube_id)),
        running=queue.list(cube_id, JobStatus.RUNNING, limit=50), dead=queue.list(cube_id, JobStatus.DEAD, limit=50),
        hooks=ctx.kernel.job_registry.hook_names())


def retry_job(ctx: OpContext, job_id: str) -> Job:
    """Bring a dead (or cancelled) job back to the queue with fresh attempts."""
    return ctx.kernel.jobs.retry(job_id)
