"""The REST API route by route: routes bound from the operation table, status codes and bodies
as the table says, the query-string rule, uploads and downloads, problem details for every
error class, and the body-size limits (413, nothing written; uploads streamed, never held whole)
in process and over a real socket.

Most tests call the app in process through Starlette's TestClient (an httpx client over
the ASGI app, which re-raises any server exception, so a 500 cannot hide); the
``socket`` tests run a real uvicorn server on 127.0.0.1.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import tempfile
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import httpx
from fastapi.testclient import TestClient

from memkern import MemOS
from memkern.api.table import OPERATIONS
from memkern.errors import InvalidInputError, StoreError
from memkern.models import User
from memkern.server import create_app, current_user

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


def _problem(response: Any, status: int, slug: str) -> dict[str, Any]:
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


def _filters(**given: Any) -> dict[str, str]:
    """``filters`` in a query string: JSON text (the rule for fields that are not plain text)."""
    return {"filters": json.dumps(given)}


# ------------------------------------------------------------------------------------- the table


def test_every_operation_has_its_route(mos: MemOS) -> None:
    """Fails when an operation of the table has no route, or its route or its description differs
    from its ``Http`` entry: each is asked for by name, then called with its method."""
    app = create_app(mos, auth="off")
    schema = app.openapi()
    with TestClient(app) as api:
        for op in OPERATIONS.values():
            params = {name: f"no-{name}" for name in re.findall(r"\{(\w+)\}", op.http.path)}
            path = app.url_path_for(op.name, **params)
            assert path == "/v1" + op.http.path.format(**params), op.name
            answer = api.request(op.http.method, path, json={} if op.http.method not in ("GET", "DELETE") else None)
            assert answer.status_code != 405 and "no route" not in answer.text, (op.name, answer.text)
            described = schema["paths"]["/v1" + op.http.path][op.http.method.lower()]
            assert described["operationId"] == op.name
            assert str(op.http.status) in described["responses"]
            named = {p["name"] for p in described["parameters"]}
            body = described.get("requestBody", {}).get("content", {}).get("application/json", {})
            server_filled = {op.http.upload, op.http.download}
            assert named | set(body.get("schema", {}).get("properties", {})) == set(op.fields) - server_filled, op.name


def test_health_and_openapi(api: TestClient, mos: MemOS) -> None:
    health = api.get("/v1/health").json()
    assert health["status"] == "ok" and health["embedder"] == mos.embedder.name and health["dim"] == mos.embedder.dim
    schema = api.get("/openapi.json").json()
    paths = schema["paths"]
    for path in ("/v1/cubes", "/v1/cubes/load", "/v1/cubes/{cube}", "/v1/cubes/{cube}/dump",
                 "/v1/cubes/{cube}/memories", "/v1/cubes/{cube}/search", "/v1/cubes/{cube}/memories/{memory_id}",
                 "/v1/cubes/{cube}/memories/{memory_id}/history", "/v1/cubes/{cube}/memories/{memory_id}/archive",
                 "/v1/cubes/{cube}/memories/{memory_id}/restore", "/v1/cubes/{cube}/operations", "/v1/health",
                 "/v1/cubes/compose", "/v1/cubes/fuse", "/v1/cubes/{cube}/memories/{memory_id}/migrate"):
        assert path in paths, path
    assert {"get", "patch", "delete"} <= set(paths["/v1/cubes/{cube}/memories/{memory_id}"])
    components = schema["components"]["schemas"]
    assert {"MemoryItem", "CubeInfo", "Hit", "AddResult", "Operation", "Problem", "Filters", "Deleted"} <= set(components)
    # The query rule, as published: plain values as they are, objects as JSON.
    listing = {p["name"]: p for p in paths["/v1/cubes/{cube}/memories"]["get"]["parameters"]}
    assert listing["filters"]["content"]["application/json"]["schema"]["anyOf"][0]["$ref"].endswith("/Filters")
    assert listing["limit"]["schema"]["type"] == "integer"
    # Errors are problem details, with the statuses of the errors the operation may raise.
    add = paths["/v1/cubes/{cube}/memories"]["post"]["responses"]
    assert {"201", "404", "409", "413", "422", "502", "503"} <= set(add)
    assert add["409"]["content"][PROBLEM]["schema"] == {"$ref": "#/components/schemas/Problem"}
    # The upload's body is the file; the download's response is the file.
    load = paths["/v1/cubes/load"]["post"]
    assert "application/zip" in load["requestBody"]["content"]
    assert "application/zip" in paths["/v1/cubes/{cube}/dump"]["get"]["responses"]["200"]["content"]
    # Without authentication there is no security scheme; with it, every table route needs one.
    assert "securitySchemes" not in schema["components"]
    secured = create_app(mos).openapi()
    assert set(secured["components"]["securitySchemes"]) == {"BearerKey", "ApiKey"}
    assert secured["paths"]["/v1/cubes"]["get"]["security"]
    assert "security" not in secured["paths"]["/v1/health"]["get"]


# ----------------------------------------------------------------------------------------- cubes


def test_cube_lifecycle(api: TestClient, mos: MemOS) -> None:
    created = api.post("/v1/cubes", json={"name": "c1", "owner": "zoe", "description": "d"})
    assert created.status_code == 201
    info = created.json()
    assert info["name"] == "c1" and info["owner"] == "zoe" and info["embedder"] == mos.embedder.name
    api.post("/v1/cubes", json={"name": "c2"})

    assert [c["name"] for c in api.get("/v1/cubes").json()] == ["c1", "c2"]
    assert [c["name"] for c in api.get("/v1/cubes", params={"owner": "zoe"}).json()] == ["c1"]
    assert api.get("/v1/cubes/c1").json() == info
    assert api.get(f"/v1/cubes/{info['id']}").json() == info
    assert [c.model_dump(mode="json") for c in mos.list_cubes()] == api.get("/v1/cubes").json()

    deleted = api.delete("/v1/cubes/c1", params={"actor": "admin"})
    assert deleted.status_code == 200 and deleted.json() == {"cube_id": info["id"], "memory_id": None}
    _problem(api.get("/v1/cubes/c1"), 404, "not-found")
    assert [c.name for c in mos.list_cubes()] == ["c2"]


def test_dump_and_load_round_trip(api: TestClient, cube: str) -> None:
    api.post(f"/v1/cubes/{cube}/memories", json={"messages": CHAT, "session_id": "s1"})
    dumped = api.get(f"/v1/cubes/{cube}/dump")
    assert dumped.status_code == 200
    assert dumped.headers["content-type"] == "application/zip"
    assert 'filename="ann.mkcube"' in dumped.headers["content-disposition"]
    assert dumped.content[:4] == b"PK\x03\x04"
    digest = base64.b64encode(hashlib.sha256(dumped.content).digest()).decode()
    assert dumped.headers["repr-digest"] == f"sha-256=:{digest}:"
    result = json.loads(dumped.headers["x-memkern-result"])  # the operation's CubeFile
    assert result["cube"]["name"] == "ann" and result["bytes"] == len(dumped.content)
    assert result["path"] == "ann.mkcube"  # never the server's temporary path
    _problem(api.get(f"/v1/cubes/{cube}/dump", params={"path": "/etc/x"}), 422, "invalid-input")

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
    _problem(api.post("/v1/cubes/load", params={"path": "/etc/passwd"}, content=dumped.content), 422,
             "invalid-input")
    assert [c["name"] for c in api.get("/v1/cubes").json()] == ["ann", "ann2"]


def test_compose_and_fuse(api: TestClient, cube: str) -> None:
    _add_text(api, cube, "Ann plays the cello.")
    api.post("/v1/cubes", json={"name": "bo"})
    _add_text(api, "bo", "Ann plays the cello.")
    composed = api.post("/v1/cubes/compose", json={"a": cube, "b": "bo", "name": "both"})
    assert composed.status_code == 201, composed.text
    assert composed.json()["cube"]["name"] == "both"
    fused = api.post("/v1/cubes/fuse", json={"cubes": [cube, "bo"]})
    assert fused.status_code == 200, fused.text


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
        assert api.post(f"/v1/cubes/{cube}/search", json={"query": "cello", "config": recipe}).status_code == 200
    config = api.post(f"/v1/cubes/{cube}/search", json={"query": "cello", "config": {"dense_weight": 0}})
    assert config.status_code == 200
    _problem(api.post(f"/v1/cubes/{cube}/search", json={"query": "cello", "config": "magic"}), 422,
             "invalid-input")

    doc = api.post(f"/v1/cubes/{cube}/documents", json={"text": "Cello care.\n\nKeep it away from heaters.",
                                                        "path": "notes/cello.txt"})
    assert doc.status_code == 201 and doc.json()["added"][0]["kind"] == "document"


def test_list_pagination_and_the_query_rule(api: TestClient, cube: str) -> None:
    fruits = ["apple", "banana", "cherry", "durian", "elderberry"]
    ids = [_add_text(api, cube, f"Ann likes {fruit}", tags=["even" if i % 2 == 0 else "odd"])["id"]
           for i, fruit in enumerate(fruits)]
    seen: list[str] = []
    offset: int | None = 0
    pages = 0
    while offset is not None:
        page = api.get(f"/v1/cubes/{cube}/memories", params={"limit": 2, "offset": offset}).json()
        assert page["limit"] == 2 and page["offset"] == offset
        seen += [m["id"] for m in page["items"]]
        offset, pages = page["next_offset"], pages + 1
    assert seen == ids and pages == 3
    even = api.get(f"/v1/cubes/{cube}/memories", params=_filters(tags=["even"])).json()
    assert [m["id"] for m in even["items"]] == ids[0::2] and even["next_offset"] is None

    api.post(f"/v1/cubes/{cube}/memories/{ids[0]}/archive", json={"reason": "old"})
    assert len(api.get(f"/v1/cubes/{cube}/memories").json()["items"]) == 4
    archived = api.get(f"/v1/cubes/{cube}/memories", params=_filters(state="archived")).json()["items"]
    assert [m["id"] for m in archived] == [ids[0]]
    assert len(api.get(f"/v1/cubes/{cube}/memories", params=_filters(state=None)).json()["items"]) == 5
    assert api.get(f"/v1/cubes/{cube}/memories", params=_filters(kind=["turn"])).json()["items"] == []
    for bad in ({"limit": 0}, {"limit": 5000}, {"offset": -1}, {"limit": "many"}, _filters(state="gone"),
                _filters(since="yesterday"), {"filters": "{not json"}, {"filters": "[" * 100 + "]" * 100},
                {"bogus": "1"}, {"cube": "other"}):
        _problem(api.get(f"/v1/cubes/{cube}/memories", params=bad), 422, "invalid-input")
    twice = api.get(f"/v1/cubes/{cube}/memories?limit=1&limit=2")
    assert "more than once" in _problem(twice, 422, "invalid-input")["detail"]
    # A POST takes its fields from its body only.
    _problem(api.post(f"/v1/cubes/{cube}/search?top_k=3", json={"query": "x"}), 422, "invalid-input")


def test_get_update_history_archive_restore_delete(api: TestClient, mos: MemOS, cube: str) -> None:
    memory = _add_text(api, cube, "Ann lives in Paris.")
    url = f"/v1/cubes/{cube}/memories/{memory['id']}"
    assert api.get(url).json() == memory

    updated = api.patch(url, json={"text": "Ann lives in Lyon.", "reason": "moved", "valid_from": "2024-06-01",
                                   "actor": "ann"})
    assert updated.status_code == 200, updated.text
    body = updated.json()
    assert body["version"] == 2 and body["text"] == "Ann lives in Lyon."
    assert body["changed_by"] == "ann" and body["change_reason"] == "moved"
    assert [v["version"] for v in api.get(f"{url}/history").json()] == [1, 2]
    _problem(api.patch(url, json={}), 422, "invalid-input")
    _problem(api.patch(url, json={"text": "x", "memory_id": "other"}), 422, "invalid-input")

    archived = api.post(f"{url}/archive", json={"actor": "ann"})
    assert archived.status_code == 200 and archived.json()["state"] == "archived"
    assert api.post(f"/v1/cubes/{cube}/search", json={"query": "Lyon"}).json() == []
    restored = api.post(f"{url}/restore", json={"reason": "still true"})
    assert restored.json()["state"] == "active"
    assert api.post(f"/v1/cubes/{cube}/search", json={"query": "Lyon"}).json()[0]["memory"]["id"] == memory["id"]
    invalidated = api.post(f"{url}/invalidate", content=b"")  # every field optional: no body at all
    assert invalidated.status_code == 200, invalidated.text

    deleted = api.delete(url, params={"reason": "asked to forget", "actor": "ann"})
    assert deleted.status_code == 200
    assert deleted.json() == {"cube_id": mos.get_cube(cube).id, "memory_id": memory["id"]}
    _problem(api.get(url), 404, "not-found")
    ops = api.get(f"/v1/cubes/{cube}/operations").json()
    in_process = [o.model_dump(mode="json") for o in mos.get_cube(cube).operations()]
    assert ops == in_process
    last = max(ops, key=lambda o: o["seq"])
    assert last["op"] == "delete" and last["actor"] == "ann" and "asked to forget" in last["reason"]
    mine = api.get(f"/v1/cubes/{cube}/operations", params={"memory_id": memory["id"], "limit": 2}).json()
    assert len(mine) == 2 and all(o["memory_id"] == memory["id"] for o in mine)


def test_chat_without_an_llm_is_503(api: TestClient, cube: str) -> None:
    body = _problem(api.post(f"/v1/cubes/{cube}/chat", json={"query": "Who is Clara?"}), 503, "llm-not-configured")
    assert body["error"] == "LLMNotConfiguredError" and "MEMKERN_LLM" in body["detail"]


def test_results_that_are_not_models(api: TestClient, cube: str) -> None:
    assert api.get("/v1/me").json() is None  # no user without authentication
    assert api.delete(f"/v1/cubes/{cube}/activation").json() is False  # nothing to drop


# ----------------------------------------------------------------------------------------- caller


def test_actor_is_an_input_field(api: TestClient, cube: str) -> None:
    api.post(f"/v1/cubes/{cube}/memories", json={"text": "a", "actor": "agent-7"})
    api.post(f"/v1/cubes/{cube}/memories", json={"text": "c"})
    actors = [o["actor"] for o in api.get(f"/v1/cubes/{cube}/operations").json() if o["op"] == "add"]
    assert sorted(actors, key=str) == sorted(["agent-7", None], key=str)


def test_current_user_is_the_one_seam(mos: MemOS) -> None:
    """Every table route learns its caller from ``current_user``: overriding it changes them all."""
    app = create_app(mos)  # auth required: the override is the only way in
    service = mos.create_user("Service", "admin", user_id="service-account")
    calls: list[str] = []

    def fake_user() -> User:
        calls.append("x")
        return service

    app.dependency_overrides[current_user] = fake_user
    with TestClient(app) as api:
        assert api.post("/v1/cubes", json={"name": "k"}).status_code == 201
        api.get("/v1/cubes")
        api.post("/v1/cubes/k/memories", json={"text": "hello", "actor": "ignored"})
        api.get("/v1/health")
        ops = api.get("/v1/cubes/k/operations").json()
        assert api.get("/v1/me").json()["id"] == "service-account"
    assert {o["actor"] for o in ops} == {"service-account"}  # an authenticated caller is the actor
    assert mos.get_cube("k").info.owner == "service-account"
    assert len(calls) == 5  # once per /v1 request, not for the health check


def test_auth_mode_is_checked(mos: MemOS) -> None:
    with pytest.raises(InvalidInputError):
        create_app(mos, auth="maybe")  # type: ignore[arg-type]
    from memkern.server.auth import check_exposure

    with pytest.raises(InvalidInputError, match="loopback"):
        check_exposure("off", "0.0.0.0")
    check_exposure("off", "127.0.0.1")
    check_exposure("required", "0.0.0.0")


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
    assert invalid["error"] == "InvalidInputError" and "query" in invalid["detail"] and "empty" in invalid["detail"]
    _problem(api.post(f"/v1/cubes/{cube}/memories", json={"text": "a", "messages": CHAT}), 422, "invalid-input")
    _problem(api.post(f"/v1/cubes/{cube}/memories", json={"text": "a", "kind": "dream"}), 422, "invalid-input")
    nan = json.dumps({"text": "a", "metadata": {"x": float("nan")}})  # Python's JSON extension: NaN
    _problem(api.post(f"/v1/cubes/{cube}/memories", content=nan, headers={"content-type": "application/json"}), 422,
             "invalid-input")
    validation = _problem(api.post(f"/v1/cubes/{cube}/search", json={"query": "x", "top_k": "many", "bogus": 1}),
                          422, "invalid-input")
    assert "top_k" in validation["detail"] and "bogus" in validation["detail"]
    for raw in (b"{not json", b"[1, 2]", b"\xff\xfe{", b"[" * 100_000 + b"]" * 100_000):
        _problem(api.post(f"/v1/cubes/{cube}/search", content=raw, headers={"content-type": "application/json"}),
                 422, "invalid-input")
    surrogate = json.dumps({"text": "bad \ud800 text"})
    _problem(api.post(f"/v1/cubes/{cube}/memories", content=surrogate,
                      headers={"content-type": "application/json"}), 422, "invalid-input")
    _problem(api.post(f"/v1/cubes/{cube}/search", content=json.dumps({"query": "x", "filters": {"speaker": "\udfff"}}),
                      headers={"content-type": "application/json"}), 422, "invalid-input")
    not_allowed = api.put(f"/v1/cubes/{cube}")
    assert not_allowed.status_code == 405 and not_allowed.headers["content-type"].startswith(PROBLEM)
    assert not_allowed.json()["type"] == "about:blank" and "GET" in not_allowed.headers["allow"]
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

        monkeypatch.setattr(mos.store, "list_cubes", locked)
        response = api.get("/v1/cubes")
        body = _problem(response, 503, "store-unavailable")
        assert body["error"] == "StoreError" and "secret" not in body["detail"]
        assert response.headers["retry-after"] == "1"


def test_unexpected_errors_are_500_problems_without_internals(mos: MemOS, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("/very/secret/path exploded")

    monkeypatch.setattr(mos.store, "list_cubes", broken)
    with TestClient(create_app(mos, auth="off"), raise_server_exceptions=False) as api:
        body = _problem(api.get("/v1/cubes"), 500, "internal")
    assert "secret" not in body["detail"]


# ------------------------------------------------------------------------------------ body limit


def _nothing_written(api: TestClient, cube: str, ops_before: int) -> None:
    assert api.get(f"/v1/cubes/{cube}/memories", params=_filters(state=None)).json()["items"] == []
    assert len(api.get(f"/v1/cubes/{cube}/operations").json()) == ops_before


def _uploads_left() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("memkern-upload-*")}


def test_oversized_body_is_413_and_nothing_is_written(mos: MemOS) -> None:
    with TestClient(create_app(mos, auth="off", max_body_bytes=10_000, max_upload_bytes=20_000)) as api:
        api.post("/v1/cubes", json={"name": "c"})
        ops = len(api.get("/v1/cubes/c/operations").json())
        big = {"text": "word " * 5_000}

        declared = api.post("/v1/cubes/c/memories", json=big)
        body = _problem(declared, 413, "payload-too-large")
        assert "10,000" in body["detail"] and body["error"] == "PayloadTooLargeError"
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

        # Cube files have their own limit, declared or counted while the upload streams to disk.
        before = _uploads_left()
        _problem(api.post("/v1/cubes/load", content=b"PK\x03\x04" + b"\0" * 30_000), 413, "payload-too-large")

        def upload() -> Iterator[bytes]:
            yield b"PK\x03\x04"
            for _ in range(30):
                yield b"\0" * 1_000

        _problem(api.post("/v1/cubes/load", content=upload()), 413, "payload-too-large")
        assert [c["name"] for c in api.get("/v1/cubes").json()] == ["c"]
        assert _uploads_left() <= before  # the partial upload was deleted


def test_an_upload_is_streamed_never_held_whole(mos: MemOS) -> None:
    """A 32 MB upload (garbage: refused once on disk) through a real socket raises the process's
    peak memory by far less than its size: the body goes to a temporary file a chunk at a time.
    (Starlette's TestClient would read the whole body on the client side, hence the socket.)"""
    size, chunk = 32 * 1024 * 1024, b"\0" * 65_536

    def upload() -> Iterator[bytes]:
        for _ in range(size // len(chunk)):
            yield chunk

    before = _uploads_left()
    with live_server(create_app(mos, auth="off", max_upload_bytes=64 * 1024 * 1024)) as url, \
            httpx.Client(base_url=url, timeout=60) as http:
        tracemalloc.start()
        try:
            response = http.post("/v1/cubes/load", content=upload())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert response.status_code == 422 and response.json()["type"].endswith("cube-file"), response.text
    assert peak < size // 8, f"peak {peak:,} bytes for a {size:,}-byte upload"
    assert _uploads_left() <= before


def test_limits_must_be_positive(mos: MemOS) -> None:
    with pytest.raises(InvalidInputError):
        create_app(mos, auth="off", max_body_bytes=0)


# ---------------------------------------------------------------------------------------- socket


def test_real_socket_round_trip_and_413(mos: MemOS) -> None:
    with live_server(create_app(mos, auth="off", max_body_bytes=50_000)) as url, \
            httpx.Client(base_url=url, timeout=10) as http:
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

    with live_server(create_app(mos, auth="off", max_body_bytes=50_000)) as url, \
            httpx.Client(base_url=url, timeout=10) as http:
        streamed = http.post("/v1/cubes/net/memories", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413 and streamed.json()["type"].endswith("payload-too-large")
        assert http.get("/v1/cubes/net/memories").json()["items"] == []
        assert len(http.get("/v1/cubes/net/operations").json()) == ops
        assert http.post("/v1/cubes/net/memories", json={"text": "small"}).status_code == 201


# ------------------------------------------------------------------------------------ PostgreSQL


@pytest.fixture
def pg_mos(embedder: Any) -> Iterator[MemOS]:
    dsn = os.environ.get("MEMKERN_TEST_POSTGRES_DSN")
    if not dsn:
        pytest.skip("set MEMKERN_TEST_POSTGRES_DSN to run the REST API against PostgreSQL")
    from memkern.store import open_store
    from memkern.store.postgres import drop_schema

    schema = f"t_{uuid.uuid4().hex[:20]}"
    memos = MemOS(store=open_store(f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}"), embedder=embedder, llm=None)
    try:
        yield memos
    finally:
        memos.close()
        drop_schema(dsn, schema)


def test_the_routes_on_postgres(pg_mos: MemOS) -> None:
    """The same routes over a PostgreSQL store, with keys: write, read, list, update, delete, dump and
    load, a denial (403, audited, nothing changed) and the problem details of a missing cube."""
    admin = pg_mos.create_user("Admin", "admin", user_id="admin")
    pg_mos.create_user("Eve", user_id="eve")
    as_admin = {"Authorization": f"Bearer {pg_mos.create_api_key(admin)}"}
    as_eve = {"X-API-Key": pg_mos.create_api_key("eve")}
    with TestClient(create_app(pg_mos)) as api:
        assert api.post("/v1/cubes", json={"name": "pg"}, headers=as_admin).status_code == 201
        added = api.post("/v1/cubes/pg/memories", json={"messages": CHAT, "session_id": "s1"}, headers=as_admin)
        assert added.status_code == 201, added.text
        ids = [m["id"] for m in added.json()["added"]]
        hits = api.post("/v1/cubes/pg/search", json={"query": "Who teaches Ann?", "top_k": 2}, headers=as_admin)
        assert hits.status_code == 200 and len(hits.json()) == 2
        page = api.get("/v1/cubes/pg/memories", params={**_filters(kind=["turn"]), "limit": 2}, headers=as_admin)
        assert [m["id"] for m in page.json()["items"]] == ids[:2] and page.json()["next_offset"] == 2
        updated = api.patch(f"/v1/cubes/pg/memories/{ids[0]}", json={"text": "I learn the viola."}, headers=as_admin)
        assert updated.json()["version"] == 2
        assert api.delete(f"/v1/cubes/pg/memories/{ids[1]}", headers=as_admin).json()["memory_id"] == ids[1]
        dumped = api.get("/v1/cubes/pg/dump", headers=as_admin)
        loaded = api.post("/v1/cubes/load", params={"name": "pg2"}, content=dumped.content, headers=as_admin)
        assert loaded.status_code == 201, loaded.text
        assert len(api.get("/v1/cubes/pg2/memories", headers=as_admin).json()["items"]) == 2

        before = api.get("/v1/cubes/pg/memories", headers=as_admin).json()
        denied = api.post("/v1/cubes/pg/memories", json={"text": "Eve was here."}, headers=as_eve)
        assert _problem(denied, 403, "permission-denied")["error"] == "PermissionDeniedError"
        assert api.get("/v1/cubes/pg/memories", headers=as_admin).json() == before
        audit = api.get("/v1/audit", params={"user": "eve"}, headers=as_admin).json()
        assert [(e["operation"], e["result"]) for e in audit][:1] == [("add", "denied")]
        _problem(api.get("/v1/cubes/nope", headers=as_admin), 404, "not-found")
