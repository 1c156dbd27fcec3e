"""memkern: a memory operating system for LLMs and agents.

The public API is what this module exports; everything else may change between
releases.
"""

from memkern.cube.cube import MemCube
from memkern.errors import (
    AuthenticationError,
    ConflictError,
    CubeFileError,
    EmbedderError,
    InvalidInputError,
    MemkernError,
    NotFoundError,
    PermissionDeniedError,
    StoreError,
)
from memkern.models import (
    AddResult,
    CubeInfo,
    Filters,
    Hit,
    LifecycleState,
    MemoryItem,
    MemoryKind,
    Message,
    Operation,
    Provenance,
    ScoreParts,
)
from memkern.mos import MemOS
from memkern.retrieval.config import RECIPES, SearchConfig

__version__ = "0.1.0"

__all__ = [
    "RECIPES", "AddResult", "AuthenticationError", "PermissionDeniedError", "ConflictError", "CubeFileError", "CubeInfo", "EmbedderError", "Filters", "Hit",
    "InvalidInputError", "LifecycleState", "MemCube", "MemOS", "MemkernError", "MemoryItem", "MemoryKind",
    "Message", "NotFoundError", "Operation", "Provenance", "ScoreParts", "SearchConfig", "StoreError",
    "__version__",
]
