"""Crash safety and multi-process writing, through the public API.

A writer runs in a separate process (``sys.executable`` on a small script) and prints
the id of every message right after ``cube.add`` returns for it: that line is the
acknowledgement. The tests kill writers with SIGKILL or run two of them at once, then
reopen the store and check that every acknowledged message is there exactly once.
"""

from __future__ import annotations

import inspect
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
from _embedders import ENV_VAR

from memkern import MemOS
from memkern.store.sqlite import sqlite3

TESTS_DIR = Path(__file__).resolve().parent

WORDS = ["apples", "harbour", "violin", "glacier", "pottery", "lantern", "meadow", "copper", "falcon", "orchard"]


def content(mid):
    """The words of message ``mid``: the same in every process, different for every id.
    (Copied into the writer script with ``inspect.getsource``.)"""
    n = sum(ord(ch) * (i + 1) for i, ch in enumerate(mid))
    return f"note {mid} about {WORDS[n % len(WORDS)]} and {WORDS[(n // 10) % len(WORDS)]}"


WRITER = textwrap.dedent("""
    import json, os, sys, time
    sys.path.insert(0, {tests_dir!r})
    from _embedders import embedder_by_name
    from memkern import MemOS

    spec = json.loads(sys.argv[1])
    mos = MemOS(spec["db"], embedder=embedder_by_name())
    cube = mos.get_cube(spec["cube"])
    print("READY", flush=True)
    if spec.get("go"):  # start together with the other writer
        while not os.path.exists(spec["go"]):
            time.sleep(0.002)
    for mid in spec["ids"]:
        result = cube.add([{{"role": "user", "content": content(mid), "id": mid}}], session_id=spec["session"])
        print(("ADDED " if result.added else "DUP ") + mid, flush=True)
    mos.close()
""")


def _script(tmp_path: Path) -> Path:
    path = tmp_path / "writer.py"
    path.write_text(f"WORDS = {WORDS!r}\n\n" + inspect.getsource(content) + WRITER.format(tests_dir=str(TESTS_DIR)))
    return path


