"""The contract every ``Store`` back end keeps (see ``memkern.store.base``).

These tests speak to the store directly: they build ``MemoryItem``s and unit vectors by
hand, so that a back end is tested without the reader, the embedder or retrieval. The
``store`` fixture (``conftest.py``) runs each test once per back end.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from uuid import uuid4

import numpy as np
import pytest

from memkern.errors import ConflictError, NotFoundError, StoreError
from memkern.models import (
    CubeInfo,
    Filters,
    LifecycleState,
    MemoryItem,
    MemoryKind,
    Provenance,
    utcnow,
)
from memkern.store.base import AddOutcome, Store

DIM = 8
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)

_rng = np.random.default_rng(1234)


# -- helpers -----------------------------------------------------------------------------------------
def cube_info(name: str = "alpha", owner: str = "alice", cube_id: str | None = None) -> CubeInfo:
    return CubeInfo(id=cube_id or uuid4().hex, name=name, owner=owner, embedder="test-vectors", dim=DIM)


def unit_vectors(n: int) -> np.ndarray:
    v = _rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def turn(cube_id: str, text: str, *, session: str | None = "s1", message_id: str | None = None,
         time: datetime | None = None, speaker: str = "alice", tags: list[str] | None = None,
         entities: list[str] | None = None) -> MemoryItem:
    return MemoryItem(
        id=uuid4().hex, cube_id=cube_id, owner="alice", kind=MemoryKind.TURN, text=text,
        tags=tags or [], provenance=Provenance(
            message_ids=[message_id] if message_id else [], session_id=session, speaker=speaker),
        entities=entities or [], event_time=time, valid_from=time,
    )


def fact(cube_id: str, text: str, *, kind: MemoryKind = MemoryKind.FACT, session: str | None = None,
         time: datetime | None = None, tags: list[str] | None = None,
         entities: list[str] | None = None) -> MemoryItem:
    return MemoryItem(
        id=uuid4().hex, cube_id=cube_id, owner="alice", kind=kind, text=text, tags=tags or [],
        provenance=Provenance(session_id=session), entities=entities or [], event_time=time,
        valid_from=time,
    )


def add(store: Store, cube_id: str, items: list[MemoryItem], actor: str | None = None) -> AddOutcome:
    return store.add_memories(cube_id, items, unit_vectors(len(items)), actor)


def next_version(old: MemoryItem, **changes) -> MemoryItem:
    return old.model_copy(update={
        **changes, "version": old.version + 1, "supersedes": old.version_id, "recorded_at": utcnow(),
        "expired_at": None, "valid_to": None,
    })


def all_current(store: Store, cube_id: str) -> list[MemoryItem]:
    return store.list_memories(cube_id, Filters(state=None))


def index_ids(store: Store, cube_id: str) -> list[str]:
    return store.index_rows(cube_id, 0).ids


def lexical_ids(store: Store, cube_id: str, *terms: str, limit: int = 50) -> list[str]:
    return [mid for mid, _ in store.lexical_search(cube_id, list(terms), limit)]


@pytest.fixture
def cube(store) -> CubeInfo:
    return store.create_cube(cube_info())


# -- cubes -------------------------------------------------------------------------------------------
def test_create_get_list_cube(store):
    a = store.create_cube(cube_info("alpha", "alice"))
    b = store.create_cube(cube_info("beta", "bob"))
    c = store.create_cube(cube_info("gamma", "alice"))
    assert store.get_cube("alpha") == a
    assert store.get_cube(a.id) == a
    assert store.get_cube(b.id).name == "beta"
    assert [i.name for i in store.list_cubes()] == ["alpha", "beta", "gamma"]
    assert [i.id for i in store.list_cubes("alice")] == [a.id, c.id]
    assert store.list_cubes("nobody") == []
    assert store.cube_revision(a.id) == store.cube_revision(a.id)  # exists, stable when idle


def test_cube_name_and_id_conflicts(store):
    a = store.create_cube(cube_info("alpha"))
    with pytest.raises(ConflictError, match="alpha"):
        store.create_cube(cube_info("alpha", owner="someone-else"))
    with pytest.raises(ConflictError):
        store.create_cube(cube_info("other-name", cube_id=a.id))
    assert [i.id for i in store.list_cubes()] == [a.id]


def test_unknown_cube_raises_not_found(store):
    store.create_cube(cube_info("alpha"))
    missing = uuid4().hex
    with pytest.raises(NotFoundError, match="nope"):
        store.get_cube("nope")
    with pytest.raises(NotFoundError):
        store.delete_cube(missing)
    with pytest.raises(NotFoundError):
        store.cube_revision(missing)
    with pytest.raises(NotFoundError):
        store.index_rows(missing, 0)
    with pytest.raises(NotFoundError):
        add(store, missing, [fact(missing, "orphan")])
    with pytest.raises(NotFoundError):
        store.history(missing, uuid4().hex)
    with pytest.raises(NotFoundError):
        store.delete_memory(missing, uuid4().hex)
    with pytest.raises(NotFoundError):
        store.set_state(missing, uuid4().hex, LifecycleState.ARCHIVED)
    item = fact(missing, "orphan")
    with pytest.raises(NotFoundError):
        store.update_memory(missing, next_version(item), unit_vectors(1)[0], expected_version=1)


def test_unknown_memory_raises_not_found(store, cube):
    add(store, cube.id, [fact(cube.id, "something")])
    missing = uuid4().hex
    assert store.get_memories(cube.id, [missing]) == {}
    for call in (
        lambda: store.history(cube.id, missing),
        lambda: store.delete_memory(cube.id, missing),
        lambda: store.set_state(cube.id, missing, LifecycleState.ARCHIVED),
        lambda: store.set_state(cube.id, missing, LifecycleState.ACTIVE),
        lambda: store.update_memory(cube.id, next_version(fact(cube.id, "x").model_copy(update={"id": missing})),
                                    unit_vectors(1)[0], expected_version=1),
    ):
        with pytest.raises(NotFoundError, match=missing):
            call()
    assert len(all_current(store, cube.id)) == 1


# -- adding ------------------------------------------------------------------------------------------
def test_add_and_get_memories_round_trip(store, cube):
    items = [
        turn(cube.id, "Caroline moved to Lisbon", message_id="m1", time=T0, tags=["move"],
             entities=["Caroline", "Lisbon"]),
        fact(cube.id, "Caroline likes pottery \u00e9\u00e8 \u4e2d\u6587 \U0001F600", kind=MemoryKind.PREFERENCE),
    ]
    items[0].metadata["role"] = "user"
    outcome = add(store, cube.id, items, actor="tester")
    assert outcome.duplicates == {}
    assert [i.id for i in outcome.added] == [i.id for i in items]
    got = store.get_memories(cube.id, [items[0].id, items[1].id, items[0].id, uuid4().hex])
    assert set(got) == {items[0].id, items[1].id}
    first = got[items[0].id]
    assert first.text == "Caroline moved to Lisbon"
    assert first.version == 1 and first.expired_at is None and first.state is LifecycleState.ACTIVE
    assert first.event_time == T0 and first.tags == ["move"] and first.metadata == {"role": "user"}
    assert first.provenance.message_ids == ["m1"] and first.provenance.speaker == "alice"
    assert first.provenance.position == 0
    assert first.entities == ["Caroline", "Lisbon"]
    assert got[items[1].id].text == items[1].text
    assert got[items[1].id].kind is MemoryKind.PREFERENCE
    assert [op.op for op in store.operations(cube.id) if op.memory_id] == ["add", "add"]
    # The light read of the same memories: text, speaker, role, time and state, no model built.
    texts = store.get_texts(cube.id, [items[0].id, items[1].id, uuid4().hex])
    assert set(texts) == {items[0].id, items[1].id}
    said = texts[items[0].id]
    assert (said.id, said.text, said.speaker, said.role, said.said_at, said.state) == (
        items[0].id, "Caroline moved to Lisbon", "alice", "user", T0, LifecycleState.ACTIVE)
    assert texts[items[1].id].speaker is None and texts[items[1].id].role is None
    store.set_state(cube.id, items[1].id, LifecycleState.ARCHIVED)
    assert store.get_texts(cube.id, [items[1].id])[items[1].id].state is LifecycleState.ARCHIVED


def test_texts_read_only_a_string_role_and_fall_back_to_valid_from(store, cube):
    item = fact(cube.id, "a fact known since T0").model_copy(update={"valid_from": T0, "metadata": {"role": 5}})
    add(store, cube.id, [item])
    said = store.get_texts(cube.id, [item.id])[item.id]
    assert (said.text, said.role, said.said_at) == ("a fact known since T0", None, T0)


def test_vector_count_mismatch_writes_nothing(store, cube):
    rev = store.cube_revision(cube.id)
    with pytest.raises(StoreError):
        store.add_memories(cube.id, [fact(cube.id, "a"), fact(cube.id, "b")], unit_vectors(1))
    assert all_current(store, cube.id) == []
    assert store.cube_revision(cube.id) == rev


def test_reused_id_rolls_back_the_whole_batch(store, cube):
    existing = fact(cube.id, "already here")
    add(store, cube.id, [existing])
    rev = store.cube_revision(cube.id)
    ops = store.operations(cube.id)
    fresh = fact(cube.id, "a fresh memory")
    clash = fact(cube.id, "different text, same id").model_copy(update={"id": existing.id})
    with pytest.raises(ConflictError, match=existing.id):
        add(store, cube.id, [fresh, clash])
    assert [m.id for m in all_current(store, cube.id)] == [existing.id]
    assert store.get_memories(cube.id, [fresh.id]) == {}
    assert store.cube_revision(cube.id) == rev
    assert store.operations(cube.id) == ops
    assert store.index_rows(cube.id, 0).count == 1


def test_duplicates_by_source_key_within_and_across_batches(store, cube):
    a = turn(cube.id, "hello there", message_id="m1", session="s1")
    a_again = turn(cube.id, "hello there (edited copy)", message_id="m1", session="s1")
    b = turn(cube.id, "how are you", message_id="m2", session="s1")
    out = add(store, cube.id, [a, a_again, b])
    assert [i.id for i in out.added] == [a.id, b.id]
    assert out.duplicates == {1: a.id}

    again = turn(cube.id, "hello there", message_id="m1", session="s1")
    c = turn(cube.id, "fine thanks", message_id="m3", session="s1")
    rev = store.cube_revision(cube.id)
    out = add(store, cube.id, [again, c])
    assert out.duplicates == {0: a.id}
    assert [i.id for i in out.added] == [c.id]
    assert store.cube_revision(cube.id) > rev

    # the same message id in another session is another message
    other = turn(cube.id, "hello there", message_id="m1", session="s2")
    out = add(store, cube.id, [other])
    assert [i.id for i in out.added] == [other.id] and out.duplicates == {}
    assert len(all_current(store, cube.id)) == 4
    assert len(store.index_rows(cube.id, 0).ids) == 4


def test_duplicates_by_content_key_within_and_across_batches(store, cube):
    a = fact(cube.id, "the sky is blue", time=T0)
    a_again = fact(cube.id, "the sky is blue", time=T0)
    other_time = fact(cube.id, "the sky is blue", time=T0 + timedelta(days=1))
    other_kind = fact(cube.id, "the sky is blue", time=T0, kind=MemoryKind.EVENT)
    other_session = fact(cube.id, "the sky is blue", time=T0, session="elsewhere")
    out = add(store, cube.id, [a, a_again, other_time, other_kind, other_session])
    assert out.duplicates == {1: a.id}
    assert [i.id for i in out.added] == [a.id, other_time.id, other_kind.id, other_session.id]

    rev = store.cube_revision(cube.id)
    ops = store.operations(cube.id)
    out = add(store, cube.id, [fact(cube.id, "the sky is blue", time=T0)])
    assert out.added == [] and out.duplicates == {0: a.id}
    assert store.operations(cube.id) == ops  # nothing written, nothing logged
    assert store.cube_revision(cube.id) >= rev

    # turns without a message id are deduplicated by content too
    t1 = turn(cube.id, "alice: ok", session="s1", time=T0)
    out = add(store, cube.id, [t1, turn(cube.id, "alice: ok", session="s1", time=T0)])
    assert out.duplicates == {1: t1.id}
    assert len(all_current(store, cube.id)) == 5


def test_distinct_message_ids_with_the_same_words_are_both_kept(store, cube):
    first = turn(cube.id, "alice: thanks!", message_id="m1", session="s1", time=T0)
    second = turn(cube.id, "alice: thanks!", message_id="m7", session="s1", time=T0)
    out = add(store, cube.id, [first, second])
    assert [i.id for i in out.added] == [first.id, second.id]
    # ... and each is still deduplicated against itself
    out = add(store, cube.id, [turn(cube.id, "alice: thanks!", message_id="m7", session="s1", time=T0)])
    assert out.added == [] and out.duplicates == {0: second.id}


def test_turn_positions_are_numbered_per_session(store, cube):
    out = add(store, cube.id, [
        turn(cube.id, "a0", session="A", message_id="a0"),
        turn(cube.id, "b0", session="B", message_id="b0"),
        turn(cube.id, "a1", session="A", message_id="a1"),
        turn(cube.id, "n0", session=None, message_id="n0"),
        fact(cube.id, "a fact in A", session="A"),
        turn(cube.id, "a2", session="A", message_id="a2"),
    ])
    pos = {i.text: i.provenance.position for i in out.added}
    assert pos == {"a0": 0, "b0": 0, "a1": 1, "n0": 0, "a fact in A": None, "a2": 2}
    # a later batch continues each session; duplicates in it take no position
    out = add(store, cube.id, [
        turn(cube.id, "a1", session="A", message_id="a1"),  # duplicate
        turn(cube.id, "b1", session="B", message_id="b1"),
        turn(cube.id, "a3", session="A", message_id="a3"),
        turn(cube.id, "b0", session="B", message_id="b0"),  # duplicate
        turn(cube.id, "b2", session="B", message_id="b2"),
    ])
    assert set(out.duplicates) == {0, 3}
    assert {i.text: i.provenance.position for i in out.added} == {"b1": 1, "a3": 3, "b2": 2}
    stored: dict[str | None, list[int]] = {}
    for item in all_current(store, cube.id):
        if item.kind is MemoryKind.TURN:
            stored.setdefault(item.provenance.session_id, []).append(item.provenance.position)
    assert {s: sorted(p) for s, p in stored.items()} == {"A": [0, 1, 2, 3], "B": [0, 1, 2], None: [0]}
    batch = store.index_rows(cube.id, 0)
    placed = {(s, p) for s, p, k in zip(batch.session_ids, batch.positions, batch.kinds) if k == "turn"}
    assert len(placed) == 8


def test_explicit_positions_are_kept(store, cube):
    chunk = fact(cube.id, "chapter two", kind=MemoryKind.DOCUMENT)
    chunk.provenance.document_path = "book.txt"
    chunk.provenance.position = 7
    add(store, cube.id, [chunk])
    assert store.get_memories(cube.id, [chunk.id])[chunk.id].provenance.position == 7


# -- listing -----------------------------------------------------------------------------------------
@pytest.fixture
def populated(store, cube):
    items = [
        turn(cube.id, "t0", session="s1", speaker="alice", time=T0, tags=["x"], message_id="1"),
        turn(cube.id, "t1", session="s1", speaker="bob", time=T0 + timedelta(days=1), tags=["x", "y"],
             message_id="2"),
        turn(cube.id, "t2", session="s2", speaker="alice", time=T0 + timedelta(days=2), message_id="3"),
        fact(cube.id, "f3", time=T0 + timedelta(days=3), tags=["y"]),
        fact(cube.id, "e4", kind=MemoryKind.EVENT, session="s2", tags=["x", "y"]),
        turn(cube.id, "t5", session="s3", speaker="carol", time=T0 + timedelta(days=5), tags=["x"],
             message_id="4"),
    ]
    add(store, cube.id, items)
    store.set_state(cube.id, items[5].id, LifecycleState.ARCHIVED)
    return items


def _texts(items: list[MemoryItem]) -> list[str]:
    return [i.text for i in items]


@pytest.mark.parametrize(("filters", "expected"), [
    (Filters(), ["t0", "t1", "t2", "f3", "e4"]),
    (Filters(state=None), ["t0", "t1", "t2", "f3", "e4", "t5"]),
    (Filters(state=LifecycleState.ARCHIVED), ["t5"]),
    (Filters(session_id="s1"), ["t0", "t1"]),
    (Filters(session_id=["s2", "s3"], state=None), ["t2", "e4", "t5"]),
    (Filters(kind=MemoryKind.FACT), ["f3"]),
    (Filters(kind=[MemoryKind.EVENT, MemoryKind.TURN]), ["t0", "t1", "t2", "e4"]),
    (Filters(tags=["x"]), ["t0", "t1", "e4"]),
    (Filters(tags=["x", "y"]), ["t1", "e4"]),
    (Filters(speaker="alice"), ["t0", "t2"]),
    (Filters(since=T0 + timedelta(days=1)), ["t1", "t2", "f3"]),
    (Filters(until=T0 + timedelta(days=1)), ["t0", "t1"]),
    (Filters(since=T0 + timedelta(days=1), until=T0 + timedelta(days=2), speaker="alice"), ["t2"]),
    (Filters(session_id="nope"), []),
])
def test_list_memories_filters(store, cube, populated, filters, expected):
    assert _texts(store.list_memories(cube.id, filters)) == expected


def test_list_memories_limit_and_offset(store, cube, populated):
    assert _texts(store.list_memories(cube.id, Filters(), limit=2)) == ["t0", "t1"]
    assert _texts(store.list_memories(cube.id, Filters(), limit=2, offset=2)) == ["t2", "f3"]
    assert _texts(store.list_memories(cube.id, Filters(), offset=4)) == ["e4"]
    assert _texts(store.list_memories(cube.id, Filters(), limit=0)) == []
    assert _texts(store.list_memories(cube.id, Filters(), offset=99)) == []
    assert _texts(store.list_memories(cube.id, Filters(state=None), limit=3, offset=3)) == ["f3", "e4", "t5"]


def test_list_memories_limit_applies_after_every_filter(store, cube, populated):
    # tags x: t0, t1, e4 (t5 is archived)
    assert _texts(store.list_memories(cube.id, Filters(tags=["x"]), limit=2)) == ["t0", "t1"]
    assert _texts(store.list_memories(cube.id, Filters(tags=["x"]), limit=2, offset=2)) == ["e4"]
    assert _texts(store.list_memories(cube.id, Filters(tags=["y"]), limit=1, offset=1)) == ["f3"]


def test_list_memories_is_per_cube(store, cube, populated):
    other = store.create_cube(cube_info("other"))
    add(store, other.id, [fact(other.id, "t0")])
    assert _texts(store.list_memories(other.id, Filters())) == ["t0"]
    assert len(store.list_memories(cube.id, Filters(state=None))) == 6


# -- updates -----------------------------------------------------------------------------------------
def test_update_writes_version_two_and_keeps_history(store, cube):
    old = fact(cube.id, "Caroline lives in Boston", time=T0)
    add(store, cube.id, [old])
    seqs_before = store.index_rows(cube.id, 0).seqs
    rev = store.cube_revision(cube.id)
    new = next_version(old, text="Caroline lives in Lisbon", changed_by="bob", change_reason="typo")
    vector = unit_vectors(1)[0]
    written = store.update_memory(cube.id, new, vector, expected_version=1)
    assert written.version == 2
    assert store.cube_revision(cube.id) > rev

    current = store.get_memories(cube.id, [old.id])[old.id]
    assert current.version == 2 and current.text == "Caroline lives in Lisbon"
    assert current.supersedes == f"{old.id}@v1" and current.expired_at is None

    v1, v2 = store.history(cube.id, old.id)
    assert (v1.version, v2.version) == (1, 2)
    assert v1.text == "Caroline lives in Boston"
    assert v1.expired_at == new.recorded_at
    assert v1.valid_to is None  # a correction: valid_from unchanged, so the old version's validity is not closed
    assert v2.expired_at is None and v2.valid_to is None
    assert v2.changed_by == "bob" and v2.change_reason == "typo"

    assert [m.version for m in all_current(store, cube.id)] == [2]
    batch = store.index_rows(cube.id, 0)
    assert batch.ids == [old.id] and batch.count == 1 and batch.seqs != seqs_before
    assert np.allclose(batch.vectors[0], vector, atol=1e-6)
    assert lexical_ids(store, cube.id, "lisbon") == [old.id]
    assert lexical_ids(store, cube.id, "boston") == []
    ops = store.operations(cube.id, old.id)
    assert [(o.op, o.version) for o in ops] == [("add", 1), ("update", 2)]
    assert ops[-1].actor == "bob" and ops[-1].reason == "typo"


def test_update_with_new_valid_from_closes_old_validity(store, cube):
    old = fact(cube.id, "Caroline lives in Boston", time=T0)
    add(store, cube.id, [old])
    moved = T0 + timedelta(days=30)
    store.update_memory(cube.id, next_version(old, text="Caroline lives in Lisbon", valid_from=moved),
                        unit_vectors(1)[0], expected_version=1)
    v1, v2 = store.history(cube.id, old.id)
    assert v1.valid_to == moved and v1.valid_from == T0
    assert v2.valid_from == moved and v2.valid_to is None
    assert v1.expired_at is not None and v2.expired_at is None

    # a third version that keeps valid_from leaves v2's validity open
    store.update_memory(cube.id, next_version(v2, tags=["moved"]), unit_vectors(1)[0], expected_version=2)
    v1b, v2b, v3 = store.history(cube.id, old.id)
    assert v1b.valid_to == moved and v2b.valid_to is None and v2b.expired_at is not None
    assert v3.version == 3 and v3.tags == ["moved"] and v3.expired_at is None


def test_stale_expected_version_raises_conflict(store, cube):
    old = fact(cube.id, "v1 text")
    add(store, cube.id, [old])
    store.update_memory(cube.id, next_version(old, text="v2 text"), unit_vectors(1)[0], expected_version=1)
    rev = store.cube_revision(cube.id)
    rows = store.index_rows(cube.id, 0)
    with pytest.raises(ConflictError, match="version"):
        store.update_memory(cube.id, next_version(old, text="lost update"), unit_vectors(1)[0],
                            expected_version=1)
    assert [v.text for v in store.history(cube.id, old.id)] == ["v1 text", "v2 text"]
    assert store.cube_revision(cube.id) == rev
    assert store.index_rows(cube.id, 0).seqs == rows.seqs
    assert lexical_ids(store, cube.id, "lost") == []


def test_update_that_duplicates_another_memory_changes_nothing(store, cube):
    a, b = fact(cube.id, "alpha words"), fact(cube.id, "beta words")
    add(store, cube.id, [a, b])
    rows = store.index_rows(cube.id, 0)
    with pytest.raises(ConflictError):
        store.update_memory(cube.id, next_version(b, text="alpha words"), unit_vectors(1)[0], expected_version=1)
    assert [v.version for v in store.history(cube.id, b.id)] == [1]
    assert store.get_memories(cube.id, [b.id])[b.id].text == "beta words"
    assert store.index_rows(cube.id, 0).seqs == rows.seqs
    assert lexical_ids(store, cube.id, "beta") == [b.id]


# -- lifecycle ---------------------------------------------------------------------------------------
def test_archive_and_restore_change_index_rows(store, cube):
    items = [fact(cube.id, f"memory number {i}") for i in range(3)]
    add(store, cube.id, items)
    before = store.index_rows(cube.id, 0)
    last = before.seqs[-1]
    rev = store.cube_revision(cube.id)

    archived = store.set_state(cube.id, items[1].id, LifecycleState.ARCHIVED, actor="me", reason="old")
    assert archived.state is LifecycleState.ARCHIVED and archived.version == 1
    assert store.cube_revision(cube.id) > rev
    fresh = store.index_rows(cube.id, last)
    assert fresh.ids == [items[1].id] and fresh.states == ["archived"] and fresh.seqs[0] > last
    assert fresh.count == 3  # same number of rows but a new one: a cached copy sees len + new != count
    whole = store.index_rows(cube.id, 0)
    assert sorted(whole.ids) == sorted(i.id for i in items)
    assert dict(zip(whole.ids, whole.states))[items[1].id] == "archived"
    assert np.allclose(whole.vectors[whole.ids.index(items[1].id)],
                       before.vectors[before.ids.index(items[1].id)])
    assert _texts(store.list_memories(cube.id, Filters())) == ["memory number 0", "memory number 2"]
    assert store.get_memories(cube.id, [items[1].id])[items[1].id].state is LifecycleState.ARCHIVED

    rev = store.cube_revision(cube.id)
    last = whole.seqs[-1]
    restored = store.set_state(cube.id, items[1].id, LifecycleState.ACTIVE)
    assert restored.state is LifecycleState.ACTIVE
    assert store.cube_revision(cube.id) > rev
    fresh = store.index_rows(cube.id, last)
    assert fresh.ids == [items[1].id] and fresh.states == ["active"] and fresh.count == 3
    assert len(store.list_memories(cube.id, Filters())) == 3
    assert len(store.history(cube.id, items[1].id)) == 1
    ops = [o for o in store.operations(cube.id, items[1].id)]
    assert len(ops) == 3 and ops[1].actor == "me" and ops[1].reason == "old"


def test_set_state_deleted_is_refused(store, cube):
    item = fact(cube.id, "keep me")
    add(store, cube.id, [item])
    with pytest.raises(StoreError):
        store.set_state(cube.id, item.id, LifecycleState.DELETED)
    assert store.get_memories(cube.id, [item.id])[item.id].state is LifecycleState.ACTIVE


def test_delete_removes_every_version_and_index_entry(store, cube):
    secret = fact(cube.id, "the password is swordfish", entities=["Swordfish"])
    keep = fact(cube.id, "the weather is fine")
    add(store, cube.id, [secret, keep])
    store.update_memory(cube.id, next_version(secret, text="the password is hunter2 swordfish"),
                        unit_vectors(1)[0], expected_version=1)
    assert lexical_ids(store, cube.id, "swordfish") == [secret.id]
    rev = store.cube_revision(cube.id)

    store.delete_memory(cube.id, secret.id, actor="admin", reason="user request")
    assert store.cube_revision(cube.id) > rev
    assert store.get_memories(cube.id, [secret.id]) == {}
    with pytest.raises(NotFoundError):
        store.history(cube.id, secret.id)
    assert lexical_ids(store, cube.id, "swordfish") == []
    assert lexical_ids(store, cube.id, "password") == []
    assert lexical_ids(store, cube.id, "hunter2") == []
    batch = store.index_rows(cube.id, 0)
    assert batch.ids == [keep.id] and batch.count == 1
    assert [m.id for m in all_current(store, cube.id)] == [keep.id]
    versions, vectors = store.export_versions(cube.id)
    assert [v.id for v in versions] == [keep.id] and len(vectors) == 1

    ops = store.operations(cube.id, secret.id)
    assert ops[-1].op == "delete" and ops[-1].memory_id == secret.id
    assert ops[-1].actor == "admin" and ops[-1].reason == "user request"
    for op in store.operations(cube.id):  # id-only: no trace of the text anywhere in the log
        assert "swordfish" not in op.model_dump_json().lower()

    with pytest.raises(NotFoundError):
        store.delete_memory(cube.id, secret.id)
    # an add of the same content after a delete is a new memory, not a duplicate of a ghost
    again = fact(cube.id, "the password is swordfish")
    assert [i.id for i in add(store, cube.id, [again]).added] == [again.id]


def test_record_access_counts_reads(store, cube):
    a, b = fact(cube.id, "read me"), fact(cube.id, "not me")
    add(store, cube.id, [a, b])
    when = T0 + timedelta(days=3)
    store.record_access(cube.id, [a.id, a.id], when)
    store.record_access(cube.id, [], when)
    got = store.get_memories(cube.id, [a.id, b.id])
    assert got[a.id].access_count == 2 and got[a.id].last_accessed_at == when
    assert got[b.id].access_count == 0 and got[b.id].last_accessed_at is None


# -- revisions and the index -------------------------------------------------------------------------
def test_cube_revision_moves_on_every_index_changing_write(store, cube):
    seen = [store.cube_revision(cube.id)]

    def moved() -> bool:
        seen.append(store.cube_revision(cube.id))
        return seen[-1] > seen[-2]

    a, b = fact(cube.id, "one"), fact(cube.id, "two")
    add(store, cube.id, [a])
    assert moved()
    add(store, cube.id, [b])
    assert moved()
    store.update_memory(cube.id, next_version(a, text="one, corrected"), unit_vectors(1)[0], expected_version=1)
    assert moved()
    store.set_state(cube.id, b.id, LifecycleState.ARCHIVED)
    assert moved()
    store.set_state(cube.id, b.id, LifecycleState.ACTIVE)
    assert moved()
    store.delete_memory(cube.id, b.id)
    assert moved()
    assert len(set(seen)) == len(seen)  # never returns to an earlier value

    other = store.create_cube(cube_info("other"))
    rev = store.cube_revision(cube.id)
    add(store, other.id, [fact(other.id, "elsewhere")])
    assert store.cube_revision(cube.id) == rev  # another cube's writes leave this one alone


def test_index_rows_incremental_reads_and_count(store, cube):
    first = [turn(cube.id, f"turn {i}", session="s1", time=T0 + timedelta(hours=i), tags=[f"t{i}"],
                  speaker="bob", message_id=f"m{i}") for i in range(3)]
    vectors = unit_vectors(3)
    store.add_memories(cube.id, first, vectors)
    batch = store.index_rows(cube.id, 0)
    assert batch.ids == [i.id for i in first]
    assert batch.count == 3 and batch.revision == store.cube_revision(cube.id)
    assert batch.seqs == sorted(batch.seqs) and len(set(batch.seqs)) == 3
    assert batch.vectors.shape == (3, DIM) and batch.vectors.dtype == np.float32
    assert np.allclose(batch.vectors, vectors, atol=1e-6)
    assert batch.session_ids == ["s1"] * 3 and batch.positions == [0, 1, 2]
    assert batch.kinds == ["turn"] * 3 and batch.speakers == ["bob"] * 3 and batch.states == ["active"] * 3
    assert batch.tags == [["t0"], ["t1"], ["t2"]]
    assert batch.event_times == pytest.approx([(T0 + timedelta(hours=i)).timestamp() for i in range(3)])

    last = batch.seqs[-1]
    empty = store.index_rows(cube.id, last)
    assert empty.ids == [] and empty.count == 3 and (empty.vectors is None or len(empty.vectors) == 0)

    more = [fact(cube.id, "fact four"), fact(cube.id, "fact five", kind=MemoryKind.SUMMARY)]
    more_vectors = unit_vectors(2)
    store.add_memories(cube.id, more, more_vectors)
    new = store.index_rows(cube.id, last)
    assert new.ids == [i.id for i in more] and new.count == 5
    assert all(s > last for s in new.seqs)
    assert np.allclose(new.vectors, more_vectors, atol=1e-6)
    assert new.kinds == ["fact", "summary"] and new.session_ids == [None, None]
    assert new.positions == [None, None] and new.event_times == [None, None] and new.speakers == [None, None]

    # another cube's rows never appear
    other = store.create_cube(cube_info("other"))
    add(store, other.id, [fact(other.id, "elsewhere")])
    assert store.index_rows(cube.id, 0).count == 5
    assert store.index_rows(other.id, 0).count == 1


def test_index_rows_count_drops_after_delete(store, cube):
    items = [fact(cube.id, f"row {i}") for i in range(4)]
    add(store, cube.id, items)
    last = store.index_rows(cube.id, 0).seqs[-1]
    store.delete_memory(cube.id, items[0].id)
    batch = store.index_rows(cube.id, last)
    assert batch.ids == [] and batch.count == 3


# -- lexical search ----------------------------------------------------------------------------------
def test_lexical_search_ranking(store, cube):
    both = fact(cube.id, "apple pie with cherry on top")
    apple = fact(cube.id, "an apple a day keeps the doctor away")
    cherry = fact(cube.id, "cherry blossom season in Tokyo")
    neither = fact(cube.id, "completely unrelated words here")
    named = fact(cube.id, "she flew there last spring", entities=["Zanzibar"])
    add(store, cube.id, [both, apple, cherry, neither, named])

    hits = store.lexical_search(cube.id, ["apple", "cherry"], 10)
    ids = [mid for mid, _ in hits]
    assert ids[0] == both.id
    assert set(ids) == {both.id, apple.id, cherry.id}
    scores = [s for _, s in hits]
    assert all(s > 0 for s in scores) and scores == sorted(scores, reverse=True)
    assert len(store.lexical_search(cube.id, ["apple", "cherry"], 2)) == 2
    assert store.lexical_search(cube.id, [], 10) == []
    assert store.lexical_search(cube.id, ["nonexistentword"], 10) == []
    # entities are searchable too
    assert lexical_ids(store, cube.id, "zanzibar") == [named.id]


def test_lexical_search_rare_term_beats_common_term(store, cube):
    items = [fact(cube.id, f"common filler number {i}") for i in range(8)]
    rare = fact(cube.id, "common but also pottery")
    add(store, cube.id, items + [rare])
    hits = store.lexical_search(cube.id, ["common", "pottery"], 3)
    assert hits[0][0] == rare.id


def test_lexical_search_odd_terms_do_not_break_the_query(store, cube):
    item = fact(cube.id, "and or not near cube text")
    add(store, cube.id, [item])
    for terms in (['"'], ["*"], ["and"], ["OR"], ["NOT"], ["NEAR"], ["cube:"], ["text:"], ["a\"b"], ["(", ")"],
                  ["-"], ["^"], ["\u00e9t\u00e9"]):
        store.lexical_search(cube.id, terms, 5)  # must not raise
    assert lexical_ids(store, cube.id, "cube") == [item.id]


def test_lexical_search_is_per_cube_even_for_similar_ids(store):
    # Store callers may choose cube ids; one that is a prefix/token of another must not leak.
    a = store.create_cube(cube_info("a", cube_id="team"))
    b = store.create_cube(cube_info("b", cube_id="team-red"))
    c = store.create_cube(cube_info("c", cube_id="team red"))
    add(store, a.id, [fact(a.id, "banana in cube a")])
    add(store, b.id, [fact(b.id, "banana in cube b")])
    add(store, c.id, [fact(c.id, "banana in cube c")])
    for info in (a, b, c):
        hits = store.lexical_search(info.id, ["banana"], 10)
        assert len(hits) == 1
        found = store.get_memories(info.id, [hits[0][0]])
        assert len(found) == 1


def test_lexical_search_skips_old_versions(store, cube):
    item = fact(cube.id, "mango smoothie")
    add(store, cube.id, [item])
    store.update_memory(cube.id, next_version(item, text="papaya smoothie"), unit_vectors(1)[0], expected_version=1)
    assert lexical_ids(store, cube.id, "mango") == []
    assert lexical_ids(store, cube.id, "smoothie") == [item.id]


# -- export / import ---------------------------------------------------------------------------------
def _comparable(item: MemoryItem) -> dict:
    return item.model_dump(exclude={"cube_id"})


def test_export_import_round_trip(store, cube):
    items = [
        turn(cube.id, "first turn", message_id="m1", time=T0, tags=["a"]),
        turn(cube.id, "second turn", message_id="m2", time=T0 + timedelta(minutes=1)),
        fact(cube.id, "a fact", entities=["Fact"]),
        fact(cube.id, "to archive"),
    ]
    add(store, cube.id, items)
    store.update_memory(cube.id, next_version(items[2], text="a corrected fact", valid_from=T0),
                        unit_vectors(1)[0], expected_version=1)
    store.set_state(cube.id, items[3].id, LifecycleState.ARCHIVED)
    store.record_access(cube.id, [items[0].id], T0)

    versions, vectors = store.export_versions(cube.id)
    assert len(versions) == 5
    current = [v for v in versions if v.expired_at is None]
    assert len(current) == 4 and vectors.shape == (4, DIM)
    rows = store.index_rows(cube.id, 0)
    by_id = dict(zip(rows.ids, rows.vectors))
    for v, vec in zip(current, vectors):
        assert np.allclose(by_id[v.id], vec)

    target = cube_info("copy", owner="bob")
    moved = [v.model_copy(update={"cube_id": target.id}) for v in versions]
    imported = store.import_cube(target, moved, vectors, actor="loader")
    assert imported.id == target.id
    assert store.get_cube("copy").owner == "bob"

    versions2, vectors2 = store.export_versions(target.id)
    assert [_comparable(v) for v in versions2] == [_comparable(v) for v in versions]
    assert np.allclose(vectors2, vectors)
    assert [v.version for v in store.history(target.id, items[2].id)] == [1, 2]
    assert store.index_rows(target.id, 0).count == 4
    assert _texts(store.list_memories(target.id, Filters())) == ["first turn", "second turn", "a corrected fact"]
    assert lexical_ids(store, target.id, "corrected") == [items[2].id]
    assert lexical_ids(store, target.id, "fact") == [items[2].id]
    assert store.get_memories(target.id, [items[0].id])[items[0].id].access_count == 1
    assert store.cube_revision(target.id) > 0
    # the source cube is untouched
    assert len(store.export_versions(cube.id)[0]) == 5


def test_import_is_all_or_nothing(store, cube):
    add(store, cube.id, [fact(cube.id, "x"), fact(cube.id, "y")])
    versions, vectors = store.export_versions(cube.id)
    target = cube_info("copy")
    moved = [v.model_copy(update={"cube_id": target.id}) for v in versions]
    with pytest.raises(StoreError):
        store.import_cube(target, moved, vectors[:1])
    with pytest.raises(ConflictError):
        store.import_cube(target, moved + [moved[0]], np.concatenate([vectors, vectors[:1]]))
    with pytest.raises(ConflictError):
        store.import_cube(cube_info(cube.name), moved, vectors)  # name taken
    with pytest.raises(NotFoundError):
        store.get_cube("copy")
    assert [i.name for i in store.list_cubes()] == [cube.name]
    assert lexical_ids(store, target.id, "x") == []


def test_empty_cube_export(store, cube):
    versions, vectors = store.export_versions(cube.id)
    assert versions == [] and len(vectors) == 0


# -- deleting a cube ---------------------------------------------------------------------------------
def test_delete_cube_removes_everything(store, cube):
    items = [turn(cube.id, "walrus talk", message_id="m1"), fact(cube.id, "walrus fact")]
    add(store, cube.id, items)
    store.update_memory(cube.id, next_version(items[1], text="walrus fact v2"), unit_vectors(1)[0],
                        expected_version=1)
    other = store.create_cube(cube_info("other"))
    kept = fact(other.id, "walrus elsewhere")
    add(store, other.id, [kept])

    store.delete_cube(cube.id, actor="admin")
    with pytest.raises(NotFoundError):
        store.get_cube(cube.name)
    with pytest.raises(NotFoundError):
        store.get_cube(cube.id)
    with pytest.raises(NotFoundError):
        store.index_rows(cube.id, 0)
    with pytest.raises(NotFoundError):
        store.cube_revision(cube.id)
    for item in items:
        with pytest.raises(NotFoundError):
            store.history(cube.id, item.id)
    assert store.get_memories(cube.id, [i.id for i in items]) == {}
    assert store.list_memories(cube.id, Filters(state=None)) == []
    assert lexical_ids(store, cube.id, "walrus") == []
    assert [i.name for i in store.list_cubes()] == ["other"]
    assert lexical_ids(store, other.id, "walrus") == [kept.id]
    assert store.index_rows(other.id, 0).count == 1

    # the name and even the id can be used again, and nothing of the old cube comes back
    again = store.create_cube(cube_info(cube.name, cube_id=cube.id))
    assert store.list_memories(again.id, Filters(state=None)) == []
    assert store.index_rows(again.id, 0).count == 0
    assert lexical_ids(store, again.id, "walrus") == []
    assert store.export_versions(again.id)[0] == []
    with pytest.raises(NotFoundError):
        store.history(again.id, items[0].id)
    # the same messages can be added again (no dedup against the deleted cube)
    readded = turn(cube.id, "walrus talk", message_id="m1")
    assert [i.id for i in add(store, again.id, [readded]).added] == [readded.id]


def test_operations_log_ids_only_and_limit(store, cube):
    item = fact(cube.id, "zebra stripes")
    add(store, cube.id, [item], actor="writer")
    store.update_memory(cube.id, next_version(item, text="zebra spots"), unit_vectors(1)[0], expected_version=1)
    store.delete_memory(cube.id, item.id)
    ops = store.operations(cube.id)
    assert [o.seq for o in ops] == sorted(o.seq for o in ops)
    assert [o.op for o in ops if o.memory_id == item.id] == ["add", "update", "delete"]
    assert all(o.cube_id == cube.id for o in ops)
    assert ops[[o.op for o in ops].index("add")].actor == "writer"
    assert all(o.at.tzinfo is not None for o in ops)
    assert len(store.operations(cube.id, limit=2)) == 2
    assert store.operations(cube.id, limit=2) == ops[:2]
    assert [o.op for o in store.operations(cube.id, item.id)] == ["add", "update", "delete"]
    assert "zebra" not in "".join(o.model_dump_json() for o in ops)
