"""Chat completions from any OpenAI-compatible ``/v1/chat/completions`` endpoint (OpenAI, Ollama,
vLLM, llama.cpp's server).

Servers differ most in structured output, so the client asks for the strongest form and steps
down when refused: a strict ``json_schema`` response format, then ``json_object`` (the schema goes
into the prompt), then plain prompting. A step down happens only on a 400 that mentions the
response format, at most once per step, is logged, and is remembered for the instance
(``structured_mode``) so that a whole ingestion does not pay for the same refusal on every call.

Transient failures (429, 408, 5xx, timeouts, dropped connections) are retried a bounded number of
times with exponential backoff and jitter, honouring ``Retry-After``. Everything else fails at once
with an ``LLMError`` that names the endpoint, the status and an excerpt of the body, because the
person reading it usually has to fix a URL, a model name or a key, not read a traceback.
"""

from __future__ import annotations

import email.utils
import functools
import json
import logging
import os
import random
import re
import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from memkern.errors import InvalidInputError, LLMError, LLMOutputError, LLMUnavailableError
from memkern.llm import deadline
from memkern.llm.base import LLMResponse, UsageLedger
from memkern.llm.cache import CallCache

__all__ = ["STRUCTURED_MODES", "OpenAICompatibleLLM"]

log = logging.getLogger(__name__)

#: Values of ``structured``: "auto" tries json_schema, then json_object, then prompting.
STRUCTURED_MODES = ("auto", "json_schema", "json_object", "prompt")
_FALLBACK = {"json_schema": "json_object", "json_object": "prompt"}
#: Words in an HTTP 400 that mean the server refused the structured-output request itself
#: (OpenAI, vLLM: "response_format"; llama.cpp builds: "json_schema", "grammar").
_FORMAT_WORDS = ("response_format", "json_schema", "grammar")
_RETRY_STATUS = frozenset({408, 429}) | frozenset(range(500, 600))
_EXCERPT = 300


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    content: str | None = None
    refusal: str | None = None


class _Choice(BaseModel):
    model_config = ConfigDict(extra="ignore")

    message: _Message | None = None
    finish_reason: str | None = None


