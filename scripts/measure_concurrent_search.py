#!/usr/bin/env python3
"""Search latency while another thread writes to the same store: the agent loop of a server whose
requests share one MemOS.

One SQLite store in a temporary folder holds a LoCoMo conversation (one cube) and then receives
LongMemEval sessions into another cube from a second thread, one ``add`` per session (zero-LLM, the
write policy on). The conversation's questions are searched (top 10) once with nothing else
running and once while that thread writes; the script prints p50 / p95 / max of each run.

Usage:
    python scripts/measure_concurrent_search.py --locomo ../shared/data/locomo/locomo-dev.json \\
        --lme ../shared/data/longmemeval/lme-dev.json

The data files are read in place; never copy them into the repo.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from memkern.bench.ingest import load_sessions
from memkern.bench.locomo_data import load_locomo
from memkern.mos import MemCube, MemOS


def timed_searches(cube: MemCube, questions: list[str]) -> tuple[float, float, float]:
    """(p50, p95, max) in ms of one top-10 search per question."""
    seconds = []
    for question in questions:
        started = time.perf_counter()
        cube.search(question, top_k=10)
        seconds.append(time.perf_counter() - started)
    seconds.sort()
    return (1e3 * seconds[len(seconds) // 2], 1e3 * seconds[int(len(seconds) * 0.95)], 1e3 * seconds[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--locomo", type=Path, required=True, help="LoCoMo JSON (its first conversation is searched)")
    parser.add_argument("--lme", type=Path, required=True, help="LongMemEval JSON (its sessions are written meanwhile)")
    args = parser.parse_args()
    conversation = load_locomo(args.locomo).conversations[0]
    _, sessions = load_sessions(args.lme, 3000)
    questions = [question.text for question in conversation.questions]
    with tempfile.TemporaryDirectory(prefix="memkern-concurrent-") as tmp, MemOS(Path(tmp) / "store.db", llm=None) as mos:
        cube = mos.create_cube("searched", owner="bench")
        for session in conversation.sessions:
            if session.turns:
                cube.add(messages=[{"role": "user", "name": turn.speaker, "content": turn.text, "time": session.time,
                                    "id": turn.dia_id} for turn in session.turns], session_id=session.id, infer=False)
        timed_searches(cube, questions)  # warm: the index copy, the page cache
        p50, p95, worst = timed_searches(cube, questions)
        print(f"searches alone:           p50 {p50:.1f}  p95 {p95:.1f}  max {worst:.1f} ms")
        written = mos.create_cube("written", owner="bench")
        stop, done = threading.Event(), [0]

        def write() -> None:
            for session in sessions:
                if stop.is_set():
                    return
                written.add(messages=session.messages, session_id=session.session_id, infer=False)
                done[0] += 1

        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(0.5)
        p50, p95, worst = timed_searches(cube, questions)
        stop.set()
        writer.join()
        print(f"searches while writing:   p50 {p50:.1f}  p95 {p95:.1f}  max {worst:.1f} ms"
              f"  ({done[0]} sessions written meanwhile)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
