"""memkern: a memory operating system for LLMs and agents.

The public API is what this module exports; everything else may change between
releases. ``MemOS`` and ``MemCube`` are the Python surface of the operation table
(``memkern.api.table``); ``memkern.client.MemkernClient`` is the same surface over HTTP.
"""

from typing import TYPE_CHECKING, Any

from memkern.errors import (
    AuthenticationError,
    ConflictError,
    CubeFileError,
    EmbedderError,
    InvalidInputError,
    LLMError,
    LLMNotConfiguredError,
    LLMOutputError,
    LLMUnavailableError,
    MemkernError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    StoreError,
)
from memkern.models import (
    ActivationReport,
    AdapterReport,
    AddResult,
    ApiKeyInfo,
    AuditEntry,
    AuditResult,
    ChatAnswer,
    ChatUsage,
    ComposeReport,
    CubeFile,
    CubeInfo,
    CubePolicy,
    CubeStats,
    Deleted,
    ExtractionReport,
    Filters,
    FuseReport,
    Grant,
    Hit,
    Job,
    JobStatus,
    LifecycleState,
    MemoryItem,
    MemoryKind,
    MemoryPage,
    Message,
    MigrateResult,
    Operation,
    ParametricAnswer,
    Permission,
    ProfileValue,
    Provenance,
    RetentionReport,
    Role,
    SchedulerStatus,
    ScoreParts,
    UpdateDecision,
    User,
)
from memkern.retrieval.config import RECIPES, SearchConfig
from memkern.version import __version__

if TYPE_CHECKING:
    from memkern.mos import MemCube, MemOS

__all__ = [
    "RECIPES", "ActivationReport", "AdapterReport", "AddResult", "ApiKeyInfo", "AuditEntry", "AuditResult",
    "AuthenticationError", "ChatAnswer", "ChatUsage", "ComposeReport", "ConflictError", "CubeFile", "CubeFileError", "CubeStats",
    "CubeInfo", "CubePolicy", "Deleted", "EmbedderError", "ExtractionReport", "Filters", "FuseReport", "Grant", "Hit",
    "InvalidInputError", "Job", "JobStatus", "LLMError", "LLMNotConfiguredError", "LLMOutputError",
    "LLMUnavailableError", "LifecycleState", "MemCube", "MemOS", "MemkernError", "MemoryItem", "MemoryKind",
    "MemoryPage", "Message", "MigrateResult", "NotFoundError", "Operation", "ParametricAnswer", "PayloadTooLargeError",
    "Permission", "PermissionDeniedError", "ProfileValue", "Provenance", "RetentionReport", "Role", "SchedulerStatus", "ScoreParts",
    "SearchConfig", "StoreError", "UpdateDecision", "User", "__version__",
]


def __getattr__(name: str) -> Any:
    """``MemOS`` and ``MemCube``, imported on first use: they bring every operation with them, and a
    process that needs only the models, the errors or one module (the guard's helper process, a
    client) should not pay for that."""
    if name in ("MemOS", "MemCube"):
        from memkern import mos

        return getattr(mos, name)
    raise AttributeError(f"module 'memkern' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "MemOS", "MemCube"})
