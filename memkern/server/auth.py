"""Who is calling: the one place every table route learns it.

With ``auth="required"`` (the default) every route but the health check needs an API key,
sent as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` (``memkern.api.credentials``,
the same rule as MCP over HTTP); the route runs as the key's user, so the dispatcher checks
and audits the call. With ``auth="off"`` there is no user: the embedded single-user default,
unchecked, for a server on a loopback address only.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import Request

from memkern.api.credentials import API_KEY_HEADER, api_key_from
from memkern.errors import AuthenticationError, InvalidInputError
from memkern.models import User

Auth = Literal["required", "off"]
AUTH_MODES: tuple[Auth, ...] = ("required", "off")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

#: The OpenAPI security schemes of the two header forms.
SECURITY_SCHEMES: dict[str, Any] = {
    "BearerKey": {"type": "http", "scheme": "bearer",
                  "description": "An API key (`memkern key create USER`) as `Authorization: Bearer <key>`."},
    "ApiKey": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER,
               "description": f"The same API key in the `{API_KEY_HEADER}` header instead."},
}


def check_auth_mode(auth: object) -> Auth:
    if auth not in AUTH_MODES:
        raise InvalidInputError(f"auth must be 'required' or 'off', not {auth!r}")
    return auth


def check_exposure(auth: Auth, host: str) -> None:
    """``auth="off"`` only on a loopback address: anyone who can connect has full access."""
    if auth == "off" and host not in LOOPBACK_HOSTS:
        raise InvalidInputError(f"refusing to serve {host} without authentication: --no-auth is for a "
                                f"loopback address ({', '.join(LOOPBACK_HOSTS)}) only")


def current_user(request: Request) -> User | None:
    """The user the request's API key belongs to (``AuthenticationError``, 401, for a missing,
    malformed, unknown or revoked key); ``None`` with ``auth="off"``.

    A FastAPI dependency of every table route (run in the threadpool: it reads the store), so
    that ``app.dependency_overrides[current_user]`` changes who calls every route at once."""
    if request.app.state.auth == "off":
        return None
    key = api_key_from(request.headers)
    if key is None:
        raise AuthenticationError(f"an API key is required: send 'Authorization: Bearer <key>' "
                                  f"(or '{API_KEY_HEADER}: <key>')")
    user: User = request.app.state.mos.authenticate(key)
    return user
