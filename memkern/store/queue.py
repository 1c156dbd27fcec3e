"""The durable job queue behind the scheduler.

``JobQueue`` is the small interface a back end implements; ``SQLJobQueue`` implements it
in the store's own database (the ``jobs`` and ``job_marks`` tables of migration 2 -> 3),
for SQLite and PostgreSQL alike. A Redis Streams back end would map it as: one stream per
lane (cube) read by one consumer group (a lane is claimed only when its previous entry is
acknowledged, which keeps per-cube order), ``claim`` = ``XREADGROUP`` / ``XAUTOCLAIM`` of
entries idle longer than the lease, ``heartbeat`` = ``XCLAIM ... JUSTID`` by the owner,
``complete`` = ``XACK`` + ``XDEL`` (fenced by a Lua check of the lease token), retries
as a sorted set of due times, and marks as sets.

Semantics every back end keeps:

- **Ordering per lane.** A job's lane is its cube (a job with no cube has a lane of its
  own). Only the oldest open (pending or running) job of a lane can be claimed, and only
  when it is due (pending and ``run_at`` reached) or its lease expired (running, its
  worker gone). Different lanes are claimed in parallel.
- **Leases and fencing.** ``claim`` hands out a lease (``lease_until``) with a fresh token;
  ``heartbeat``, ``complete`` and ``fail`` succeed only with the current token, so a worker
  that lost its lease (paused, partitioned) cannot overwrite what its successor did.
- **Attempts.** Each claim is an attempt, including the re-claim of a crashed worker's job.
  A job out of attempts is dead-lettered, whether it failed or its worker kept dying.
- **Idempotent enqueue.** A ``dedup_key`` matches at most one *pending* job: enqueueing again
  returns it (a running job does not absorb new work, it may have read its input already).
"""

from __future__ import annotations

import json
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from memkern.errors import InvalidInputError, NotFoundError, StoreError
from memkern.models import Job, JobStatus, epoch_to_dt
from memkern.store.dialect import SQLITE, Dialect

_COLUMNS = ("seq, id, type, cube_id, payload, status, attempts, max_attempts, run_at, created_at, started_at,"
            " finished_at, lease_owner, lease_until, heartbeat_at, dedup_key, last_error, result, lease_token")
_MAX_ERROR = 4_000


def _row_to_job(row: Sequence[Any]) -> Job:
    (seq, jid, jtype, cube_id, payload, status, attempts, max_attempts, run_at, created_at, started_at,
     finished_at, owner, lease_until, heartbeat_at, dedup_key, last_error, result, token) = row
    return Job(id=jid, seq=int(seq), type=jtype, cube_id=cube_id, payload=json.loads(payload),
               status=JobStatus(status), attempts=int(attempts), max_attempts=int(max_attempts),
               run_at=epoch_to_dt(run_at), created_at=epoch_to_dt(created_at), started_at=epoch_to_dt(started_at),
               finished_at=epoch_to_dt(finished_at), lease_owner=owner, lease_until=epoch_to_dt(lease_until),
               heartbeat_at=epoch_to_dt(heartbeat_at), dedup_key=dedup_key, last_error=last_error,
               result=json.loads(result) if result else None, lease_token=token)


