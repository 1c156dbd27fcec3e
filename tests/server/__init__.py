"""Tests of the REST API (``memkern.server``) and its client (``memkern.client``).

``live_server`` runs a real uvicorn server on 127.0.0.1 (a free port, in a thread) for
the tests that must go through a socket; the rest use httpx's ASGI transport.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def live_server(app: Any, *, start_timeout: float = 10.0, stop_timeout: float = 10.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free local port; yields the base URL. Bounded start and stop."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + start_timeout
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the test server exited while starting")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the test server did not start within {start_timeout} s")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(stop_timeout)
        sock.close()
        if thread.is_alive():  # pragma: no cover - a hung server fails the test that used it
            server.force_exit = True
            thread.join(stop_timeout)
