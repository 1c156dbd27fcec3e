"""The guard's helper process reads part of a large write: same verdicts as reading it here, and a
helper that fails, dies or is turned off costs speed, never a verdict or a write."""

from __future__ import annotations

import os
import signal
import time

import pytest

from memkern.bench.guard import load_eval_set
from memkern.governance import guard, guard_helper, guard_worker
from memkern.mos import MemOS


def _stop_helper() -> None:
    with guard_helper._lock:
        helper, guard_helper._helper = guard_helper._helper, None
    if helper is not None:
        helper.stop()


@pytest.fixture(autouse=True)
def helper_on(monkeypatch: pytest.MonkeyPatch):
    """Each test starts without a helper (another test file may have left one) and the helper on."""
    _stop_helper()
    monkeypatch.setenv(guard_helper.HELPER_ENV, "on")
    monkeypatch.setattr(guard_helper, "_failed_at", float("-inf"))
    yield
    _stop_helper()


def _ready_helper() -> guard_helper._Helper:
    """Start the helper and wait until it has loaded the guard (then leave it free)."""
    assert guard_helper.prepare(wait=60), "the guard's helper did not start"
    assert guard_helper._helper is not None
    return guard_helper._helper


def test_prepare_starts_one_helper_and_says_when_it_is_ready():
    assert guard_helper.prepare() is False  # started now, not ready yet
    first = guard_helper._helper
    assert first is not None
    assert guard_helper.prepare(wait=60) is True
    assert guard_helper._helper is first  # the same process, not a second one


def _writes() -> list[list[str]]:
    """Batches of at least ``SHARED_FROM`` characters mixing poison and hard benign texts, long and short."""
    rows = [row["text"] for row in load_eval_set()][::7][:240]
    filler = "We talked about the weather, the garden and the new bakery on the corner. " * 60
    batches = [[filler] + rows[start:start + 20] + [filler] for start in range(0, len(rows), 20)]
    assert all(sum(map(len, batch)) >= guard_helper.SHARED_FROM for batch in batches)
    return batches


def _as_data(verdicts: list[guard.Verdict]) -> list[tuple]:
    return [(v.score, v.reasons, v.classifier_probability, v.classifier_flagged, v.quarantine) for v in verdicts]


def test_a_write_read_in_part_by_the_helper_gets_the_verdicts_read_here():
    _ready_helper()
    for texts in _writes():
        run = guard_helper.start(texts, True)
        assert run.shared  
        assert _as_data(run.verdicts()) == _as_data(guard.check_many(texts, classifier=True))
    run = guard_helper.start(_writes()[0], False)
    assert run.shared
    assert _as_data(run.verdicts()) == _as_data(guard.check_many(_writes()[0], classifier=False))


def test_a_small_write_and_a_write_while_the_helper_is_busy_are_read_here():
    _ready_helper()
    assert not guard_helper.start(["short", "texts"], True).shared
    first = guard_helper.start(_writes()[0], True)
    second = guard_helper.start(_writes()[1], True)  # the helper is held by the first write
    assert first.shared and not second.shared
    assert _as_data(second.verdicts()) == _as_data(guard.check_many(_writes()[1], classifier=True))
    assert _as_data(first.verdicts()) == _as_data(guard.check_many(_writes()[0], classifier=True))


def test_a_helper_that_dies_mid_write_costs_nothing_but_time_and_is_replaced(monkeypatch: pytest.MonkeyPatch):
    helper = _ready_helper()
    texts = _writes()[2]
    run = guard_helper.start(texts, True)
    assert run.shared
    helper.process.kill()
    assert _as_data(run.verdicts()) == _as_data(guard.check_many(texts, classifier=True))
    assert guard_helper._helper is None  # retired; none is started again at once
    assert guard_helper._available() is None and guard_helper._helper is None
    monkeypatch.setattr(guard_helper, "_failed_at", float("-inf"))
    assert _ready_helper() is not helper


def test_a_stuck_helper_is_stopped_and_its_part_read_here(monkeypatch: pytest.MonkeyPatch):
    helper = _ready_helper()
    os.kill(helper.process.pid, signal.SIGSTOP)  # alive, but reads and answers nothing
    monkeypatch.setattr(guard_helper, "LATE_AFTER", 0.0)
    texts = _writes()[3]
    run = guard_helper.start(texts, True)
    assert run.shared
    assert _as_data(run.verdicts()) == _as_data(guard.check_many(texts, classifier=True))
    assert run.helped == 0
    assert helper.process.poll() is not None and guard_helper._helper is None


def test_a_helper_that_stopped_reading_never_blocks_a_write(monkeypatch: pytest.MonkeyPatch):
    helper = _ready_helper()
    os.kill(helper.process.pid, signal.SIGSTOP)
    monkeypatch.setattr(guard_helper, "LATE_AFTER", 0.2)
    texts = ["We talked about the weather, the garden and the new bakery. " * 2000] * 4  # more than a pipe holds
    run = guard_helper.start(texts, True)
    assert not run.shared  # the texts could not be handed over in time: read here, helper stopped
    assert helper.process.poll() is not None and guard_helper._helper is None
    assert _as_data(run.verdicts()) == _as_data(guard.check_many(texts, classifier=True))


