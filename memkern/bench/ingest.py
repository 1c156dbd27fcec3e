"""``memkern bench ingest``: zero-LLM ingestion speed on real conversations, with the write policy on.

Reads a LoCoMo file (a list of conversations) or a LongMemEval file (a list of questions, each
with a haystack of sessions; a session shared by several questions is ingested once) and adds
every session with one ``cube.add`` (``infer=False``: no model), one cube per conversation or
question, in a temporary SQLite store with the bundled embedder. The cube's default policy
applies: PII tagged and the poisoning guard run on every turn, as on any write. As ``memkern add
--messages FILE`` does, each next session's turns are read ahead by the guard's helper process
while the current one is added (``memkern.ops.writes.read_turns_ahead``); ``read_ahead=False``
(``--no-read-ahead``) measures successive adds alone.

It reports turns per second and the share of the time spent in each stage of the write path
(PII detection, the guard, the embedder, the store transaction; the rest is the reader, the
dispatcher and Python around them), measured by timing those calls as ingestion makes them.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memkern.errors import InvalidInputError

#: ``progress(label, done, total)``: label "ingest", one unit per turn.
ProgressCallback = Callable[[str, int, int], None]

STAGES = ("pii", "guard", "embed", "store")
#: Seconds the warm-up waits for the guard's helper process to be ready (it takes about one).
HELPER_WAIT = 30.0


@dataclass(frozen=True)
class IngestSession:
    """One session to add: its cube (conversation or question), id, time and messages."""

    cube: str
    session_id: str
    messages: list[dict[str, Any]]


def load_sessions(path: str | Path, max_turns: int | None = None) -> tuple[str, list[IngestSession]]:
    """The data set's format (``locomo`` or ``longmemeval``) and its sessions, up to about ``max_turns`` turns."""
    from memkern.bench.locomo_data import Conversation, load_locomo
    from memkern.bench.longmemeval import load_longmemeval

    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"data file {str(path)!r} does not exist or is not a file")
    with path.open(encoding="utf-8") as handle:
        head = handle.read(4096)
    kind = "longmemeval" if "haystack_sessions" in head or "question_id" in head else "locomo"
    conversations: list[Conversation]
    if kind == "longmemeval":
        conversations = [question.conversation for question in load_longmemeval(path)]
    else:
        conversations = load_locomo(path).conversations
    sessions: list[IngestSession] = []
    seen: set[str] = set()
    turns = 0
    for conversation in conversations:
        for session in conversation.sessions:
            if session.id in seen and kind == "longmemeval" or not session.turns:
                continue
            seen.add(session.id)
            messages = [{"role": turn.speaker, "content": turn.text, "time": session.time, "id": turn.dia_id}
                        for turn in session.turns]
            sessions.append(IngestSession(conversation.sample_id, session.id, messages))
            turns += len(messages)
            if max_turns is not None and turns >= max_turns:
                return kind, sessions
    return kind, sessions


