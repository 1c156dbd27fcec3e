"""Bad input through the public API: the right exception, a useful message, nothing written.

Every case runs against a store holding a few memories in two cubes, takes a snapshot of
everything observable (cubes, every current memory in every state, the operation logs),
makes the bad call, checks the exception type and that its message names the problem
without echoing huge input, and checks that the snapshot did not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import pytest
from _embedders import HashingEmbedder

from memkern import (
    ConflictError,
    EmbedderError,
    InvalidInputError,
    MemCube,
    MemkernError,
    MemOS,
    NotFoundError,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
BIG = "x" * (10 * 1024 * 1024)  # 10 MB
LONE = "\udcff"  # a lone surrogate: a str that cannot be encoded as UTF-8


@dataclass
class Env:
    mos: MemOS
    cube: MemCube
    other: MemCube
    mid: str  # a turn in ``cube``
    fid: str  # a fact in ``cube``
    other_mid: str  # a memory of ``other``


@pytest.fixture
def env(mos) -> Env:
    cube = mos.create_cube("main", owner="alice")
    added = cube.add([
        {"role": "user", "content": "I moved to Lisbon last spring", "id": "m1", "time": T0},
        {"role": "assistant", "content": "How do you like Lisbon?", "id": "m2", "time": T0},
    ], session_id="s1", tags=["chat"])
    fact = cube.add(text="Alice plays the violin", tags=["hobby"])
    archived = cube.add(text="Alice used to live in Boston")
    cube.archive(archived.added[0].id, reason="old")
    cube.update(fact.added[0].id, "Alice plays the violin and the cello", reason="more")
    other = mos.create_cube("other", owner="bob")
    other_added = other.add(text="Bob keeps bees")
    return Env(mos=mos, cube=cube, other=other, mid=added.added[0].id, fid=fact.added[0].id,
               other_mid=other_added.added[0].id)


def snapshot(mos: MemOS) -> dict:
    state: dict = {"cubes": [c.model_dump() for c in mos.list_cubes()]}
    for info in mos.list_cubes():
        cube = mos.get_cube(info.id)
        memories = cube.get_all(filters={"state": None})
        state[info.name] = {
            "memories": [m.model_dump() for m in memories],
            "history": {m.id: [v.model_dump() for v in cube.history(m.id)] for m in memories},
            "operations": [o.model_dump() for o in cube.operations()],
        }
    return state


def refused(env: Env, exc_type, call, *words: str) -> BaseException:
    """``call()`` raises ``exc_type`` whose message has every word, and changes nothing."""
    before = snapshot(env.mos)
    with pytest.raises(exc_type) as caught:
        call()
    message = str(caught.value)
    for word in words:
        assert word.lower() in message.lower(), f"{word!r} not in message {message!r}"
    assert 0 < len(message) < 1000, "the message must say what is wrong without echoing the input"
    assert snapshot(env.mos) == before, "a refused call changed the store"
    return caught.value


def msg(**fields) -> dict:
    return {"role": "user", "content": "a perfectly fine message", **fields}


# -- add(messages) -----------------------------------------------------------------------------------
MESSAGE_CASES = [
    pytest.param("just a string", ["list"], id="str-not-list"),
    pytest.param(b"some bytes", ["list"], id="bytes-not-list"),
    pytest.param(42, ["list"], id="int-not-list"),
    pytest.param({"role": "user", "content": "hi"}, ["list"], id="dict-not-list"),
    pytest.param([], ["empty"], id="empty-list"),
    pytest.param([5], ["messages", "0"], id="int-message"),
    pytest.param(["hello"], ["messages", "0"], id="str-message"),
    pytest.param([{"role": "user"}], ["content", "required"], id="dict-without-content"),
    pytest.param([{"role": "user", "content": None}], ["content"], id="content-none"),
    pytest.param([msg(content=123)], ["content", "string"], id="content-int"),
    pytest.param([msg(content=["a", "b"])], ["content", "string"], id="content-list"),
    pytest.param([msg(content={"text": "a"})], ["content", "string"], id="content-dict"),
    pytest.param([msg(content="")], ["content", "empty"], id="content-empty"),
    pytest.param([msg(content="   \n\t  ")], ["content", "empty"], id="content-whitespace"),
    pytest.param([msg(content=BIG)], ["content", "limit"], id="content-10MB"),
    pytest.param([msg(content=f"hello {LONE} world")], ["content", "unicode"], id="content-lone-surrogate"),
    pytest.param([msg(content=b"caf\xe9 \xff\xfe")], ["content", "unicode"], id="content-invalid-utf8-bytes"),
    pytest.param([msg(time="yesterday-ish")], ["time"], id="time-garbage"),
    pytest.param([msg(time="2024-13-45T99:00:00")], ["time"], id="time-impossible"),
    pytest.param([msg(time=[2024, 5, 1])], ["time"], id="time-list"),
    pytest.param([msg(role=5)], ["role", "string"], id="role-int"),
    pytest.param([msg(role=None)], ["role"], id="role-none"),
    pytest.param([msg(role="")], ["role", "empty"], id="role-empty"),
    pytest.param([msg(role="   ")], ["role", "empty"], id="role-whitespace"),
    pytest.param([msg(name=5)], ["name"], id="name-int"),
    pytest.param([msg(id=5)], ["id"], id="id-int"),
    pytest.param([msg(image_caption="")], ["image_caption", "empty"], id="caption-empty"),
    pytest.param([msg(image_caption=f"a {LONE}")], ["image_caption", "unicode"], id="caption-lone-surrogate"),
    pytest.param([msg(foo=1)], ["foo"], id="unknown-field"),
    pytest.param([msg(metadata={"a": 1})], ["metadata"], id="unknown-field-metadata"),
    pytest.param([msg(), msg(content="second, fine"), msg(content="")], ["2", "content", "empty"],
                 id="third-of-three-bad"),
    pytest.param([msg(content=f"message {i}") for i in range(10_001)], ["10,000"], id="too-many-messages"),
    pytest.param([msg(role=f"us{LONE}er")], ["unicode"], id="role-lone-surrogate"),
    pytest.param([msg(name=f"An{LONE}na")], ["unicode"], id="name-lone-surrogate"),
    pytest.param([msg(id=f"m{LONE}")], ["unicode"], id="id-lone-surrogate"),
]


@pytest.mark.parametrize(("messages", "words"), MESSAGE_CASES)
def test_add_refuses_malformed_messages(env, messages, words):
    refused(env, InvalidInputError, lambda: env.cube.add(messages, session_id="s1"), *words)


@pytest.mark.parametrize(("kwargs", "words"), [
    pytest.param({}, ["either"], id="nothing"),
    pytest.param({"messages": [msg()], "text": "both"}, ["either"], id="messages-and-text"),
    pytest.param({"messages": [msg()], "session_id": ""}, ["session_id"], id="session-empty"),
    pytest.param({"messages": [msg()], "session_id": "  "}, ["session_id"], id="session-whitespace"),
    pytest.param({"messages": [msg()], "session_id": 7}, ["session_id"], id="session-int"),
    pytest.param({"messages": [msg()], "tags": "chat"}, ["tags"], id="tags-str"),
    pytest.param({"messages": [msg()], "tags": [""]}, ["tag"], id="tag-empty"),
    pytest.param({"messages": [msg()], "tags": ["ok", 5]}, ["tag"], id="tag-int"),
    pytest.param({"messages": [msg()], "tags": 5}, ["tags"], id="tags-int"),
    pytest.param({"text": ""}, ["empty"], id="text-empty"),
    pytest.param({"text": " \n "}, ["empty"], id="text-whitespace"),
    pytest.param({"text": 5}, ["string"], id="text-int"),
    pytest.param({"text": b"\xff\xfe"}, ["string"], id="text-bytes"),
    pytest.param({"text": f"x{LONE}"}, ["unicode"], id="text-lone-surrogate"),
    pytest.param({"text": BIG}, ["limit"], id="text-10MB"),
    pytest.param({"text": "fine", "kind": "bogus"}, ["kind", "bogus"], id="kind-unknown"),
    pytest.param({"text": "fine", "kind": 3}, ["kind"], id="kind-int"),
    pytest.param({"text": "fine", "time": "last tuesday"}, ["time"], id="time-str"),
    pytest.param({"text": "fine", "metadata": [1, 2]}, ["metadata"], id="metadata-list"),
    pytest.param({"text": "fine", "metadata": {"a": object()}}, ["metadata"], id="metadata-not-json"),
    pytest.param({"messages": [msg()], "session_id": f"s{LONE}"}, ["unicode"], id="session-lone-surrogate"),
    pytest.param({"messages": [msg()], "tags": [f"t{LONE}"]}, ["unicode"], id="tag-lone-surrogate"),
    pytest.param({"text": "fine", "actor": f"a{LONE}"}, ["unicode"], id="actor-lone-surrogate"),
])
def test_add_refuses_bad_arguments(env, kwargs, words):
    refused(env, InvalidInputError, lambda: env.cube.add(**kwargs), *words)


@pytest.mark.parametrize(("text", "words"), [
    pytest.param("", ["empty"], id="empty"),
    pytest.param(42, ["string"], id="int"),
    pytest.param(f"chapter {LONE}", ["unicode"], id="lone-surrogate"),
    pytest.param(BIG, ["limit"], id="10MB"),
])
def test_add_document_refuses_bad_text(env, text, words):
    refused(env, InvalidInputError, lambda: env.cube.add_document(text), *words)


# -- search and get_all ------------------------------------------------------------------------------
@pytest.mark.parametrize("top_k", [0, -1, 1001, 10**9, 2.5, "5", True, False, None, [5]])
def test_search_refuses_bad_top_k(env, top_k):
    refused(env, InvalidInputError, lambda: env.cube.search("Lisbon", top_k=top_k), "top_k")


@pytest.mark.parametrize("query", ["", "   ", 5, None, b"Lisbon", f"Lis{LONE}bon", BIG, ["Lisbon"]],
                         ids=["empty", "whitespace", "int", "none", "bytes", "lone-surrogate", "10MB", "list"])
def test_search_refuses_bad_query(env, query):
    refused(env, InvalidInputError, lambda: env.cube.search(query), "query")


BAD_FILTERS = [
    pytest.param({"bogus": 1}, ["bogus"], id="unknown-key"),
    pytest.param({"kind": "nope"}, ["kind"], id="kind-unknown"),
    pytest.param({"kind": ["turn", "nope"]}, ["kind"], id="kind-list-unknown"),
    pytest.param({"since": "not a date"}, ["since"], id="since-garbage"),
    pytest.param({"until": {"year": 2024}}, ["until"], id="until-dict"),
    pytest.param({"state": "gone"}, ["state"], id="state-unknown"),
    pytest.param({"tags": "chat"}, ["tags"], id="tags-str"),
    pytest.param({"tags": [1]}, ["tags"], id="tags-int"),
    pytest.param({"session_id": 5}, ["session_id"], id="session-int"),
    pytest.param({"speaker": ["a"]}, ["speaker"], id="speaker-list"),
    pytest.param("session_id=s1", ["filters"], id="str"),
    pytest.param(123, ["filters"], id="int"),
    pytest.param(["s1"], ["filters"], id="list"),
]


@pytest.mark.parametrize(("filters", "words"), BAD_FILTERS)
def test_search_refuses_bad_filters(env, filters, words):
    refused(env, InvalidInputError, lambda: env.cube.search("Lisbon", filters=filters), *words)


@pytest.mark.parametrize(("filters", "words"), BAD_FILTERS)
def test_get_all_refuses_bad_filters(env, filters, words):
    refused(env, InvalidInputError, lambda: env.cube.get_all(filters=filters), *words)


def test_search_refuses_unknown_recipe(env):
    refused(env, InvalidInputError, lambda: env.cube.search("Lisbon", config="bogus"), "bogus")


@pytest.mark.parametrize(("kwargs", "word"), [
    pytest.param({"limit": -1}, "limit", id="limit-negative"),
    pytest.param({"limit": "3"}, "limit", id="limit-str"),
    pytest.param({"limit": 2.5}, "limit", id="limit-float"),
    pytest.param({"offset": -1}, "offset", id="offset-negative"),
    pytest.param({"offset": "0"}, "offset", id="offset-str"),
    pytest.param({"offset": None}, "offset", id="offset-none"),
    pytest.param({"limit": True}, "limit", id="limit-bool"),
])
def test_get_all_refuses_bad_paging(env, kwargs, word):
    refused(env, InvalidInputError, lambda: env.cube.get_all(**kwargs), word)


# -- memory ids --------------------------------------------------------------------------------------
def _calls(cube: MemCube, memory_id):
    return {
        "get": lambda: cube.get(memory_id),
        "update": lambda: cube.update(memory_id, "new words"),
        "delete": lambda: cube.delete(memory_id),
        "history": lambda: cube.history(memory_id),
        "archive": lambda: cube.archive(memory_id),
        "restore": lambda: cube.restore(memory_id),
    }


OPERATIONS = ["get", "update", "delete", "history", "archive", "restore"]


@pytest.mark.parametrize("operation", OPERATIONS)
def test_unknown_memory_id_is_not_found(env, operation):
    refused(env, NotFoundError, _calls(env.cube, "no-such-memory")[operation], "no-such-memory")


@pytest.mark.parametrize("operation", OPERATIONS)
def test_memory_of_another_cube_is_not_found(env, operation):
    refused(env, NotFoundError, _calls(env.cube, env.other_mid)[operation], env.other_mid)


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("memory_id", ["", "   ", None, 5, ["id"]], ids=["empty", "blank", "none", "int", "list"])
def test_malformed_memory_id_is_invalid(env, operation, memory_id):
    refused(env, InvalidInputError, _calls(env.cube, memory_id)[operation], "memory id")


@pytest.mark.parametrize("operation", OPERATIONS)
def test_lone_surrogate_memory_id(env, operation):
    refused(env, (InvalidInputError, NotFoundError), _calls(env.cube, f"id{LONE}")[operation])


@pytest.mark.parametrize("operation", OPERATIONS)
def test_deleted_memory_is_not_found(env, operation):
    env.cube.delete(env.mid)
    refused(env, NotFoundError, _calls(env.cube, env.mid)[operation], env.mid)


# -- update ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "kwargs", "exc", "words"), [
    pytest.param((), {}, InvalidInputError, ["nothing to update"], id="empty-update"),
    pytest.param((None,), {"reason": "why not"}, InvalidInputError, ["nothing to update"], id="only-reason"),
    pytest.param(("",), {}, InvalidInputError, ["empty"], id="text-empty"),
    pytest.param(("  ",), {}, InvalidInputError, ["empty"], id="text-whitespace"),
    pytest.param((5,), {}, InvalidInputError, ["string"], id="text-int"),
    pytest.param((f"a{LONE}",), {}, InvalidInputError, ["unicode"], id="text-lone-surrogate"),
    pytest.param((BIG,), {}, InvalidInputError, ["limit"], id="text-10MB"),
    pytest.param((), {"tags": "x"}, InvalidInputError, ["tags"], id="tags-str"),
    pytest.param((), {"tags": [""]}, InvalidInputError, ["tag"], id="tag-empty"),
    pytest.param((), {"valid_from": "last tuesday"}, InvalidInputError, ["valid_from"], id="valid-from-str"),
    pytest.param((), {"metadata": [1]}, InvalidInputError, ["metadata"], id="metadata-list"),
    pytest.param((), {"metadata": {"a": object()}}, InvalidInputError, ["metadata"], id="metadata-not-json"),
    pytest.param(("fine new text",), {"reason": f"r{LONE}"}, InvalidInputError, ["unicode"],
                 id="reason-lone-surrogate"),
])
def test_update_refuses_bad_input(env, args, kwargs, exc, words):
    refused(env, exc, lambda: env.cube.update(env.fid, *args, **kwargs), *words)


def test_update_to_the_text_of_another_memory_conflicts(env):
    env.cube.add(text="Alice drinks green tea")
    refused(env, ConflictError, lambda: env.cube.update(env.fid, "Alice drinks green tea"), "duplicates")


# -- cubes -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["nope", "", "MAIN", "main ", 5, None], ids=repr)
def test_unknown_cube_is_not_found(env, name):
    err = refused(env, (NotFoundError, InvalidInputError), lambda: env.mos.get_cube(name))
    if isinstance(name, str) and name:
        assert isinstance(err, NotFoundError) and name in str(err)


def test_delete_unknown_cube_is_not_found(env):
    refused(env, NotFoundError, lambda: env.mos.delete_cube("nope"), "nope")


@pytest.mark.parametrize(("kwargs", "exc", "words"), [
    pytest.param({"name": "main"}, ConflictError, ["main"], id="name-taken"),
    pytest.param({"name": "main", "owner": "carol"}, ConflictError, ["main"], id="name-taken-other-owner"),
    pytest.param({"name": ""}, InvalidInputError, ["cube name"], id="name-empty"),
    pytest.param({"name": "   "}, InvalidInputError, ["cube name"], id="name-blank"),
    pytest.param({"name": None}, InvalidInputError, ["cube name"], id="name-none"),
    pytest.param({"name": 5}, InvalidInputError, ["cube name"], id="name-int"),
    pytest.param({"name": "x" * 201}, InvalidInputError, ["200"], id="name-too-long"),
    pytest.param({"name": "fine", "owner": ""}, InvalidInputError, ["owner"], id="owner-empty"),
    pytest.param({"name": "fine", "owner": 5}, InvalidInputError, ["owner"], id="owner-int"),
    pytest.param({"name": "fine", "description": 5}, InvalidInputError, ["description"], id="description-int"),
    pytest.param({"name": f"c{LONE}"}, InvalidInputError, ["unicode"], id="name-lone-surrogate"),
])
def test_create_cube_refuses_bad_input(env, kwargs, exc, words):
    refused(env, exc, lambda: env.mos.create_cube(**kwargs), *words)


def test_handle_of_a_deleted_cube(env):
    doomed = env.mos.create_cube("doomed")
    doomed.add(text="soon gone")
    env.mos.delete_cube("doomed")
    refused(env, NotFoundError, lambda: doomed.add(text="into the void"))
    refused(env, NotFoundError, lambda: doomed.search("gone"))
    refused(env, NotFoundError, lambda: env.mos.get_cube("doomed"), "doomed")


class _OtherEmbedder(HashingEmbedder):
    name = "test-hash-other-32"
    dim = 32


def test_cube_built_with_another_embedder_is_refused(env, tmp_path):
    before = snapshot(env.mos)
    with MemOS(tmp_path / "m.db", embedder=_OtherEmbedder()) as other:
        with pytest.raises(EmbedderError, match="embedder"):
            other.get_cube("main")
        assert "main" in [c.name for c in other.list_cubes()]
    assert snapshot(env.mos) == before


def test_every_refusal_is_a_memkern_error():
    # callers can catch one family: the input errors are also ValueError, lookups LookupError
    assert issubclass(InvalidInputError, MemkernError) and issubclass(InvalidInputError, ValueError)
    assert issubclass(NotFoundError, MemkernError) and issubclass(NotFoundError, LookupError)


def test_store_still_works_after_refusals(env):
    for bad in ([msg(content="")], "nope", [msg(foo=1)]):
        with pytest.raises(InvalidInputError):
            env.cube.add(bad)
    result = env.cube.add([msg(content="a message after the refusals", id="m3")], session_id="s1")
    assert len(result.added) == 1 and result.added[0].provenance.position == 2
    hits = env.cube.search("Lisbon", top_k=5)
    assert hits and all(h.memory.cube_id == env.cube.id for h in hits)
