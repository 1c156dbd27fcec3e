"""The agent loop: ``memkern bench mixed --items N [--rounds R]``.

An agent writes every turn and searches before the next one. After ``items`` synthetic
turns are ingested (the conversations of :mod:`memkern.bench.scale`), each round runs,
with one question of the corpus:

    search  add  search  update  search  delete  search

through the public API (``cube.search``, ``cube.add``, ``cube.update``, ``cube.delete``),
each call timed end to end. The first search of a round is the baseline ("search alone":
no write since the previous search); the other three are "search after add / update /
delete", each asking the same question as the baseline. Each write touches a memory chosen
at random among those stored. Reported: p50 and p95 of every operation and, for searches
after a write, their ratio to a search alone; the process's memory (resident now, and its
peak).
"""

from __future__ import annotations

import platform
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memkern.bench.metrics import percentile_ms
from memkern.bench.scale import TOP_K, generate, resident_mb

#: ``progress(label, done, total)``: labels "ingest" (one unit per turn) and "rounds".
ProgressCallback = Callable[[str, int, int], None]

OPERATIONS = ("search", "add", "search_after_add", "update", "search_after_update", "delete",
              "search_after_delete")


def run_mixed(items: int = 10_000, rounds: int = 200, seed: int = 7, progress: ProgressCallback | None = None,
              *, workdir: str | Path | None = None, embedder: Any = None) -> dict[str, Any]:
    """Ingest ``items`` turns, then time ``rounds`` agent-loop rounds; returns a JSON-ready dict."""
    from memkern import __version__
    from memkern.errors import InvalidInputError
    from memkern.mos import MemOS

    if items < 2 or rounds < 1:
        raise InvalidInputError(f"items must be at least 2 and rounds at least 1, not {items} and {rounds}")
    corpus = generate(items, rounds, seed)
    rng = random.Random(seed)
    timings: dict[str, list[float]] = {name: [] for name in OPERATIONS}

    def timed(name: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = call(*args, **kwargs)
        timings[name].append(time.perf_counter() - started)
        return result

    with tempfile.TemporaryDirectory(prefix="memkern-mixed-", dir=workdir) as tmp, \
            MemOS(Path(tmp) / "mixed.db", embedder=embedder) as mos:
        cube = mos.create_cube("mixed", owner="bench", description=f"bench mixed, seed {seed}")
        stored: list[str] = []
        if progress:
            progress("ingest", 0, corpus.n_turns)
        ingest_started = time.perf_counter()
        for session_id, messages in corpus.sessions:
            stored += [memory.id for memory in cube.add(messages=messages, session_id=session_id).added]
            if progress:
                progress("ingest", len(stored), corpus.n_turns)
        ingest_s = time.perf_counter() - ingest_started

        started = time.perf_counter()
        cube.search(corpus.questions[0].text, top_k=TOP_K)  # loads the index: timed apart
        first_search_s = time.perf_counter() - started
        started = time.perf_counter()
        mos.kernel.indexes.wait_approximate()  # built in the background past ANN_MIN_ROWS rows
        approximate_s = time.perf_counter() - started

        for number, question in enumerate(corpus.questions[:rounds], 1):
            timed("search", cube.search, question.text, top_k=TOP_K)
            message = {"role": "user", "name": "Agent", "content": f"Round {number}: I noted {question.text}",
                       "id": f"round-{number}"}
            added = timed("add", cube.add, messages=[message], session_id="agent-loop")
            stored += [memory.id for memory in added.added]
            timed("search_after_add", cube.search, question.text, top_k=TOP_K)
            target = stored[rng.randrange(len(stored))]
            timed("update", cube.update, target, f"Revised in round {number}: {question.text}")
            timed("search_after_update", cube.search, question.text, top_k=TOP_K)
            victim = stored.pop(rng.randrange(len(stored)))
            timed("delete", cube.delete, victim)
            timed("search_after_delete", cube.search, question.text, top_k=TOP_K)
            if progress:
                progress("rounds", number, rounds)
        embedder_name, dim = mos.embedder.name, mos.embedder.dim
        memory = resident_mb()

    operations = {name: {"p50_ms": percentile_ms(seconds, 50), "p95_ms": percentile_ms(seconds, 95),
                         "max_ms": round(max(seconds) * 1000, 3)} for name, seconds in timings.items()}
    alone = operations["search"]
    for name in ("search_after_add", "search_after_update", "search_after_delete"):
        entry = operations[name]
        for stat in ("p50", "p95"):
            value, base = entry[f"{stat}_ms"], alone[f"{stat}_ms"]
            entry[f"{stat}_ratio"] = round(value / base, 2) if value is not None and base else None
    return {
        "items": corpus.n_turns,
        "rounds": min(rounds, len(corpus.questions)),
        "ingest_s": round(ingest_s, 2),
        "ingest_turns_per_s": round(corpus.n_turns / ingest_s, 1) if ingest_s > 0 else None,
        "first_search_ms": round(first_search_s * 1000, 1),
        "approximate_index_wait_s": round(approximate_s, 1),
        "operations": operations,
        "memory": memory,
        "config": {"seed": seed, "top_k": TOP_K, "embedder": embedder_name, "dim": dim,
                   "memkern_version": __version__, "python": platform.python_version(),
                   "platform": platform.platform()},
    }


def format_report(result: dict[str, Any]) -> str:
    """A plain-text report of a :func:`run_mixed` result."""
    config = result.get("config", {})
    memory = result.get("memory", {})
    lines = [
        (f"memkern bench mixed: {result['items']:,} turns, {result['rounds']} rounds of search, add, search, "
         "update, search, delete, search"),
        (f"embedder {config.get('embedder')} ({config.get('dim')} dimensions), memkern "
         f"{config.get('memkern_version')}, python {config.get('python')}, seed {config.get('seed')}"),
        f"ingest {result['ingest_turns_per_s']:,.0f} turns/s; first search {result['first_search_ms']:,.1f} ms; "
        f"approximate index ready {result['approximate_index_wait_s']:,.1f} s later; "
        f"memory {memory.get('rss_mb')} MB resident (peak {memory.get('peak_rss_mb')} MB)",
        "",
        f"{'operation':<22}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'p50 x':>8}{'p95 x':>8}",
    ]
    for name, entry in result["operations"].items():
        ratios = (f"{entry['p50_ratio']:>8.2f}{entry['p95_ratio']:>8.2f}" if "p50_ratio" in entry
                  else f"{'':>8}{'':>8}")
        lines.append(f"{name:<22}{entry['p50_ms']:>9.2f}{entry['p95_ms']:>9.2f}{entry['max_ms']:>9.2f}{ratios}")
    lines.append("")
    lines.append("p50 x / p95 x: a search after that write against a search alone (same questions).")
    return "\n".join(lines)
