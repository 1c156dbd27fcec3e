"""Language models for extraction, update decisions and chat.

Which one memkern uses is chosen by ``MEMKERN_LLM``: unset or ``none`` for no model, ``openai``
for any OpenAI-compatible endpoint described by ``MEMKERN_LLM_BASE_URL`` (including ``/v1``),
``MEMKERN_LLM_MODEL`` and ``MEMKERN_LLM_API_KEY`` (or ``OPENAI_API_KEY``; optional, since local
servers rarely need one), or ``local`` for the small in-process model (extra ``memkern[local]``).
``MEMKERN_LLM_CACHE`` names a directory where every call is cached for exact replay;
``MEMKERN_LLM_STRUCTURED`` and ``MEMKERN_LLM_TIMEOUT_S`` tune the HTTP back end.

Nothing here contacts a server at import or construction: a misconfiguration shows up as a
clear error from ``llm_from_env``, an unreachable server as an ``LLMError`` on the first call.
"""

from __future__ import annotations

import os

from memkern.errors import InvalidInputError, LLMError
from memkern.llm.base import LLM, LLMResponse, UsageLedger
from memkern.llm.cache import CallCache
from memkern.llm.http import STRUCTURED_MODES, OpenAICompatibleLLM

__all__ = ["LLM", "CallCache", "LLMResponse", "OpenAICompatibleLLM", "UsageLedger", "llm_from_env"]


#: What an operation that needs a model says when none is configured.
NO_LLM_MESSAGE = ("this needs an LLM: set MEMKERN_LLM=openai with MEMKERN_LLM_BASE_URL and MEMKERN_LLM_MODEL, "
                  "or MEMKERN_LLM=local (pip install 'memkern[local]'), or give MemOS(llm=...)")


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def llm_from_env() -> LLM | None:
    """The model the environment asks for, or None when it asks for none.

    Raises ``InvalidInputError`` for an incomplete or unknown configuration (naming the variable to
    set) and ``LLMError`` when the local back end cannot be imported or the cache cannot be created."""
    choice = (_env("MEMKERN_LLM") or "none").lower()
    if choice in ("none", "off"):
        return None
    cache_dir = _env("MEMKERN_LLM_CACHE")
    cache = CallCache(cache_dir) if cache_dir else None
    if choice == "openai":
        base_url, model = _env("MEMKERN_LLM_BASE_URL"), _env("MEMKERN_LLM_MODEL")
        missing = [name for name, value in (("MEMKERN_LLM_BASE_URL", base_url), ("MEMKERN_LLM_MODEL", model))
                   if value is None]
        if missing:
            raise InvalidInputError(
                f"MEMKERN_LLM=openai needs {' and '.join(missing)} (for example "
                f"MEMKERN_LLM_BASE_URL=http://localhost:11434/v1 MEMKERN_LLM_MODEL=qwen2.5:7b-instruct)")
        structured = (_env("MEMKERN_LLM_STRUCTURED") or "auto").lower()
        if structured not in STRUCTURED_MODES:
            raise InvalidInputError(f"MEMKERN_LLM_STRUCTURED must be one of {', '.join(STRUCTURED_MODES)}; "
                                    f"got {structured!r}")
        timeout = _env("MEMKERN_LLM_TIMEOUT_S")
        try:
            timeout_s = float(timeout) if timeout else 60.0
        except ValueError:
            timeout_s = -1.0
        if not timeout_s > 0:
            raise InvalidInputError(f"MEMKERN_LLM_TIMEOUT_S must be a positive number of seconds, got {timeout!r}")
        api_key = _env("MEMKERN_LLM_API_KEY") or _env("OPENAI_API_KEY")
        return OpenAICompatibleLLM(base_url, model, api_key=api_key, timeout_s=timeout_s,  # type: ignore[arg-type]
                                   cache=cache, structured=structured)
    if choice == "local":
        try:
            from memkern.llm.local import LocalLLM
        except ImportError as exc:
            raise LLMError(f"MEMKERN_LLM=local needs the optional extra: pip install 'memkern[local]' ({exc})") from exc
        return LocalLLM(cache=cache) if cache is not None else LocalLLM()
    raise InvalidInputError(f"unknown MEMKERN_LLM {choice!r}; use 'openai', 'local' or 'none'")
