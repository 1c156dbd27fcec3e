"""A fake OpenAI server for the test suite: a real HTTP server on loopback, never a mock.

Clients under test go through their whole stack (httpx, sockets, status codes, headers, partial
bodies, timeouts), so what passes here passes against a real server that misbehaves the same way.

    with FakeOpenAI(script=["hello", {"status": 429, "headers": {"Retry-After": "0"}}, '{"a": 1}']) as server:
        llm = OpenAICompatibleLLM(server.base_url, "fake-model")
        ...
        assert len(server.requests) == 3

Each POST /v1/chat/completions consumes the next item of ``script``:

* ``str`` — the assistant's content, answered 200 with a full OpenAI body (id, choices,
  finish_reason "stop", usage counted in whitespace-separated words);
* ``{"content": str, "finish_reason": "length", "usage": {...}, "model": ...}`` — the same with
  those fields overridden (all but ``content`` optional);
* ``{"status": 429|500|400|..., "body": dict|str|None, "headers": {...}}`` — that status; a dict body
  is sent as JSON, a str as is, None as an OpenAI-style ``{"error": {...}}``;
* ``{"delay": seconds, "then": item}`` — wait, then answer ``item`` (for client timeouts; the wait
  ends early when the server stops);
* ``{"raw": str|bytes}`` — 200 with exactly that body (malformed JSON and the like);
* ``{"truncate": True, "content": str}`` — headers announce the full body, half of it is sent,
  then the connection is closed;
* a callable ``(request_json) -> item`` — computed per request (may return any item above).

When the script is exhausted, ``handler(request_json) -> item`` answers if given, else a 500 that
says so. ``server.requests`` holds the JSON body of every chat request in arrival order (also the
ones that timed out on the client side) and ``server.request_headers`` their headers, lower-cased.

POST /v1/embeddings answers deterministic hashed bag-of-words vectors (``fake_embedding``, unit
length, ``embedding_dim`` = 32 by default); its bodies go to ``server.embedding_requests``.
GET /v1/models lists one model. The server stops (and wakes any delayed answer) on context exit.
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeOpenAI", "chat_body", "fake_embedding"]

_WORD = re.compile(r"\w+")


def fake_embedding(text: str, dim: int = 32) -> list[float]:
    """Hashed bag of words (SHA-256 → bucket and sign), L2-normalised: texts sharing words are close,
    and the same text gives the same vector in every process."""
    vector = [0.0] * dim
    words = _WORD.findall(text.lower()) or [text]
    for word in words:
        digest = hashlib.sha256(word.encode("utf-8", "surrogatepass")).digest()
        bucket = int.from_bytes(digest[:4], "little") % dim
        vector[bucket] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(value * value for value in vector))
    if norm == 0.0:  # words cancelled out exactly; fall back to a one-hot that still depends on the text
        vector[int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:4], "little") % dim] = 1.0
        norm = 1.0
    return [value / norm for value in vector]


def _words(text: str) -> int:
    return len(text.split())


def chat_body(content: str, request: dict[str, Any], *, finish_reason: str = "stop",
              usage: dict[str, int] | None = None, model: str | None = None, number: int = 0) -> dict[str, Any]:
    """A complete OpenAI chat-completion body answering ``request`` with ``content``."""
    prompt = sum(_words(str(m.get("content", ""))) for m in request.get("messages", []) if isinstance(m, dict))
    completion = _words(content)
    counted = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    if usage is not None:
        counted.update(usage)
    return {
        "id": f"chatcmpl-fake-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model or request.get("model") or "fake-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "logprobs": None, "finish_reason": finish_reason}],
        "usage": counted,
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out or hung up is part of the tests, not a server bug worth a traceback.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class FakeOpenAI:
    """A scripted OpenAI-compatible server on 127.0.0.1 (see the module docstring)."""

    def __init__(self, script: Iterable[Any] | None = None, handler: Callable[[dict[str, Any]], Any] | None = None,
                 *, embedding_dim: int = 32) -> None:
        self._script: collections.deque[Any] = collections.deque(script or [])
        self.handler = handler
        self.embedding_dim = embedding_dim
        self.requests: list[dict[str, Any]] = []
        self.request_headers: list[dict[str, str]] = []
        self.embedding_requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FakeOpenAI:
        if self._server is not None:
            return self
        self._server = _Server(("127.0.0.1", 0), _make_handler(self))
        self._port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"FakeOpenAI:{self.port}", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        """The bound port; still readable after the server stopped, for assertions on error messages."""
        if self._port is None:
            raise RuntimeError("FakeOpenAI was never started; use it as a context manager")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # -- script ---------------------------------------------------------------------------------

    def push(self, *items: Any) -> None:
        """Append items to the script (for tests that build it as they go)."""
        with self._lock:
            self._script.extend(items)

    @property
    def remaining(self) -> int:
        """Script items not consumed yet."""
        with self._lock:
            return len(self._script)

    def _next(self, body: dict[str, Any], headers: dict[str, str]) -> tuple[Any, int]:
        with self._lock:
            self.requests.append(body)
            self.request_headers.append(headers)
            number = len(self.requests)
            if self._script:
                return self._script.popleft(), number
        if self.handler is not None:
            return self.handler, number
        return {"status": 500, "body": {"error": {
            "message": f"FakeOpenAI: script exhausted after {number - 1} chat requests and no handler given",
            "type": "fake_script_exhausted"}}}, number


def _make_handler(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 30  # an idle keep-alive connection does not hold a thread forever
        disable_nagle_algorithm = True  # headers and body are two writes; Nagle + delayed ACK would add 40 ms

        def log_message(self, format: str, *args: Any) -> None:
            pass

        # -- plumbing ---------------------------------------------------------------------------

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None,
                  content_type: str = "application/json") -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, str(value))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (timed out); nothing to answer

        def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(payload).encode("utf-8"), headers)

        def _error(self, status: int, message: str) -> None:
            self._json(status, {"error": {"message": message, "type": "fake_error", "code": status}})

        def _read_json(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                return json.loads(raw or b"null")
            except ValueError:
                return None

        # -- routes -----------------------------------------------------------------------------

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/models":
                self._json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model",
                                                              "owned_by": "memkern-tests"}]})
            else:
                self._error(404, f"FakeOpenAI: no route GET {self.path}")

        def do_POST(self) -> None:
            body = self._read_json()
            path = self.path.rstrip("/")
            if path not in ("/v1/chat/completions", "/v1/embeddings"):
                self._error(404, f"FakeOpenAI: no route POST {self.path}")
            elif not isinstance(body, dict):
                self._error(400, "FakeOpenAI: the request body must be a JSON object")
            elif path == "/v1/embeddings":
                self._embeddings(body)
            else:
                headers = {name.lower(): value for name, value in self.headers.items()}
                item, number = fake._next(body, headers)
                self._answer(item, body, number)

        def _embeddings(self, body: dict[str, Any]) -> None:
            with fake._lock:
                fake.embedding_requests.append(body)
            texts = body.get("input")
            if isinstance(texts, str):
                texts = [texts]
            if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
                self._error(400, "FakeOpenAI: 'input' must be a string or a non-empty list of strings")
                return
            tokens = sum(_words(text) for text in texts)
            self._json(200, {
                "object": "list",
                "data": [{"object": "embedding", "index": i, "embedding": fake_embedding(text, fake.embedding_dim)}
                         for i, text in enumerate(texts)],
                "model": body.get("model") or "fake-embedding",
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            })

        def _answer(self, item: Any, request: dict[str, Any], number: int) -> None:
            for _ in range(100):  # callables may return callables; a cycle must not hang the test
                if not callable(item):
                    break
                try:
                    item = item(request)
                except Exception as exc:  # noqa: BLE001 - a broken test handler should fail loudly, not hang
                    self._error(500, f"FakeOpenAI: script callable raised {type(exc).__name__}: {exc}")
                    return
            if isinstance(item, str):
                self._json(200, chat_body(item, request, number=number))
            elif not isinstance(item, dict):
                self._error(500, f"FakeOpenAI: unknown script item {item!r}")
            elif "delay" in item:
                if fake._stop.wait(float(item["delay"])):
                    self.close_connection = True
                    return
                if "then" not in item:
                    self._error(500, "FakeOpenAI: a delay item needs 'then'")
                    return
                self._answer(item["then"], request, number)
            elif "raw" in item:
                raw = item["raw"]
                self._send(200, raw if isinstance(raw, bytes) else str(raw).encode("utf-8"))
            elif item.get("truncate"):
                full = json.dumps(chat_body(str(item.get("content", "")), request, number=number)).encode("utf-8")
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(full)))
                    self.end_headers()
                    self.wfile.write(full[: len(full) // 2])
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True
            elif "status" in item:
                status = int(item["status"])
                payload = item.get("body")
                headers = item.get("headers") or {}
                if payload is None:
                    self._json(status, {"error": {"message": f"FakeOpenAI: scripted HTTP {status}",
                                                  "type": "fake_error", "code": status}}, headers)
                elif isinstance(payload, (dict, list)):
                    self._json(status, payload, headers)
                else:
                    self._send(status, payload if isinstance(payload, bytes) else str(payload).encode("utf-8"),
                               headers)
            elif "content" in item:
                self._json(200, chat_body(str(item["content"]), request, number=number,
                                          finish_reason=item.get("finish_reason", "stop"),
                                          usage=item.get("usage"), model=item.get("model")))
            else:
                self._error(500, f"FakeOpenAI: unknown script item {item!r}")

    return Handler