def test_a_write_whose_embedding_fails_frees_the_helper(tmp_path, monkeypatch: pytest.MonkeyPatch):
    with MemOS(tmp_path / "m.db", llm=None) as mos:
        cube = mos.create_cube("c")
        _ready_helper()
        texts = _writes()[0]

        def broken(_texts):
            raise RuntimeError("embedder down")

        monkeypatch.setattr(mos.kernel, "embed", broken)
        with pytest.raises(RuntimeError, match="embedder down"):
            cube.add(messages=[{"role": "user", "content": text} for text in texts], infer=False)
        assert cube.get_all().items == []
        monkeypatch.undo()
        monkeypatch.setenv(guard_helper.HELPER_ENV, "on")
        run = guard_helper.start(texts, True)
        assert run.shared  # free again
        run.verdicts()
        result = cube.add(messages=[{"role": "user", "content": text} for text in _writes()[1]], infer=False)
        quarantined = {item.text for item in cube.get_all({"state": "quarantined"}, limit=500).items}
        active = {item.text for item in cube.get_all(limit=500).items}
    assert len(result.added) == len(quarantined) + len(active) == len(set(_writes()[1]))
    stored = sorted(quarantined | active)
    assert quarantined == {text for text, verdict in zip(stored, guard.check_many(stored)) if verdict.quarantine}


def test_an_answer_to_another_request_is_never_taken_for_this_one():
    helper = _ready_helper()
    guard_worker.send_frame(helper.requests_fd, {"request": 999, "texts": ["stray"] * 3, "classifier": True},
                             time.monotonic() + 5)
    texts = _writes()[4]
    run = guard_helper.start(texts, True)
    assert run.shared
    assert _as_data(run.verdicts()) == _as_data(guard.check_many(texts, classifier=True))
    assert guard_helper._helper is helper and helper.process.poll() is None  # its answers to 999 were skipped


def test_the_helper_reads_from_the_first_text_while_the_caller_works():
    _ready_helper()
    texts = _writes()[1] * 3
    run = guard_helper.start(texts, True)
    time.sleep(0.5)  # the caller embeds meanwhile
    assert _as_data(run.verdicts()) == _as_data(guard.check_many(texts, classifier=True))
    assert 0 < run.helped <= len(texts)


def test_a_failure_reading_this_part_frees_the_helper_in_step(monkeypatch: pytest.MonkeyPatch):
    _ready_helper()
    run = guard_helper.start(_writes()[5], True)
    assert run.shared

    def failing(texts, classifier):
        raise RuntimeError("weights unreadable")

    with monkeypatch.context() as patch:
        patch.setattr(guard_helper, "check_many", failing)
        with pytest.raises(RuntimeError, match="weights unreadable"):
            run.verdicts()
    texts = _writes()[6]
    run = guard_helper.start(texts, True)
    assert run.shared  # free, and its answer to the failed write was read and dropped
    assert _as_data(run.verdicts()) == _as_data(guard.check_many(texts, classifier=True))
    assert guard_helper._helper is not None and guard_helper._helper.process.poll() is None