class StageTimer:
    """Seconds spent in named calls: ``wrap(name, fn)`` returns ``fn`` timed under ``name``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        #: Writes the guard read, those of which its helper process read a part (``guard_helper``), and
        #: those whose texts it had been given ahead.
        self.writes = self.shared_writes = self.ahead_writes = 0

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - started
        return timed


@contextmanager
def _timed_stages(kernel: Any, timer: StageTimer) -> Iterator[None]:
    """The write path's stages timed while ingesting: the guard and PII modules' entry points,
    the kernel's embed and the store's add_memories (restored afterwards)."""
    from memkern.governance import guard_helper, pii

    saved = (guard_helper.start, guard_helper.GuardRun.verdicts, pii.find_pii)
    start = guard_helper.start

    def counted_start(texts: Any, classifier: bool) -> guard_helper.GuardRun:
        run = start(texts, classifier)
        timer.writes += 1
        timer.shared_writes += run.shared
        timer.ahead_writes += run.read_ahead
        return run

    guard_helper.start = timer.wrap("guard", counted_start)
    guard_helper.GuardRun.verdicts = timer.wrap("guard", guard_helper.GuardRun.verdicts)  # type: ignore[method-assign]
    pii.find_pii = timer.wrap("pii", pii.find_pii)
    kernel.embed = timer.wrap("embed", kernel.embed)
    kernel.store.add_memories = timer.wrap("store", kernel.store.add_memories)
    try:
        yield
    finally:
        guard_helper.start, guard_helper.GuardRun.verdicts, pii.find_pii = saved  # type: ignore[method-assign]
        del kernel.embed
        del kernel.store.add_memories


def run_ingest(data_path: str | Path, max_turns: int | None = 3000, progress: ProgressCallback | None = None,
               *, workdir: str | Path | None = None, read_ahead: bool = True) -> dict[str, Any]:
    """Ingest the sessions of ``data_path`` (up to ``max_turns`` turns); returns a JSON-ready dict."""
    from memkern import __version__
    from memkern.governance import guard, guard_helper
    from memkern.mos import MemOS
    from memkern.ops.writes import read_turns_ahead

    kind, sessions = load_sessions(data_path, max_turns)
    total_turns = sum(len(s.messages) for s in sessions)
    total_chars = sum(len(str(m["content"])) for s in sessions for m in s.messages)
    timer = StageTimer()
    done = quarantined = 0
    with tempfile.TemporaryDirectory(prefix="memkern-ingest-", dir=workdir) as tmp, \
            MemOS(Path(tmp) / "ingest.db", llm=None) as mos:
        cubes: dict[str, Any] = {}
        mos.create_cube("warmup", owner="bench").add(messages=[{"role": "user", "content": "warm up"}], infer=False)
        # One-off costs stay out of the timing: the model and guard loaded above, the guard's helper here.
        helper_ready = guard_helper.prepare(wait=HELPER_WAIT)
        with _timed_stages(mos.kernel, timer):
            started = time.perf_counter()
            for index, session in enumerate(sessions):
                if read_ahead:  # as ``memkern add --messages FILE``: this session's and the next one's turns
                    for coming in sessions[index:index + 2]:
                        read_turns_ahead(coming.messages)
                if session.cube not in cubes:
                    cubes[session.cube] = mos.create_cube(f"c{len(cubes)}", owner="bench")
                result = cubes[session.cube].add(messages=session.messages, session_id=session.session_id,
                                                 infer=False)
                quarantined += sum(1 for memory in result.added if memory.state.value == "quarantined")
                done += len(session.messages)
                if progress:
                    progress("ingest", done, total_turns)
            elapsed = time.perf_counter() - started
    stages = {name: round(seconds, 3) for name, seconds in timer.seconds.items()}
    stages["other"] = round(max(0.0, elapsed - sum(timer.seconds.values())), 3)
    return {
        "benchmark": "ingest", "memkern_version": __version__, "data": str(data_path), "format": kind,
        "cubes": len({s.cube for s in sessions}), "sessions": len(sessions), "turns": total_turns,
        "mean_turn_chars": round(total_chars / max(1, total_turns), 1), "quarantined": quarantined,
        "guard_classifier": guard.classifier_enabled(),
        "guard_helper": "ready" if helper_ready else "on, not ready" if guard_helper.enabled() else "off",
        "guard_helper_writes": [timer.shared_writes, timer.writes], "read_ahead": read_ahead,
        "read_ahead_writes": timer.ahead_writes,
        "seconds": round(elapsed, 3), "turns_per_s": round(total_turns / elapsed, 1) if elapsed else None,
        "stage_seconds": stages,
        "stage_share": {name: round(seconds / elapsed, 3) if elapsed else None for name, seconds in stages.items()},
    }


def format_report(result: dict[str, Any]) -> str:
    lines = [f"memkern bench ingest ({result['format']}, {result['data']})",
             f"{result['turns']} turns in {result['sessions']} sessions, {result['cubes']} cubes, "
             f"{result['mean_turn_chars']} characters per turn; write policy on (PII, guard, its learned layer "
             f"{'on' if result['guard_classifier'] else 'off'}): {result['quarantined']} quarantined",
             "the guard's helper process ({} after the warm-up) read part of {} of {} writes, {} of them read "
             "ahead{} (the guard stage is the time this process spent on the guard: its part and taking the "
             "helper's verdicts)".format(result["guard_helper"], *result["guard_helper_writes"],
                                         result["read_ahead_writes"], "" if result["read_ahead"] else " (off)"),
             f"{result['seconds']} s: {result['turns_per_s']} turns/s", "", "stage    seconds  share"]
    for name, seconds in result["stage_seconds"].items():
        lines.append(f"{name:<8} {seconds:>7.3f}  {result['stage_share'][name]:>5.1%}")
    return "\n".join(lines)

