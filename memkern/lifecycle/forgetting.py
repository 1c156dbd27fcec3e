"""A forgetting curve in the spirit of MemoryBank (Zhong et al., 2023).

Retention decays exponentially with the time since a memory was last recalled::

    R = exp(-t / S)

``t`` is the time since the last access (or since the memory was recorded, if it was
never read), ``S`` the memory's strength. Every recall makes the memory stronger (and
resets ``t``): ``S = S0 * (1 + growth * access_count) * w``, where the importance weight
``w = 1 + importance_weight * (importance - 0.5)`` makes important memories fade slower
(importance 0.5 is neutral). With the defaults (S0 = 30 days, growth 1) a memory never
read falls to R = 0.05 after ~90 days, one read 5 times after ~540 days.

Memories whose retention falls below a threshold are *demoted*: archived, never deleted
(``memkern.lifecycle.transitions.archive``; ``restore`` brings them back). Everything
here is a pure function of the memory and ``now`` except ``plan_demotions``, which reads
the cube.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from memkern.models import LifecycleState, MemoryItem, MemoryKind, as_utc, utcnow

DAY_S = 86_400.0


@dataclass(frozen=True)
class CurveParams:
    #: Strength of a never-read memory of neutral importance, in days.
    s0_days: float = 30.0
    #: Fraction of S0 each recall adds.
    growth: float = 1.0
    #: How much importance stretches or shrinks the strength (0: not at all).
    importance_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.s0_days <= 0:
            raise ValueError("s0_days must be positive")
        if self.growth < 0 or self.importance_weight < 0:
            raise ValueError("growth and importance_weight must not be negative")


def strength_days(access_count: int, importance: float = 0.5, params: CurveParams = CurveParams()) -> float:
    """``S`` in days: ``S0 * (1 + growth * n) * (1 + importance_weight * (importance - 0.5))``."""
    weight = max(0.05, 1.0 + params.importance_weight * (min(1.0, max(0.0, importance)) - 0.5))
    return params.s0_days * (1.0 + params.growth * max(0, access_count)) * weight


def retention(elapsed_days: float, strength: float) -> float:
    """``exp(-t / S)``; a negative elapsed time (clock skew) counts as zero."""
    if strength <= 0:
        raise ValueError("strength must be positive")
    return math.exp(-max(0.0, elapsed_days) / strength)


def reinforce(strength: float, factor: float = 2.0) -> float:
    """The multiplicative alternative (``S *= factor`` per recall), for callers who keep S."""
    if factor < 1:
        raise ValueError("a reinforcement factor below 1 would weaken the memory")
    return strength * factor


def days_until(threshold: float, strength: float) -> float:
    """Idle days after which retention falls to ``threshold``: ``-S * ln(threshold)``."""
    if not 0 < threshold < 1:
        raise ValueError("threshold must be between 0 and 1")
    return -strength * math.log(threshold)


def last_touch(item: MemoryItem) -> datetime:
    """When the memory was last recalled, or else written."""
    return as_utc(item.last_accessed_at or item.recorded_at)


@dataclass(frozen=True)
class Retention:
    memory_id: str
    retention: float
    elapsed_days: float
    strength_days: float

    def explain(self, threshold: float) -> str:
        return (f"forgetting curve: R={self.retention:.3f} < {threshold:g} "
                f"(idle {self.elapsed_days:.1f}d, strength {self.strength_days:.1f}d)")


def memory_retention(item: MemoryItem, now: datetime, params: CurveParams = CurveParams()) -> Retention:
    elapsed = (as_utc(now) - last_touch(item)).total_seconds() / DAY_S
    strength = strength_days(item.access_count, item.importance, params)
    return Retention(item.id, retention(elapsed, strength), elapsed, strength)


def demotions(items: Iterable[MemoryItem], now: datetime, threshold: float,
              params: CurveParams = CurveParams(), kinds: Sequence[MemoryKind] | None = None) -> list[Retention]:
    """Active memories (of ``kinds``) whose retention is below ``threshold``, weakest first."""
    out = []
    for item in items:
        if item.state is not LifecycleState.ACTIVE or (kinds is not None and item.kind not in kinds):
            continue
        found = memory_retention(item, now, params)
        if found.retention < threshold:
            out.append(found)
    out.sort(key=lambda r: (r.retention, r.memory_id))
    return out


def plan_demotions(items: Iterable[MemoryItem], now: datetime | None = None, threshold: float = 0.05, *,
                   params: CurveParams = CurveParams(), kinds: Sequence[MemoryKind] | None = None,
                   limit: int | None = None) -> list[tuple[str, float]]:
    """``[(memory id, retention)]`` of the memories to archive, weakest first (``items`` read
    from the store directly, so that planning counts as no access)."""
    found = demotions(items, as_utc(now) or utcnow(), threshold, params, kinds)
    if limit is not None:
        found = found[:limit]
    return [(r.memory_id, r.retention) for r in found]
