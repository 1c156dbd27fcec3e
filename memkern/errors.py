"""The exceptions memkern raises.

A small hierarchy so that callers can catch everything with ``MemkernError`` or one
family precisely. Every message says what was wrong and with which value, so that a
user never needs a traceback to act on it.
"""

from __future__ import annotations

from typing import Any


class MemkernError(Exception):
    """Base class of every error memkern raises on purpose."""


class InvalidInputError(MemkernError, ValueError):
    """Input was malformed, of the wrong type, empty or too large. Nothing was written."""


class NotFoundError(MemkernError, LookupError):
    """A cube or memory id does not exist (or was deleted)."""


class ConflictError(MemkernError):
    """The write conflicts with existing state (a duplicate name, a stale version)."""


class EmbedderError(MemkernError):
    """The embedding model is missing, corrupt, unreachable or does not match the store."""


class StoreError(MemkernError):
    """The store could not complete an operation (locked, corrupt, wrong schema)."""


class CubeFileError(MemkernError):
    """A cube file is corrupt, truncated, tampered with or not a memkern cube."""


class LLMError(MemkernError):
    """The language model could not be reached, timed out, or returned something unusable."""


class LLMUnavailableError(LLMError):
    """The model could not be reached or kept failing: later calls would likely fail the same way."""


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


class AuthenticationError(PermissionDeniedError):
    """An API key is malformed, unknown or revoked."""
