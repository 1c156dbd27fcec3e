"""The exceptions memkern raises, each carrying how it is reported over the network.

A small hierarchy so that callers can catch everything with ``MemkernError`` or one
family precisely. Every message says what was wrong and with which value, so that a
user never needs a traceback to act on it.

Each class also says how a server reports it (RFC 9457 problem details): ``problem``
(the slug of ``urn:memkern:problem:<slug>``), ``status`` (the HTTP status) and ``title``.
Errors whose message may hold internals (paths, SQL, a model's output) have a
``public_detail``: servers send that instead of the message and log the message. The
REST server, the MCP server and the Python client all use :func:`problem_of` and
:func:`error_for`, so the mapping exists once.
"""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_PREFIX = "urn:memkern:problem:"


class MemkernError(Exception):
    """Base class of every error memkern raises on purpose."""

    problem: ClassVar[str] = "internal"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    #: What a server says instead of the message (``None``: the message is safe to send).
    public_detail: ClassVar[str | None] = "memkern could not complete the request; see the server log"


class InvalidInputError(MemkernError, ValueError):
    """Input was malformed, of the wrong type, empty or too large. Nothing was written."""

    problem, status, title, public_detail = "invalid-input", 422, "Invalid input", None


class PayloadTooLargeError(InvalidInputError):
    """A request body, upload or file member is larger than its limit. Nothing was written."""

    problem, status, title = "payload-too-large", 413, "Payload too large"


class NotFoundError(MemkernError, LookupError):
    """A cube or memory id does not exist (or was deleted)."""

    problem, status, title, public_detail = "not-found", 404, "Not found", None


class ConflictError(MemkernError):
    """The write conflicts with existing state (a duplicate name, a stale version)."""

    problem, status, title, public_detail = "conflict", 409, "Conflict", None


class EmbedderError(MemkernError):
    """The embedding model is missing, corrupt, unreachable or does not match the store."""

    problem, status, title = "embedder-unavailable", 503, "Embedder unavailable"
    public_detail = "the embedding model is unavailable or does not match this cube; see the server log"


class GuardModelError(MemkernError):
    """The guard's classifier weights are missing, corrupt or do not match their description."""

    problem, status, title = "guard-model-unavailable", 503, "Guard model unavailable"
    public_detail = "the poisoning guard's classifier weights are missing or corrupt; see the server log"


class StoreError(MemkernError):
    """The store could not complete an operation (locked, corrupt, wrong schema)."""

    problem, status, title = "store-unavailable", 503, "Store unavailable"
    public_detail = "the store could not complete the operation (it may be busy); try again"


class CubeFileError(MemkernError):
    """A cube file is corrupt, truncated, tampered with or not a memkern cube."""

    problem, status, title, public_detail = "cube-file", 422, "Invalid cube file", None


class LLMError(MemkernError):
    """The language model could not be reached, timed out, or returned something unusable."""

    problem, status, title = "llm-unavailable", 502, "Language model unavailable"
    public_detail: ClassVar[str | None] = "the language model could not be reached or answered badly; try again"


class LLMUnavailableError(LLMError):
    """The model could not be reached or kept failing: later calls would likely fail the same way."""


class LLMNotConfiguredError(LLMError):
    """The operation needs a language model and none is configured (``MEMKERN_LLM``)."""

    problem, status, title, public_detail = "llm-not-configured", 503, "No language model configured", None


class LLMOutputError(LLMError):
    """The model answered, but not with something usable (no choices, empty, not JSON).

    ``content`` is the model's text when there was any, so that a caller can repair it;
    ``response`` is the whole answer (text, model, tokens spent) when the back end has one.
    """

    def __init__(self, message: str, content: str | None = None, response: Any = None) -> None:
        super().__init__(message)
        self.content = content
        self.response = response


class PermissionDeniedError(MemkernError):
    """The user may not run this operation on this cube (or at all). Nothing was changed."""

    problem, status, title, public_detail = "permission-denied", 403, "Permission denied", None


class AuthenticationError(PermissionDeniedError):
    """An API key is malformed, unknown or revoked."""

    problem, status, title = "unauthenticated", 401, "Unauthenticated"


def _all_classes() -> list[type[MemkernError]]:
    """Every error class, each after its base classes."""
    found: list[type[MemkernError]] = []
    todo: list[type[MemkernError]] = [MemkernError]
    while todo:
        cls = todo.pop(0)
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


#: What an error response with no problem type stands for, by HTTP status.
_BY_STATUS: dict[int, type[MemkernError]] = {
    400: InvalidInputError, 401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError,
    409: ConflictError, 413: PayloadTooLargeError, 415: InvalidInputError, 422: InvalidInputError,
    502: LLMError, 503: StoreError,
}


def problem_of(error: MemkernError) -> tuple[int, str, str, str]:
    """``(status, problem type URI, title, detail)`` of an error as a server reports it."""
    detail = error.public_detail if error.public_detail is not None else str(error)
    return error.status, PROBLEM_PREFIX + error.problem, error.title, detail


def error_for(problem_type: str | None, error_name: str | None, status: int) -> type[MemkernError]:
    """The exception class a problem-details response stands for: by the class name the
    server sent (``error``), else by problem type, else by HTTP status."""
    classes = _all_classes()
    by_name = {cls.__name__: cls for cls in classes}
    if error_name in by_name:
        return by_name[error_name]
    if problem_type and problem_type.startswith(PROBLEM_PREFIX):
        slug = problem_type.removeprefix(PROBLEM_PREFIX)
        # The most general class of that slug (LLMUnavailableError shares LLMError's).
        for cls in classes:
            if cls.problem == slug:
                return cls
    return _BY_STATUS.get(status, InvalidInputError if 400 <= status < 500 else MemkernError)
