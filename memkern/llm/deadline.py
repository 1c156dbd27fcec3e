"""One overall deadline for the LLM calls of one operation.

A client's own timeout bounds one request; with retries and several calls per operation
(extraction windows, then decisions) a hung model could still hold an operation for many
minutes. ``llm_deadline()`` opens a deadline shared by every LLM call made inside it (in
this thread): the HTTP client shortens each request's timeout and each backoff to the time
left, and once it is gone every further call fails at once with ``LLMUnavailableError``
naming the deadline. What the operation already wrote stays written (``add`` stores the
turns before it asks the model anything).

The length is ``MEMKERN_LLM_DEADLINE_S`` seconds (default 120). Deadlines nest: an inner
one never extends an outer one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from memkern.errors import InvalidInputError, LLMUnavailableError

ENV = "MEMKERN_LLM_DEADLINE_S"
DEFAULT_S = 120.0


@dataclass(frozen=True)
class _Deadline:
    end: float  # time.monotonic()
    seconds: float


_current: ContextVar[_Deadline | None] = ContextVar("memkern_llm_deadline", default=None)


def configured_seconds() -> float:
    """``MEMKERN_LLM_DEADLINE_S`` (read at each operation, so it can be changed at run time), or 120."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return DEFAULT_S
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or seconds == float("inf"):
        raise InvalidInputError(f"{ENV} must be a positive number of seconds, got {raw!r}")
    return seconds


@contextmanager
def llm_deadline(seconds: float | None = None) -> Iterator[None]:
    """Every LLM call inside shares one deadline, ``seconds`` from now (default: the configured one)."""
    seconds = configured_seconds() if seconds is None else float(seconds)
    new = _Deadline(time.monotonic() + seconds, seconds)
    outer = _current.get()
    if outer is not None and outer.end <= new.end:
        yield
        return
    token = _current.set(new)
    try:
        yield
    finally:
        _current.reset(token)


def remaining() -> float | None:
    """Seconds left before the current deadline (``<= 0``: passed), or ``None`` outside of one."""
    deadline = _current.get()
    return None if deadline is None else deadline.end - time.monotonic()


def passed() -> bool:
    left = remaining()
    return left is not None and left <= 0


def timed_out_reason() -> str:
    """How an operation that keeps what it stored says it ran out of time: "extraction timed out: the
    LLM deadline of 120 s (MEMKERN_LLM_DEADLINE_S) passed" (a foreground add and the extract job)."""
    return f"extraction timed out: the LLM deadline of {configured_seconds():g} s ({ENV}) passed"


def exceeded(detail: str = "") -> LLMUnavailableError:
    """The error a call raises once the deadline has passed (``detail``: the last problem seen)."""
    deadline = _current.get()
    seconds = f"{deadline.seconds:g} s" if deadline is not None else "its"
    last = f"; last problem: {detail}" if detail else ""
    return LLMUnavailableError(f"the LLM did not answer within the operation's deadline of {seconds} "
                               f"({ENV}){last}")


def check() -> None:
    """Raise ``exceeded()`` if the current deadline has passed."""
    if passed():
        raise exceeded()
