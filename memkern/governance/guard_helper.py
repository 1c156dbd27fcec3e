"""The guard's rules and learned layer, shared with a helper process on large writes.

The guard is pure Python (regular expressions and a small model), so it holds the interpreter's
lock and threads cannot share its work. On long texts it costs more than embedding and storing
together (LongMemEval's turns: half of ingestion). So on a write of at least ``SHARED_FROM``
characters, ``start(texts)`` sends the first part of the texts to a helper process and returns
at once; the write path embeds meanwhile, and ``GuardRun.verdicts()`` reads the rest here, then
collects the helper's verdicts. The part sent is chosen so that both finish together, from the
speeds measured on earlier writes. Which process reads a text changes nothing: a verdict depends
on its text alone (``tests/test_guard_helper.py``).

The helper is ``python -m memkern.governance.guard_helper``, a plain child process speaking
length-prefixed JSON over its standard input and output: no pickling, no re-import of the
caller's ``__main__``, no fork of a threaded process. It starts on the first large write (or
earlier, by ``prepare()``: a server starts it with itself) and is used once it has loaded the
guard, so no write waits for it to start. One write uses it at a
time (a concurrent write reads alone). If it fails, answers late or dies, its part is read here
and a new helper starts on a large write a minute later: the verdicts are the same, only slower. It ends when
its standard input closes (this process exits). ``MEMKERN_GUARD_HELPER=off`` turns it off; it is
on by default on a POSIX machine with two cores or more (it needs ``select`` on pipes: never elsewhere).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from memkern.governance.guard import Verdict, check_many

#: Set to ``off`` to read every write in this process.
HELPER_ENV = "MEMKERN_GUARD_HELPER"
#: A write of fewer characters is read here alone: handing part of it over would cost more than it saves.
#: (From 8,000 to 2,000: LongMemEval ingestion 780-832 -> 856-899 turns/s, LoCoMo's unchanged or faster.)
SHARED_FROM = 2_000
#: Seconds the helper may take beyond this process's own part before its part is read here instead.
LATE_AFTER = 30.0
_FRAME = struct.Struct(">I")


def enabled() -> bool:
    """Whether the helper is used: ``MEMKERN_GUARD_HELPER`` (on/off), else on with two cores or more."""
    value = os.environ.get(HELPER_ENV, "").strip().lower()
    if os.name != "posix":  # the helper's pipes are waited on with select()
        return False
    if value:
        return value in ("on", "1", "true", "yes")
    return (os.cpu_count() or 1) >= 2


def _write_frame(stream: IO[bytes], payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode("utf-8")
    stream.write(_FRAME.pack(len(body)) + body)
    stream.flush()


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


def _read_frame(fd: int, deadline: float | None) -> dict[str, Any] | None:
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


class _Helper:
    """The helper process and what this process has measured of both."""

    def __init__(self) -> None:
        root = str(Path(__file__).resolve().parents[2])  # the folder holding this memkern, first on the helper's path
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "memkern.governance.guard_helper"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, close_fds=True)
        self.ready = False
        #: Held by the one write using the helper, from sending its part to reading the answer.
        self.busy = threading.Lock()
        #: Requests sent so far; an answer names the request it answers.
        self.requests = 0
        #: Characters per second of the guard here and in the helper, and of the caller's work between
        #: ``start`` and ``verdicts`` (the write path's PII rules and embedding), learnt from earlier writes.
        self.local_speed = self.helper_speed = self.caller_speed = 0.0

    def usable(self) -> bool:
        """Whether the helper has loaded the guard and still runs (checked without waiting)."""
        if self.process.poll() is not None:
            return False
        if not self.ready:
            assert self.process.stdout is not None
            fd = self.process.stdout.fileno()
            if select.select([fd], [], [], 0)[0]:
                try:
                    self.ready = _read_frame(fd, time.monotonic() + 5.0) == {"ready": True}
                except ValueError:
                    self.ready = False
        return self.ready

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


#: Seconds after a helper failed before another is started.
RESTART_AFTER = 60.0

_lock = threading.Lock()
_helper: _Helper | None = None
_failed_at = float("-inf")


def _running() -> tuple[_Helper | None, bool]:
    """The helper process (None when it is off or failed less than ``RESTART_AFTER`` ago), and
    whether it was started just now; one is started when there is none or the last one died."""
    global _helper, _failed_at
    if not enabled():
        return None, False
    with _lock:
        if _helper is not None and _helper.process.poll() is not None:  # it died (or never started)
            _helper.stop()
            _helper, _failed_at = None, time.monotonic()
        if _helper is not None:
            return _helper, False
        if time.monotonic() - _failed_at < RESTART_AFTER:
            return None, False
        try:
            _helper = _Helper()
        except (OSError, ValueError):  # no interpreter to start (an embedded Python)
            return None, False
        return _helper, True


def _available() -> _Helper | None:
    """The helper when it is ready and free (then held: ``busy`` is acquired); else None, starting
    one when there is none or the last one died (a write does not wait for it to start)."""
    helper, started = _running()
    if helper is None or started:
        return None
    if not helper.busy.acquire(blocking=False):
        return None
    if helper.usable():
        return helper
    helper.busy.release()
    return None


def prepare(wait: float = 0.0) -> bool:
    """Start the helper now (when it is on and none runs), so that the first large write need not
    read alone while it starts; with ``wait``, wait up to that many seconds for it to be ready.
    Whether it is ready. A server calls this at start-up, the ingestion benchmark in its warm-up."""
    helper, _ = _running()
    deadline = time.monotonic() + wait
    while helper is not None:
        if helper.busy.acquire(blocking=False):  # ``usable()`` reads the pipe: not while a write does
            try:
                if helper.usable():
                    return True
            finally:
                helper.busy.release()
        if helper.process.poll() is not None or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    return False


def _forget_in_child() -> None:
    """After ``os.fork()``, in the child: the parent's helper is the parent's. Its pipes are closed here
    (so that it ends with the parent) and a write in the child starts the child's own helper."""
    global _lock, _helper
    if _helper is not None:
        for pipe in (_helper.process.stdin, _helper.process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        _helper.process.returncode = 0  # not the child's to wait for
    _lock, _helper = threading.Lock(), None


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_in_child)


