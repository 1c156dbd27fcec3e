"""The memory scheduler: the workers that run memory jobs from the store's durable queue.

See docs/scheduler.md. ``mos.scheduler`` (a ``Scheduler``) has ``run_once``, ``run``,
``start``/``stop``, ``status`` and ``wait_quiescent``; jobs are queued with the
``enqueue_job`` operation (``mos.enqueue_job``), and run as the user who queued them.
Plugins register job types and hooks into the kernel's registry (``memkern.jobs``).
"""

from memkern.models import Job, JobStatus, SchedulerPolicy, SchedulerStatus
from memkern.scheduler.scheduler import JobContext, JobFailed, LeaseLost, Scheduler

__all__ = ["Job", "JobContext", "JobFailed", "JobStatus", "LeaseLost", "Scheduler", "SchedulerPolicy",
           "SchedulerStatus"]
