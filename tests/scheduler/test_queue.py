"""The durable job queue, against SQLite and PostgreSQL: order per cube, leases, retries, dead letters."""

from __future__ import annotations

import time
from uuid import uuid4

import pytest

from memkern.errors import InvalidInputError, NotFoundError
from memkern.models import CubeInfo, JobStatus


def _cube(store, name):
    return store.create_cube(CubeInfo(id=uuid4().hex, name=name, owner="o", embedder="e", dim=4)).id


def test_jobs_of_one_cube_are_claimed_in_order_and_cubes_in_parallel(any_store):
    q = any_store.job_queue()
    a, b = _cube(any_store, "a"), _cube(any_store, "b")
    a1 = q.enqueue("t", a, {"n": 1})
    a2 = q.enqueue("t", a, {"n": 2})
    b1 = q.enqueue("t", b, {"n": 1})
    first = q.claim("w1", 30)
    assert first.id == a1.id and first.status is JobStatus.RUNNING and first.attempts == 1
    # a1 holds cube a's lane: the next claim takes cube b's job, not a2.
    second = q.claim("w2", 30)
    assert second.id == b1.id
    assert q.claim("w3", 30) is None
    assert q.complete(a1.id, first.lease_token, {"ok": True})
    third = q.claim("w3", 30)
    assert third.id == a2.id
    assert q.get(a1.id).result == {"ok": True} and q.get(a1.id).status is JobStatus.DONE


def test_an_expired_lease_is_claimed_again_and_the_old_holder_is_fenced_off(any_store):
    q = any_store.job_queue()
    a = _cube(any_store, "a")
    job = q.enqueue("t", a)
    now = time.time()
    first = q.claim("w1", 10, now=now)
    assert q.claim("w2", 10, now=now + 5) is None  # still leased
    assert q.heartbeat(job.id, first.lease_token, 10, now=now + 5)  # extended to now + 15
    assert q.claim("w2", 10, now=now + 12) is None
    second = q.claim("w2", 10, now=now + 16)
    assert second.id == job.id and second.attempts == 2 and second.lease_owner == "w2"
    # The first worker comes back: it can neither extend, complete nor fail the job.
    assert not q.heartbeat(job.id, first.lease_token, 10)
    assert not q.complete(job.id, first.lease_token)
    assert q.fail(job.id, first.lease_token, "late", 1.0) is None
    assert q.complete(job.id, second.lease_token)


def test_failures_back_off_then_dead_letter(any_store):
    q = any_store.job_queue()
    a = _cube(any_store, "a")
    job = q.enqueue("t", a, max_attempts=3)
    later = q.enqueue("t", a)
    now = time.time()
    claimed = q.claim("w", 10, now=now)
    assert q.fail(job.id, claimed.lease_token, "boom 1", 5.0, now=now) is JobStatus.PENDING
    assert q.claim("w", 10, now=now + 1) is None  # backing off, and it still blocks its lane
    claimed = q.claim("w", 10, now=now + 6)
    assert claimed.id == job.id and claimed.attempts == 2
    assert q.fail(job.id, claimed.lease_token, "boom 2", 5.0, now=now + 6) is JobStatus.PENDING
    claimed = q.claim("w", 10, now=now + 12)
    assert q.fail(job.id, claimed.lease_token, "boom 3", 5.0, now=now + 12) is JobStatus.DEAD
    dead = q.get(job.id)
    assert dead.status is JobStatus.DEAD and dead.attempts == 3 and dead.last_error == "boom 3"
    # The dead letter no longer blocks the lane.
    assert q.claim("w", 10, now=now + 13).id == later.id
    revived = q.retry(job.id)
    assert revived.status is JobStatus.PENDING and revived.attempts == 0


def test_a_job_whose_workers_keep_dying_is_dead_lettered(any_store):
    q = any_store.job_queue()
    a = _cube(any_store, "a")
    job = q.enqueue("t", a, max_attempts=2)
    now = time.time()
    q.claim("w1", 1, now=now)
    q.claim("w2", 1, now=now + 2)
    assert q.claim("w3", 1, now=now + 4) is None
    dead = q.get(job.id)
    assert dead.status is JobStatus.DEAD and "lease expired" in dead.last_error


def test_dedup_key_matches_a_pending_job_only(any_store):
    q = any_store.job_queue()
    a = _cube(any_store, "a")
    one = q.enqueue("t", a, dedup_key="k")
    assert q.enqueue("t", a, dedup_key="k").id == one.id
    claimed = q.claim("w", 10)
    two = q.enqueue("t", a, dedup_key="k")  # the first one is running: a new one is queued
    assert two.id != one.id
    q.complete(one.id, claimed.lease_token)
    assert {j.id for j in q.list(a)} == {one.id, two.id}


def test_marks_counts_cancel_and_cube_deletion(any_store):
    q = any_store.job_queue()
    a = _cube(any_store, "a")
    q.mark(a, "extracted", ["m1", "m2"], "j")
    q.mark(a, "extracted", ["m2"], "j")
    assert q.marked(a, "extracted", ["m1", "m2", "m3"]) == {"m1", "m2"}
    job = q.enqueue("t", a)
    assert q.counts(a) == {"t": {"pending": 1}}
    assert q.cancel(job.id).status is JobStatus.CANCELLED
    with pytest.raises(InvalidInputError):
        q.cancel(job.id)
    with pytest.raises(NotFoundError):
        q.enqueue("t", "no-such-cube")
    q.enqueue("t", a)
    any_store.delete_cube(a)
    assert q.list(a) == [] and q.marked(a, "extracted", ["m1"]) == set()
