"""The scheduler end to end: a worker SIGKILLed mid-job, order per cube, retries, background extract."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _embedders import ENV_VAR

from memkern import MemOS
from memkern.embed import default_embedder
from memkern.llm.base import LLMResponse, UsageLedger
from memkern.scheduler import JobStatus, Scheduler, SchedulerPolicy
from scheduler import effect_handler  # tests/scheduler is the "scheduler" package

TESTS = Path(__file__).resolve().parent.parent
FAST = SchedulerPolicy(lease_s=1.0, heartbeat_s=0.2, poll_s=0.05, backoff_base_s=0.05, backoff_jitter=0)

WORKER = """
import sys, time
sys.path[:0] = [{tests!r}]
from _embedders import embedder_by_name
from memkern import MemOS
from memkern.scheduler import Scheduler, SchedulerPolicy
from scheduler import effect_handler
mos = MemOS({db!r}, embedder=embedder_by_name(), llm=None)
effect_handler.register(mos.kernel.job_registry)
s = Scheduler(mos.dispatcher, policy=SchedulerPolicy(lease_s=1.0, heartbeat_s=0.2, poll_s=0.05), worker_id="doomed")
s.run()
"""


@pytest.fixture
def fast_mos(tmp_path, embedder):
    m = MemOS(tmp_path / "m.db", embedder=embedder, llm=None)
    m._scheduler = Scheduler(m.dispatcher, policy=FAST)
    yield m
    m.close()


@pytest.mark.parametrize("mode", ["before", "after"])
def test_a_worker_killed_mid_job_is_resumed_and_the_effect_happens_once(tmp_path, embedder, mode):
    db = tmp_path / "m.db"
    ready = tmp_path / "ready"
    with MemOS(db, embedder=embedder, llm=None) as mos:
        cube = mos.create_cube("c")
        effect_handler.register(mos.kernel.job_registry)
        scheduler = Scheduler(mos.dispatcher, policy=FAST, worker_id="survivor")
        job = scheduler.enqueue("test.effect", cube, {"mode": mode, "ready": str(ready)})
        # Import this module's handler also in the subprocess (tests/scheduler is the "scheduler" package).
        env = {**os.environ, ENV_VAR: embedder.name}
        proc = subprocess.Popen([sys.executable, "-c", WORKER.format(tests=str(TESTS), db=str(db))], env=env)
        try:
            deadline = time.monotonic() + 60
            while not ready.exists():
                assert proc.poll() is None, "the worker died early"
                assert time.monotonic() < deadline, "the worker never started the job"
                time.sleep(0.05)
            # The worker heartbeats: even after several lease lengths nobody else can take the job.
            time.sleep(2.5)
            held = scheduler.get(job.id)
            assert held.status is JobStatus.RUNNING and held.lease_owner == "doomed"
            assert scheduler.run_once() is None
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        assert scheduler.wait_quiescent(cube, timeout=30)
        done = scheduler.get(job.id)
        assert done.status is JobStatus.DONE and done.attempts == 2 and done.lease_owner == "survivor"
        assert done.result["attempt"] == 2
        effects = [m for m in cube.get_all({"kind": "document"}) if m.text == f"effect of job {job.id}"]
        assert len(effects) == 1
        adds = [op for op in cube.operations() if op.op == "add"]
        assert len(adds) == 1
        assert ready.with_suffix(".attempts").read_text().split() == ["1", "2"]


def test_jobs_of_one_cube_run_in_order_and_cubes_in_parallel(fast_mos):
    spans: dict[str, list[tuple[str, float, float]]] = {}
    lock = threading.Lock()

    def slow(ctx):
        start = time.monotonic()
        time.sleep(0.15)
        with lock:
            spans.setdefault(ctx.cube.name, []).append((ctx.payload["n"], start, time.monotonic()))

    fast_mos.kernel.job_registry.register_job_type("test.slow", slow, replace=True)
    a, b = fast_mos.create_cube("a"), fast_mos.create_cube("b")
    s = fast_mos.scheduler
    for n in range(4):
        s.enqueue("test.slow", a, {"n": n})
    for n in range(4):
        s.enqueue("test.slow", b, {"n": n})
    s.start(workers=4)
    try:
        assert s.wait_quiescent(timeout=30)
    finally:
        s.stop()
    for name in ("a", "b"):
        runs = spans[name]
        assert [n for n, _, _ in runs] == [0, 1, 2, 3]
        assert all(runs[i][2] <= runs[i + 1][1] for i in range(3)), "jobs of one cube overlapped"
    # The two cubes ran side by side: the whole took well under the 8 x 0.15 s of a single lane.
    first = min(t for runs in spans.values() for _, t, _ in runs)
    last = max(t for runs in spans.values() for _, _, t in runs)
    assert last - first < 1.1


def test_failing_job_retries_with_backoff_then_is_dead_lettered(fast_mos):
    times: list[float] = []

    def flaky(ctx):
        times.append(time.monotonic())
        raise RuntimeError(f"boom {ctx.job.attempts}")

    fast_mos.kernel.job_registry.register_job_type("test.flaky", flaky, replace=True)
    cube = fast_mos.create_cube("c")
    s = fast_mos.scheduler
    job = s.enqueue("test.flaky", cube, max_attempts=3)
    assert s.wait_quiescent(cube, timeout=10)
    dead = s.get(job.id)
    assert dead.status is JobStatus.DEAD and dead.attempts == 3
    assert dead.last_error == "RuntimeError: boom 3"
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(gaps) == 2 and gaps[0] >= 0.05 and gaps[1] >= 0.1  # 0.05 s, then 0.1 s
    assert [j.id for j in s.status(cube).dead] == [job.id]
    assert s.retry(job.id).status is JobStatus.PENDING


class StubLLM:
    """Extraction: every turn saying "lives in" becomes a fact; decisions: none (rules decide)."""

    name = "stub"

    def __init__(self) -> None:
        self.usage = UsageLedger()
        self.calls = 0

    def complete(self, messages, *, json_schema=None, max_tokens=512, temperature=0.0, operation="chat"):
        self.calls += 1
        if operation == "extract":
            prompt = messages[-1]["content"]
            facts = []
            for line in prompt.splitlines():
                if "lives in" in line and line.startswith("["):
                    handle = int(line[1:line.index("]")])
                    text = line.split(": ", 1)[-1].strip()
                    facts.append({"subject": None, "text": text, "kind": "fact", "time_expression": None,
                                  "date": None, "confidence": 0.9, "source_turns": [handle]})
            return LLMResponse(text=json.dumps({"facts": facts}), model=self.name)
        return LLMResponse(text=json.dumps({"decisions": []}), model=self.name)


def test_background_add_queues_extraction_and_rerunning_it_is_a_noop(tmp_path, embedder):
    llm = StubLLM()
    with MemOS(tmp_path / "m.db", embedder=embedder, llm=llm) as mos:
        mos._scheduler = Scheduler(mos.dispatcher, policy=FAST)
        cube = mos.create_cube("c")
        result = cube.add([{"role": "user", "content": "Alice lives in Lisbon", "id": "1"},
                           {"role": "user", "content": "nice weather today", "id": "2"}],
                          session_id="s", background=True)
        assert result.extraction is None and len(result.jobs) == 1 and llm.calls == 0
        assert mos.scheduler.wait_quiescent(cube, timeout=30)
        job = mos.scheduler.get(result.jobs[0])
        assert job.status is JobStatus.DONE and job.result["turns"] == 2, job.last_error
        facts = cube.get_all({"kind": "fact"})
        assert [f.text for f in facts] == ["Alice lives in Lisbon"]
        calls = llm.calls
        again = mos.scheduler.enqueue("extract", cube)
        assert mos.scheduler.wait_quiescent(cube, timeout=30)
        assert mos.scheduler.get(again.id).result["turns"] == 0 and llm.calls == calls
        # Without background the add behaves as before: extraction inline.
        inline = cube.add([{"role": "user", "content": "Bob lives in Oslo", "id": "3"}], session_id="s")
        assert inline.extraction is not None and inline.jobs == []


def test_extract_without_an_llm_is_dead_lettered_with_a_reason(fast_mos):
    cube = fast_mos.create_cube("c")
    job = fast_mos.scheduler.enqueue("extract", cube)
    fast_mos.scheduler.wait_quiescent(cube, timeout=10)
    dead = fast_mos.scheduler.get(job.id)
    assert dead.status is JobStatus.DEAD and "no LLM" in dead.last_error and dead.attempts == 1


def test_promote_calls_the_registered_hook_or_is_a_noop_with_a_reason(fast_mos):
    cube = fast_mos.create_cube("c")
    hot = cube.add(text="Alice likes green tea", kind="preference", infer=False).added[0]
    for _ in range(5):
        cube.search("green tea", top_k=1)
    fast_mos.kernel.access.flush()
    s = fast_mos.scheduler
    registry = fast_mos.kernel.job_registry
    saved = registry.hooks("promote")
    for name in saved:
        registry.unregister_hook("promote", name)
    try:
        job = s.enqueue("promote", cube)
        s.wait_quiescent(cube, timeout=10)
        result = s.get(job.id).result
        assert result["marked"] == [] and "no promote handler" in result["skipped"]
        seen = []
        registry.register_hook("promote", lambda ctx, items: seen.extend(i.id for i in items) or [i.id for i in items],
                      name="test")
        job = s.enqueue("promote", cube)
        s.wait_quiescent(cube, timeout=10)
        assert s.get(job.id).result["marked"] == [hot.id] and seen == [hot.id]
        assert "activated" in cube.get(hot.id).metadata["lifecycle"]
        # Marked memories are not promoted again.
        job = s.enqueue("promote", cube)
        s.wait_quiescent(cube, timeout=10)
        assert s.get(job.id).result["candidates"] == 0
    finally:
        registry.unregister_hook("promote", "test")
        for name, fn in saved.items():
            registry.register_hook("promote", fn, name=name)


def test_cli_scheduler_run_once_and_status(tmp_path, embedder):
    from typer.testing import CliRunner

    from memkern.cli.main import app

    db = tmp_path / "m.db"
    with MemOS(db, embedder=embedder, llm=None) as mos:
        cube = mos.create_cube("c")
        cube.add(text="a note", kind="document", infer=False)
        mos.scheduler.enqueue("rebuild", cube)
    runner = CliRunner()
    env = {"MEMKERN_LLM": ""}
    if embedder.name != default_embedder().name:
        pytest.skip("the CLI opens the store with the default embedder")
    out = runner.invoke(app, ["--db", str(db), "--json", "scheduler", "run", "--once", "--cube", "c"], env=env)
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["ran"] == 1
    out = runner.invoke(app, ["--db", str(db), "scheduler", "status"], env=env)
    assert out.exit_code == 0 and "done=1" in out.output