def _clean(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.replace("\x00", "\ufffd")
    return text if len(text) <= _MAX_ERROR else text[:_MAX_ERROR] + "..."


class JobQueue(ABC):
    """A durable queue with per-lane order, leases, retries and dead letters (module docstring)."""

    @abstractmethod
    def enqueue(self, job_type: str, cube_id: str | None = None, payload: dict[str, Any] | None = None, *,
                dedup_key: str | None = None, delay_s: float = 0.0, max_attempts: int = 5,
                now: float | None = None) -> Job: ...

    @abstractmethod
    def claim(self, worker: str, lease_s: float, *, cube_id: str | None = None,
              types: Sequence[str] | None = None, now: float | None = None) -> Job | None:
        """Lease the next claimable job (the job carries its ``lease_token``), or None."""

    @abstractmethod
    def heartbeat(self, job_id: str, token: str, lease_s: float, now: float | None = None) -> bool:
        """Extend a lease; False if the lease was lost (expired and taken, or the job is gone)."""

    @abstractmethod
    def complete(self, job_id: str, token: str, result: dict[str, Any] | None = None,
                 now: float | None = None) -> bool:
        """Mark done; False (nothing changed) if the caller no longer holds the lease."""

    @abstractmethod
    def fail(self, job_id: str, token: str, error: str, retry_in_s: float | None,
             now: float | None = None) -> JobStatus | None:
        """Record a failed attempt: back to pending after ``retry_in_s``, or dead when out of
        attempts or ``retry_in_s`` is None. None if the caller no longer holds the lease."""

    @abstractmethod
    def get(self, job_id: str) -> Job: ...

    @abstractmethod
    def list(self, cube_id: str | None = None, status: JobStatus | None = None, job_type: str | None = None,
             limit: int = 100) -> list[Job]:
        """Jobs, newest first."""

    @abstractmethod
    def oldest_pending(self, cube_id: str | None = None) -> float | None:
        """When the oldest pending job was queued (epoch seconds); ``None`` if there is none."""

    @abstractmethod
    def open_jobs(self, cube_id: str | None = None) -> int:
        """How many jobs are pending or running."""

    @abstractmethod
    def counts(self, cube_id: str | None = None) -> dict[str, dict[str, int]]:
        """``{type: {status: n}}``."""

    @abstractmethod
    def retry(self, job_id: str, now: float | None = None) -> Job:
        """Bring a dead or cancelled job back as pending, with fresh attempts."""

    @abstractmethod
    def cancel(self, job_id: str) -> Job:
        """Cancel a pending job (a running one finishes its attempt first)."""

    @abstractmethod
    def purge(self, older_than_s: float, now: float | None = None) -> int:
        """Delete done and cancelled jobs finished more than ``older_than_s`` ago."""

    # -- per-memory marks kept by handlers ("extracted") -----------------------------------------------
    @abstractmethod
    def mark(self, cube_id: str, mark: str, memory_ids: Iterable[str], job_id: str | None = None) -> None: ...

    @abstractmethod
    def marked(self, cube_id: str, mark: str, memory_ids: Sequence[str]) -> set[str]: ...


class SQLJobQueue(JobQueue):
    """``JobQueue`` on the store's database. ``tx()`` opens one write transaction and yields
    something with ``execute(sql, params) -> cursor``; ``read(sql, params)`` returns rows.
    SQL is written once, neutral (``?``), and rendered by ``dialect``
    (``memkern.store.dialect``). ``claim_lock`` (PostgreSQL) is run first in a claim's
    transaction so that claims are serialized (SQLite's ``BEGIN IMMEDIATE`` already does this)."""

    def __init__(self, tx: Callable[[], AbstractContextManager[Any]], read: Callable[..., list[tuple]],
                 dialect: Dialect = SQLITE, claim_lock: str | None = None) -> None:
        self._tx = tx
        self._read_rows = read
        self._dialect = dialect
        self._claim_lock = claim_lock
        self.name = dialect.name

    def _q(self, sql: str) -> str:
        return self._dialect.sql(sql)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self._read_rows(self._q(sql), tuple(params))

    def _one(self, db: Any, job_id: str) -> Job:
        row = db.execute(self._q(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?"), (job_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no job {job_id!r}")
        return _row_to_job(row)

    # -- queue -------------------------------------------------------------------------------------
    def enqueue(self, job_type: str, cube_id: str | None = None, payload: dict[str, Any] | None = None, *,
                dedup_key: str | None = None, delay_s: float = 0.0, max_attempts: int = 5,
                now: float | None = None) -> Job:
        if not isinstance(job_type, str) or not job_type.strip():
            raise InvalidInputError("a job needs a type")
        if max_attempts < 1:
            raise InvalidInputError("max_attempts must be at least 1")
        try:
            body = json.dumps(payload or {}, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"job payload must be JSON-serialisable: {exc}") from exc
        at = time.time() if now is None else now
        job_id = uuid.uuid4().hex
        lane = cube_id if cube_id is not None else f"job:{job_id}"
        with self._tx() as db:
            if cube_id is not None and db.execute(self._q("SELECT 1 FROM cubes WHERE id = ?"),
                                                  (cube_id,)).fetchone() is None:
                raise NotFoundError(f"no cube with id {cube_id!r}")
            cursor = db.execute(self._q(
                "INSERT INTO jobs (id, lane, cube_id, type, payload, status, attempts, max_attempts, run_at,"
                " created_at, dedup_key) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?) ON CONFLICT DO NOTHING"),
                (job_id, lane, cube_id, job_type, body.replace("\x00", "\\u0000"), int(max_attempts),
                 at + max(0.0, delay_s), at, dedup_key))
            if cursor.rowcount == 0:  # a pending job with this dedup key exists: it absorbs this one
                row = db.execute(self._q(f"SELECT {_COLUMNS} FROM jobs WHERE dedup_key = ? AND status = 'pending'"),
                                 (dedup_key,)).fetchone()
                if row is None:
                    raise StoreError(f"could not enqueue job {job_type!r} (dedup key {dedup_key!r})")
                return _row_to_job(row)
            return self._one(db, job_id)

    def claim(self, worker: str, lease_s: float, *, cube_id: str | None = None,
              types: Sequence[str] | None = None, now: float | None = None) -> Job | None:
        at = time.time() if now is None else now
        where = ["j.status IN ('pending', 'running')",
                 "((j.status = 'pending' AND j.run_at <= ?) OR (j.status = 'running' AND j.lease_until <= ?))",
                 "NOT EXISTS (SELECT 1 FROM jobs k WHERE k.lane = j.lane AND k.seq < j.seq"
                 " AND k.status IN ('pending', 'running'))"]
        params: list[Any] = [at, at]
        if cube_id is not None:
            where.append("j.cube_id = ?")
            params.append(cube_id)
        if types:
            where.append(f"j.type IN ({', '.join('?' * len(types))})")
            params.extend(types)
        query = f"SELECT {', '.join('j.' + c.strip() for c in _COLUMNS.split(','))} FROM jobs j" \
                f" WHERE {' AND '.join(where)} ORDER BY j.run_at, j.seq LIMIT 1"
        with self._tx() as db:
            if self._claim_lock:
                db.execute(self._claim_lock, ())
            for _ in range(100):  # skip over jobs dead-lettered on the way
                row = db.execute(self._q(query), tuple(params)).fetchone()
                if row is None:
                    return None
                job = _row_to_job(row)
                if job.status is JobStatus.RUNNING and job.attempts >= job.max_attempts:
                    db.execute(self._q(
                        "UPDATE jobs SET status = 'dead', finished_at = ?, lease_token = NULL, lease_until = NULL,"
                        " last_error = ? WHERE id = ?"),
                        (at, _clean(f"lease expired on attempt {job.attempts} of {job.max_attempts} "
                                    f"(worker {job.lease_owner!r} lost); last error: {job.last_error}"), job.id))
                    continue
                token = uuid.uuid4().hex
                db.execute(self._q(
                    "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_owner = ?, lease_token = ?,"
                    " lease_until = ?, heartbeat_at = ?, started_at = ? WHERE id = ?"),
                    (worker, token, at + lease_s, at, at, job.id))
                return self._one(db, job.id)
        return None

    def heartbeat(self, job_id: str, token: str, lease_s: float, now: float | None = None) -> bool:
        at = time.time() if now is None else now
        with self._tx() as db:
            cursor = db.execute(self._q(
                "UPDATE jobs SET lease_until = ?, heartbeat_at = ? WHERE id = ? AND lease_token = ?"
                " AND status = 'running'"), (at + lease_s, at, job_id, token))
            return cursor.rowcount == 1

    def complete(self, job_id: str, token: str, result: dict[str, Any] | None = None,
                 now: float | None = None) -> bool:
        at = time.time() if now is None else now
        body = json.dumps(result, ensure_ascii=False, default=str) if result is not None else None
        with self._tx() as db:
            cursor = db.execute(self._q(
                "UPDATE jobs SET status = 'done', finished_at = ?, result = ?, lease_token = NULL,"
                " lease_until = NULL WHERE id = ? AND lease_token = ? AND status = 'running'"),
                (at, _clean(body) if body and len(body) <= 100_000 else (body and '{"truncated": true}'),
                 job_id, token))
            return cursor.rowcount == 1

    def fail(self, job_id: str, token: str, error: str, retry_in_s: float | None,
             now: float | None = None) -> JobStatus | None:
        at = time.time() if now is None else now
        with self._tx() as db:
            row = db.execute(self._q(
                "SELECT attempts, max_attempts FROM jobs WHERE id = ? AND lease_token = ? AND status = 'running'"),
                (job_id, token)).fetchone()
            if row is None:
                return None
            attempts, max_attempts = int(row[0]), int(row[1])
            if retry_in_s is None or attempts >= max_attempts:
                db.execute(self._q(
                    "UPDATE jobs SET status = 'dead', finished_at = ?, last_error = ?, lease_token = NULL,"
                    " lease_until = NULL WHERE id = ?"), (at, _clean(error), job_id))
                return JobStatus.DEAD
            db.execute(self._q(
                "UPDATE jobs SET status = 'pending', run_at = ?, last_error = ?, lease_token = NULL,"
                " lease_until = NULL, lease_owner = NULL WHERE id = ?"), (at + retry_in_s, _clean(error), job_id))
            return JobStatus.PENDING

    def get(self, job_id: str) -> Job:
        rows = self._read(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise NotFoundError(f"no job {job_id!r}")
        return _row_to_job(rows[0])

    def list(self, cube_id: str | None = None, status: JobStatus | None = None, job_type: str | None = None,
             limit: int = 100) -> list[Job]:
        where, params = ["1 = 1"], []
        if cube_id is not None:
            where.append("cube_id = ?")
            params.append(cube_id)
        if status is not None:
            where.append("status = ?")
            params.append(JobStatus(status).value)
        if job_type is not None:
            where.append("type = ?")
            params.append(job_type)
        rows = self._read(f"SELECT {_COLUMNS} FROM jobs WHERE {' AND '.join(where)} ORDER BY seq DESC"
                          f" LIMIT {max(0, int(limit))}", params)
        return [_row_to_job(row) for row in rows]

    def counts(self, cube_id: str | None = None) -> dict[str, dict[str, int]]:
        query = "SELECT type, status, count(*) FROM jobs"
        params: list[Any] = []
        if cube_id is not None:
            query += " WHERE cube_id = ?"
            params.append(cube_id)
        out: dict[str, dict[str, int]] = {}
        for jtype, status, n in self._read(query + " GROUP BY type, status", params):
            out.setdefault(jtype, {})[status] = int(n)
        return out

    def oldest_pending(self, cube_id: str | None = None) -> float | None:
        query = "SELECT min(created_at) FROM jobs WHERE status = 'pending'"
        params: list[Any] = []
        if cube_id is not None:
            query += " AND cube_id = ?"
            params.append(cube_id)
        rows = self._read(query, params)
        return float(rows[0][0]) if rows and rows[0][0] is not None else None

    def open_jobs(self, cube_id: str | None = None) -> int:
        query = "SELECT count(*) FROM jobs WHERE status IN ('pending', 'running')"
        params: list[Any] = []
        if cube_id is not None:
            query += " AND cube_id = ?"
            params.append(cube_id)
        return int(self._read(query, params)[0][0])

    def retry(self, job_id: str, now: float | None = None) -> Job:
        at = time.time() if now is None else now
        with self._tx() as db:
            job = self._one(db, job_id)
            if job.status not in (JobStatus.DEAD, JobStatus.CANCELLED):
                raise InvalidInputError(f"job {job_id!r} is {job.status.value}; only dead or cancelled jobs are retried")
            # A retried job goes to the back of its lane: it keeps its id but takes a new seq.
            db.execute(self._q("DELETE FROM jobs WHERE id = ?"), (job_id,))
            db.execute(self._q(
                "INSERT INTO jobs (id, lane, cube_id, type, payload, status, attempts, max_attempts, run_at,"
                " created_at, last_error) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?)"),
                (job.id, job.cube_id if job.cube_id is not None else f"job:{job.id}", job.cube_id, job.type,
                 json.dumps(job.payload), job.max_attempts, at, job.created_at.timestamp(),
                 _clean(f"retried after: {job.last_error}")))
            return self._one(db, job_id)

    def cancel(self, job_id: str) -> Job:
        with self._tx() as db:
            job = self._one(db, job_id)
            if job.status is not JobStatus.PENDING:
                raise InvalidInputError(f"job {job_id!r} is {job.status.value}; only pending jobs are cancelled")
            db.execute(self._q("UPDATE jobs SET status = 'cancelled', finished_at = ? WHERE id = ?"),
                       (time.time(), job_id))
            return self._one(db, job_id)

    def purge(self, older_than_s: float, now: float | None = None) -> int:
        at = time.time() if now is None else now
        with self._tx() as db:
            cursor = db.execute(self._q(
                "DELETE FROM jobs WHERE status IN ('done', 'cancelled') AND finished_at < ?"), (at - older_than_s,))
            return max(0, cursor.rowcount)

    # -- marks -------------------------------------------------------------------------------------
    def mark(self, cube_id: str, mark: str, memory_ids: Iterable[str], job_id: str | None = None) -> None:
        ids = list(dict.fromkeys(memory_ids))
        if not ids:
            return
        at = time.time()
        with self._tx() as db:
            for memory_id in ids:
                db.execute(self._q(
                    "INSERT INTO job_marks (cube_id, mark, memory_id, at, job_id) VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT DO NOTHING"), (cube_id, mark, memory_id, at, job_id))

    def marked(self, cube_id: str, mark: str, memory_ids: Sequence[str]) -> set[str]:
        ids = list(dict.fromkeys(memory_ids))
        found: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows = self._read(f"SELECT memory_id FROM job_marks WHERE cube_id = ? AND mark = ?"
                              f" AND memory_id IN ({', '.join('?' * len(chunk))})", (cube_id, mark, *chunk))
            found.update(r[0] for r in rows)
        return found