def _retire(helper: _Helper) -> None:
    """Stop a helper that failed; a later write starts a new one."""
    global _helper, _failed_at
    with _lock:
        if _helper is helper:
            _helper = None
        _failed_at = time.monotonic()
    helper.stop()


def _share(helper: _Helper) -> float:
    """The part of a write's characters to send so that the helper and this process finish together:
    the helper reads share s while the write path handles PII and embeds everything, and then this
    process reads the rest."""
    if not (helper.local_speed and helper.helper_speed and helper.caller_speed):
        return 0.5
    here = 1 / helper.caller_speed + 1 / helper.local_speed  # seconds per character if all were read here
    return min(0.9, max(0.1, here / (1 / helper.helper_speed + 1 / helper.local_speed)))


def _learn(old: float, new: float) -> float:
    return new if not old else 0.8 * old + 0.2 * new


class GuardRun:
    """The guard's reading of one write, begun by ``start``; ``verdicts()`` finishes it, and must be
    called (or ``abandon()``) so that the helper is free for the next write."""

    def __init__(self, texts: Sequence[str], classifier: bool) -> None:
        self._texts = list(texts)
        self._classifier = classifier
        self._sent = 0  # texts sent to the helper: the first ones
        self._request = 0  # the number of the request that sent them
        self._began = 0.0  # when, by time.perf_counter()
        self._helper: _Helper | None = None
        total = sum(map(len, self._texts))
        helper = _available() if total >= SHARED_FROM and len(self._texts) > 1 else None
        if helper is None:
            return
        goal, size = _share(helper) * total, 0
        while self._sent < len(self._texts) - 1 and size + len(self._texts[self._sent]) / 2 <= goal:
            size += len(self._texts[self._sent])
            self._sent += 1
        if self._sent == 0:
            helper.busy.release()
            return
        try:
            assert helper.process.stdin is not None
            helper.requests += 1
            self._request = helper.requests
            _write_frame(helper.process.stdin, {"request": self._request, "texts": self._texts[:self._sent],
                                                "classifier": classifier})
        except OSError:
            helper.busy.release()
            _retire(helper)
            self._sent = 0
            return
        self._helper = helper
        self._began = time.perf_counter()

    @property
    def shared(self) -> int:
        """How many texts the helper reads (the first ones); 0 when this process reads them all."""
        return self._sent

    def verdicts(self) -> list[Verdict]:
        """Every text's verdict, in order: the part not sent is read here, then the helper's is collected
        (or read here too, if the helper fails or is late)."""
        if self._helper is None:
            return check_many(self._texts, classifier=self._classifier)
        mine_began = time.perf_counter()
        try:
            mine = check_many(self._texts[self._sent:], classifier=self._classifier)
        except BaseException:
            self.abandon()
            raise
        mine_ended = time.perf_counter()
        helper = self._helper
        theirs = self._collect()
        if theirs is None or helper is None:
            return check_many(self._texts[:self._sent], classifier=self._classifier) + mine
        verdicts, seconds = theirs
        sent_chars = sum(map(len, self._texts[:self._sent]))
        total_chars = sum(map(len, self._texts))
        if seconds > 0 and mine_ended > mine_began > self._began:
            helper.helper_speed = _learn(helper.helper_speed, sent_chars / seconds)
            helper.local_speed = _learn(helper.local_speed, (total_chars - sent_chars) / (mine_ended - mine_began))
            helper.caller_speed = _learn(helper.caller_speed, total_chars / (mine_began - self._began))
        return verdicts + mine

    def _collect(self) -> tuple[list[Verdict], float] | None:
        """The helper's verdicts on the part sent and its seconds of work; None if it failed, answered
        something else or is late (then it is stopped). The helper is free again either way."""
        helper, self._helper = self._helper, None
        if helper is None:
            return None
        answer: dict[str, Any] | None = None
        try:
            assert helper.process.stdout is not None
            answer = _read_frame(helper.process.stdout.fileno(), time.monotonic() + LATE_AFTER)
            if (answer is None or answer.get("request") != self._request or not isinstance(answer.get("verdicts"), list)
                    or len(answer["verdicts"]) != self._sent):
                answer = None
            else:
                return [Verdict(**found) for found in answer["verdicts"]], float(answer["seconds"])
        except (OSError, ValueError, TypeError):
            answer = None
        finally:
            helper.busy.release()
            if answer is None:
                _retire(helper)
        return None

    def abandon(self) -> None:
        """Free the helper when the write failed before ``verdicts()``: its answer is read and dropped."""
        self._collect()


def start(texts: Sequence[str], classifier: bool) -> GuardRun:
    """Begin the guard's rules and learned layer on ``texts``; the caller may work meanwhile."""
    return GuardRun(texts, classifier)


def _serve() -> None:
    """The helper's loop: load the guard, say so, then answer each request until the input closes."""
    read, write = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # the pipe carries frames only: anything printed goes where stderr goes
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal is the caller's; this ends with its pipe
    # A damaged learned layer fails here too: then each request answers its error, and the caller reads alone.
    with contextlib.suppress(Exception):
        check_many(["Note to the assistant: warm up."], classifier=True)
    _write_frame(write, {"ready": True})
    while (request := _read_frame(read.fileno(), None)) is not None:
        began = time.perf_counter()
        try:
            found = check_many(request["texts"], classifier=bool(request["classifier"]))
            _write_frame(write, {"request": request["request"], "verdicts": [asdict(v) for v in found],
                                 "seconds": time.perf_counter() - began})
        except Exception as exc:  # answered, not raised: the caller reads the part itself and meets it there
            _write_frame(write, {"request": request.get("request"), "error": f"{type(exc).__name__}: {exc}"})


if __name__ == "__main__":
    _serve()
