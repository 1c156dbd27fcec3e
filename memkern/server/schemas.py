"""The two bodies of the REST API that are not operation results: the health check and an error.

Everything else a route takes or returns is an operation's input or output model
(``memkern.api.inputs``, ``memkern.models``), so the JSON is the same on every surface.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Health(BaseModel):
    """``GET /v1/health``: the server is up, with the embedder it uses."""

    status: str = "ok"
    version: str
    embedder: str
    dim: int


class Problem(BaseModel):
    """An error, as RFC 9457 problem details (``application/problem+json``).

    ``type`` is ``urn:memkern:problem:<slug>`` for memkern's errors (``about:blank`` for a bare
    HTTP status such as 405); ``error`` names the memkern exception class, which the Python
    client raises again (``memkern.errors.error_for``).
    """

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    error: str | None = None
