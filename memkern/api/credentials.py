"""Where a network surface finds the caller's API key: one rule for REST and MCP over HTTP."""

from __future__ import annotations

from typing import Any

#: The API key header, when the key is not sent as ``Authorization: Bearer <key>``.
API_KEY_HEADER = "X-API-Key"


def api_key_from(headers: Any) -> str | None:
    """The API key in request headers: ``Authorization: Bearer <key>``, else ``X-API-Key``;
    ``None`` when there is none. Header names are looked up in lower case, which both a plain
    mapping of lower-case names and Starlette's headers answer."""
    if headers is None:
        return None
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    value = headers.get(API_KEY_HEADER.lower())
    return value.strip() if value is not None and value.strip() else None