class _Usage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class _Completion(BaseModel):
    """The part of an OpenAI chat-completion body memkern relies on; the rest is ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    choices: list[_Choice] = []
    usage: _Usage | None = None


@functools.lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    """One verifying TLS context per process: building it (loading the CA bundle) costs ~50 ms, which
    every client instance would otherwise pay again. SSL contexts are safe to share between threads."""
    return httpx.create_ssl_context()


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _EXCERPT else flat[:_EXCERPT] + "…"


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms``, or ``Retry-After`` as seconds or a date)."""
    millis = response.headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _check_messages(messages: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
        raise InvalidInputError("messages must be a non-empty list of {'role': ..., 'content': ...} mappings")
    chat: list[dict[str, str]] = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise InvalidInputError(f"messages[{index}] must be a mapping, got {type(message).__name__}")
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or not role:
            raise InvalidInputError(f"messages[{index}] needs a non-empty string 'role', got {role!r}")
        if not isinstance(content, str):
            raise InvalidInputError(f"messages[{index}] needs a string 'content', got {type(content).__name__}")
        chat.append(dict(message))
    return chat


def _schema_name(schema: Mapping[str, Any]) -> str:
    """OpenAI requires ``^[a-zA-Z0-9_-]{1,64}$``; the schema's title is the natural name."""
    title = schema.get("title")
    name = re.sub(r"[^a-zA-Z0-9_-]", "_", title)[:64] if isinstance(title, str) else ""
    return name or "response"


def _with_schema_instruction(messages: list[dict[str, str]], schema: Mapping[str, Any]) -> list[dict[str, str]]:
    """Put the schema into the prompt (for ``json_object`` and plain prompting).

    It is appended to the first system message rather than added as a second one, because several
    chat templates (llama.cpp, some vLLM models) reject a system message anywhere but first.
    ``json_object`` also requires the word "JSON" in the messages, which this provides."""
    instruction = ("Reply with a single JSON object and nothing else (no prose, no code fences). "
                   "It must conform to this JSON Schema:\n" + json.dumps(schema, ensure_ascii=False))
    out = [dict(message) for message in messages]
    if out and out[0].get("role") == "system":
        out[0]["content"] = f"{out[0]['content']}\n\n{instruction}" if out[0]["content"] else instruction
    else:
        out.insert(0, {"role": "system", "content": instruction})
    return out


_FENCE = re.compile(r"^```[A-Za-z0-9_-]*\s*\n?(.*?)\n?```$", re.DOTALL)


def _unfence(text: str) -> str:
    """Drop one surrounding Markdown code fence, which prompted models add despite being told not to."""
    stripped = text.strip()
    match = _FENCE.match(stripped)
    return match.group(1).strip() if match else stripped


class OpenAICompatibleLLM:
    """``memkern.llm.base.LLM`` over HTTP. ``base_url`` includes the version prefix, as with the OpenAI
    SDK: ``https://api.openai.com/v1``, ``http://localhost:11434/v1`` (Ollama), ``http://host:8000/v1``.

    ``structured``: "auto" (json_schema, stepping down to json_object then prompting when the server
    refuses), or one of "json_schema", "json_object", "prompt" to use exactly that and never step down.
    ``cache``: a ``CallCache`` (or a directory for one); answers found there are returned without a
    request. ``backoff_s``/``max_backoff_s`` shape the exponential backoff between retries and
    ``max_retry_after_s`` caps how long a ``Retry-After`` header may make one wait.
    """

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout_s: float = 60,
                 retries: int = 3, cache: CallCache | str | os.PathLike[str] | None = None,
                 structured: str = "auto", *, backoff_s: float = 0.5, max_backoff_s: float = 8.0,
                 max_retry_after_s: float = 60.0) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise InvalidInputError(f"base_url must be an http:// or https:// URL, got {base_url!r}")
        if not isinstance(model, str) or not model.strip():
            raise InvalidInputError(f"model must be a non-empty string, got {model!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise InvalidInputError(f"retries must be an integer >= 0, got {retries!r}")
        for label, value in (("timeout_s", timeout_s), ("backoff_s", backoff_s), ("max_backoff_s", max_backoff_s),
                             ("max_retry_after_s", max_retry_after_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or \
                    (label == "timeout_s" and value == 0):
                raise InvalidInputError(f"{label} must be a positive number of seconds, got {value!r}")
        if structured not in STRUCTURED_MODES:
            raise InvalidInputError(f"structured must be one of {', '.join(STRUCTURED_MODES)}; got {structured!r}")
        self.name = model
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.endpoint = f"{self.base_url}/chat/completions"
        self.usage = UsageLedger()
        self.cache = cache if isinstance(cache, CallCache) or cache is None else CallCache(cache)
        self.structured = structured
        #: The response format currently used for schema calls; "auto" may lower it, once per step.
        self.structured_mode = "json_schema" if structured == "auto" else structured
        self.timeout_s = float(timeout_s)
        self.retries = retries
        self._backoff_s = float(backoff_s)
        self._max_backoff_s = float(max_backoff_s)
        self._max_retry_after_s = float(max_retry_after_s)
        self._mode_lock = threading.Lock()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(headers=headers, timeout=self.timeout_s, verify=_ssl_context())

    def __repr__(self) -> str:
        return f"OpenAICompatibleLLM(base_url={self.base_url!r}, model={self.model!r})"

    def close(self) -> None:
        """Close pooled connections. The instance must not be used afterwards."""
        self._client.close()

    def __enter__(self) -> OpenAICompatibleLLM:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def complete(self, messages: Sequence[Mapping[str, str]], *, json_schema: Mapping[str, Any] | None = None,
                 max_tokens: int = 512, temperature: float = 0.0, operation: str = "chat") -> LLMResponse:
        """Answer ``messages``; with ``json_schema`` the returned text is guaranteed to parse as JSON
        (a surrounding code fence removed) but the caller still validates it against the schema.

        Raises ``InvalidInputError`` for malformed arguments (nothing is sent or recorded) and
        ``LLMError`` when no usable answer could be obtained (recorded as a failure of ``operation``)."""
        chat = _check_messages(messages)
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise InvalidInputError(f"max_tokens must be an integer >= 1, got {max_tokens!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
            raise InvalidInputError(f"temperature must be a number in [0, 2], got {temperature!r}")
        if json_schema is not None and not isinstance(json_schema, Mapping):
            raise InvalidInputError(f"json_schema must be a mapping, got {type(json_schema).__name__}")
        schema = dict(json_schema) if json_schema is not None else None
        try:
            if self.cache is not None:
                hit = self.cache.get(self.model, chat, schema, max_tokens, temperature)
                if hit is not None:
                    self.usage.record(operation, hit)
                    return hit
            response = self._call(chat, schema, max_tokens, float(temperature))
        except LLMOutputError as exc:
            if exc.response is not None:  # an answer, just not JSON: its tokens were spent
                self.usage.record(operation, exc.response)
                if self.cache is not None and not exc.response.cached:
                    self.cache.put(self.model, chat, schema, max_tokens, temperature, exc.response, str(exc))
            self.usage.record(operation, None)
            raise
        except LLMError:
            self.usage.record(operation, None)
            raise
        # Recorded before caching: the tokens were spent even if the cache cannot be written.
        self.usage.record(operation, response)
        if self.cache is not None:
            self.cache.put(self.model, chat, schema, max_tokens, temperature, response)
        return response

    # -- one call, with format fallback -------------------------------------------------------

    def _call(self, chat: list[dict[str, str]], schema: dict[str, Any] | None, max_tokens: int,
              temperature: float) -> LLMResponse:
        while True:  # bounded: every pass either returns, raises, or lowers structured_mode one step
            mode = self.structured_mode if schema is not None else None
            payload: dict[str, Any] = {"model": self.model, "messages": chat, "max_tokens": max_tokens,
                                       "temperature": temperature}
            if schema is not None and mode == "json_schema":
                payload["response_format"] = {"type": "json_schema", "json_schema": {
                    "name": _schema_name(schema), "schema": schema, "strict": True}}
            elif schema is not None:
                payload["messages"] = _with_schema_instruction(chat, schema)
                if mode == "json_object":
                    payload["response_format"] = {"type": "json_object"}
            response = self._post(payload)
            if (response.status_code == 400 and self.structured == "auto" and mode in _FALLBACK
                    and any(word in response.text.lower() for word in _FORMAT_WORDS)):
                self._step_down(mode, response)
                continue
            return self._parse(response, schema is not None, max_tokens)

    def _step_down(self, mode: str, response: httpx.Response) -> None:
        with self._mode_lock:
            if self.structured_mode == mode:
                self.structured_mode = _FALLBACK[mode]
                log.warning("%s refused response_format %s (HTTP 400: %s); %s uses %s from now on",
                            self.endpoint, mode, _excerpt(response.text), self.model, self.structured_mode)

    # -- transport, with bounded retries --------------------------------------------------------

    def _post(self, payload: dict[str, Any]) -> httpx.Response:
        attempts = self.retries + 1
        problem = ""
        for attempt in range(attempts):
            wait: float | None = None
            left = deadline.remaining()  # the operation's overall deadline (memkern.llm.deadline)
            if left is not None and left <= 0:
                raise deadline.exceeded(f"chat endpoint {self.endpoint} {problem}" if problem else "")
            timeout = self.timeout_s if left is None else min(self.timeout_s, left)
            try:
                response = self._client.post(self.endpoint, json=payload, timeout=timeout)
            except httpx.TimeoutException as exc:
                problem = f"timed out after {timeout:.3g}s ({type(exc).__name__})"
            except httpx.TransportError as exc:
                problem = f"could not be reached or dropped the connection ({type(exc).__name__}: {exc})"
            else:
                if response.status_code not in _RETRY_STATUS:
                    return response
                problem = f"answered HTTP {response.status_code}: {_excerpt(response.text)}"
                wait = _retry_after(response)
            if attempt == attempts - 1:
                raise LLMUnavailableError(f"chat endpoint {self.endpoint} {problem} (gave up after {attempts} "
                               f"attempt{'s' if attempts > 1 else ''})")
            if wait is None:
                ceiling = min(self._max_backoff_s, self._backoff_s * 2**attempt)
                wait = random.uniform(ceiling / 2, ceiling)  # jitter: clients failing together retry apart
            else:
                wait = min(wait, self._max_retry_after_s)
            left = deadline.remaining()
            if left is not None and left <= wait:  # no time left to wait and try again
                raise deadline.exceeded(f"chat endpoint {self.endpoint} {problem}")
            log.info("chat endpoint %s %s; retrying in %.2fs", self.endpoint, problem, wait)
            time.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- reading the answer ---------------------------------------------------------------------

    def _parse(self, response: httpx.Response, want_json: bool, max_tokens: int) -> LLMResponse:
        where = f"chat endpoint {self.endpoint}"
        if response.status_code != 200:
            hint = " (does base_url end with the version prefix, e.g. /v1?)" if response.status_code == 404 else ""
            raise LLMError(f"{where} answered HTTP {response.status_code}{hint}: {_excerpt(response.text)}")
        try:
            body = response.json()
        except ValueError as exc:
            raise LLMOutputError(f"{where} returned a body that is not JSON: {_excerpt(response.text)!r}") from exc
        try:
            completion = _Completion.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"])
            raise LLMOutputError(f"{where} returned an unexpected body ({field}: {first['msg']}): "
                           f"{_excerpt(response.text)}") from exc
        if not completion.choices:
            raise LLMOutputError(f"{where} returned no choices: {_excerpt(response.text)}")
        choice = completion.choices[0]
        message = choice.message or _Message()
        text = message.content
        if text is None or not text.strip():
            why = f"refusal: {message.refusal!r}" if message.refusal else f"finish_reason={choice.finish_reason!r}"
            raise LLMOutputError(f"{where} returned empty content ({why}): {_excerpt(response.text)}")
        if want_json:
            text = _unfence(text)
            try:
                json.loads(text)
            except ValueError as exc:
                cut = (f"; the output was cut at max_tokens={max_tokens}, raise it"
                       if choice.finish_reason == "length" else "")
                raise LLMOutputError(f"{where} returned content that is not valid JSON ({exc}){cut}: "
                                     f"{_excerpt(text)!r}", content=text,
                                     response=self._response(completion, text)) from exc
        return self._response(completion, text)

    def _response(self, completion: _Completion, text: str) -> LLMResponse:
        usage = completion.usage or _Usage()
        return LLMResponse(text=text, model=completion.model or self.model,
                           prompt_tokens=usage.prompt_tokens or 0, completion_tokens=usage.completion_tokens or 0)
