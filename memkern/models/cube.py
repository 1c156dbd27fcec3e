"""A cube's record, and the governance policy it carries in its metadata."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from memkern.models.memory import utcnow


class CubeInfo(BaseModel):
    """A MemCube's metadata: who owns it, what it holds and in which format."""

    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    owner: str
    description: str = ""
    schema_version: int = 1
    created_at: datetime = Field(default_factory=utcnow)
    embedder: str
    dim: int
    metadata: dict[str, Any] = Field(default_factory=dict)


class CubePolicy(BaseModel):
    """The governance policy a cube carries in its metadata (top-level keys)."""

    model_config = ConfigDict(extra="forbid")

    #: Archive active memories not accessed (or written) for this many days.
    archive_after_days: float | None = Field(default=None, gt=0)
    #: Delete memories not accessed (or written) for this many days.
    forget_after_days: float | None = Field(default=None, gt=0)
    #: Replace detected PII by placeholders before storing.
    redact_pii: bool = False
    #: Quarantine memories that carry instructions aimed at the model (default on).
    guard: bool = True

    @classmethod
    def of(cls, metadata: dict[str, Any]) -> CubePolicy:
        """The policy a cube's metadata holds. A malformed key (written by hand, or by an old
        version) takes its safe value: the guard and PII redaction on, no retention; the other
        keys keep theirs, so that one bad retention number never turns PII redaction off."""
        values: dict[str, Any] = {}
        for key in cls.model_fields:
            if key in metadata:
                try:
                    cls.model_validate({key: metadata[key]})
                    values[key] = metadata[key]
                except ValueError:
                    values[key] = _SAFE_WHEN_MALFORMED.get(key)
        return cls.model_validate(values)


#: What a malformed policy key means: the guard and redaction on, retention off (``None``).
_SAFE_WHEN_MALFORMED: dict[str, Any] = {"redact_pii": True, "guard": True}
