"""Typed records that cross memkern's boundaries: memories, cubes, results, governance, jobs.

Plain Pydantic models with no behaviour beyond their own validation, importable by every
layer (the store included) without importing anything else of memkern.
"""

from memkern.models.cube import CubeInfo, CubePolicy
from memkern.models.governance import (
    ApiKey,
    ApiKeyInfo,
    AuditEntry,
    AuditResult,
    Grant,
    Permission,
    RetentionReport,
    Role,
    User,
)
from memkern.models.jobs import Job, JobStatus, SchedulerPolicy, SchedulerStatus, epoch_to_dt
from memkern.models.memory import (
    MAX_TEXT_CHARS,
    Filters,
    Hit,
    LifecycleState,
    LinkKind,
    MemoryItem,
    MemoryKind,
    MemoryLink,
    Message,
    Operation,
    ProfileValue,
    Provenance,
    Restatement,
    ScoreParts,
    SlotNote,
    as_utc,
    parse_version_id,
    utcnow,
)
from memkern.models.results import (
    ActivationReport,
    AdapterReport,
    AddResult,
    ChatAnswer,
    ChatUsage,
    ComposeReport,
    CubeFile,
    CubeStats,
    Deleted,
    ExtractionBatch,
    ExtractionReport,
    FuseGroup,
    FuseReport,
    MemoryPage,
    MigrateResult,
    ParametricAnswer,
    TimelineNode,
    UpdateDecision,
)

__all__ = [
    "MAX_TEXT_CHARS", "ActivationReport", "AdapterReport", "ParametricAnswer", "AddResult", "ApiKey", "ApiKeyInfo", "AuditEntry", "AuditResult", "ChatAnswer", "ChatUsage", "ComposeReport", "CubeFile", "CubeStats", "Deleted", "CubeInfo",
    "CubePolicy", "ExtractionBatch", "ExtractionReport", "FuseGroup", "FuseReport", "MemoryPage", "MigrateResult", "Filters", "Grant", "Hit", "Job", "JobStatus",
    "LifecycleState", "LinkKind", "MemoryItem", "MemoryKind", "MemoryLink", "Message", "Operation", "Permission", "Provenance",
    "ProfileValue", "Restatement", "RetentionReport", "Role", "SchedulerPolicy", "SchedulerStatus", "ScoreParts", "SlotNote", "TimelineNode", "UpdateDecision", "User",
    "as_utc", "epoch_to_dt", "parse_version_id", "utcnow",
]
