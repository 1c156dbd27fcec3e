"""The LLM protocol: what extraction, update decisions and chat need from a model.

Two back ends implement it: any OpenAI-compatible HTTP endpoint (``http.py``) and a
small local model run in-process (``local.py``, optional extra ``memkern[local]``).
Every call is counted per operation, so that ingestion cost is measured, not guessed.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel


class LLMResponse(BaseModel):
    """One completion: its text and what it cost."""

    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: True when the answer came from the on-disk call cache (no model was run).
    cached: bool = False


@dataclass
class OperationUsage:
    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failures: int = 0


@dataclass
class UsageLedger:
    """Calls and tokens per operation ("extract", "decide", "chat", "judge", ...)."""

    by_operation: dict[str, OperationUsage] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, operation: str, response: LLMResponse | None) -> None:
        with self._lock:
            usage = self.by_operation.setdefault(operation, OperationUsage())
            if response is None:
                usage.failures += 1
                return
            usage.calls += 1
            usage.cached_calls += int(response.cached)
            usage.prompt_tokens += response.prompt_tokens
            usage.completion_tokens += response.completion_tokens

    def as_dict(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {name: vars(usage).copy() for name, usage in self.by_operation.items()}


class LLM(Protocol):
    """A chat model. ``complete`` raises ``memkern.errors.LLMError`` when it cannot answer."""

    #: Model identifier, recorded with everything the model produced.
    name: str
    usage: UsageLedger

    def complete(self, messages: Sequence[Mapping[str, str]], *, json_schema: Mapping[str, Any] | None = None,
                 max_tokens: int = 512, temperature: float = 0.0, operation: str = "chat") -> LLMResponse:
        """Answer ``messages`` (OpenAI chat format). With ``json_schema``, ask the back end to
        constrain the output to it where it can; the caller still validates the text."""
        ...
