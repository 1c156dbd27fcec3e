"""The scheduler's records: jobs, their status, the policy that drives the handlers."""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from memkern.models.memory import MemoryKind


class JobStatus(str, Enum):
    #: Waiting for ``run_at`` (first run, or a retry after a backoff).
    PENDING = "pending"
    #: Leased by a worker until ``lease_until``; claimable again once the lease expires.
    RUNNING = "running"
    DONE = "done"
    #: Dead-lettered: out of attempts, or failed for good. ``retry`` brings it back.
    DEAD = "dead"
    CANCELLED = "cancelled"


#: Statuses that keep a lane (a cube's queue) busy: later jobs of the cube wait behind them.
OPEN_STATUSES = (JobStatus.PENDING, JobStatus.RUNNING)


def epoch_to_dt(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, tz=timezone.utc) if value is not None else None


class Job(BaseModel):
    """One job of the durable queue."""

    id: str
    seq: int
    type: str
    cube_id: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
    status: JobStatus = JobStatus.PENDING
    attempts: int = 0
    max_attempts: int = 5
    run_at: datetime
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    lease_owner: str | None = None
    lease_until: datetime | None = None
    heartbeat_at: datetime | None = None
    dedup_key: str | None = None
    last_error: str | None = None
    result: dict[str, Any] | None = None
    #: Fencing token of the current lease: only its holder may complete, fail or extend it.
    lease_token: str | None = Field(default=None, exclude=True, repr=False)


class SchedulerPolicy(BaseModel):
    """How the scheduler runs jobs and what its maintenance handlers decide (docs/scheduler.md)."""

    model_config = ConfigDict(extra="forbid")

    # -- running jobs ----------------------------------------------------------------------------
    #: A claimed job belongs to its worker for this long; heartbeats extend it.
    lease_s: float = Field(30.0, gt=0)
    #: Heartbeat interval while a handler runs (default: a third of the lease).
    heartbeat_s: float | None = Field(None, gt=0)
    #: Idle wait between claims when the queue is empty.
    poll_s: float = Field(0.5, gt=0)
    #: Worker threads of ``Scheduler.start`` and ``memkern scheduler run``.
    workers: int = Field(1, ge=1, le=64)
    #: Attempts before a job is dead-lettered (a lost lease counts as an attempt).
    max_attempts: int = Field(5, ge=1)
    #: Retry backoff: ``min(max, base * factor ** (attempt - 1))``, times ``1 - jitter * U(0, 1)``.
    backoff_base_s: float = Field(2.0, ge=0)
    backoff_factor: float = Field(2.0, ge=1)
    backoff_max_s: float = Field(600.0, ge=0)
    backoff_jitter: float = Field(0.2, ge=0, le=1)
    #: If set, a running worker enqueues organize/promote/demote for every cube this often.
    maintenance_interval_s: float | None = Field(None, gt=0)
    #: Done and cancelled jobs older than this are purged by maintenance (dead ones are kept).
    keep_finished_s: float = Field(7 * 86_400.0, ge=0)

    # -- forgetting (demote) -----------------------------------------------------------------------
    #: Strength of a never-recalled memory of importance 0.5, in days: R = 1/e after this idle time.
    forgetting_s0_days: float = Field(30.0, gt=0)
    #: Each recall adds this fraction of S0 to the strength (S = S0 * (1 + growth * n) * w).
    forgetting_growth: float = Field(1.0, ge=0)
    #: Importance weight w = 1 + importance_weight * (importance - 0.5).
    importance_weight: float = Field(1.0, ge=0, le=2)
    #: Memories whose retention falls below this are archived (never deleted).
    demote_threshold: float = Field(0.05, gt=0, lt=1)
    #: Kinds the forgetting curve may archive (None: every kind).
    demote_kinds: list[MemoryKind] | None = None
    demote_batch: int = Field(1_000, ge=1)

    # -- promotion to activation memory (KV cache) -------------------------------------------------
    promote_min_access: int = Field(5, ge=1)
    #: Only memories read within this many days are hot.
    promote_window_days: float = Field(7.0, gt=0)
    promote_top_n: int = Field(32, ge=1)
    promote_kinds: list[MemoryKind] = Field(
        default_factory=lambda: [MemoryKind.FACT, MemoryKind.PREFERENCE, MemoryKind.EVENT, MemoryKind.SUMMARY])

    # -- distillation to parametric memory (LoRA) --------------------------------------------------
    distil_min_access: int = Field(20, ge=1)
    distil_min_age_days: float = Field(30.0, ge=0)
    distil_top_n: int = Field(256, ge=1)

    # -- organize ----------------------------------------------------------------------------------
    #: Facts at least this similar (cosine), or with the same normalised text, are fused.
    dedup_cosine: float = Field(0.95, gt=0, le=1)
    #: Sessions with at least this many turns get a (zero-LLM) summary memory.
    summarize_min_turns: int = Field(4, ge=1)
    summary_keywords: int = Field(8, ge=1)
    summary_lines: int = Field(3, ge=1)

    def heartbeat_interval(self) -> float:
        return self.heartbeat_s if self.heartbeat_s is not None else max(0.05, self.lease_s / 3)

    def backoff(self, attempt: int, jitter: float = 0.0) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``jitter`` is U(0, 1))."""
        delay = min(self.backoff_max_s, self.backoff_base_s * self.backoff_factor ** max(0, attempt - 1))
        return delay * (1.0 - self.backoff_jitter * jitter)


class SchedulerStatus(BaseModel):
    """What the queue holds: counts by status and by type, the oldest waiting job, dead letters."""

    cube_id: str | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    by_type: dict[str, dict[str, int]] = Field(default_factory=dict)
    oldest_pending_at: datetime | None = None
    running: list[Job] = Field(default_factory=list)
    dead: list[Job] = Field(default_factory=list)
    #: Handlers registered for the extension points (promote, distil, rebuild).
    hooks: dict[str, list[str]] = Field(default_factory=dict)