def _start(script: Path, db: Path, ids: list[str], embedder_name: str, cube: str = "c",
           session: str = "s", go: Path | None = None) -> subprocess.Popen:
    env = dict(os.environ, **{ENV_VAR: embedder_name})
    spec = json.dumps({"db": str(db), "cube": cube, "session": session, "ids": ids,
                       "go": str(go) if go else None})
    return subprocess.Popen([sys.executable, str(script), spec], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _read_acks(proc: subprocess.Popen, stop_after: int, deadline_s: float = 60.0) -> list[str]:
    """Acknowledged ids, read line by line until ``stop_after`` of them (or the writer ends)."""
    acks: list[str] = []
    deadline = time.monotonic() + deadline_s
    while len(acks) < stop_after:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith(("ADDED ", "DUP ")):
            acks.append(line.split(" ", 1)[1].strip())
        assert time.monotonic() < deadline, "the writer is too slow"
    return acks


def _kill(proc: subprocess.Popen) -> list[str]:
    """SIGKILL the writer; returns the acknowledgements it printed before dying."""
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return [line.split(" ", 1)[1].strip() for line in out.splitlines() if line.startswith(("ADDED ", "DUP "))]


def _integrity(db: Path) -> None:
    con = sqlite3.connect(str(db))
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        con.close()


def _stored(cube) -> list:
    """Every memory of the cube, page by page."""
    found, offset = [], 0
    while offset is not None:
        page = cube.get_all(filters={"state": None}, limit=1000, offset=offset)
        found += page.items
        offset = page.next_offset
    return found


def _message_ids(memories) -> Counter:
    return Counter(mid for m in memories for mid in m.provenance.message_ids)


def _check_positions(memories, session: str = "s") -> None:
    positions = sorted(m.provenance.position for m in memories if m.provenance.session_id == session)
    assert positions == list(range(len(positions))), "turn positions must be 0..n-1 with no repeats or gaps"


@pytest.fixture
def db_with_cube(tmp_path, embedder):
    db = tmp_path / "m.db"
    with MemOS(db, embedder=embedder) as mos:
        mos.create_cube("c")
    return db


def test_sigkill_mid_write_loses_no_acknowledged_message(tmp_path, embedder, db_with_cube):
    db = db_with_cube
    script = _script(tmp_path)
    ids = [f"m{i}" for i in range(5000)]

    # First writer: killed after 25 acknowledgements.
    proc = _start(script, db, ids, embedder.name)
    acked = _read_acks(proc, 25)
    assert len(acked) == 25, proc.stderr.read() if proc.poll() is not None else "writer stalled"
    acked += _kill(proc)

    # A second writer resumes from the start (as a client retrying after a crash would),
    # re-sending what was already stored, and is killed in turn.
    proc = _start(script, db, ids, embedder.name)
    again = _read_acks(proc, len(acked) + 20)
    assert len(again) == len(acked) + 20
    again += _kill(proc)
    acknowledged = set(acked) | set(again)

    _integrity(db)
    with MemOS(db, embedder=embedder) as mos:
        cube = mos.get_cube("c")
        memories = _stored(cube)
        counts = _message_ids(memories)
        missing = acknowledged - set(counts)
        assert not missing, f"acknowledged but lost: {sorted(missing)[:10]}"
        assert max(counts.values()) == 1, f"duplicated: {[k for k, v in counts.items() if v > 1][:10]}"
        # A sequential writer leaves a prefix: at most one write landed without its acknowledgement.
        assert set(counts) == set(ids[:len(counts)])
        assert len(acknowledged) <= len(counts) <= len(acknowledged) + 1
        _check_positions(memories)
        for memory in memories:
            assert memory.text == f"user: {content(memory.provenance.message_ids[0])}"

        target = sorted(acknowledged)[3]
        hits = cube.search(f"note {target}", top_k=3)
        assert target in [h.memory.provenance.message_ids[0] for h in hits]

        # and the store still takes writes
        result = cube.add([{"role": "user", "content": "after the crash", "id": "after"}], session_id="s")
        assert len(result.added) == 1
        assert result.added[0].provenance.position == len(counts)
    _integrity(db)


def test_two_processes_writing_one_cube(tmp_path, embedder, db_with_cube):
    db = db_with_cube
    script = _script(tmp_path)
    shared = [f"shared{i}" for i in range(60)]
    only_a = [f"a{i}" for i in range(40)]
    only_b = [f"b{i}" for i in range(40)]
    # both send the shared ids in the same order, so that they race for each of them
    ids_a = [x for pair in zip(shared, only_a + [None] * 20) for x in pair if x is not None]
    ids_b = [x for pair in zip(shared, only_b + [None] * 20) for x in pair if x is not None]
    go = tmp_path / "go"
    procs = [_start(script, db, ids_a, embedder.name, go=go), _start(script, db, ids_b, embedder.name, go=go)]
    for proc in procs:
        assert proc.stdout.readline().strip() == "READY", proc.stderr.read()
    go.touch()
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append(out)

    added = Counter()
    for out in outputs:
        acks = [line.split() for line in out.splitlines() if line.startswith(("ADDED ", "DUP "))]
        assert len(acks) in (len(ids_a), len(ids_b))
        added.update(mid for status, mid in acks if status == "ADDED")
    expected = set(shared) | set(only_a) | set(only_b)
    # every message was reported added exactly once, by one of the two writers
    assert set(added) == expected and max(added.values()) == 1

    _integrity(db)
    with MemOS(db, embedder=embedder) as mos:
        cube = mos.get_cube("c")
        memories = _stored(cube)
        counts = _message_ids(memories)
        assert set(counts) == expected
        assert max(counts.values()) == 1
        assert len(memories) == len(expected)
        _check_positions(memories)
        hits = cube.search("note shared7", top_k=3)
        assert "shared7" in [h.memory.provenance.message_ids[0] for h in hits]
        # the index seen by this process matches the store
        assert len(mos.kernel.indexes.get(cube.id, cube.info.dim)) == len(expected)
