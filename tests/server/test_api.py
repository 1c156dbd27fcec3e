"""The REST API route by route: status codes, bodies, the actor seam, problem details for every
error class, and the body-size limit (413, nothing written) in process and over a real socket.

Most tests call the app in process through Starlette's TestClient (an httpx client over
the ASGI app, which re-raises any server exception, so a 500 cannot hide); the
``socket`` tests run a real uvicorn server on 127.0.0.1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import httpx
from fastapi.testclient import TestClient

from memkern import MemOS
from memkern.errors import StoreError
from memkern.models import User
from memkern.server import ACTOR_HEADER, create_app, current_actor

from . import live_server

PROBLEM = "application/problem+json"

CHAT = [
    {"role": "user", "name": "Ann", "content": "I started learning the cello last spring.",
     "time": "2024-05-01T10:00:00Z"},
    {"role": "assistant", "name": "Bo", "content": "How is the cello going so far?",
     "time": "2024-05-01T10:01:00Z"},
    {"role": "user", "name": "Ann", "content": "Slowly. My teacher Clara is patient with me.",
     "time": "2024-05-01T10:02:00Z"},
]


@pytest.fixture
def api(mos: MemOS) -> Iterator[TestClient]:
    with TestClient(create_app(mos, auth="off")) as client:
        yield client


@pytest.fixture
def cube(api: TestClient) -> str:
    response = api.post("/v1/cubes", json={"name": "ann", "owner": "ann", "description": "Ann's memories"})
    assert response.status_code == 201, response.text
    return "ann"


def _problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["type"] == f"urn:memkern:problem:{slug}"
    assert body["status"] == status
    assert body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["instance"] == response.request.url.path
    return body


def _add_text(api: TestClient, cube: str, text: str, **extra: Any) -> dict[str, Any]:
    response = api.post(f"/v1/cubes/{cube}/memories", json={"text": text, **extra})
    assert response.status_code == 201, response.text
    return response.json()["added"][0]


# ----------------------------------------------------------------------------------------- cubes


def test_health_and_openapi(api: TestClient, mos: MemOS) -> None:
    health = api.get("/v1/health").json()
    assert health["status"] == "ok" and health["embedder"] == mos.embedder.name and health["dim"] == mos.embedder.dim
    schema = api.get("/openapi.json").json()
    paths = schema["paths"]
    for path in ("/v1/cubes", "/v1/cubes/load", "/v1/cubes/{name}", "/v1/cubes/{name}/dump",
                 "/v1/cubes/{name}/memories", "/v1/cubes/{name}/search", "/v1/cubes/{name}/memories/{memory_id}",
                 "/v1/cubes/{name}/memories/{memory_id}/history", "/v1/cubes/{name}/memories/{memory_id}/archive",
                 "/v1/cubes/{name}/memories/{memory_id}/restore", "/v1/cubes/{name}/operations", "/v1/health"):
        assert path in paths, path
    assert {"get", "patch", "delete"} <= set(paths["/v1/cubes/{name}/memories/{memory_id}"])
    # Request and response bodies are the project's models.
    components = schema["components"]["schemas"]
    assert {"MemoryItem", "CubeInfo", "Hit", "AddResult", "Operation", "Problem", "MemoryAdd"} <= set(components)


def test_cube_lifecycle(api: TestClient, mos: MemOS) -> None:
    created = api.post("/v1/cubes", json={"name": "c1", "owner": "zoe", "description": "d"})
    assert created.status_code == 201
    info = created.json()
    assert info["name"] == "c1" and info["owner"] == "zoe" and info["embedder"] == mos.embedder.name
    assert created.headers["location"] == f"/v1/cubes/{info['id']}"
    api.post("/v1/cubes", json={"name": "c2"})

    assert [c["name"] for c in api.get("/v1/cubes").json()] == ["c1", "c2"]
    assert [c["name"] for c in api.get("/v1/cubes", params={"owner": "zoe"}).json()] == ["c1"]
    assert api.get("/v1/cubes/c1").json() == info
    assert api.get(f"/v1/cubes/{info['id']}").json() == info
    assert [c.model_dump(mode="json") for c in mos.list_cubes()] == api.get("/v1/cubes").json()

    deleted = api.delete("/v1/cubes/c1", headers={ACTOR_HEADER: "admin"})
    assert deleted.status_code == 204 and deleted.content == b""
    _problem(api.get("/v1/cubes/c1"), 404, "not-found")
    assert [c.name for c in mos.list_cubes()] == ["c2"]


def test_dump_and_load_round_trip(api: TestClient, cube: str) -> None:
    api.post(f"/v1/cubes/{cube}/memories", json={"messages": CHAT, "session_id": "s1"})
    dumped = api.get(f"/v1/cubes/{cube}/dump")
    assert dumped.status_code == 200
    assert dumped.headers["content-type"] == "application/zip"
    assert 'filename="ann.mkcube"' in dumped.headers["content-disposition"]
    assert dumped.content[:4] == b"PK\x03\x04"

    loaded = api.post("/v1/cubes/load", params={"name": "ann2", "owner": "bob"}, content=dumped.content,
                      headers={"content-type": "application/zip"})
    assert loaded.status_code == 201, loaded.text
    assert loaded.json()["name"] == "ann2" and loaded.json()["owner"] == "bob"
    texts = [m["text"] for m in api.get(f"/v1/cubes/{cube}/memories").json()["items"]]
    assert [m["text"] for m in api.get("/v1/cubes/ann2/memories").json()["items"]] == texts

    _problem(api.post("/v1/cubes/load", params={"name": "ann2"}, content=dumped.content), 409, "conflict")
    bad = _problem(api.post("/v1/cubes/load", params={"name": "x"}, content=b"not a zip"), 422, "cube-file")
    assert bad["error"] == "CubeFileError" and "memkern-upload" not in bad["detail"]
    truncated = _problem(api.post("/v1/cubes/load", params={"name": "x"}, content=dumped.content[:-40]), 422,
                         "cube-file")
    assert "/tmp" not in truncated["detail"]
    assert [c["name"] for c in api.get("/v1/cubes").json()] == ["ann", "ann2"]


# -------------------------------------------------------------------------------------- memories


def test_add_search_and_filters(api: TestClient, mos: MemOS, cube: str) -> None:
    added = api.post(f"/v1/cubes/{cube}/memories", json={"messages": CHAT, "session_id": "s1"}).json()
    assert [m["kind"] for m in added["added"]] == ["turn"] * 3 and added["duplicates"] == []
    again = api.post(f"/v1/cubes/{cube}/memories", json={"messages": CHAT, "session_id": "s1"})
    assert again.status_code == 201
    assert again.json()["added"] == [] and len(again.json()["duplicates"]) == 3
    fact = _add_text(api, cube, "Ann's teacher Clara lives in Lyon.", kind="fact", tags=["music"],
                     metadata={"source": "chat"}, time="2024-05-02")
    assert fact["kind"] == "fact" and fact["tags"] == ["music"] and fact["metadata"] == {"source": "chat"}
    assert fact["event_time"].startswith("2024-05-02T00:00:00")

    response = api.post(f"/v1/cubes/{cube}/search", json={"query": "Who teaches Ann the cello?", "top_k": 3})
    assert response.status_code == 200
    hits = response.json()
    in_process = mos.get_cube(cube).search("Who teaches Ann the cello?", 3)
    assert [h["memory"]["id"] for h in hits] == [h.id for h in in_process]
    assert [h["score"] for h in hits] == pytest.approx([h.score for h in in_process])
    assert set(hits[0]["parts"]) >= {"lexical", "dense"}

    only_facts = api.post(f"/v1/cubes/{cube}/search",
                          json={"query": "Clara", "filters": {"kind": "fact", "tags": ["music"]}}).json()
    assert [h["memory"]["id"] for h in only_facts] == [fact["id"]]
    for recipe in ("lexical", "dense", "recent"):
        assert api.post(f"/v1/cubes/{cube}/search", json={"query": "cello", "recipe": recipe}).status_code == 200
    config = api.post(f"/v1/cubes/{cube}/search", json={"query": "cello", "config": {"dense_weight": 0}})
    assert config.status_code == 200
    _problem(api.post(f"/v1/cubes/{cube}/search", json={"query": "cello", "recipe": "magic"}), 422,
             "invalid-input")
    _problem(api.post(f"/v1/cubes/{cube}/search", json={"query": "x", "recipe": "dense", "config": {}}), 422,
             "invalid-input")

    doc = api.post(f"/v1/cubes/{cube}/documents", json={"text": "Cello care.\n\nKeep it away from heaters.",
                                                        "path": "notes/cello.txt"})
    assert doc.status_code == 201 and doc.json()["added"][0]["kind"] == "document"


def test_list_pagination_and_filters(api: TestClient, cube: str) -> None:
    fruits = ["apple", "banana", "cherry", "durian", "elderberry"]
    ids = [_add_text(api, cube, f"Ann likes {fruit}", tags=["even" if i % 2 == 0 else "odd"])["id"]
           for i, fruit in enumerate(fruits)]
    seen, offset, pages = [], 0, 0
    while offset is not None:
        page = api.get(f"/v1/cubes/{cube}/memories", params={"limit": 2, "offset": offset}).json()
        assert page["limit"] == 2 and page["offset"] == offset
        seen += [m["id"] for m in page["items"]]
        offset, pages = page["next_offset"], pages + 1
    assert seen == ids and pages == 3
    even = api.get(f"/v1/cubes/{cube}/memories", params={"tags": "even"}).json()
    assert [m["id"] for m in even["items"]] == ids[0::2] and even["next_offset"] is None

    api.post(f"/v1/cubes/{cube}/memories/{ids[0]}/archive", json={"reason": "old"})
    assert len(api.get(f"/v1/cubes/{cube}/memories").json()["items"]) == 4
    archived = api.get(f"/v1/cubes/{cube}/memories", params={"state": "archived"}).json()["items"]
    assert [m["id"] for m in archived] == [ids[0]]
    assert len(api.get(f"/v1/cubes/{cube}/memories", params={"state": "any"}).json()["items"]) == 5
    assert api.get(f"/v1/cubes/{cube}/memories", params={"kind": ["turn"]}).json()["items"] == []
    for bad in ({"limit": 0}, {"limit": 5000}, {"offset": -1}, {"state": "gone"}, {"since": "yesterday"}):
        _problem(api.get(f"/v1/cubes/{cube}/memories", params=bad), 422, "invalid-input")


def test_get_update_history_archive_restore_delete(api: TestClient, mos: MemOS, cube: str) -> None:
    memory = _add_text(api, cube, "Ann lives in Paris.")
    url = f"/v1/cubes/{cube}/memories/{memory['id']}"
    assert api.get(url).json() == memory

    updated = api.patch(url, json={"text": "Ann lives in Lyon.", "reason": "moved", "valid_from": "2024-06-01"},
                        headers={ACTOR_HEADER: "ann"})
    assert updated.status_code == 200, updated.text
    body = updated.json()
    assert body["version"] == 2 and body["text"] == "Ann lives in Lyon."
    assert body["changed_by"] == "ann" and body["change_reason"] == "moved"
    assert [v["version"] for v in api.get(f"{url}/history").json()] == [1, 2]
    _problem(api.patch(url, json={}), 422, "invalid-input")

    archived = api.post(f"{url}/archive", headers={ACTOR_HEADER: "ann"})
    assert archived.status_code == 200 and archived.json()["state"] == "archived"
    assert api.post(f"/v1/cubes/{cube}/search", json={"query": "Lyon"}).json() == []
    restored = api.post(f"{url}/restore", json={"reason": "still true"})
    assert restored.json()["state"] == "active"
    assert api.post(f"/v1/cubes/{cube}/search", json={"query": "Lyon"}).json()[0]["memory"]["id"] == memory["id"]

    deleted = api.delete(url, params={"reason": "asked to forget"}, headers={ACTOR_HEADER: "ann"})
    assert deleted.status_code == 204
    _problem(api.get(url), 404, "not-found")
    ops = api.get(f"/v1/cubes/{cube}/operations").json()
    assert [o["op"] for o in ops][-1] == "delete" and ops[-1]["actor"] == "ann"
    assert ops[-1]["reason"] == "asked to forget"
    mine = api.get(f"/v1/cubes/{cube}/operations", params={"memory_id": memory["id"], "limit": 2}).json()
    assert len(mine) == 2 and all(o["memory_id"] == memory["id"] for o in mine)
    assert ops == [o.model_dump(mode="json") for o in mos.get_cube(cube).operations()]


# ----------------------------------------------------------------------------------------- actor


def test_actor_header_reaches_the_log(api: TestClient, cube: str) -> None:
    api.post(f"/v1/cubes/{cube}/memories", json={"text": "a"}, headers={ACTOR_HEADER: "agent-7"})
    api.post(f"/v1/cubes/{cube}/memories", json={"text": "b"}, headers={ACTOR_HEADER: "   "})
    api.post(f"/v1/cubes/{cube}/memories", json={"text": "c"})
    actors = [o["actor"] for o in api.get(f"/v1/cubes/{cube}/operations").json() if o["op"] == "add"]
    assert actors == ["agent-7", None, None]


def test_current_actor_is_the_one_seam(mos: MemOS) -> None:
    """Every /v1 route resolves the caller through ``current_actor``: overriding it changes them all."""
    app = create_app(mos)  # auth required: the override is the only way in
    service = mos.create_user("Service", "admin", user_id="service-account")
    calls: list[str] = []

    def fake_actor(request: Any = None) -> User:
        calls.append("x")
        return service

    app.dependency_overrides[current_actor] = fake_actor
    with TestClient(app) as api:
        assert api.post("/v1/cubes", json={"name": "k"}).status_code == 201
        api.get("/v1/cubes")
        api.post("/v1/cubes/k/memories", json={"text": "hello"}, headers={ACTOR_HEADER: "ignored"})
        api.get("/v1/health")
        ops = api.get("/v1/cubes/k/operations").json()
    assert ops[-1]["actor"] == "service-account"
    assert mos.get_cube("k").info.owner == "service-account"
    assert len(calls) == 4  # once per /v1 request, not for the health check


# -------------------------------------------------------------------------------------- problems


def test_problem_details_for_each_error_class(api: TestClient, cube: str) -> None:
    memory = _add_text(api, cube, "x")
    nf = _problem(api.get("/v1/cubes/nope"), 404, "not-found")
    assert nf["error"] == "NotFoundError" and "nope" in nf["detail"]
    _problem(api.get(f"/v1/cubes/{cube}/memories/abc"), 404, "not-found")
    _problem(api.get("/v1/no/such/route"), 404, "not-found")
    conflict = _problem(api.post("/v1/cubes", json={"name": cube}), 409, "conflict")
    assert conflict["error"] == "ConflictError"
    invalid = _problem(api.post(f"/v1/cubes/{cube}/search", json={"query": "   "}), 422, "invalid-input")
    assert invalid["error"] == "InvalidInputError" and invalid["detail"] == "query is empty"
    _problem(api.post(f"/v1/cubes/{cube}/memories", json={"text": "a", "messages": CHAT}), 422, "invalid-input")
    _problem(api.post(f"/v1/cubes/{cube}/memories", json={"text": "a", "kind": "dream"}), 422, "invalid-input")
    nan = json.dumps({"text": "a", "metadata": {"x": float("nan")}})  # Python's JSON extension: NaN
    _problem(api.post(f"/v1/cubes/{cube}/memories", content=nan, headers={"content-type": "application/json"}), 422,
             "invalid-input")
    validation = _problem(api.post(f"/v1/cubes/{cube}/search", json={"query": "x", "top_k": "many", "bogus": 1}),
                          422, "invalid-input")
    assert {tuple(e["loc"]) for e in validation["errors"]} == {("body", "top_k"), ("body", "bogus")}
    _problem(api.post(f"/v1/cubes/{cube}/search", content=b"{not json",
                      headers={"content-type": "application/json"}), 422, "invalid-input")
    _problem(api.post(f"/v1/cubes/{cube}/search", content=b"[1, 2]",
                      headers={"content-type": "application/json"}), 422, "invalid-input")
    surrogate = json.dumps({"text": "bad \ud800 text"})
    _problem(api.post(f"/v1/cubes/{cube}/memories", content=surrogate,
                      headers={"content-type": "application/json"}), 422, "invalid-input")
    _problem(api.post(f"/v1/cubes/{cube}/search", content=json.dumps({"query": "x", "filters": {"speaker": "\udfff"}}),
                      headers={"content-type": "application/json"}), 422, "invalid-input")
    not_allowed = _problem(api.put(f"/v1/cubes/{cube}"), 405, "method-not-allowed")
    assert "GET" in api.put(f"/v1/cubes/{cube}").headers["allow"]
    assert not_allowed["detail"]
    _problem(api.patch(f"/v1/cubes/{cube}/memories/{memory['id']}", json={"text": ""}), 422, "invalid-input")
    _problem(api.post(f"/v1/cubes/{cube}/memories/{memory['id']}/archive", json={"reason": 5}), 422,
             "invalid-input")


def test_store_and_embedder_errors_are_503_with_safe_details(mos: MemOS, tmp_path: Any,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    class OtherEmbedder:
        name, dim = "other-embedder-8", 8

        def embed(self, texts: Any) -> np.ndarray:
            out = np.ones((len(texts), 8), dtype=np.float32)
            return out / np.linalg.norm(out, axis=1, keepdims=True)

    with MemOS(tmp_path / "m.db", embedder=OtherEmbedder()) as other:  # same file as ``mos``
        other.create_cube("foreign")
    with TestClient(create_app(mos, auth="off")) as api:
        body = _problem(api.get("/v1/cubes/foreign"), 503, "embedder-unavailable")
        assert body["error"] == "EmbedderError" and "other-embedder" not in body["detail"]

        def locked(*args: Any, **kwargs: Any) -> None:
            raise StoreError(f"the store at {tmp_path}/secret.db is locked by another writer")

        monkeypatch.setattr(mos, "list_cubes", locked)
        response = api.get("/v1/cubes")
        body = _problem(response, 503, "store-unavailable")
        assert body["error"] == "StoreError" and "secret" not in body["detail"]
        assert response.headers["retry-after"] == "1"


def test_unexpected_errors_are_500_problems_without_internals(mos: MemOS, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("/very/secret/path exploded")

    monkeypatch.setattr(mos, "list_cubes", broken)
    with TestClient(create_app(mos, auth="off"), raise_server_exceptions=False) as api:
        body = _problem(api.get("/v1/cubes"), 500, "internal")
    assert "secret" not in body["detail"]


# ------------------------------------------------------------------------------------ body limit


def _nothing_written(api: TestClient, cube: str, ops_before: int) -> None:
    assert api.get(f"/v1/cubes/{cube}/memories", params={"state": "any"}).json()["items"] == []
    assert len(api.get(f"/v1/cubes/{cube}/operations").json()) == ops_before


def test_oversized_body_is_413_and_nothing_is_written(mos: MemOS) -> None:
    with TestClient(create_app(mos, auth="off", max_body_bytes=10_000, max_upload_bytes=20_000)) as api:
        api.post("/v1/cubes", json={"name": "c"})
        ops = len(api.get("/v1/cubes/c/operations").json())
        big = {"text": "word " * 5_000}

        declared = api.post("/v1/cubes/c/memories", json=big)
        body = _problem(declared, 413, "payload-too-large")
        assert "10,000" in body["detail"]
        _nothing_written(api, "c", ops)

        def chunks() -> Iterator[bytes]:  # no Content-Length: the bytes are counted as they arrive
            data = json.dumps(big).encode()
            for i in range(0, len(data), 1_000):
                yield data[i:i + 1_000]

        streamed = api.post("/v1/cubes/c/memories", content=chunks(), headers={"content-type": "application/json"})
        _problem(streamed, 413, "payload-too-large")
        _nothing_written(api, "c", ops)

        # Just under the limit is fine.
        assert api.post("/v1/cubes/c/memories", json={"text": "word " * 1_500}).status_code == 201

        # Cube files have their own limit.
        upload = api.post("/v1/cubes/load", content=b"PK\x03\x04" + b"\0" * 30_000)
        _problem(upload, 413, "payload-too-large")
        assert [c["name"] for c in api.get("/v1/cubes").json()] == ["c"]


def test_limits_must_be_positive(mos: MemOS) -> None:
    from memkern.errors import InvalidInputError

    with pytest.raises(InvalidInputError):
        create_app(mos, auth="off", max_body_bytes=0)


# ---------------------------------------------------------------------------------------- socket


def test_real_socket_round_trip_and_413(mos: MemOS) -> None:
    with live_server(create_app(mos, auth="off", max_body_bytes=50_000)) as url, httpx.Client(base_url=url, timeout=10) as http:
        assert http.get("/v1/health").json()["status"] == "ok"
        assert http.get("/openapi.json").json()["info"]["title"] == "memkern"
        assert http.post("/v1/cubes", json={"name": "net"}).status_code == 201
        ops = len(http.get("/v1/cubes/net/operations").json())

        too_big = http.post("/v1/cubes/net/memories", json={"text": "x " * 200_000})
        assert too_big.status_code == 413 and too_big.headers["content-type"].startswith(PROBLEM)

        def chunks() -> Iterator[bytes]:
            yield b'{"text": "'
            for _ in range(100):
                yield b"y " * 1_000
            yield b'"}'

    with live_server(create_app(mos, auth="off", max_body_bytes=50_000)) as url, httpx.Client(base_url=url, timeout=10) as http:
        streamed = http.post("/v1/cubes/net/memories", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413 and streamed.json()["type"].endswith("payload-too-large")
        assert http.get("/v1/cubes/net/memories").json()["items"] == []
        assert len(http.get("/v1/cubes/net/operations").json()) == ops
        assert http.post("/v1/cubes/net/memories", json={"text": "small"}).status_code == 201
