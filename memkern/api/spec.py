"""How an operation is declared: what it takes, returns and needs, and how each surface shows it.

An ``Operation`` is data. The table (``memkern.api.table``) holds one per public operation;
the dispatcher (``memkern.api.dispatch``) runs them, and every surface is bound from them:
the Python methods (``memkern.api.methods``), REST routes (``memkern.server.routes``), MCP
tools (``memkern.mcp``), the HTTP client (``memkern.client``) and the CLI (``memkern.cli``).

What a call needs is a list of ``Need`` values computed from its validated input, so that
permissions that depend on the arguments (chat that writes back, a quarantined memory, an
optional cube) are still declared here, beside the operation, and checked in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from memkern.errors import (
    ConflictError,
    CubeFileError,
    EmbedderError,
    InvalidInputError,
    LLMError,
    MemkernError,
    NotFoundError,
    PermissionDeniedError,
    StoreError,
)
from memkern.models import Permission


# -- what a call needs ------------------------------------------------------------------------------
@dataclass(frozen=True)
class OnCube:
    """``permission`` on the cube named ``cube`` (a name or id)."""

    cube: str
    permission: Permission


@dataclass(frozen=True)
class OnMemory:
    """``permission`` on the cube, or admin on it when the memory is quarantined (only cube
    admins may see, move or change what the poisoning guard held back)."""

    cube: str
    memory_id: str
    permission: Permission


@dataclass(frozen=True)
class StoreAdmin:
    """The admin role (an operation on the whole store: users, retention, the whole queue)."""


@dataclass(frozen=True)
class SelfOrAdmin:
    """The user ``user_id`` themselves, or an admin."""

    user_id: str


@dataclass(frozen=True)
class KeyOwnerOrAdmin:
    """The owner of the API key ``key`` (whole or by prefix), or an admin."""

    key: str


@dataclass(frozen=True)
class OwnerIsCaller:
    """A new cube owned by ``owner`` (``None``: the caller): only an admin gives it to someone else."""

    owner: str | None


Need = OnCube | OnMemory | StoreAdmin | SelfOrAdmin | KeyOwnerOrAdmin | OwnerIsCaller


# -- how the surfaces show it -----------------------------------------------------------------------
@dataclass(frozen=True)
class Http:
    """The REST route. Path parameters (``{cube}``, ``{memory_id}``...) are input fields; the other
    fields are the query string of a GET or DELETE and the JSON body of the other methods."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    path: str
    status: int = 200
    #: The input field that takes the request body as a file (the body is the file itself).
    upload: str | None = None
    #: The input field naming a file the operation writes, sent back as the response body instead.
    download: str | None = None


@dataclass(frozen=True)
class Cli:
    """The CLI command: its words (``("cube", "create")``) and the fields taken as positional arguments."""

    words: tuple[str, ...]
    arguments: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operation:
    """One public operation, declared once."""

    name: str
    #: ``run(ctx, **fields)``: the implementation (``memkern.ops``), given the validated fields.
    run: Callable[..., Any]
    input: type[BaseModel]
    #: The result type (a model, a list of them, a bool, a str, or None).
    output: Any
    #: What the caller needs, from the validated input.
    needs: Callable[[Any], Sequence[Need]]
    #: Where the Python method lives: on a ``MemCube`` (the ``cube`` field filled by the handle) or on ``MemOS``.
    handle: Literal["cube", "store"]
    http: Http
    cli: Cli
    #: MCP tool annotations: a read-only tool, a destructive one; ``None`` to leave the tool out (with ``why``).
    mcp: Literal["read", "write", "destructive"] | None
    #: Why the operation is not an MCP tool (required when ``mcp`` is None).
    not_on_mcp: str | None = None
    #: The input field naming the cube the operation addresses (the dispatcher opens it).
    cube_field: str | None = None
    #: Whether the cube must have been built with this store's embedder.
    needs_embedder: bool = True
    #: The errors a caller should expect besides the common ones (bad input, not found, denied).
    errors: tuple[type[MemkernError], ...] = ()
    #: Fields the Python method takes positionally (the rest are keyword-only), in order.
    positional: tuple[str, ...] = ()
    #: Fields whose unset value means "leave as is" (only those the caller gave are passed on).
    only_given: bool = False

    @property
    def summary(self) -> str:
        doc = (self.run.__doc__ or self.name).strip()
        return doc.split("\n\n")[0].replace("\n", " ")

    @property
    def fields(self) -> list[str]:
        return list(self.input.model_fields)

    @property
    def method_fields(self) -> list[str]:
        """The fields the Python method takes (a cube handle supplies ``cube`` itself)."""
        return [f for f in self.fields if not (self.handle == "cube" and f == "cube")]


#: Errors every operation may raise, whatever its table entry says.
COMMON_ERRORS: tuple[type[MemkernError], ...] = (InvalidInputError, NotFoundError, PermissionDeniedError,
                                                 StoreError)
#: Errors of operations that write memories (embedding, conflicts).
WRITE_ERRORS: tuple[type[MemkernError], ...] = (ConflictError, EmbedderError)
LLM_ERRORS: tuple[type[MemkernError], ...] = (LLMError,)
FILE_ERRORS: tuple[type[MemkernError], ...] = (CubeFileError, ConflictError, EmbedderError)
