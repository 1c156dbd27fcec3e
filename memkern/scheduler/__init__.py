"""The memory scheduler: a durable job queue and the workers that run memory jobs.

See docs/scheduler.md. The API: ``mos.scheduler`` (a ``Scheduler``) with ``enqueue``,
``run_once``, ``run``, ``start``/``stop``, ``status``, ``wait_quiescent``; other memory
modules plug in with ``register_hook("promote" | "distil" | "rebuild", fn)``.
"""

from memkern.models import Job, JobStatus, SchedulerPolicy, SchedulerStatus
from memkern.scheduler.registry import register_hook, register_job_type, unregister_hook, unregister_job_type
from memkern.scheduler.scheduler import JobContext, JobFailed, LeaseLost, Scheduler

__all__ = ["Job", "JobContext", "JobFailed", "JobStatus", "LeaseLost", "Scheduler", "SchedulerPolicy",
           "SchedulerStatus", "register_hook", "register_job_type", "unregister_hook", "unregister_job_type"]
