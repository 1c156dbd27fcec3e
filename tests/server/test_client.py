"""``MemkernClient`` against a real uvicorn server: the same session run in process and over
HTTP gives the same results, and the server's problem details come back as the same
memkern exceptions with the same messages.

The client has no per-operation code (each call is the request its table entry describes),
so these tests exercise the binding rules: path fields, query strings (text, JSON values,
``None`` that is not the default), JSON bodies, the streamed upload and the checked
download, the one error mapping, and an API key.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from memkern import Filters, MemOS, SearchConfig
from memkern.client import MemkernClient, RemoteCube
from memkern.errors import (
    AuthenticationError,
    ConflictError,
    CubeFileError,
    InvalidInputError,
    LLMNotConfiguredError,
    MemkernError,
    NotFoundError,
    PermissionDeniedError,
    StoreError,
)
from memkern.models import AddResult, CubeFile, CubeInfo, Hit, MemoryItem, MemoryPage, Message, Operation
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
    """One session over many operations; ``api`` is a ``MemOS`` or a ``MemkernClient``."""
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
    out["all_any"] = cube.get_all(Filters(state=None))  # a None that is not the default goes as JSON null
    out["page"] = cube.get_all(limit=2, offset=1)
    out["turns"] = cube.get_all({"kind": ["turn"], "session_id": ["s1", "s2"]})
    out["restore"] = cube.restore(fact_id, actor="tester")
    out["invalidate"] = cube.invalidate(fact_id, at="2025-01-01T00:00:00Z", reason="no longer true", actor="tester")
    first_turn = out["add_chat"].added[0].id
    out["delete"] = cube.delete(first_turn, reason="forget", actor="tester")
    out["operations"] = cube.operations()
    out["ops_fact"] = cube.operations(fact_id, limit=3)
    out["activation"] = cube.activation_status()
    out["activation_drop"] = cube.activation_drop()
    out["list"] = api.list_cubes()
    out["list_owner"] = api.list_cubes("nobody")
    out["set_policy"] = api.set_policy("mia", redact_pii=False, archive_after_days=30)
    out["policy"] = api.policy(cube)
    out["whoami"] = api.whoami()
    out["scheduler"] = api.scheduler_status("mia")
    dumped = cube.dump(tmp / "mia.mkcube")
    out["dumped"] = dumped.model_copy(update={"path": Path(dumped.path).name})
    loaded = api.load_cube(dumped.path, name="mia-copy", owner="bob")
    out["loaded_all"] = loaded.get_all()
    other = api.create_cube("kai", owner="kai")
    other.add(text="Pixel is afraid of thunder and fireworks.", kind="fact", infer=False)
    out["compose"] = api.compose_cubes("mia", other, "both", owner="mia")
    out["fuse"] = api.fuse_duplicates(["mia", "kai"], cosine=0.99)
    out["reopened"] = api.get_cube("mia").get_all()
    out["delete_cube"] = api.delete_cube("mia-copy", actor="tester")
    out["list_after_delete"] = api.list_cubes()
    return out


def _normalise(value: Any, ids: dict[str, str]) -> Any:
    """Results with ids, times and per-store values replaced by stable placeholders."""
    if isinstance(value, list):
        return [_normalise(v, ids) for v in value]
    if isinstance(value, dict):
        skip = {"recorded_at", "expired_at", "at", "created_at", "last_accessed_at", "loaded_at", "file_sha256",
                "sha256", "bytes", "access_count", "composed_at"}
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
    assert isinstance(got["all_any"], MemoryPage) and isinstance(got["dumped"], CubeFile)
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
    _case(lambda api: api.create_cube("a/b"), InvalidInputError, "slash-in-cube-name"),
    _case(lambda api: api.create_cube(".."), InvalidInputError, "dot-dot-cube-name"),
    _case(lambda api: api.get_cube("dup").get("no-such-memory"), NotFoundError, "get-missing-memory"),
    _case(lambda api: api.get_cube("dup").history("no-such-memory"), NotFoundError, "history-missing-memory"),
    _case(lambda api: api.get_cube("dup").archive("no-such-memory"), NotFoundError, "archive-missing-memory"),
    _case(lambda api: api.get_cube("dup").delete("no-such-memory"), NotFoundError, "delete-missing-memory"),
    _case(lambda api: api.get_cube("dup").update("no-such-memory", "x"), NotFoundError, "update-missing-memory"),
    _case(lambda api: api.get_cube("dup").search(""), InvalidInputError, "empty-query"),
    _case(lambda api: api.get_cube("dup").search("x", config="magic"), InvalidInputError, "unknown-recipe"),
    _case(lambda api: api.get_cube("dup").search("x", top_k=0), InvalidInputError, "top-k-0"),
    _case(lambda api: api.get_cube("dup").add(messages=[]), InvalidInputError, "no-messages"),
    _case(lambda api: api.get_cube("dup").add(), InvalidInputError, "nothing-to-add"),
    _case(lambda api: api.get_cube("dup").add(text="x", tags=["ok", " "]), InvalidInputError, "blank-tag"),
    _case(lambda api: api.get_cube("dup").add(text="   "), InvalidInputError, "blank-text"),
    _case(lambda api: api.get_cube("dup").add(text="a", kind="dream"), InvalidInputError, "unknown-kind"),
    _case(lambda api: api.get_cube("dup").get_all(limit=-1), InvalidInputError, "negative-limit"),
    _case(lambda api: api.get_cube("dup").get_all({"state": "dreaming"}), InvalidInputError, "bad-filter"),
    _case(lambda api: api.get_cube("dup").chat("hello?"), LLMNotConfiguredError, "chat-without-llm"),
    _case(lambda api: api.audit(limit=0), InvalidInputError, "audit-limit-0"),
    # Refused by the client's strict JSON before the server: same class, own message.
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
    dumped = cube.dump(tmp_path / "sub" / "files.mkcube")
    path = Path(dumped.path)
    assert path == tmp_path / "sub" / "files.mkcube" and dumped.cube == cube.info
    assert path.read_bytes()[:2] == b"PK" and not list(path.parent.glob(".*.tmp"))
    assert dumped.bytes == path.stat().st_size
    with pytest.raises(ConflictError):
        client.load_cube(path)
    copy = client.load_cube(path, name="files2")
    assert [m.text for m in copy.get_all()] == [m.text for m in cube.get_all()]
    junk = tmp_path / "junk.mkcube"
    junk.write_bytes(b"not a cube")
    with pytest.raises(CubeFileError, match="not a memkern cube file"):
        client.load_cube(junk, name="junk")
    with pytest.raises(CubeFileError, match="no cube file at"):
        client.load_cube(tmp_path / "absent.mkcube")
    with pytest.raises(InvalidInputError, match="directory"):
        cube.dump(tmp_path)
    client.delete_cube("files")
    with pytest.raises(NotFoundError):
        cube.dump(tmp_path / "gone.mkcube")
    assert not (tmp_path / "gone.mkcube").exists()


def test_a_corrupted_download_is_not_written(mos: MemOS, tmp_path: Path) -> None:
    """A file whose bytes differ from the server's digest (``Repr-Digest``) is refused, and nothing
    is left at the target: here a middleware flips one byte of the body on its way out."""
    app = create_app(mos, auth="off")

    async def corrupting(scope: Any, receive: Any, send: Any) -> None:
        flipped = False

        async def send_corrupted(message: dict[str, Any]) -> None:
            nonlocal flipped
            if message["type"] == "http.response.body" and message.get("body") and not flipped:
                body = bytearray(message["body"])
                body[0] ^= 0xFF
                message = {**message, "body": bytes(body)}
                flipped = True
            await send(message)

        await app(scope, receive, send_corrupted if scope["type"] == "http" and
                  scope["path"].endswith("/dump") else send)

    mos.create_cube("c").add(text="kept whole or not at all")
    with live_server(corrupting) as url, MemkernClient(url, timeout=10) as remote, pytest.raises(
            StoreError, match="differs"):
        remote.get_cube("c").dump(tmp_path / "out" / "c.mkcube")
    assert list((tmp_path / "out").iterdir()) == []


def test_names_a_url_must_escape(client: MemkernClient) -> None:
    for name in ("space and ünïcode?#", "50%", "a+b&c=d", "...", "~"):
        cube = client.create_cube(name)
        cube.add(text=f"stored in {name}")
        assert client.get_cube(name).info == cube.info
        assert [m.text for m in client.get_cube(name).get_all()] == [f"stored in {name}"]
        client.delete_cube(name)
        with pytest.raises(NotFoundError):
            client.get_cube(name)


def test_path_segments_stay_segments(client: MemkernClient, mos: MemOS) -> None:
    """"." and ".." are sent escaped (a URL would resolve them: ``memories/..`` is the cube), so the
    server answers as in process; a "/" is refused before anything is sent."""
    cube = client.create_cube("kept")
    cube.add(text="still here")
    for value in (".", ".."):
        with pytest.raises(NotFoundError) as remote:
            cube.delete(value)
        with pytest.raises(NotFoundError) as local:
            mos.get_cube("kept").delete(value)
        assert str(remote.value) == str(local.value)
        with pytest.raises(NotFoundError, match=f"no cube named '{re.escape(value)}'"):
            client.get_cube(value)
    with pytest.raises(InvalidInputError, match="URL path"):
        cube.delete("x/history")
    assert [m.text for m in client.get_cube("kept").get_all()] == ["still here"]


def test_api_key(mos: MemOS) -> None:
    """With keys: every call runs as the key's user; no key is 401, a missing grant 403."""
    admin = mos.create_user("Ada", "admin", user_id="u-admin")
    reader = mos.create_user("Rita", user_id="u-reader")
    with live_server(create_app(mos)) as url:
        with MemkernClient(url, api_key=mos.create_api_key(admin), timeout=10) as as_admin:
            assert as_admin.whoami() == admin
            team = as_admin.create_cube("team")
            assert team.info.owner == "u-admin"
            team.add(text="The launch is in May.", kind="document")
            as_admin.grant(team, reader, "read")
            assert [g.user_id for g in as_admin.grants("team")] == ["u-reader"]
            spare = as_admin.create_api_key(reader)
            assert isinstance(spare, str) and mos.authenticate(spare) == reader
            assert as_admin.revoke_api_key(spare).revoked_at is not None
            assert [key.revoked_at is not None for key in as_admin.api_keys(reader)] == [True]
        with MemkernClient(url, api_key=mos.create_api_key(reader), timeout=10) as as_reader:
            assert as_reader.whoami() == reader
            cube = as_reader.get_cube("team")
            assert cube.search("launch")
            with pytest.raises(PermissionDeniedError, match="u-reader"):
                cube.add(text="sneaky")
            assert [e.operation for e in as_reader.audit(user=reader, limit=None) if e.result.value == "denied"] \
                == ["add"]
        with MemkernClient(url, timeout=10) as anonymous, pytest.raises(AuthenticationError):
            anonymous.list_cubes()
        with MemkernClient(url, api_key="mk_nope", timeout=10) as wrong, pytest.raises(AuthenticationError):
            wrong.list_cubes()


def test_unreachable_server_is_a_store_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with MemkernClient(f"http://127.0.0.1:{port}", timeout=2) as remote, pytest.raises(StoreError, match="cannot reach"):
        remote.list_cubes()
    with pytest.raises(InvalidInputError):
        MemkernClient("")
