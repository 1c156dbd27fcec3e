"""Links between memories (``memkern.organize.links``): each kind on a real store, the LLM's facts
through the loopback OpenAI server, and what a link must never point to."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from fake_openai import FakeOpenAI

from memkern import MemOS
from memkern.errors import InvalidInputError, NotFoundError
from memkern.llm.http import OpenAICompatibleLLM
from memkern.models import LinkKind
from memkern.mos import MemCube

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=timezone.utc)


def _say(cube: MemCube, session: str, day: int, turns: list[tuple[str, str]]) -> list[str]:
    """Store one session of (speaker, text) turns on day ``day`` after T0; their ids in order."""
    at = T0 + timedelta(days=day)
    messages = [{"role": "assistant" if name == "assistant" else "user", "name": name, "content": text,
                 "time": at + timedelta(minutes=n)} for n, (name, text) in enumerate(turns)]
    return [item.id for item in cube.add(messages, session_id=session, infer=False).added]


def _by_kind(links) -> dict[str, list[tuple[str, str | None]]]:
    found: dict[str, list[tuple[str, str | None]]] = {}
    for link in links:
        found.setdefault(link.kind.value, []).append((link.memory.id, link.via))
    return found


@pytest.fixture
def alice(mos: MemOS) -> tuple[MemCube, list[str], list[str]]:
    cube = mos.create_cube("alice")
    march = _say(cube, "s1", 0, [("Alice", "Hi! I live in Paris, near the Canal Saint-Martin."),
                                 ("assistant", "Paris is lovely. What do you do there?"),
                                 ("Alice", "I work as a nurse at Hopital Lariboisiere.")])
    may = _say(cube, "s2", 60, [("Alice", "Big news: I moved to Lisbon last week."),
                                ("assistant", "Congratulations! How is Lisbon so far?"),
                                ("Alice", "Claire visits me in Lisbon next month.")])
    return cube, march, may


def test_a_turn_links_to_the_turns_before_and_after_it(alice) -> None:
    cube, march, _ = alice
    links = _by_kind(cube.links(march[1], [LinkKind.FOLLOWS, LinkKind.FOLLOWED_BY]))
    assert links == {"follows": [(march[0], None)], "followed_by": [(march[2], None)]}
    assert _by_kind(cube.links(march[0], ["follows", "followed_by"])) == {"followed_by": [(march[1], None)]}


def test_a_slot_value_links_to_the_value_it_replaced_and_back(alice) -> None:
    cube, march, may = alice
    newer = _by_kind(cube.links(may[0], [LinkKind.UPDATES]))
    assert newer == {"updates": [(march[0], "Alice residence: Paris -> Lisbon")]}
    older = _by_kind(cube.links(march[0], [LinkKind.UPDATED_BY]))
    assert older == {"updated_by": [(may[0], "Alice residence: Paris -> Lisbon")]}


def test_memories_naming_the_same_entity_are_linked_but_not_by_the_speaker(alice) -> None:
    cube, march, may = alice
    links = cube.links(may[0], [LinkKind.SAME_ENTITY])
    assert {link.memory.id for link in links} == {may[1], may[2]}  # "Lisbon"; not every turn Alice said
    assert {link.via for link in links} == {"Lisbon"}
    assert cube.links(may[0], [LinkKind.SAME_ENTITY], limit=1)[0].memory.id in {may[1], may[2]}


def test_links_never_point_to_deleted_or_archived_memories(alice) -> None:
    cube, march, may = alice
    cube.delete(may[1])
    cube.archive(may[2])
    assert cube.links(may[0], [LinkKind.SAME_ENTITY, LinkKind.FOLLOWED_BY]) == []
    assert _by_kind(cube.links(march[1], [LinkKind.FOLLOWS])) == {"follows": [(march[0], None)]}
    cube.delete(march[0])
    assert _by_kind(cube.links(march[1], [LinkKind.FOLLOWS])) == {}
    assert "updates" not in _by_kind(cube.links(may[0]))  # the Paris turn is gone: no slot change left


def test_every_kind_comes_in_one_call_in_the_order_of_the_kinds(alice) -> None:
    cube, march, may = alice
    kinds = [link.kind for link in cube.links(may[0])]
    assert kinds == sorted(kinds, key=list(LinkKind).index)
    assert {LinkKind.FOLLOWED_BY, LinkKind.SAME_ENTITY, LinkKind.UPDATES} <= set(kinds)


def test_unknown_ids_and_bad_arguments_are_clear_errors(alice) -> None:
    cube, _, _ = alice
    with pytest.raises(NotFoundError):
        cube.links("f" * 32)
    with pytest.raises(InvalidInputError, match="kinds"):
        cube.links(alice[1][0], ["cousin_of"])
    with pytest.raises(InvalidInputError, match="limit"):
        cube.links(alice[1][0], limit=0)


def test_facts_an_llm_extracted_link_to_their_turn_and_back(tmp_path, embedder, request) -> None:
    extraction = json.dumps({"facts": [
        {"text": "Alice adopted a cat named Miso.", "kind": "event", "subject": "Alice", "time_expression": None,
         "date": None, "confidence": 0.9, "source_turns": [1]}]})
    with FakeOpenAI(script=[extraction], handler=lambda _: json.dumps({"decisions": []})) as server:
        llm = OpenAICompatibleLLM(server.base_url, "fake", timeout_s=5, retries=0)
        mos = MemOS(tmp_path / "m.db", embedder=embedder, llm=llm)
        request.addfinalizer(mos.close)
        cube = mos.create_cube("llm")
        result = cube.add([{"role": "user", "name": "Alice", "content": "I adopted a cat! Her name is Miso.",
                            "id": "m1", "time": T0}], session_id="s1")
    turn = next(item.id for item in result.added if item.kind.value == "turn")
    fact = next(item.id for item in result.added if item.id != turn)
    assert _by_kind(cube.links(fact, [LinkKind.DERIVED_FROM])) == {"derived_from": [(turn, None)]}
    assert _by_kind(cube.links(turn, [LinkKind.SOURCE_OF])) == {"source_of": [(fact, None)]}


def test_links_over_rest_and_the_cli(alice, mos: MemOS, tmp_path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from memkern.cli.main import app
    from memkern.server import create_app

    cube, march, may = alice
    with TestClient(create_app(mos, auth="off")) as api:
        both = api.get(f"/v1/cubes/alice/memories/{march[1]}/links", params={"kinds": '["follows", "followed_by"]'})
        bad = api.get(f"/v1/cubes/alice/memories/{march[1]}/links", params={"kinds": '["cousin_of"]'})
        unknown = api.get(f"/v1/cubes/alice/memories/{'f' * 32}/links")
    assert both.status_code == 200 and [(x["kind"], x["memory"]["id"]) for x in both.json()] == [
        ("follows", march[0]), ("followed_by", march[2])]
    assert bad.status_code == 422 and unknown.status_code == 404
    mos.close()
    shown = CliRunner().invoke(app, ["--db", str(tmp_path / "m.db"), "--json", "links", "alice", may[0],
                                     "--kinds", "updates"])
    assert shown.exit_code == 0, shown.output
    assert [(x["kind"], x["via"]) for x in json.loads(shown.output)] == [("updates", "Alice residence: Paris -> Lisbon")]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_links_and_the_timeline_on_each_back_end(backend, tmp_path, embedder) -> None:
    from store.conftest import make_store

    mos = MemOS(store=make_store(backend, tmp_path), embedder=embedder)
    try:
        cube = mos.create_cube("both")
        march = _say(cube, "s1", 0, [("Alice", "I live in Paris with my cat Miso."),
                                     ("assistant", "How old is Miso?")])
        may = _say(cube, "s2", 60, [("Alice", "I moved to Lisbon, and Miso loves the sun here.")])
        links = {(link.kind.value, link.memory.id, link.via) for link in cube.links(may[0])}
        assert links == {("same_entity", march[0], "Miso"), ("same_entity", march[1], "Miso"),
                         ("updates", march[0], "Alice residence: Paris -> Lisbon")}
        assert {(link.kind.value, link.memory.id) for link in cube.links(march[1])} >= {("follows", march[0])}
        assert [(n.key, n.sessions, n.memories) for n in cube.timeline("month")] == [
            ("2024-03", ["s1"], 2), ("2024-04", ["s2"], 1)]
    finally:
        mos.close()


def test_a_session_resumed_after_many_other_rows_still_links_its_turns(mos: MemOS) -> None:
    cube = mos.create_cube("resumed")
    first = _say(cube, "s1", 0, [("Alice", "Shall we plan the trip to Porto?")])
    _say(cube, "s2", 1, [("Bob", f"Filler line number {n} about the weather.") for n in range(80)])
    later = _say(cube, "s1", 2, [("Alice", "Yes: Porto in June.")])
    assert _by_kind(cube.links(later[0], [LinkKind.FOLLOWS])) == {"follows": [(first[0], None)]}
    assert _by_kind(cube.links(first[0], [LinkKind.FOLLOWED_BY])) == {"followed_by": [(later[0], None)]}


def test_another_conversation_about_the_same_day_and_name_is_the_same_event(mos: MemOS) -> None:
    cube = mos.create_cube("event")
    race = _say(cube, "s1", 10, [("Alice", "I ran the Lisbon half marathon this morning!"),
                                 ("Alice", "Lisbon was so hot.")])
    after = _say(cube, "s2", 11, [("Alice", "Yesterday's race in Lisbon left my legs sore.")])
    _say(cube, "s3", 40, [("Alice", "I would love to run in Lisbon again.")])  # the name, another day
    day = (T0 + timedelta(days=10)).strftime("%-d %B %Y")
    assert _by_kind(cube.links(race[0], [LinkKind.SAME_EVENT])) == {"same_event": [(after[0], f"Lisbon, {day}")]}
    back = cube.links(after[0], [LinkKind.SAME_EVENT])
    assert {(link.memory.id, link.via) for link in back} == {(race[0], f"Lisbon, {day}"), (race[1], f"Lisbon, {day}")}
