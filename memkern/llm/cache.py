"""An on-disk cache of LLM calls, so that a benchmark (or an ingestion) can be replayed exactly.

A call is identified by the SHA-256 of everything that determines its answer at temperature 0:
the model, the messages, the JSON schema, ``max_tokens`` and ``temperature``. Each answer is one
small JSON file under a two-level fan-out (``ab/cd/abcd….json``) so that no directory grows to
hundreds of thousands of entries, and each is written to a temporary file and ``os.replace``-d
into place, so that a crash or a concurrent writer never leaves half an entry behind.

The file also stores the request it answers: the cache can be audited (and diffed between two
runs) with nothing but ``cat``, and an entry whose request does not match its name is reported
instead of being served. Unreadable entries raise ``LLMError`` rather than being silently
re-computed: a replay that quietly calls the model again is not a replay.

Both back ends use it with the same positional order:
``cache.get(model, messages, json_schema, max_tokens, temperature)`` and
``cache.put(model, messages, json_schema, max_tokens, temperature, response)``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from memkern.errors import InvalidInputError, LLMError, LLMOutputError
from memkern.files import atomic_file
from memkern.llm.base import LLMResponse

__all__ = ["CallCache"]

_FORMAT = "memkern-llm-call-cache"
_VERSION = 1


class _CachedAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: Set when JSON was asked for and the answer is not: a replay raises it again, as the call did.
    json_error: str | None = None


class _Entry(BaseModel):
    """One file of the cache, validated when read back."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["memkern-llm-call-cache"]
    version: Literal[1]
    key: str
    request: dict[str, Any]
    response: _CachedAnswer


def _request(model: str, messages: Sequence[Mapping[str, Any]], json_schema: Mapping[str, Any] | None,
             max_tokens: int, temperature: float) -> dict[str, Any]:
    """The canonical form of a call. ``temperature`` is a float and ``max_tokens`` an int so that
    ``0`` and ``0.0`` (or ``512`` and ``512.0``) name the same call."""
    if not isinstance(model, str) or not model:
        raise InvalidInputError(f"the cache needs a model name, got {model!r}")
    return {
        "model": model,
        "messages": [dict(message) for message in messages],
        "json_schema": dict(json_schema) if json_schema is not None else None,
        "max_tokens": int(max_tokens),
        "temperature": float(temperature),
    }


def _canonical(request: Mapping[str, Any]) -> str:
    try:
        return json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"an LLM call must be JSON-serialisable to be cached: {exc}") from exc


class CallCache:
    """LLM answers on disk, keyed by SHA-256 of (model, messages, json_schema, max_tokens, temperature).

    A hit is returned as an ``LLMResponse`` with ``cached=True`` and the token counts of the call
    that produced it, so that a replayed benchmark reports the same cost as the original run
    (the ``UsageLedger`` counts it under ``cached_calls``). An answer that was not the JSON asked for
    is cached with its error and raised again on a hit (``LLMOutputError`` carrying the text and its
    cost), so that a replay repairs and retries exactly as the original run did. Calls that got no
    answer at all are never cached.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LLMError(f"cannot create the LLM call cache directory {self.directory}: {exc}") from exc
        if not self.directory.is_dir():
            raise LLMError(f"the LLM call cache {self.directory} is not a directory")

    def __repr__(self) -> str:
        return f"CallCache({str(self.directory)!r})"

    @staticmethod
    def key(model: str, messages: Sequence[Mapping[str, Any]], json_schema: Mapping[str, Any] | None = None,
            max_tokens: int = 512, temperature: float = 0.0) -> str:
        """The hex SHA-256 naming this call."""
        request = _request(model, messages, json_schema, max_tokens, temperature)
        return hashlib.sha256(_canonical(request).encode("utf-8")).hexdigest()

    def path_for(self, key: str) -> Path:
        """Where the entry ``key`` lives: ``directory/ab/cd/abcd….json``."""
        return self.directory / key[:2] / key[2:4] / f"{key}.json"

    def get(self, model: str, messages: Sequence[Mapping[str, Any]], json_schema: Mapping[str, Any] | None = None,
            max_tokens: int = 512, temperature: float = 0.0) -> LLMResponse | None:
        """The cached answer to this call, or None. Raises ``LLMError`` if the entry exists but is
        unreadable, corrupt or answers another request (delete the file to recompute it)."""
        request = _request(model, messages, json_schema, max_tokens, temperature)
        canonical = _canonical(request)
        key = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
        path = self.path_for(key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise LLMError(f"cannot read LLM call cache entry {path}: {exc}") from exc
        try:
            entry = _Entry.model_validate_json(raw)
        except ValidationError as exc:
            raise LLMError(f"LLM call cache entry {path} is corrupt ({exc.error_count()} problems, first: "
                           f"{exc.errors()[0]['msg']}); delete it to recompute the call") from exc
        if entry.key != key or _canonical(entry.request) != canonical:
            raise LLMError(f"LLM call cache entry {path} does not hold the request its name says; "
                           f"delete it to recompute the call")
        response = LLMResponse(text=entry.response.text, model=entry.response.model,
                               prompt_tokens=entry.response.prompt_tokens,
                               completion_tokens=entry.response.completion_tokens, cached=True)
        if entry.response.json_error is not None:
            raise LLMOutputError(entry.response.json_error, content=response.text, response=response)
        return response

    def put(self, model: str, messages: Sequence[Mapping[str, Any]], json_schema: Mapping[str, Any] | None,
            max_tokens: int, temperature: float, response: LLMResponse, json_error: str | None = None) -> Path:
        """Store ``response`` as the answer to this call (atomically) and return the file's path;
        ``json_error`` marks an answer that was refused as not JSON.

        Raises ``LLMError`` if it cannot be written: a cache that silently stops recording would
        make the next replay call the model again without anyone noticing."""
        request = _request(model, messages, json_schema, max_tokens, temperature)
        canonical = _canonical(request)
        key = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
        entry = _Entry(format=_FORMAT, version=_VERSION, key=key, request=json.loads(canonical),
                       response=_CachedAnswer(text=response.text, model=response.model,
                                              prompt_tokens=response.prompt_tokens,
                                              completion_tokens=response.completion_tokens, json_error=json_error))
        data = json.dumps(entry.model_dump(mode="json"), ensure_ascii=False, indent=1, sort_keys=True).encode("utf-8")
        path = self.path_for(key)
        try:
            with atomic_file(path) as handle:
                handle.write(data)
        except OSError as exc:
            raise LLMError(f"cannot write LLM call cache entry {path}: {exc}") from exc
        return path

    def __len__(self) -> int:
        """Number of entries (walks the directory; meant for tests and reports, not hot paths)."""
        return sum(1 for _ in self.directory.glob("??/??/*.json"))