def test_a_forked_child_leaves_the_parents_helper_alone():
    helper = _ready_helper()
    child = os.fork()
    if child == 0:  # the child: no helper of its own yet, and the parent's pipes closed
        os._exit(0 if guard_helper._helper is None else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    texts = _writes()[7]
    run = guard_helper.start(texts, True)
    assert run.shared and guard_helper._helper is helper
    assert _as_data(run.verdicts()) == _as_data(guard.check_many(texts, classifier=True))


def test_off_starts_no_helper(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(guard_helper.HELPER_ENV, "off")
    run = guard_helper.start(_writes()[0], True)
    assert not run.shared and guard_helper._helper is None
    assert _as_data(run.verdicts()) == _as_data(guard.check_many(_writes()[0], classifier=True))


def _free() -> bool:
    """Whether another thread could take the helper now."""
    helper = guard_helper._helper
    assert helper is not None
    if not helper.busy.acquire(blocking=False):
        return False
    helper.busy.release()
    return True


def test_texts_read_ahead_are_taken_by_their_write_with_the_same_verdicts():
    _ready_helper()
    first, second, third = _writes()[0], _writes()[1], _writes()[2]
    guard_helper.read_ahead(first, True)
    guard_helper.read_ahead(second, True)  # the one after: read once the first is met
    run = guard_helper.start(first, True)
    assert run.shared and run.read_ahead
    assert _as_data(run.verdicts()) == _as_data(guard.check_many(first, classifier=True))
    assert not _free()  # held on for the second write
    time.sleep(0.3)  # the helper reads the second meanwhile (its answers may already have been read)
    guard_helper.read_ahead(third, True)
    run = guard_helper.start(second, True)
    assert run.read_ahead
    assert _as_data(run.verdicts()) == _as_data(guard.check_many(second, classifier=True))
    assert run.helped > 0
    run = guard_helper.start(third, True)
    assert run.read_ahead
    assert _as_data(run.verdicts()) == _as_data(guard.check_many(third, classifier=True))
    assert _free()  # nothing more read ahead: let go


def test_a_write_not_read_ahead_drops_what_was_and_still_gets_its_verdicts():
    helper = _ready_helper()
    guard_helper.read_ahead(_writes()[3], True)
    texts = _writes()[4]
    run = guard_helper.start(texts, True)
    assert run.shared and not run.read_ahead
    assert _as_data(run.verdicts()) == _as_data(guard.check_many(texts, classifier=True))
    assert _free() and helper.ahead == [] and helper.stash == {}
    small = guard_helper.start(["short", "texts"], True)  # after a read-ahead too: dropped, read here
    assert not small.shared


def test_a_read_ahead_whose_write_never_comes_frees_the_helper_for_others(monkeypatch: pytest.MonkeyPatch):
    import threading

    helper = _ready_helper()
    reader = threading.Thread(target=guard_helper.read_ahead, args=(_writes()[5], True))
    reader.start()
    reader.join()
    assert not _free()
    texts = _writes()[6]
    assert not guard_helper.start(texts, True).shared  # still held for that thread's write
    monkeypatch.setattr(guard_helper, "AHEAD_FOR", 0.0)
    run = guard_helper.start(texts, True)
    assert run.shared and not run.read_ahead and guard_helper._helper is helper
    assert _as_data(run.verdicts()) == _as_data(guard.check_many(texts, classifier=True))
    assert _free()


def test_an_add_takes_its_turns_read_ahead_and_a_failed_one_lets_the_helper_go(tmp_path, monkeypatch):
    with MemOS(tmp_path / "m.db", llm=None) as mos:
        cube = mos.create_cube("c")
        helper = _ready_helper()
        texts = _writes()[7]
        messages = [{"role": "user", "content": text} for text in texts]
        guard_helper.read_ahead([f"user: {text.strip()}" for text in texts], True)  # the turns' texts
        sent = helper.requests
        result = cube.add(messages=messages, infer=False)
        assert helper.requests == sent  # no request of its own: it took the one read ahead
        assert len(result.added) == len(set(texts)) and _free()

        def broken(_texts):
            raise RuntimeError("embedder down")

        monkeypatch.setattr(mos.kernel, "embed", broken)
        texts = _writes()[8]
        guard_helper.read_ahead([f"user: {text.strip()}" for text in texts], True)
        with pytest.raises(RuntimeError, match="embedder down"):
            cube.add(messages=[{"role": "user", "content": text} for text in texts], infer=False)
        assert _free() and helper.ahead == []


def test_a_pipeline_and_another_threads_writes_at_once_all_get_their_verdicts():
    import threading

    _ready_helper()
    batches = _writes()
    wrong: list[str] = []

    def pipeline() -> None:  # reads each next batch ahead, as a bulk import does
        mine = batches[:6]
        for index, texts in enumerate(mine):
            for coming in mine[index:index + 2]:
                guard_helper.read_ahead(coming, True)
            if _as_data(guard_helper.start(texts, True).verdicts()) != _as_data(guard.check_many(texts)):
                wrong.append(f"pipeline {index}")

    def writer() -> None:  # plain writes, helped when the helper is free
        for index, texts in enumerate(batches[6:]):
            if _as_data(guard_helper.start(texts, True).verdicts()) != _as_data(guard.check_many(texts)):
                wrong.append(f"writer {index}")

    threads = [threading.Thread(target=pipeline), threading.Thread(target=writer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
    assert _free() and guard_helper._helper is not None and guard_helper._helper.ahead == []


def test_a_batch_holds_at_least_one_text_and_stays_within_its_limits():
    """Both sides read a few texts per guard call: never past the other side's start, never more than
    ``BATCH_TEXTS`` texts, nor more than ``BATCH_CHARS`` characters unless one text alone is longer."""
    BATCH_CHARS, BATCH_TEXTS = guard_worker.BATCH_CHARS, guard_worker.BATCH_TEXTS  # noqa: N806
    batch_after, batch_before = guard_worker.batch_after, guard_worker.batch_before
    texts = ["x" * 100] * 50 + ["y" * (BATCH_CHARS + 1)] + ["z" * 1_500] * 6
    assert batch_after(texts, 0, len(texts)) == BATCH_TEXTS
    assert batch_after(texts, 0, 3) == 3
    assert batch_after(texts, 50, len(texts)) == 51  # one text over the limit is a batch of its own
    assert batch_after(texts, 51, len(texts)) == 51 + BATCH_CHARS // 1_500
    assert batch_before(texts, 0, len(texts)) == len(texts) - BATCH_CHARS // 1_500
    assert batch_before(texts, 0, 51) == 50 and batch_before(texts, 0, 50) == 50 - BATCH_TEXTS
    assert batch_before(texts, 48, 50) == 48
    start, covered = 0, []
    while start < len(texts):  # the helper's batches cover every text once, in order
        end = batch_after(texts, start, len(texts))
        covered += range(start, end)
        start = end
    assert covered == list(range(len(texts)))
