"""The governance methods of the store (users, keys, grants, audit, cube metadata,
forget_user), on every back end."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from memkern.errors import ConflictError, NotFoundError
from memkern.models import (
    ApiKey,
    AuditEntry,
    AuditResult,
    CubeInfo,
    Filters,
    Grant,
    MemoryItem,
    Permission,
    Role,
    User,
    utcnow,
)

DIM = 4


def _cube(store, name: str, owner: str) -> CubeInfo:
    return store.create_cube(CubeInfo(id=f"id-{name}", name=name, owner=owner, embedder="test", dim=DIM))


def _add(store, cube: CubeInfo, text: str, n: int = 1) -> list[MemoryItem]:
    items = [MemoryItem(id=f"{cube.name}-{i}-{abs(hash(text)) % 10_000}", cube_id=cube.id, owner=cube.owner,
                        text=f"{text} {i}", entities=[text.split()[0]]) for i in range(n)]
    return store.add_memories(cube.id, items, np.ones((n, DIM), dtype=np.float32)).added


def test_users_crud(store):
    alice = store.create_user(User(id="u-alice", name="Alice", role=Role.USER))
    store.create_user(User(id="u-root", name="Root", role=Role.ADMIN))
    assert store.get_user("u-alice") == alice
    assert {u.id for u in store.list_users()} == {"u-alice", "u-root"}
    with pytest.raises(ConflictError):
        store.create_user(User(id="u-alice", name="Other"))
    with pytest.raises(NotFoundError):
        store.get_user("nobody")
    store.delete_user("u-alice")
    with pytest.raises(NotFoundError):
        store.get_user("u-alice")
    with pytest.raises(NotFoundError):
        store.delete_user("u-alice")


def test_api_keys(store):
    store.create_user(User(id="u1", name="One"))
    key = ApiKey(prefix="abc123", user_id="u1", key_hash="f" * 64)
    store.add_api_key(key)
    assert store.get_api_key("abc123") == key
    assert store.get_api_key("nope") is None
    with pytest.raises(ConflictError):
        store.add_api_key(key)
    with pytest.raises(NotFoundError):
        store.add_api_key(ApiKey(prefix="zzz", user_id="ghost", key_hash="0" * 64))
    assert [k.prefix for k in store.list_api_keys("u1")] == ["abc123"]
    store.revoke_api_key("abc123")
    revoked = store.get_api_key("abc123")
    assert revoked.revoked_at is not None
    store.revoke_api_key("abc123")  # idempotent, keeps the first time
    assert store.get_api_key("abc123").revoked_at == revoked.revoked_at
    with pytest.raises(NotFoundError):
        store.revoke_api_key("nope")
    store.delete_user("u1")  # keys go with the user
    assert store.get_api_key("abc123") is None


def test_grants(store):
    cube = _cube(store, "c", "owner")
    store.create_user(User(id="u1", name="One"))
    store.set_grant(Grant(cube_id=cube.id, user_id="u1", permission=Permission.READ))
    store.set_grant(Grant(cube_id=cube.id, user_id="u1", permission=Permission.WRITE))  # replaces
    grants = store.list_grants(cube_id=cube.id)
    assert [(g.user_id, g.permission) for g in grants] == [("u1", Permission.WRITE)]
    assert store.list_grants(user_id="u1") == grants
    with pytest.raises(NotFoundError):
        store.set_grant(Grant(cube_id="missing", user_id="u1", permission=Permission.READ))
    with pytest.raises(NotFoundError):
        store.set_grant(Grant(cube_id=cube.id, user_id="ghost", permission=Permission.READ))
    assert store.delete_grant(cube.id, "u1") is True
    assert store.delete_grant(cube.id, "u1") is False
    store.set_grant(Grant(cube_id=cube.id, user_id="u1", permission=Permission.READ))
    store.delete_cube(cube.id)  # grants go with the cube
    assert store.list_grants() == []


def test_audit_append_and_query(store):
    t0 = utcnow()
    store.append_audit([
        AuditEntry(at=t0 - timedelta(hours=2), user_id="u1", operation="search", cube_id="c1", item_ids=["m1"]),
        AuditEntry(at=t0 - timedelta(hours=1), user_id="u2", operation="add", cube_id="c1",
                   result=AuditResult.DENIED, detail="PermissionDeniedError"),
        AuditEntry(at=t0, user_id="u1", operation="get", cube_id="c2", item_ids=["m2", "m3"],
                   result=AuditResult.ERROR, detail="NotFoundError"),
    ])
    everything = store.query_audit()
    assert [e.operation for e in everything] == ["get", "add", "search"]  # newest first
    assert everything[0].item_ids == ["m2", "m3"] and everything[0].result is AuditResult.ERROR
    assert [e.operation for e in store.query_audit(cube_id="c1")] == ["add", "search"]
    assert [e.operation for e in store.query_audit(user_id="u1")] == ["get", "search"]
    assert [e.operation for e in store.query_audit(since=t0 - timedelta(minutes=90))] == ["get", "add"]
    assert [e.operation for e in store.query_audit(limit=1)] == ["get"]
    assert store.query_audit(cube_id="c1", user_id="u2")[0].detail == "PermissionDeniedError"


def test_set_cube_metadata(store):
    cube = _cube(store, "c", "owner")
    info = store.set_cube_metadata(cube.id, {"redact_pii": True})
    assert info.metadata == {"redact_pii": True}
    assert store.get_cube(cube.id).metadata == {"redact_pii": True}
    with pytest.raises(NotFoundError):
        store.set_cube_metadata("missing", {})


def test_forget_user_purges_everything(store):
    store.create_user(User(id="u-x", name="Xavier"))
    store.create_user(User(id="u-y", name="Yvonne"))
    mine = _cube(store, "mine", "u-x")
    theirs = _cube(store, "theirs", "u-y")
    _add(store, mine, "zebracorn secret", 3)
    _add(store, theirs, "other text", 2)
    store.set_grant(Grant(cube_id=theirs.id, user_id="u-x", permission=Permission.READ))
    store.set_grant(Grant(cube_id=mine.id, user_id="u-y", permission=Permission.WRITE))
    store.add_api_key(ApiKey(prefix="px", user_id="u-x", key_hash="a" * 64))
    store.append_audit([AuditEntry(user_id="u-x", operation="add", cube_id=mine.id)])

    purged = store.forget_user("u-x", actor="u-admin")
    assert purged == [mine.id]
    with pytest.raises(NotFoundError):
        store.get_cube(mine.id)
    with pytest.raises(NotFoundError):
        store.get_user("u-x")
    assert store.get_api_key("px") is None
    assert store.list_grants() == []
    assert store.operations(mine.id) == []
    assert store.lexical_search(theirs.id, ["zebracorn"], 10) == []
    # the other user's cube is untouched
    assert len(store.list_memories(theirs.id, Filters())) == 2
    # only an id-level trace of the forgetting remains
    trace = store.query_audit()
    assert [(e.operation, e.user_id) for e in trace] == [("forget_user", "u-admin")]
    assert trace[0].item_ids == ["u-x", mine.id]
    with pytest.raises(NotFoundError):
        store.forget_user("u-x")
