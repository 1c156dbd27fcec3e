"""Request size limits, enforced while the body arrives, never after it was read whole.

``BodyLimitMiddleware`` refuses a body whose ``Content-Length`` is over its limit before
reading any of it, and counts the bytes actually received (chunked bodies, lying clients):
the chunk that goes over the limit raises ``PayloadTooLargeError`` (413) in whoever is
reading, so a route holds at most one chunk beyond the limit in memory, and an upload
streamed to a temporary file stops there. Routes act only once they have their whole
body, so an oversized request changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memkern.errors import PayloadTooLargeError
from memkern.server.problems import error_response

#: Most bytes of an oversized body read and thrown away before answering 413, so that a client
#: that sends its whole body before reading the answer still gets the answer.
DRAIN_LIMIT = 64 * 1024 * 1024


class BodyLimitMiddleware:
    """413 for a body over ``max_body_bytes`` (``max_upload_bytes`` on the upload paths)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int,
                 max_upload_bytes: int, upload_paths: Collection[re.Pattern[str]] = ()) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes
        self.upload_paths = list(upload_paths)

    def limit_for(self, path: str) -> int:
        uploading = any(pattern.fullmatch(path) for pattern in self.upload_paths)
        return self.max_upload_bytes if uploading else self.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _drain(receive, 0)
            error = PayloadTooLargeError(f"the request body is {declared:,} bytes; the limit is {limit:,}")
            response = error_response(Request(scope), error)
            response.headers["Connection"] = "close"
            await response(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if message.get("more_body", False):
                        await _drain(receive, received)
                    raise PayloadTooLargeError(f"the request body is larger than the limit of {limit:,} bytes")
            return message

        await self.app(scope, counting_receive, send)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _drain(receive: Receive, already: int) -> None:
    total = already
    while total <= DRAIN_LIMIT:
        message = await receive()
        if message["type"] != "http.request":
            return
        total += len(message.get("body", b""))
        if not message.get("more_body", False):
            return
