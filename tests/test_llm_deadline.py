"""An overall deadline per LLM-using operation (issue 10, item 7).

The model is a real loopback HTTP server (``fake_openai``) that hangs on every request.
Without a deadline, each call costs ``(retries + 1) x timeout_s``; with one, the
operation ends when the deadline passes, what it stored stays stored, and the error (or
the extraction report) says what happened.
"""

from __future__ import annotations

import json
import os
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _hash_embedder import main_embedder  # noqa: E402
from fake_openai import FakeOpenAI  # noqa: E402

from memkern import MemOS  # noqa: E402
from memkern.errors import InvalidInputError, LLMUnavailableError  # noqa: E402
from memkern.llm.deadline import llm_deadline  # noqa: E402
from memkern.llm.http import OpenAICompatibleLLM  # noqa: E402
from memkern.scheduler import JobStatus, Scheduler, SchedulerPolicy  # noqa: E402

#: Each request would wait this long for an answer; the deadline is far shorter.
TIMEOUT_S = 20.0
DEADLINE_S = "1.5"

TURNS = [
    {"role": "user", "name": "Alice", "content": "I moved to Lisbon last spring and I work as a nurse."},
    {"role": "assistant", "content": "Lisbon is lovely. How do you like the hospital?"},
    {"role": "user", "name": "Alice", "content": "A lot, and my cat Miso likes the balcony."},
]


def hanging():
    return FakeOpenAI(handler=lambda request: {"delay": 120, "then": "too late"})


def slow_llm(server) -> OpenAICompatibleLLM:
    return OpenAICompatibleLLM(server.base_url, "fake-model", timeout_s=TIMEOUT_S, retries=3, backoff_s=0.01)


@pytest.fixture(autouse=True)
def short_deadline(monkeypatch):
    monkeypatch.setenv("MEMKERN_LLM_DEADLINE_S", DEADLINE_S)


def test_a_call_inside_a_deadline_stops_at_it():
    with hanging() as server:
        llm = slow_llm(server)
        start = time.monotonic()
        with llm_deadline(), pytest.raises(LLMUnavailableError, match=r"deadline of 1\.5 s \(MEMKERN_LLM_DEADLINE_S\)"):
            llm.complete([{"role": "user", "content": "hello"}])
        assert time.monotonic() - start < TIMEOUT_S  # one request's timeout, let alone four, never ran out
        assert len(server.requests) == 1


def test_add_stores_the_turns_and_reports_the_timeout(tmp_path):
    with hanging() as server, MemOS(tmp_path / "s.db", embedder=main_embedder(), llm=slow_llm(server)) as mos:
        cube = mos.create_cube("c")
        start = time.monotonic()
        result = cube.add(TURNS, session_id="s1")
        assert time.monotonic() - start < TIMEOUT_S
        assert len(result.added) == 3
        report = result.extraction
        assert report is not None and report.status == "fallback"
        assert "extraction timed out" in report.error and "the 3 turns are stored" in report.error
        assert "MEMKERN_LLM_DEADLINE_S" in report.error
        assert len(cube.get_all().items) == 3


def test_chat_fails_with_a_clear_error_at_the_deadline(tmp_path):
    with hanging() as server, MemOS(tmp_path / "s.db", embedder=main_embedder(), llm=slow_llm(server)) as mos:
        cube = mos.create_cube("c")
        cube.add(TURNS, session_id="s1", infer=False)
        start = time.monotonic()
        with pytest.raises(LLMUnavailableError, match=r"did not answer within the operation's deadline of 1\.5 s"):
            cube.chat("Where does Alice live?", write_back=True)
        assert time.monotonic() - start < TIMEOUT_S
        assert len(cube.get_all().items) == 3  # nothing written, nothing lost


def test_a_background_extraction_stops_at_the_deadline_and_is_retried(tmp_path):
    with hanging() as server, MemOS(tmp_path / "s.db", embedder=main_embedder(), llm=slow_llm(server)) as mos:
        mos._scheduler = Scheduler(mos.dispatcher, policy=SchedulerPolicy(backoff_base_s=60, backoff_jitter=0))
        cube = mos.create_cube("c")
        queued = cube.add(TURNS, session_id="s1", background=True)
        assert len(queued.added) == 3 and len(queued.jobs) == 1
        start = time.monotonic()
        job = mos.scheduler.run_once(cube)
        assert job is not None and time.monotonic() - start < TIMEOUT_S
        job = mos.scheduler.get(queued.jobs[0])
        assert job.status is JobStatus.PENDING and job.attempts == 1   # to be retried, after its backoff
        assert "extraction timed out" in job.last_error and "MEMKERN_LLM_DEADLINE_S" in job.last_error
        assert "the 3 turns stay stored and unmarked" in job.last_error
        assert len(cube.get_all().items) == 3 and cube.get_all({"kind": "fact"}).items == []


def test_a_backlog_longer_than_the_deadline_keeps_what_was_read_and_hands_on_the_rest(tmp_path):
    """45 turns are read in three windows; the model answers the first and hangs on the others. The job
    keeps the first window's facts, marks its 15 turns, and queues a job for the other 30 instead of
    being retried from the start (which, on a backlog too long for one deadline, never ends)."""
    turns = [{"role": "user", "name": "Alice", "content": "I work as a nurse in Lisbon."}]
    turns += [{"role": "user", "name": "Alice", "content": f"Day {n}: the weather was fine and I walked {n} km."}
              for n in range(1, 45)]
    answer = json.dumps({"facts": [{"text": "Alice works as a nurse in Lisbon.", "kind": "fact", "subject": "Alice",
                                    "time_expression": None, "date": None, "confidence": 0.9, "source_turns": [1]}]})
    with FakeOpenAI(script=[answer], handler=lambda request: {"delay": 120, "then": "too late"}) as server, \
            MemOS(tmp_path / "s.db", embedder=main_embedder(), llm=slow_llm(server)) as mos:
        mos._scheduler = Scheduler(mos.dispatcher, policy=SchedulerPolicy(backoff_base_s=60, backoff_jitter=0))
        cube = mos.create_cube("c")
        queued = cube.add(turns, session_id="s1", background=True)
        assert len(queued.added) == 45 and len(queued.jobs) == 1
        start = time.monotonic()
        mos.scheduler.run_once(cube)
        assert time.monotonic() - start < TIMEOUT_S
        first = mos.scheduler.get(queued.jobs[0])
        assert first.status is JobStatus.DONE
        assert first.result["turns"] == 15 and first.result["unread"] == 30
        assert [f.text for f in cube.get_all({"kind": "fact"}).items] == ["Alice works as a nurse in Lisbon."]
        rest = mos.scheduler.get(first.result["continued_in"])
        assert rest.status is JobStatus.PENDING and len(rest.payload["memory_ids"]) == 30
        assert set(rest.payload["memory_ids"]) == {m.id for m in queued.added[15:]}
        mos.scheduler.run_once(cube)  # the model still hangs: nothing read, so this one is retried as before
        rest = mos.scheduler.get(rest.id)
        assert rest.status is JobStatus.PENDING and rest.attempts == 1
        assert "the 30 turns stay stored and unmarked" in rest.last_error


def test_a_bad_deadline_setting_is_refused(monkeypatch):
    monkeypatch.setenv("MEMKERN_LLM_DEADLINE_S", "soon")
    with pytest.raises(InvalidInputError, match="MEMKERN_LLM_DEADLINE_S must be a positive number"), llm_deadline():
        pass
