"""Update decisions: ADD / UPDATE (supersede) / INVALIDATE / NOOP, by the LLM (through a real
loopback OpenAI server) and by the deterministic rules when there is no LLM."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pytest
from conftest import ctx_of
from fake_openai import FakeOpenAI

from memkern import MemOS
from memkern.errors import InvalidInputError
from memkern.llm.http import OpenAICompatibleLLM
from memkern.ops.facts import slot_of

T0 = datetime(2023, 1, 10, 9, 0, tzinfo=timezone.utc)
T1 = datetime(2023, 6, 1, 9, 0, tzinfo=timezone.utc)
FAST = {"backoff_s": 0.001, "max_backoff_s": 0.01, "timeout_s": 5, "retries": 0}


@pytest.fixture
def cube(mos):
    return mos.create_cube("rules")


# -- deterministic rules, no LLM ---------------------------------------------------------------------
def test_duplicate_is_noop_and_reinforces(cube):
    first = cube.add(text="Alice drinks green tea.", time=T0)
    memory_id = first.added[0].id
    assert first.decisions[0].action == "add" and first.decisions[0].decided_by == "rules"
    again = cube.add(text="alice drinks green tea", time=T1)
    assert again.added == [] and again.duplicates == [memory_id]
    assert again.decisions[0].action == "noop" and again.decisions[0].target_id == memory_id
    assert cube.get(memory_id).access_count == 1
    assert len(cube.get_all()) == 1


def test_residence_change_supersedes_with_history_intact(cube):
    old = cube.add(text="Alice lives in Paris.", time=T0, session_id="s1").added[0]
    result = cube.add(text="Alice moved to Lisbon.", time=T1, session_id="s2")
    assert result.added == []
    decision = result.decisions[0]
    assert (decision.action, decision.target_id, decision.memory_id) == ("update", old.id, old.id)
    assert "residence" in decision.reason
    assert [m.text for m in cube.get_all()] == ["Alice moved to Lisbon."]
    v1, v2 = cube.history(old.id)
    assert v1.text == "Alice lives in Paris." and v1.valid_to == T1 and v1.expired_at is not None
    assert v2.text == "Alice moved to Lisbon." and v2.valid_from == T1 and v2.valid_to is None
    assert v2.changed_by == "rules" and "residence" in v2.change_reason
    assert v2.supersedes == v1.version_id
    assert v2.provenance.session_id == "s2"  # the new fact's source, not the old one's
    update_ops = [o for o in cube.operations(old.id) if o.op == "update"]
    assert update_ops[0].actor == "rules" and "residence" in update_ops[0].reason
    assert result.updated[0].version == 2


def test_rules_add_what_is_not_a_replacement(cube):
    cube.add(text="Alice lives in Paris.", time=T1)
    older = cube.add(text="Alice lives in Rome.", time=T0)  # older news: its own memory
    other = cube.add(text="Bob lives in Porto.", time=T1)  # other subject
    job = cube.add(text="Alice works as a nurse.", time=T1)  # other slot
    assert [r.decisions[0].action for r in (older, other, job)] == ["add", "add", "add"]
    assert len(cube.get_all()) == 4
    plain = cube.add(text="Alice lives in Paris.", time=T1, infer=False)  # stored as given
    assert plain.decisions == [] and plain.duplicates  # the store's own dedup still applies


def test_slot_table():
    assert slot_of("Alice lives in Lisbon") == slot_of("Alice moved to Lisbon")
    assert slot_of("Alice relocated to Porto").name == "residence"
    assert slot_of("Bob works as a chef at Nobu").subject == "bob"
    assert slot_of("Bob was promoted to head chef").name == "job"
    assert slot_of("Carol's favourite colour is blue").name == "favourite colour"
    assert slot_of("Carol's favorite colour is green").subject == "carol"
    assert slot_of("Dan is married").name == "relationship"
    assert slot_of("Dan's dog is named Rex").name == "pet"
    assert slot_of("Eve is 31 years old").name == "age"
    assert slot_of("Eve likes tea") is None


def test_invalidate_archives_with_a_new_version(cube):
    memory = cube.add(text="Alice has a dog named Rex.", time=T0).added[0]
    gone = cube.invalidate(memory.id, at=T1, reason="Rex was given away", actor="alice",
                           metadata={"note": "said in s2"})
    assert gone.version == 2 and gone.valid_to == T1 and gone.state.value == "archived"
    assert cube.search("Alice dog Rex", top_k=5) == []
    assert [m.id for m in cube.get_all(filters={"state": "archived"})] == [memory.id]
    v1, v2 = cube.history(memory.id)
    assert v1.valid_to is None and v1.expired_at is not None and v1.text == v2.text
    assert v2.changed_by == "alice" and v2.change_reason == "Rex was given away" and v2.metadata["note"]
    with pytest.raises(InvalidInputError, match="became true"):
        cube.invalidate(cube.add(text="Bob has a cat.", time=T1).added[0].id, at=T0)


def test_update_takes_new_provenance(cube):
    memory = cube.add(text="Alice works as a nurse.", time=T0, session_id="s1").added[0]
    updated = cube.update(memory.id, "Alice works as a doctor.", valid_from=T1,
                          provenance={"message_ids": ["m9"], "session_id": "s9"}, reason="new job")
    assert updated.provenance.message_ids == ["m9"] and cube.history(memory.id)[0].provenance.session_id == "s1"
    with pytest.raises(InvalidInputError, match="provenance"):
        cube.update(memory.id, "x", provenance={"bogus": 1})


# -- LLM decisions through the loopback server ----------------------------------------------------------
def _llm(server):
    return OpenAICompatibleLLM(server.base_url, "fake", **FAST)


def _handles(prompt: str) -> dict[str, int]:
    return {text: int(h) for h, text in re.findall(r"^\[(\d+)\] \([^)]*\) (.+)$", prompt, re.MULTILINE)}


def _facts(prompt: str) -> dict[str, int]:
    return {text: int(n) for n, text in re.findall(r"^Fact (\d+) \([^)]*\): (.+?) -- most similar", prompt, re.MULTILINE)}


def test_llm_decisions_add_update_invalidate_noop_and_hallucinated_target(tmp_path, embedder, request):
    extraction = json.dumps({"facts": [
        {"text": "Alice moved to Lisbon.", "kind": "fact", "subject": "Alice", "time_expression": None,
         "date": None, "confidence": 0.9, "source_turns": [1]},
        {"text": "Alice gave her dog Rex away.", "kind": "event", "subject": "Alice", "time_expression": None,
         "date": None, "confidence": 0.9, "source_turns": [2]},
        {"text": "Bob really loves jazz music.", "kind": "preference", "subject": "Bob", "time_expression": None,
         "date": None, "confidence": 0.9, "source_turns": [3]},
        {"text": "Alice started learning the piano.", "kind": "fact", "subject": "Alice",
         "time_expression": None, "date": None, "confidence": 0.9, "source_turns": [1]},
        {"text": "Bob likes jazz.", "kind": "preference", "subject": "Bob", "time_expression": None,
         "date": None, "confidence": 0.9, "source_turns": [3]},
    ]})
    prompts = []

    def decide(request):
        prompt = request["messages"][-1]["content"]
        prompts.append(prompt)
        memories, facts = _handles(prompt), _facts(prompt)
        plan = {
            "Alice moved to Lisbon.": ("UPDATE", memories["Alice lives in Paris."]),
            "Alice gave her dog Rex away.": ("INVALIDATE", memories["Alice has a dog named Rex."]),
            "Bob really loves jazz music.": ("NOOP", memories["Bob likes jazz."]),
            "Alice started learning the piano.": ("UPDATE", 42),  # no such handle
        }
        return json.dumps({"decisions": [
            {"fact": n, "decision": plan[text][0], "target": plan[text][1], "reason": f"because {n}"}
            for text, n in facts.items()]})

    with FakeOpenAI(script=[extraction, decide]) as server:
        mos = MemOS(tmp_path / "m.db", embedder=embedder, llm=_llm(server))
        request.addfinalizer(mos.close)
        cube = mos.create_cube("llm")
        paris = cube.add(text="Alice lives in Paris.", time=T0, infer=False).added[0]
        rex = cube.add(text="Alice has a dog named Rex.", time=T0, infer=False).added[0]
        jazz = cube.add(text="Bob likes jazz.", time=T0, infer=False).added[0]
        assert server.requests == []  # infer=False: no call
        result = cube.add([
            {"role": "user", "name": "Alice", "content": "We moved to Lisbon!", "id": "m1", "time": T1},
            {"role": "user", "name": "Alice", "content": "Sadly Rex went to my aunt.", "id": "m2", "time": T1},
            {"role": "user", "name": "Bob", "content": "I love jazz so much.", "id": "m3", "time": T1},
        ], session_id="s2")
        calls = len(server.requests)

    assert calls == 2  # one extraction, one decision call for the whole group
    assert "m1" not in prompts[0] and paris.id not in prompts[0]  # handles, never ids
    by_fact = {d.fact: d for d in result.decisions}
    assert len(by_fact) == 5

    update = by_fact["Alice moved to Lisbon."]
    assert (update.action, update.target_id, update.decided_by) == ("update", paris.id, "llm:fake")
    v1, v2 = cube.history(paris.id)
    assert v1.text == "Alice lives in Paris." and v1.valid_to == T1
    assert v2.text == "Alice moved to Lisbon." and v2.changed_by == "llm:fake"
    assert v2.provenance.message_ids == ["m1"] and v2.metadata["extracted_by"] == "fake"

    invalidate = by_fact["Alice gave her dog Rex away."]
    assert (invalidate.action, invalidate.target_id) == ("invalidate", rex.id)
    gone = cube.history(rex.id)[-1]
    assert gone.state.value == "archived" and gone.valid_to == T1
    assert gone.metadata["invalidated_by"]["message_ids"] == ["m2"]
    assert rex.id not in {h.id for h in cube.search("Alice dog Rex", top_k=10)}
    assert rex.id in {m.id for m in cube.get_all(filters={"state": "archived"})}
    m2 = next(item for item in result.added if item.provenance.message_ids == ["m2"])  # the turn said
    assert [(link.kind.value, link.memory.id) for link in cube.links(rex.id, ["contradicted_by"])] == [
        ("contradicted_by", m2.id)]
    m1 = next(item for item in result.added if item.provenance.message_ids == ["m1"])
    assert m1.id in {link.memory.id for link in cube.links(paris.id, ["derived_from"])}  # v2 came from m1

    noop = by_fact["Bob really loves jazz music."]
    assert (noop.action, noop.target_id) == ("noop", jazz.id)
    assert cube.get(jazz.id).access_count == 2  # this NOOP and the exact duplicate below

    exact = by_fact["Bob likes jazz."]
    assert (exact.action, exact.decided_by) == ("noop", "rules")  # needed no LLM call

    made_up = by_fact["Alice started learning the piano."]
    assert made_up.action == "add" and "[42]" in made_up.note and made_up.target_id is None
    piano = cube.get(made_up.memory_id)
    assert piano.text == "Alice started learning the piano." and piano.provenance.message_ids == ["m1"]

    ops = cube.operations()
    assert any(o.op == "update" and o.memory_id == rex.id and "invalidate" in o.reason for o in ops)
    assert any(o.op == "update" and o.memory_id == paris.id and o.actor == "llm:fake" for o in ops)


def test_failed_decision_call_falls_back_to_rules(tmp_path, embedder, request):
    with FakeOpenAI(script=["garbage", "more garbage"]) as server:
        mos = MemOS(tmp_path / "m.db", embedder=embedder, llm=_llm(server))
        request.addfinalizer(mos.close)
        cube = mos.create_cube("llm")
        old = cube.add(text="Alice lives in Paris.", time=T0, infer=False).added[0]
        result = cube.add(text="Alice moved to Lisbon.", time=T1)
        calls = len(server.requests)
    assert calls == 2
    decision = result.decisions[0]
    assert (decision.action, decision.decided_by, decision.target_id) == ("update", "rules", old.id)
    assert "decided by rules" in decision.note
    assert cube.history(old.id)[0].valid_to == T1


def test_default_llm_comes_from_the_environment(tmp_path, embedder, monkeypatch):
    monkeypatch.delenv("MEMKERN_LLM", raising=False)
    with MemOS(tmp_path / "a.db", embedder=embedder) as mos:
        assert mos.llm is None
    monkeypatch.setenv("MEMKERN_LLM", "openai")
    monkeypatch.setenv("MEMKERN_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("MEMKERN_LLM_MODEL", "env-model")
    with MemOS(tmp_path / "b.db", embedder=embedder) as mos:
        assert mos.llm.name == "env-model"
    with MemOS(tmp_path / "c.db", embedder=embedder, llm=None) as mos:
        assert mos.llm is None
    with pytest.raises(InvalidInputError, match="complete"):
        MemOS(tmp_path / "d.db", embedder=embedder, llm="gpt")


def test_one_message_contradicting_many_memories_is_quarantined_not_applied(cube):
    """The poisoning guard's second rule: a message that would rewrite three or more memories at
    once is held back for an admin; two changes (a real move and a new job) go through."""
    from memkern.models import Provenance
    from memkern.ops.facts import CONTRADICTION_LIMIT, apply_facts
    from memkern.reader.llm_reader import NewFact

    old = [cube.add(text=t, time=T0).added[0] for t in
           ("Alice lives in Paris.", "Alice works as a nurse.", "Alice's cat is named Miso.")]

    def said_in(message, *texts):
        return [NewFact(text=t, time=T1, provenance=Provenance(message_ids=[message])) for t in texts]

    assert CONTRADICTION_LIMIT == 3
    poisoned = apply_facts(ctx_of(cube), said_in("m-evil", "Alice lives in Oslo.", "Alice works as a pilot.",
                                         "Alice's cat is named Rex."))
    assert [d.action for d in poisoned.decisions] == ["quarantine"] * 3
    assert [cube.get(m.id).text for m in old] == [m.text for m in old]  # untouched, still version 1
    held = cube.get_all(filters={"state": "quarantined"})
    assert sorted(m.metadata["would_supersede"] for m in held) == sorted(m.id for m in old)
    assert all(m.metadata["quarantine_reasons"] == ["contradicts_many"] for m in held)
    assert {h.memory.id for h in cube.search("Where does Alice live?")}.isdisjoint({m.id for m in held})

    honest = apply_facts(ctx_of(cube), said_in("m-ok", "Alice lives in Lisbon.", "Alice works as a doctor."))
    assert [d.action for d in honest.decisions] == ["update", "update"]


def test_without_the_guard_many_contradictions_are_applied(cube, mos):
    from memkern.models import Provenance
    from memkern.ops.facts import apply_facts
    from memkern.reader.llm_reader import NewFact

    mos.set_policy(cube.name, guard=False)
    cube = mos.get_cube(cube.name)
    for text in ("Alice lives in Paris.", "Alice works as a nurse.", "Alice's cat is named Miso."):
        cube.add(text=text, time=T0)
    result = apply_facts(ctx_of(cube), [NewFact(text=t, time=T1, provenance=Provenance(message_ids=["m"])) for t in
                                ("Alice lives in Oslo.", "Alice works as a pilot.", "Alice's cat is named Rex.")])
    assert [d.action for d in result.decisions] == ["update"] * 3


def test_contradictions_are_counted_per_message_across_decision_groups(cube):
    from memkern.models import Provenance
    from memkern.ops.facts import DECIDE_GROUP, apply_facts
    from memkern.reader.llm_reader import NewFact

    for text in ("Alice lives in Paris.", "Alice works as a nurse.", "Alice's cat is named Miso."):
        cube.add(text=text, time=T0)
    filler = [f"Alice visited museum number {i}." for i in range(DECIDE_GROUP)]
    texts = ["Alice lives in Oslo.", *filler[:-1], "Alice works as a pilot.", "Alice's cat is named Rex."]
    assert len(texts) > DECIDE_GROUP  # the three contradictions fall in two groups
    result = apply_facts(ctx_of(cube), [NewFact(text=t, time=T1, provenance=Provenance(message_ids=["m"])) for t in texts])
    assert [d.action for d in result.decisions if d.action != "add"] == ["quarantine"] * 3


def test_an_llm_update_of_an_unrelated_memory_is_added_instead(tmp_path, embedder, request):
    """A small model superseded "works as a nurse" with "Congratulations! ..." in a real run."""
    extraction = json.dumps({"facts": [
        {"text": "Alice bought a red bicycle.", "kind": "event", "subject": "Alice", "time_expression": None,
         "date": None, "confidence": 0.9, "source_turns": [1]}]})

    def decide(request):
        prompt = request["messages"][-1]["content"]
        target = _handles(prompt)["Alice works as a nurse."]
        return json.dumps({"decisions": [{"fact": 1, "decision": "UPDATE", "target": target, "reason": "newer"}]})

    with FakeOpenAI(script=[extraction, decide]) as server:
        mos = MemOS(tmp_path / "m.db", embedder=embedder, llm=_llm(server))
        request.addfinalizer(mos.close)
        cube = mos.create_cube("llm")
        nurse = cube.add(text="Alice works as a nurse.", time=T0, infer=False).added[0]
        result = cube.add([{"role": "user", "name": "Alice", "content": "I bought a red bicycle!", "id": "m1",
                            "time": T1}], session_id="s2")
    decision = result.decisions[0]
    assert decision.action == "add" and "shares no content word" in decision.note
    assert cube.get(nurse.id).version == 1 and cube.get(decision.memory_id).text == "Alice bought a red bicycle."


def test_a_question_is_not_extracted_as_a_fact(tmp_path, embedder, request):
    extraction = json.dumps({"facts": [
        {"text": "Do you live nearby?", "kind": "fact", "subject": None, "time_expression": None,
         "date": None, "confidence": 0.9, "source_turns": [1]}]})
    with FakeOpenAI(script=[extraction]) as server:
        mos = MemOS(tmp_path / "m.db", embedder=embedder, llm=_llm(server))
        request.addfinalizer(mos.close)
        result = mos.create_cube("q").add([{"role": "assistant", "content": "Do you live nearby?", "id": "m1",
                                            "time": T1}], session_id="s1")
    assert result.extraction.facts_accepted == 0 and result.extraction.rejections[0].startswith("a question")
