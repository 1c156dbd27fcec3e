"""The guard's helper process (``python -m memkern.governance.guard_worker``), and the frames it speaks.

``memkern.governance.guard_helper`` starts it and hands it the texts of large writes. It loads the
guard, says it is ready, then reads each request's texts in order, a few at a time (``BATCH_TEXTS``,
``BATCH_CHARS``) and one verdict per frame, until told to stop before the next one (the caller reads
the rest itself); requests arriving meanwhile wait their turn. It ends when its standard input
closes. A frame is a JSON object preceded by its length (four bytes, big-endian), in either direction:

- to the helper: ``{"request": n, "texts": [...], "classifier": bool}`` and
  ``{"request": n, "stop_before": i}``;
- from it: ``{"ready": true}``, then ``{"request": n, "index": i, "verdict": {...}}`` (or ``"error"``
  instead of ``"verdict"``) for each text read.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import select
import signal
import struct
import sys
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict
from typing import IO, Any

from memkern.governance.guard import check_many

_FRAME = struct.Struct(">I")
#: Texts the guard reads in one call, on either side of a shared write: its learned layer pays a fixed
#: cost per call (the embedder's and numpy's), a third of a millisecond, which one call per text made
#: most of its cost on conversation turns. A batch ends at whichever limit comes first, and holds at
#: least one text; the two sides may both read the batch they meet in.
BATCH_TEXTS = 16
BATCH_CHARS = 4_000


def _batch_size(texts: Iterable[str]) -> int:
    """How many of ``texts``, from the first, one batch holds: at least one, if there is one."""
    count = chars = 0
    for text in texts:
        if count == BATCH_TEXTS or (count and chars + len(text) > BATCH_CHARS):
            break
        count, chars = count + 1, chars + len(text)
    return count


def batch_after(texts: list[str], start: int, stop: int) -> int:
    """The end of the batch that starts at ``texts[start]``, before ``stop``: the helper reads forwards."""
    return start + _batch_size(itertools.islice(texts, start, stop))


def batch_before(texts: list[str], start: int, stop: int) -> int:
    """The start of the batch that ends before ``texts[stop]``, at or after ``start``: the caller reads
    backwards."""
    return stop - _batch_size(texts[index] for index in range(stop - 1, start - 1, -1))


def write_frame(stream: IO[bytes], payload: dict[str, Any]) -> None:
    """One frame to ``stream``, blocking: how the helper answers."""
    body = json.dumps(payload).encode("utf-8")
    stream.write(_FRAME.pack(len(body)) + body)
    stream.flush()


def send_frame(fd: int, payload: dict[str, Any], deadline: float) -> bool:
    """One frame to the non-blocking ``fd``; False if the pipe stayed full past ``deadline`` (a
    ``time.monotonic()``): a helper that stopped reading never blocks a write."""
    body = json.dumps(payload).encode("utf-8")
    data = memoryview(_FRAME.pack(len(body)) + body)
    while data:
        try:
            data = data[os.write(fd, data):]
        except BlockingIOError:
            if not select.select([], [fd], [], max(0.0, deadline - time.monotonic()))[1]:
                return False
    return True


def _read_exactly(fd: int, size: int, deadline: float | None) -> bytes | None:
    """``size`` bytes from ``fd``; None at end of file or past ``deadline`` (a ``time.monotonic()``)."""
    chunks, left = [], size
    while left:
        if deadline is not None:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
        chunk = os.read(fd, left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, deadline: float | None) -> dict[str, Any] | None:
    """The next frame from ``fd``; None at end of file or past ``deadline`` (a ``time.monotonic()``;
    None: wait as long as it takes). ``ValueError`` when it is not a JSON object."""
    head = _read_exactly(fd, _FRAME.size, deadline)
    if head is None:
        return None
    body = _read_exactly(fd, _FRAME.unpack(head)[0], deadline)
    if body is None:
        return None
    frame = json.loads(body)
    if not isinstance(frame, dict):
        raise ValueError("a frame is a JSON object")
    return frame


def serve() -> None:
    """The helper's loop: load the guard, say so, then read each request's texts in order, one verdict
    per frame, until told to stop before the next one; requests arriving meanwhile wait their turn.
    Until the input closes."""
    read, write = sys.stdin.buffer.fileno(), sys.stdout.buffer
    sys.stdout = sys.stderr  # the pipe carries frames only: anything printed goes where stderr goes
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal is the caller's; this ends with its pipe
    # A damaged learned layer fails here too: then each text answers its error, and the caller reads alone.
    with contextlib.suppress(Exception):
        check_many(["Note to the assistant: warm up."], classifier=True)
    write_frame(write, {"ready": True})
    waiting: deque[dict[str, Any]] = deque()
    ends: dict[Any, int] = {}  # where each request waiting or being read was told to stop

    def take(frame: dict[str, Any]) -> None:
        if "texts" in frame:
            waiting.append(frame)
            ends[frame["request"]] = len(frame["texts"])
        elif frame.get("request") in ends:  # a stop for a request already finished is moot
            ends[frame["request"]] = min(ends[frame["request"]], int(frame["stop_before"]))

    while True:
        if not waiting:
            frame = read_frame(read, None)
            if frame is None:
                return
            take(frame)
            continue
        request = waiting.popleft()
        texts, index = request["texts"], 0
        while True:
            while select.select([read], [], [], 0)[0]:
                frame = read_frame(read, None)
                if frame is None:
                    return
                take(frame)
            if index >= ends[request["request"]]:
                break
            end = batch_after(texts, index, ends[request["request"]])
            try:
                answers: list[dict[str, Any]] = [
                    {"verdict": asdict(verdict)}
                    for verdict in check_many(texts[index:end], classifier=bool(request["classifier"]))]
            except Exception as exc:  # answered, not raised: the caller reads it itself and meets it there
                answers = [{"error": f"{type(exc).__name__}: {exc}"}] * (end - index)
            for offset, answer in enumerate(answers):
                write_frame(write, {"request": request["request"], "index": index + offset, **answer})
            index = end
        del ends[request["request"]]


if __name__ == "__main__":
    serve()
