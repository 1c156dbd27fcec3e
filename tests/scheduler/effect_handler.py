"""A job type for the crash tests, shared by the test process and the worker subprocess.

``test.effect`` writes one memory whose text names the job: the store's dedup keys make a
second write of it a no-op, so the effect happens once however often the job runs. On its
first attempt it can stall (``mode`` = ``before``: before the effect, ``after``: after it)
so that the test can SIGKILL the worker while it holds the lease.
"""

from __future__ import annotations

import time
from pathlib import Path

from memkern.models import MemoryKind
from memkern.ops import memories


def effect(ctx):
    mode = ctx.payload.get("mode")
    ready = Path(ctx.payload["ready"])
    with open(ready.with_suffix(".attempts"), "a") as log:
        log.write(f"{ctx.job.attempts}\n")
    if mode == "before" and ctx.job.attempts == 1:
        ready.write_text("stalled")
        time.sleep(600)
    memories.add(ctx.op, text=f"effect of job {ctx.job.id}", kind=MemoryKind.DOCUMENT, infer=False)
    if mode == "after" and ctx.job.attempts == 1:
        ready.write_text("stalled")
        time.sleep(600)
    return {"attempt": ctx.job.attempts}


def register(registry):
    """The plugin entry point (``$MEMKERN_SCHEDULER_PLUGINS=scheduler.effect_handler``)."""
    registry.register_job_type("test.effect", effect, replace=True)
