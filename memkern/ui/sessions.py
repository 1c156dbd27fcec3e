"""Browser sessions of the web UI: who is signed in, and the token that guards its forms.

Signing in trades an API key for a random session id. The id goes to the browser in an
HttpOnly, SameSite=Strict cookie (scripts cannot read it, other sites cannot send it); the
key stays here, in memory, and is authenticated again on every request, so a revoked key
ends its sessions at once. The key is never put in a URL, a page or the browser's storage.

Every session also holds a CSRF token that each form posts back (``csrf`` field); a POST
whose token does not match is refused. Sessions live in this process only: restarting the
server signs everyone out, which is the safe default.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field

#: The cookie holding the session id.
COOKIE = "memkern_ui"
#: A session unused this long is forgotten (seconds).
IDLE_TIMEOUT_S = 8 * 3600.0
#: Most sessions kept at once; the least recently used goes first.
MAX_SESSIONS = 10_000


@dataclass
class Session:
    """One signed-in browser: the API key it signed in with (``None`` when the server runs
    without authentication) and its CSRF token."""

    key: str | None
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    last_used: float = field(default_factory=time.monotonic)

    def csrf_ok(self, token: str | None) -> bool:
        """Whether a form's token is this session's (compared in constant time)."""
        return token is not None and hmac.compare_digest(token.encode(), self.csrf.encode())


class Sessions:
    """The sessions of one UI, by id; safe to use from the server's worker threads."""

    def __init__(self, idle_timeout_s: float = IDLE_TIMEOUT_S, max_sessions: int = MAX_SESSIONS) -> None:
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._idle = idle_timeout_s
        self._max = max_sessions

    def open(self, key: str | None) -> tuple[str, Session]:
        """A new session for ``key``; returns its id (for the cookie) and the session."""
        session_id = secrets.token_urlsafe(32)
        session = Session(key=key)
        with self._lock:
            self._forget_idle()
            while len(self._by_id) >= self._max:
                oldest = min(self._by_id, key=lambda sid: self._by_id[sid].last_used)
                del self._by_id[oldest]
            self._by_id[session_id] = session
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id, or ``None``; using it keeps it alive."""
        if not session_id:
            return None
        with self._lock:
            session = self._by_id.get(session_id)
            now = time.monotonic()
            if session is None or now - session.last_used > self._idle:
                self._by_id.pop(session_id, None)
                return None
            session.last_used = now
            return session

    def close(self, session_id: str | None) -> None:
        """Forget a session (signing out)."""
        if session_id:
            with self._lock:
                self._by_id.pop(session_id, None)

    def _forget_idle(self) -> None:
        now = time.monotonic()
        for sid in [sid for sid, s in self._by_id.items() if now - s.last_used > self._idle]:
            del self._by_id[sid]
