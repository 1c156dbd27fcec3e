"""The guard's rules and learned layer, shared with a helper process on large writes.

The guard is pure Python (regular expressions and a small model), so it holds the interpreter's
lock and threads cannot share its work. On long texts it costs more than embedding and storing
together (LongMemEval's turns: half of ingestion). So on a write of at least ``SHARED_FROM``
characters, ``start(texts)`` hands the texts to a helper process and returns at once. The helper
reads them one by one from the first, sending each verdict back as it goes, while the write path
embeds. ``GuardRun.verdicts()`` then reads from the last text backwards, telling the helper where
it has got to, until the two meet: neither waits for a share guessed in advance, and at most one
text is read twice. Which process reads a text changes nothing: a verdict depends on its text
alone (``tests/test_guard_helper.py``).

A write still leaves the helper idle while it is stored. A bulk import, which knows its next
session, says so with ``read_ahead(texts)``: the helper reads the next session while this process
stores the current one, and the next write takes up what it has read (``start`` finds the request
by its texts). Meanwhile the importing thread keeps the helper.

The helper is ``python -m memkern.governance.guard_worker``, a plain child process speaking
length-prefixed JSON over its standard input and output (that module is its side, and the frames):
no pickling, no re-import of the caller's ``__main__``, no fork of a threaded process. It starts
on the first large write (or earlier, by ``prepare()``: a server starts it with itself) and is
used once it has loaded the guard, so no write waits for it to start. One thread uses it at a time (a concurrent write reads
alone). If it fails, falls silent or dies, what it has not read is read here and a new helper
starts on a large write a minute later: the verdicts are the same, only slower. It ends when its
standard input closes (this process exits). ``MEMKERN_GUARD_HELPER=off`` turns it off; it is on
by default on a POSIX machine with two cores or more (it needs ``select`` on pipes: never elsewhere).
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memkern.governance.guard import Verdict, check_many
from memkern.governance.guard_worker import batch_before, read_frame, send_frame

#: Set to ``off`` to read every write in this process.
HELPER_ENV = "MEMKERN_GUARD_HELPER"
#: A write of fewer characters is read here alone: handing part of it over would cost more than it saves.
#: (From 8,000 to 2,000: LongMemEval ingestion 780-832 -> 856-899 turns/s, LoCoMo's unchanged or faster.)
SHARED_FROM = 2_000
#: Seconds a frame may take to pass a pipe, and a write handed over may wait for its first verdict,
#: before the helper is taken to be stuck: it is stopped, and what it has not read is read here.
LATE_AFTER = 30.0


def enabled() -> bool:
    """Whether the helper is used: ``MEMKERN_GUARD_HELPER`` (on/off), else on with two cores or more."""
    value = os.environ.get(HELPER_ENV, "").strip().lower()
    if os.name != "posix":  # the helper's pipes are waited on with select()
        return False
    if value:
        return value in ("on", "1", "true", "yes")
    return (os.cpu_count() or 1) >= 2


class _Helper:
    """The helper process, who holds it, and what it has been asked to read ahead."""

    def __init__(self) -> None:
        root = str(Path(__file__).resolve().parents[2])  # the folder holding this memkern, first on the helper's path
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "memkern.governance.guard_worker"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, close_fds=True)
        assert self.process.stdin is not None and self.process.stdout is not None
        #: Frames are written here with ``send_frame`` (never through ``process.stdin``'s buffer) and
        #: read there with ``read_frame``.
        self.requests_fd, self.answers_fd = self.process.stdin.fileno(), self.process.stdout.fileno()
        os.set_blocking(self.requests_fd, False)
        self.ready = False
        #: Held by the thread using the helper (``owner``): for one write, from sending its texts to
        #: its last verdict, and on from one write to the next while texts are read ahead for it.
        self.busy = threading.Lock()
        self.owner: int | None = None
        #: Whether a write is collecting verdicts now.
        self.active = False
        #: Requests sent for writes still to come (``read_ahead``), oldest first.
        self.ahead: list[_Ahead] = []
        #: Answers to those requests read while another request's were collected, in order.
        self.stash: dict[int, list[dict[str, Any]]] = {}
        #: Requests sent so far; an answer names the request it answers.
        self.requests = 0

    def usable(self) -> bool:
        """Whether the helper has loaded the guard and still runs (checked without waiting)."""
        if self.process.poll() is not None:
            return False
        if not self.ready and select.select([self.answers_fd], [], [], 0)[0]:
            try:
                self.ready = read_frame(self.answers_fd, time.monotonic() + 5.0) == {"ready": True}
            except ValueError:
                self.ready = False
        return self.ready

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@dataclass(eq=False)  # one request each: compared by identity, not by (long) texts
class _Ahead:
    """A request sent before its write: the texts the caller said its next write will hold."""

    request: int
    texts: list[str]
    classifier: bool
    sent_at: float  # time.monotonic()


#: Seconds after a helper failed before another is started.
RESTART_AFTER = 60.0
#: Writes read ahead at most (the next one, and the one after it while the next is being added).
MAX_AHEAD = 2
#: Seconds after which texts read ahead for a write that never came no longer keep the helper from
#: other threads' writes.
AHEAD_FOR = 5.0

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


def _held() -> _Helper | None:
    """The helper, when this thread holds it (texts read ahead for its next write)."""
    helper = _helper
    return helper if helper is not None and helper.owner == threading.get_ident() else None


def _available() -> _Helper | None:
    """The helper when it is ready and free (then held by this thread); else None, starting one when
    there is none or the last one died (a write does not wait for it to start). Texts read ahead
    for a write that has not come for ``AHEAD_FOR`` seconds are dropped to free it."""
    helper, started = _running()
    if helper is None or started:
        return None
    if not helper.busy.acquire(blocking=False):
        with _lock:
            stale = (helper.ahead and not helper.active
                     and time.monotonic() - helper.ahead[-1].sent_at > AHEAD_FOR)
            if not stale:
                return None
            helper.owner = threading.get_ident()  # taken over as held: the lock passes to this thread
        _drop_ahead(helper)
    helper.owner = threading.get_ident()
    if helper.usable():
        return helper
    _let_go(helper)
    return None


def _let_go(helper: _Helper) -> None:
    """Free the helper held by this thread, unless texts are read ahead for its next write."""
    helper.active = False
    if helper.ahead and helper.process.poll() is None:
        return
    helper.ahead, helper.stash, helper.owner = [], {}, None
    helper.busy.release()


def _drop_ahead(helper: _Helper, keep_from: int | None = None) -> None:
    """Tell the helper to stop reading ahead for writes that will not come: every request read ahead,
    or those sent before ``keep_from``."""
    kept = [ahead for ahead in helper.ahead if keep_from is not None and ahead.request >= keep_from]
    dropped, helper.ahead = [ahead for ahead in helper.ahead if ahead not in kept], kept
    for ahead in dropped:
        helper.stash.pop(ahead.request, None)
        with contextlib.suppress(OSError):
            send_frame(helper.requests_fd, {"request": ahead.request, "stop_before": 0},
                       time.monotonic() + LATE_AFTER)


def _send_request(helper: _Helper, texts: list[str], classifier: bool) -> tuple[int, float] | None:
    """Hand ``texts`` to the held helper: the request's number and when it was sent; None if that
    failed (then the helper is retired and let go)."""
    helper.requests += 1
    request, sent_at = helper.requests, time.monotonic()
    try:
        sent = send_frame(helper.requests_fd, {"request": request, "texts": texts, "classifier": classifier},
                          sent_at + LATE_AFTER)
    except OSError:
        sent = False
    if sent:
        return request, sent_at
    _retire(helper)
    _let_go(helper)
    return None


def _read_ahead_for(helper: _Helper, texts: list[str], classifier: bool) -> _Ahead | None:
    """The request read ahead for a write of exactly ``texts``, if there is one."""
    return next((ahead for ahead in helper.ahead if ahead.texts == texts and ahead.classifier == classifier), None)


def _worth_sharing(texts: Sequence[str]) -> bool:
    return len(texts) > 1 and sum(map(len, texts)) >= SHARED_FROM


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


def read_ahead(texts: Sequence[str], classifier: bool) -> None:
    """Say that this thread's next write (or the one after it) will hold ``texts``, as the guard reads
    them (the memories' texts): the helper starts reading them now, while this process finishes the
    write before. A bulk import calls it for the current and the next session before adding the
    current one (texts already read ahead are not sent twice), so that the helper reads the next
    while this process embeds and stores the current. The verdicts are the same; a large write whose
    texts were not read ahead drops what was."""
    texts = list(texts)
    if not _worth_sharing(texts):
        return
    helper = _held() or _available()
    if helper is None or _read_ahead_for(helper, texts, classifier) is not None:
        return
    if len(helper.ahead) >= MAX_AHEAD:
        _drop_ahead(helper, keep_from=helper.ahead[1].request)
    sent = _send_request(helper, texts, classifier)  # on failure the helper is retired and let go
    if sent is not None:
        helper.ahead.append(_Ahead(sent[0], texts, classifier, sent[1]))


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


class _Silent(Exception):
    """The helper failed, fell silent or answered out of step: what it has not read is read here."""


class GuardRun:
    """The guard's reading of one write, begun by ``start``; ``verdicts()`` finishes it, and must be
    called (or ``abandon()``) so that the helper is free for the next write."""

    def __init__(self, texts: Sequence[str], classifier: bool) -> None:
        self._texts = list(texts)
        self._classifier = classifier
        self._request = 0  # the number of the request that handed the texts over
        self._sent_at = 0.0  # when, by time.monotonic()
        self._helper: _Helper | None = None
        #: Whether the helper takes part in this write (else this process reads every text).
        self.shared = False
        #: Whether the helper had been given the texts before the write began (``read_ahead``).
        self.read_ahead = False
        #: How many of the verdicts are the helper's (known once ``verdicts()`` returns).
        self.helped = 0
        helper = _held()
        if helper is not None and not helper.active:  # (when active, this thread's other write is using it)
            match = _read_ahead_for(helper, self._texts, classifier)
            if match is not None:
                _drop_ahead(helper, keep_from=match.request)
                helper.ahead.remove(match)
                self._take(helper, match.request, match.sent_at)
                self.read_ahead = True
                return
            if not _worth_sharing(self._texts):
                return  # read here; what was read ahead stays for the writes it was read for
            _drop_ahead(helper)
        elif _worth_sharing(self._texts):
            helper = _available()
        else:
            helper = None
        if helper is None:
            return
        sent = _send_request(helper, self._texts, classifier)
        if sent is not None:
            self._take(helper, *sent)

    def _take(self, helper: _Helper, request: int, sent_at: float) -> None:
        self._helper, self._request, self._sent_at, self.shared = helper, request, sent_at, True
        helper.active = True

    def verdicts(self) -> list[Verdict]:
        """Every text's verdict, in order: read here from the last text backwards and by the helper
        from the first, until the two meet (or here alone, if the helper fails or falls silent)."""
        helper, self._helper = self._helper, None
        if helper is None:
            return check_many(self._texts, classifier=self._classifier)
        found: list[Verdict | None] = [None] * len(self._texts)
        try:
            self._read_with(helper, found)
        except _Silent:
            _retire(helper)
        except BaseException:
            with contextlib.suppress(_Silent):
                self._tell(helper, 0)
            raise
        finally:
            _let_go(helper)
        missing = [index for index, verdict in enumerate(found) if verdict is None]
        for index, verdict in zip(missing, check_many([self._texts[i] for i in missing], classifier=self._classifier)):
            found[index] = verdict
        return [verdict for verdict in found if verdict is not None]

    def _read_with(self, helper: _Helper, found: list[Verdict | None]) -> None:
        """Fill ``found``: texts read here from the last backwards, a batch at a time (``batch_before``),
        the helper's verdicts taken as they come, until the two meet. This process never waits for the
        helper: the batch the helper is reading when they meet may be read here too."""
        reached = 0  # the helper has read the texts before this one (it reads them in order)
        claimed = len(found)  # the texts from this one on are read here
        while True:
            reached = self._collect(helper, found, reached)
            if claimed <= reached:
                break
            end, claimed = claimed, batch_before(self._texts, reached, claimed)
            self._tell(helper, claimed)
            for index, verdict in zip(range(claimed, end), check_many(self._texts[claimed:end],
                                                                       classifier=self._classifier)):
                found[index] = verdict
        if reached == 0 and time.monotonic() - self._sent_at > LATE_AFTER:
            raise _Silent("it read nothing of this write")  # stuck: retired, so that later writes do not wait on it

    def _tell(self, helper: _Helper, stop_before: int) -> None:
        """Tell the helper to start no text of this request from ``stop_before`` on (they are read here)."""
        try:
            told = send_frame(helper.requests_fd, {"request": self._request, "stop_before": stop_before},
                              time.monotonic() + LATE_AFTER)
        except OSError:
            told = False
        if not told:
            raise _Silent("it stopped reading")

    def _answers(self, helper: _Helper) -> Iterator[dict[str, Any]]:
        """The helper's answers to this request that have arrived, in order, without waiting: those
        read earlier by another write first. Answers to a request read ahead are kept for its write;
        others (a text it was reading when told to stop) are skipped."""
        yield from helper.stash.pop(self._request, [])
        while select.select([helper.answers_fd], [], [], 0)[0]:
            try:
                answer = read_frame(helper.answers_fd, time.monotonic() + LATE_AFTER)
            except ValueError as exc:
                raise _Silent(f"malformed answer: {exc}") from exc
            if answer is None:
                raise _Silent("it ended")
            if answer.get("request") == self._request:
                yield answer
            elif any(ahead.request == answer.get("request") for ahead in helper.ahead):
                helper.stash.setdefault(answer["request"], []).append(answer)

    def _collect(self, helper: _Helper, found: list[Verdict | None], reached: int) -> int:
        """Take the helper's verdicts that have arrived; returns how many texts from the first it has
        now read."""
        for answer in self._answers(helper):
            if "error" in answer:
                raise _Silent(f"it failed: {str(answer['error'])[:200]}")
            if answer.get("index") != reached or not isinstance(answer.get("verdict"), dict):
                raise _Silent(f"answered out of step: {str(answer)[:200]}")
            try:
                verdict = Verdict(**answer["verdict"])
            except TypeError as exc:
                raise _Silent(f"malformed verdict: {exc}") from exc
            if found[reached] is None:
                found[reached] = verdict
                self.helped += 1
            reached += 1
        return reached

    def abandon(self) -> None:
        """Free the helper when the write failed before ``verdicts()``: it is told to stop, and what it
        still sends about this write is skipped by the next one."""
        helper, self._helper = self._helper, None
        if helper is None:
            return
        try:
            self._tell(helper, 0)
        except _Silent:
            _retire(helper)
        finally:
            _let_go(helper)


def start(texts: Sequence[str], classifier: bool) -> GuardRun:
    """Begin the guard's rules and learned layer on ``texts``; the caller may work meanwhile."""
    return GuardRun(texts, classifier)
