"""``MemkernClient`` against a real uvicorn server: the same session run in process and over
HTTP gives the same results, and the server's problem details come back as the same
memkern exceptions with the same messages.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import memkern.client as client_module
from memkern import Filters, MemOS, SearchConfig
from memkern.client import MemkernClient, RemoteCube
from memkern.errors import (
    ConflictError,
    CubeFileError,
    InvalidInputError,
    MemkernError,
    NotFoundError,
    StoreError,
)
from memkern.models import AddResult, CubeInfo, Hit, MemoryItem, Message, Operation
from memkern.server import create_app

from . import live_server

CHAT = [
    {"role": "user", "name": "Mia", "content": "We adopted a greyhound called Pixel in March.",
     "time": "2024-03-10T09:00:00Z", "id": "m1"},
    {"role": "assistant", "name": "Kai", "content": "Lovely! How is Pixel settling in?",
     "time": "2024-03-10T09:01:00Z", "id": "m2"},
    {"role": "user", "name": "Mia", "content": "She sleeps all day and sprints at dusk.",
     "time": "2024-03-10T09:02:00Z", "id": "m3"},
]
MORE = [Message(role="user", name="Mia", content="I switched jobs: I now teach chemistry in Bergen.",
                time="2024-08-20T18:00:00Z", id="m4")]


@pytest.fixture
def server_url(mos: MemOS) -> Iterator[str]:
    with live_server(create_app(mos, auth="off")) as url:
        yield url


@pytest.fixture
def client(server_url: str) -> Iterator[MemkernClient]:
    with MemkernClient(server_url, actor="tester", timeout=10) as remote:
        yield remote


def run_session(api: Any, tmp: Path) -> dict[str, Any]:
    """One session that uses every method; ``api`` is a ``MemOS`` or a ``MemkernClient``."""
    out: dict[str, Any] = {}
    cube = api.create_cube("mia", owner="mia", description="Mia's memories")
    out["info"] = cube.info
    out["add_chat"] = cube.add(CHAT, session_id="s1", tags=["chat"], actor="tester")
    out["add_again"] = cube.add(CHAT, session_id="s1", tags=["chat"], actor="tester")
    out["add_more"] = cube.add(MORE, session_id="s2", actor="tester")
    out["add_fact"] = cube.add(text="Pixel is afraid of thunder.", kind="fact", tags=["pets"],
                               metadata={"confidence": 0.9}, time="2024-04-01", actor="tester")
    out["add_doc"] = cube.add_document("Greyhound care.\n\nThey need a warm coat in winter.", path="notes/dog.txt",
                                       actor="tester")
    fact_id = out["add_fact"].added[0].id
    for query in ("What is the dog called?", "Where does Mia work now?", "What scares Pixel?"):
        out[f"search {query}"] = cube.search(query, 3)
    out["search_filtered"] = cube.search("Pixel", 5, filters={"session_id": "s1", "speaker": "Mia"})
    out["search_model_filters"] = cube.search("Pixel", 5, filters=Filters(kind="fact"), config="lexical")
    out["search_config"] = cube.search("dusk", 2, config=SearchConfig(dense_weight=0.0, session_weight=0.0))
    out["get"] = cube.get(fact_id)
    out["update"] = cube.update(fact_id, "Pixel is afraid of thunder and fireworks.", tags=["pets", "fear"],
                                reason="more detail", actor="tester")
    out["history"] = cube.history(fact_id)
    out["archive"] = cube.archive(fact_id, reason="stale", actor="tester")
    out["all_active"] = cube.get_all()
    out["all_archived"] = cube.get_all({"state": "archived"})
    out["all_any"] = cube.get_all(Filters(state=None))
    out["page"] = cube.get_all(limit=2, offset=1)
    out["turns"] = cube.get_all({"kind": ["turn"], "session_id": ["s1", "s2"]})
    out["restore"] = cube.restore(fact_id, actor="tester")
    first_turn = out["add_chat"].added[0].id
    cube.delete(first_turn, reason="forget", actor="tester")
    out["operations"] = cube.operations()
    out["ops_fact"] = cube.operations(fact_id, limit=3)
    out["list"] = api.list_cubes()
    out["list_owner"] = api.list_cubes("nobody")
    dumped = cube.dump(tmp / "mia.mkcube")
    out["dumped_is_path"] = isinstance(dumped, Path) and dumped.is_file()
    loaded = api.load_cube(dumped, name="mia-copy", owner="bob")
    out["loaded_all"] = loaded.get_all()
    out["reopened"] = api.get_cube("mia").get_all()
    api.delete_cube("mia-copy", actor="tester")
    out["list_after_delete"] = api.list_cubes()
    return out


def _normalise(value: Any, ids: dict[str, str]) -> Any:
    """Results with ids, times and per-store values replaced by stable placeholders."""
    if isinstance(value, list):
        return [_normalise(v, ids) for v in value]
    if isinstance(value, dict):
        skip = {"recorded_at", "expired_at", "at", "created_at", "last_accessed_at", "loaded_at", "file_sha256"}
        return {k: _normalise(v, ids) for k, v in value.items() if k not in skip}
    if isinstance(value, float):
        return round(value, 5)
    if isinstance(value, str) and len(value) == 32 and all(c in "0123456789abcdef" for c in value):
        return ids.setdefault(value, f"<id{len(ids)}>")
    if isinstance(value, str) and "@v" in value and len(value.split("@v")[0]) == 32:
        head, version = value.split("@v")
        return f"{ids.setdefault(head, f'<id{len(ids)}>')}@v{version}"
    return value


def _dump(results: dict[str, Any]) -> dict[str, Any]:
    from pydantic import TypeAdapter

    plain = TypeAdapter(dict[str, Any]).dump_python(results, mode="json")
    ids: dict[str, str] = {}
    return {key: _normalise(plain[key], ids) for key in results}


def test_client_mirrors_the_in_process_api(client: MemkernClient, embedder: Any, tmp_path: Path) -> None:
    (tmp_path / "local").mkdir()
    (tmp_path / "remote").mkdir()
    with MemOS(tmp_path / "local" / "m.db", embedder=embedder) as local:
        expected = run_session(local, tmp_path / "local")
    got = run_session(client, tmp_path / "remote")

    # Same types, method for method.
    for key, value in expected.items():
        assert type(got[key]) is type(value), key
        if isinstance(value, list) and value:
            assert type(got[key][0]) is type(value[0]), key
    assert isinstance(got["add_chat"], AddResult) and isinstance(got["info"], CubeInfo)
    assert isinstance(got["search What is the dog called?"][0], Hit)
    assert isinstance(got["history"][0], MemoryItem) and isinstance(got["operations"][0], Operation)
    assert got["search What is the dog called?"][0].text == expected["search What is the dog called?"][0].text

    # Same results (ids, times and checksums aside).
    want, have = _dump(expected), _dump(got)
    for key in expected:
        assert have[key] == want[key], key


def test_remote_cube_is_the_same_cube(client: MemkernClient, mos: MemOS) -> None:
    remote = client.create_cube("shared")
    assert isinstance(remote, RemoteCube) and remote.name == "shared" and remote.id == mos.get_cube("shared").id
    remote.add(CHAT, session_id="s1")
    local = mos.get_cube("shared")
    assert remote.get_all() == local.get_all()
    assert remote.search("greyhound", 2) == local.search("greyhound", 2)
    assert [o.actor for o in local.operations() if o.op == "add"] == ["tester"] * 3  # the client's actor
    remote.add(text="override", actor="someone-else")
    assert local.operations()[-1].actor == "someone-else"
    assert client.get_cube(remote.id).info == remote.info
    assert client.health()["status"] == "ok"


def _in_process_error(mos: MemOS, call: Any) -> Exception:
    with pytest.raises(MemkernError) as caught:
        call(mos)
    return caught.value


def _case(call: Any, error: type[Exception], name: str, same_message: bool = True) -> Any:
    return pytest.param(call, error, same_message, id=name)


@pytest.mark.parametrize(("call", "error", "same_message"), [
    _case(lambda api: api.get_cube("missing"), NotFoundError, "get-missing-cube"),
    _case(lambda api: api.delete_cube("missing"), NotFoundError, "delete-missing-cube"),
    _case(lambda api: api.create_cube("dup"), ConflictError, "duplicate-cube"),
    _case(lambda api: api.create_cube("  "), InvalidInputError, "blank-cube-name"),
    _case(lambda api: api.get_cube("dup").get("no-such-memory"), NotFoundError, "get-missing-memory"),
    _case(lambda api: api.get_cube("dup").history("no-such-memory"), NotFoundError, "history-missing-memory"),
    _case(lambda api: api.get_cube("dup").archive("no-such-memory"), NotFoundError, "archive-missing-memory"),
    _case(lambda api: api.get_cube("dup").delete("no-such-memory"), NotFoundError, "delete-missing-memory"),
    _case(lambda api: api.get_cube("dup").update("no-such-memory", "x"), NotFoundError, "update-missing-memory"),
    _case(lambda api: api.get_cube("dup").search(""), InvalidInputError, "empty-query"),
    _case(lambda api: api.get_cube("dup").search("x", config="magic"), InvalidInputError, "unknown-recipe"),
    _case(lambda api: api.get_cube("dup").add(messages=[]), InvalidInputError, "no-messages"),
    _case(lambda api: api.get_cube("dup").add(), InvalidInputError, "nothing-to-add"),
    _case(lambda api: api.get_cube("dup").add(text="x", tags=["ok", " "]), InvalidInputError, "blank-tag"),
    _case(lambda api: api.get_cube("dup").add(text="   "), InvalidInputError, "blank-text"),
    _case(lambda api: api.get_cube("dup").get_all(limit=-1), InvalidInputError, "negative-limit"),
    # Refused by the request schema (or the client's strict JSON) before the core: same class, own message.
    _case(lambda api: api.get_cube("dup").search("x", top_k=0), InvalidInputError, "top-k-0", False),
    _case(lambda api: api.get_cube("dup").add(text="a", kind="dream"), InvalidInputError, "unknown-kind", False),
    _case(lambda api: api.get_cube("dup").add(text="a", metadata={"k": float("inf")}), InvalidInputError,
          "infinite-metadata", False),
])
def test_errors_come_back_as_the_same_exceptions(client: MemkernClient, mos: MemOS, call: Any,
                                                 error: type[Exception], same_message: bool) -> None:
    mos.create_cube("dup")
    expected = _in_process_error(mos, call)
    assert type(expected) is error
    with pytest.raises(error) as caught:
        call(client)
    assert type(caught.value) is error and str(caught.value)
    if same_message:
        random_id = re.compile(r"[0-9a-f]{32}")  # a new cube's id is random: ignore it in the message
        assert random_id.sub("<id>", str(caught.value)) == random_id.sub("<id>", str(expected))


def test_cube_file_errors_and_round_trip(client: MemkernClient, tmp_path: Path) -> None:
    cube = client.create_cube("files")
    cube.add(CHAT, session_id="s1")
    path = cube.dump(tmp_path / "sub" / "files.mkcube")
    assert path.read_bytes()[:2] == b"PK" and not list(path.parent.glob(".*.tmp"))
    with pytest.raises(ConflictError):
        client.load_cube(path)
    copy = client.load_cube(path, name="files2")
    assert [m.text for m in copy.get_all()] == [m.text for m in cube.get_all()]
    junk = tmp_path / "junk.mkcube"
    junk.write_bytes(b"not a cube")
    with pytest.raises(CubeFileError, match="not a memkern cube file"):
        client.load_cube(junk, name="junk")
    with pytest.raises(CubeFileError):
        client.load_cube(tmp_path / "absent.mkcube")
    with pytest.raises(NotFoundError):
        client.delete_cube("files") or cube.dump(tmp_path / "gone.mkcube")
    assert not (tmp_path / "gone.mkcube").exists()


def test_get_all_follows_pages(client: MemkernClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "_PAGE", 2)
    cube = client.create_cube("paged")
    texts = ["Oslo is cold", "Lima has fog", "Cairo feels hot", "Quito sits high", "Perth gets sun"]
    for text in texts:
        cube.add(text=text)
    assert [m.text for m in cube.get_all()] == texts
    assert [m.text for m in cube.get_all(limit=3, offset=1)] == texts[1:4]
    assert cube.get_all(limit=0) == []


def test_names_no_url_can_carry(client: MemkernClient) -> None:
    for name in ("a/b", "..", "space and ünïcode?#"):
        cube = client.create_cube(name)
        cube.add(text=f"stored in {name}")
        assert client.get_cube(name).info == cube.info
        assert [m.text for m in client.get_cube(name).get_all()] == [f"stored in {name}"]
        client.delete_cube(name)
        with pytest.raises(NotFoundError):
            client.get_cube(name)


def test_unreachable_server_is_a_store_error() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with MemkernClient(f"http://127.0.0.1:{port}", timeout=2) as remote, pytest.raises(StoreError, match="cannot reach"):
        remote.list_cubes()
    with pytest.raises(InvalidInputError):
        MemkernClient("")
