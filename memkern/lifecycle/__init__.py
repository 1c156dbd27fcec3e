"""Memory lifecycle: explicit transitions with reasons, markers, the forgetting curve."""

from memkern.lifecycle.forgetting import CurveParams, memory_retention, plan_demotions, retention, strength_days
from memkern.lifecycle.transitions import (
    ACTIVATED,
    DISTILLED,
    MARKERS,
    archive,
    delete,
    has_marker,
    mark,
    markers,
    release,
    restore,
    unmark,
)

__all__ = ["ACTIVATED", "DISTILLED", "MARKERS", "CurveParams", "archive", "delete", "has_marker", "mark",
           "markers", "memory_retention", "plan_demotions", "release", "restore", "retention", "strength_days",
           "unmark"]
