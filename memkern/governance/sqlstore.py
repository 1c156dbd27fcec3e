"""The governance part of the SQL stores (users, API keys, grants, audit, forgetting).

One implementation for both back ends: ``SQLiteStore`` and ``PostgresStore`` mix this in
and provide the hooks below; the statements are written once, neutral (``?``), and
rendered by the back end's dialect:

- ``_gov_tx()``: a write transaction yielding something with ``execute(sql, params)``;
- ``_gov_read(sql, params)``: rows of a read;
- ``_gov_dialect``: the back end's ``memkern.store.dialect.Dialect``, which renders the
  statements (written once, with ``?``);
- ``_gov_purge_cube(db, cube_id)``: inside the transaction, remove a cube with every
  version, vector and lexical index entry (and its operation log);
- ``_gov_after_forget()``: after the transaction, make deleted rows unrecoverable where
  the back end can (SQLite: merge the full-text index, checkpoint the WAL).

The tables are created by each back end's migration 1 -> 2 (same columns in both).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from memkern.errors import ConflictError, NotFoundError
from memkern.models import ApiKey, AuditEntry, AuditResult, CubeInfo, Grant, Permission, Role, User, as_utc, utcnow
from memkern.store import sql
from memkern.store.dialect import Dialect


def _iso(value: datetime | None) -> str | None:
    return as_utc(value).isoformat() if value is not None else None


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


_USER_COLUMNS = "id, name, role, created_at"
_KEY_COLUMNS = "prefix, user_id, key_hash, created_at, revoked_at"
_GRANT_COLUMNS = "cube_id, user_id, permission, granted_at"
_AUDIT_COLUMNS = "seq, at, user_id, operation, cube_id, item_ids, result, detail"


def _user(row: Sequence[Any]) -> User:
    return User(id=row[0], name=row[1], role=Role(row[2]), created_at=_time(row[3]))


def _key(row: Sequence[Any]) -> ApiKey:
    return ApiKey(prefix=row[0], user_id=row[1], key_hash=row[2], created_at=_time(row[3]),
                  revoked_at=_time(row[4]))


def _grant(row: Sequence[Any]) -> Grant:
    return Grant(cube_id=row[0], user_id=row[1], permission=Permission(row[2]), granted_at=_time(row[3]))


def _audit(row: Sequence[Any]) -> AuditEntry:
    return AuditEntry(seq=int(row[0]), at=_time(row[1]), user_id=row[2], operation=row[3], cube_id=row[4],
                      item_ids=json.loads(row[5]) if row[5] else [], result=AuditResult(row[6]), detail=row[7])


class GovernanceSQL:
    """Mixin implementing the governance methods of ``Store`` (see the module docstring)."""

    _gov_dialect: Dialect

    # hooks (provided by the back end) ---------------------------------------------------------------
    def _gov_tx(self) -> Any:  # pragma: no cover - provided by the back end
        raise NotImplementedError

    def _gov_read(self, query: str, params: Sequence[Any] = ()) -> list[tuple]:  # pragma: no cover
        raise NotImplementedError

    def _gov_purge_cube(self, db: Any, cube_id: str) -> None:  # pragma: no cover
        raise NotImplementedError

    def _gov_after_forget(self) -> None:
        return None

    def _q(self, query: str) -> str:
        return self._gov_dialect.sql(query)

    # users ---------------------------------------------------------------------------------------------
    def create_user(self, user: User) -> User:
        with self._gov_tx() as db:
            if db.execute(self._q("SELECT 1 FROM users WHERE id = ?"), (user.id,)).fetchone():
                raise ConflictError(f"a user with id {user.id!r} already exists")
            db.execute(self._q(f"INSERT INTO users({_USER_COLUMNS}) VALUES (?, ?, ?, ?)"),
                       (user.id, user.name, user.role.value, _iso(user.created_at)))
        return user

    def get_user(self, user_id: str) -> User:
        rows = self._gov_read(self._q(f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?"), (user_id,))
        if not rows:
            raise NotFoundError(f"no user with id {user_id!r}")
        return _user(rows[0])

    def list_users(self) -> list[User]:
        return [_user(r) for r in self._gov_read(f"SELECT {_USER_COLUMNS} FROM users ORDER BY created_at, id")]

    def delete_user(self, user_id: str) -> None:
        with self._gov_tx() as db:
            if not db.execute(self._q("SELECT 1 FROM users WHERE id = ?"), (user_id,)).fetchone():
                raise NotFoundError(f"no user with id {user_id!r}")
            db.execute(self._q("DELETE FROM api_keys WHERE user_id = ?"), (user_id,))
            db.execute(self._q("DELETE FROM grants WHERE user_id = ?"), (user_id,))
            db.execute(self._q("DELETE FROM users WHERE id = ?"), (user_id,))

    # API keys ------------------------------------------------------------------------------------------
    def add_api_key(self, key: ApiKey) -> None:
        with self._gov_tx() as db:
            if not db.execute(self._q("SELECT 1 FROM users WHERE id = ?"), (key.user_id,)).fetchone():
                raise NotFoundError(f"no user with id {key.user_id!r}")
            if db.execute(self._q("SELECT 1 FROM api_keys WHERE prefix = ?"), (key.prefix,)).fetchone():
                raise ConflictError(f"an API key with prefix {key.prefix!r} already exists")
            db.execute(self._q(f"INSERT INTO api_keys({_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?)"),
                       (key.prefix, key.user_id, key.key_hash, _iso(key.created_at), _iso(key.revoked_at)))

    def get_api_key(self, prefix: str) -> ApiKey | None:
        rows = self._gov_read(self._q(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE prefix = ?"), (prefix,))
        return _key(rows[0]) if rows else None

    def list_api_keys(self, user_id: str | None = None) -> list[ApiKey]:
        if user_id is None:
            rows = self._gov_read(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at, prefix")
        else:
            rows = self._gov_read(self._q(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE user_id = ?"
                                          " ORDER BY created_at, prefix"), (user_id,))
        return [_key(r) for r in rows]

    def revoke_api_key(self, prefix: str, at: datetime | None = None) -> None:
        with self._gov_tx() as db:
            row = db.execute(self._q("SELECT revoked_at FROM api_keys WHERE prefix = ?"), (prefix,)).fetchone()
            if row is None:
                raise NotFoundError(f"no API key with prefix {prefix!r}")
            if row[0] is None:
                db.execute(self._q("UPDATE api_keys SET revoked_at = ? WHERE prefix = ?"),
                           (_iso(at or utcnow()), prefix))

    # grants --------------------------------------------------------------------------------------------
    def set_grant(self, grant: Grant) -> None:
        with self._gov_tx() as db:
            if not db.execute(self._q(sql.CUBE_EXISTS), (grant.cube_id,)).fetchone():
                raise NotFoundError(f"no cube with id {grant.cube_id!r}")
            if not db.execute(self._q("SELECT 1 FROM users WHERE id = ?"), (grant.user_id,)).fetchone():
                raise NotFoundError(f"no user with id {grant.user_id!r}")
            db.execute(self._q("DELETE FROM grants WHERE cube_id = ? AND user_id = ?"), (grant.cube_id, grant.user_id))
            db.execute(self._q(f"INSERT INTO grants({_GRANT_COLUMNS}) VALUES (?, ?, ?, ?)"),
                       (grant.cube_id, grant.user_id, grant.permission.value, _iso(grant.granted_at)))

    def delete_grant(self, cube_id: str, user_id: str) -> bool:
        with self._gov_tx() as db:
            found = db.execute(self._q("SELECT 1 FROM grants WHERE cube_id = ? AND user_id = ?"),
                               (cube_id, user_id)).fetchone()
            db.execute(self._q("DELETE FROM grants WHERE cube_id = ? AND user_id = ?"), (cube_id, user_id))
        return found is not None

    def list_grants(self, cube_id: str | None = None, user_id: str | None = None) -> list[Grant]:
        where: list[str] = []
        params: list[Any] = []
        if cube_id is not None:
            where.append("cube_id = ?")
            params.append(cube_id)
        if user_id is not None:
            where.append("user_id = ?")
            params.append(user_id)
        query = f"SELECT {_GRANT_COLUMNS} FROM grants"
        if where:
            query += " WHERE " + " AND ".join(where)
        return [_grant(r) for r in self._gov_read(self._q(query + " ORDER BY cube_id, user_id"), params)]

    # audit ---------------------------------------------------------------------------------------------
    def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        if not entries:
            return
        with self._gov_tx() as db:
            for e in entries:
                self._gov_audit(db, e)

    def _gov_audit(self, db: Any, e: AuditEntry) -> None:
        db.execute(self._q("INSERT INTO audit(at, user_id, operation, cube_id, item_ids, result, detail)"
                           " VALUES (?, ?, ?, ?, ?, ?, ?)"),
                   (_iso(e.at), e.user_id, e.operation, e.cube_id, json.dumps(list(e.item_ids)),
                    e.result.value, e.detail))

    def query_audit(self, cube_id: str | None = None, user_id: str | None = None,
                    since: datetime | None = None, limit: int | None = None) -> list[AuditEntry]:
        where, params = [], []
        if cube_id is not None:
            where.append("cube_id = ?")
            params.append(cube_id)
        if user_id is not None:
            where.append("user_id = ?")
            params.append(user_id)
        if since is not None:
            where.append("at >= ?")
            params.append(as_utc(since).isoformat())
        query = f"SELECT {_AUDIT_COLUMNS} FROM audit"
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY seq DESC"
        if limit is not None and limit >= 0:
            query += f" LIMIT {int(limit)}"
        return [_audit(r) for r in self._gov_read(self._q(query), params)]

    # cube metadata ---------------------------------------------------------------------------------------
    def set_cube_metadata(self, cube_id: str, metadata: dict[str, Any]) -> CubeInfo:
        with self._gov_tx() as db:
            row = db.execute(self._q(sql.CUBE_BODY), (cube_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no cube with id {cube_id!r}")
            info = CubeInfo.model_validate_json(row[0]).model_copy(update={"metadata": dict(metadata)})
            db.execute(self._q("UPDATE cubes SET body = ? WHERE id = ?"), (info.model_dump_json(), cube_id))
        return info

    # forgetting ------------------------------------------------------------------------------------------
    def forget_user(self, user_id: str, actor: str | None = None) -> list[str]:
        with self._gov_tx() as db:
            cubes = [c for (c,) in db.execute(self._q("SELECT id FROM cubes WHERE owner = ? ORDER BY id"),
                                              (user_id,)).fetchall()]
            known = db.execute(self._q("SELECT 1 FROM users WHERE id = ?"), (user_id,)).fetchone()
            if known is None and not cubes:
                raise NotFoundError(f"no user with id {user_id!r} and no cube owned by it")
            for cube_id in cubes:
                db.execute(self._q("DELETE FROM grants WHERE cube_id = ?"), (cube_id,))
                self._gov_purge_cube(db, cube_id)
                # The audit trail of the cube goes too: only the id-level entry below remains.
                db.execute(self._q("DELETE FROM audit WHERE cube_id = ?"), (cube_id,))
            db.execute(self._q("DELETE FROM audit WHERE user_id = ?"), (user_id,))
            db.execute(self._q("DELETE FROM api_keys WHERE user_id = ?"), (user_id,))
            db.execute(self._q("DELETE FROM grants WHERE user_id = ?"), (user_id,))
            db.execute(self._q("DELETE FROM users WHERE id = ?"), (user_id,))
            self._gov_audit(db, AuditEntry(user_id=actor, operation="forget_user", item_ids=[user_id, *cubes],
                                           detail=f"{len(cubes)} cubes"))
        self._gov_after_forget()
        return cubes
