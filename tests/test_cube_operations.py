"""Cube operations: compose keeps every version and provenance; fuse merges provenance and archives."""

from __future__ import annotations

from memkern import MemOS
from memkern.models import LifecycleState


def test_compose_keeps_all_versions_provenance_and_origin(mos: MemOS):
    a, b = mos.create_cube("a"), mos.create_cube("b")
    a.add([{"role": "user", "content": "I moved to Porto", "id": "m1"}], session_id="s1")
    fact = a.add(text="Ana likes jazz", kind="preference", infer=False).added[0]
    a.update(fact.id, text="Ana likes blues", reason="corrected")
    b.add(text="Bruno plays chess", kind="fact", infer=False)
    b.add(text="Ana likes blues", kind="preference", infer=False)  # the same memory as a's
    report = mos.compose_cubes(a, b, "ab")
    ab = mos.get_cube("ab")
    assert ab.info.metadata["composed_from"][0]["cube_name"] == "a"
    history = ab.history(fact.id)
    assert [h.text for h in history] == ["Ana likes jazz", "Ana likes blues"]
    assert history[1].supersedes == f"{fact.id}@v1" and history[1].change_reason == "corrected"
    assert all(h.metadata["origin"]["cube_name"] == "a" for h in history)
    assert len(report.merged) == 1 and report.merged[0]["kept"] == fact.id
    assert ab.get(fact.id).metadata["origin"]["also"][0]["cube_name"] == "b"
    turn = ab.get_all({"kind": "turn"})[0]
    assert turn.provenance.message_ids == ["m1"] and turn.provenance.session_id == "s1"
    assert {m.text for m in ab.get_all()} == {"user: I moved to Porto", "Ana likes blues", "Bruno plays chess"}
    assert ab.search("chess", top_k=1)[0].text == "Bruno plays chess"
    assert len(a.get_all()) == 2 and len(b.get_all()) == 2  # the sources are untouched


def test_fuse_duplicates_across_cubes_merges_provenance_and_archives_with_reason(mos: MemOS):
    a, b = mos.create_cube("a"), mos.create_cube("b")
    keep = a.add(text="Carla works as a nurse.", kind="fact", session_id="sa", infer=False).added[0]
    dup = b.add(text="carla works as a nurse", kind="fact", session_id="sb", infer=False).added[0]
    other = b.add(text="Dan has a cat", kind="fact", infer=False).added[0]
    report = mos.fuse_duplicates([a, b])
    assert len(report.groups) == 1 and report.archived == 1
    survivor = a.get(keep.id)
    assert survivor.version == 2 and survivor.metadata["fused_from"][0]["memory_id"] == dup.id
    assert survivor.metadata["fused_from"][0]["provenance"]["session_id"] == "sb"
    archived = b.get(dup.id)
    assert archived.state is LifecycleState.ARCHIVED
    reason = b.operations(dup.id)[-1].reason
    assert keep.id in reason and reason.startswith("archive: duplicate: fused into a/")
    assert [h.version for h in b.history(dup.id)] == [1]  # history intact, nothing deleted
    assert b.get(other.id).state is LifecycleState.ACTIVE
    assert mos.fuse_duplicates([a, b]).groups == []  # idempotent


def test_migrate_turn_to_fact_and_fact_to_activation(mos: MemOS):
    cube = mos.create_cube("c")
    turn = cube.add([{"role": "user", "content": "I am vegetarian", "id": "t1"}], session_id="s").added[0]
    moved = cube.migrate(turn.id, "preference", reason="a lasting preference", text="The user is vegetarian")
    assert moved.created.kind.value == "preference" and moved.created.provenance.message_ids == ["t1"]
    assert moved.created.metadata["migrated_from"] == f"{turn.id}@v1"
    assert cube.get(turn.id).metadata["migrated_to"] == moved.created.id
    asked = cube.migrate(moved.created.id, "activation", reason="always relevant")
    assert "activation_requested" in asked.memory.metadata["lifecycle"]
    assert mos.scheduler.get(asked.job_id).type == "promote"
