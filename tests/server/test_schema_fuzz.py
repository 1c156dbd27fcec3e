"""Schemathesis against the live OpenAPI schema of a real server: whatever it sends, valid or
not, every error is problem details and the answer is never an unexpected 5xx (only a failure
the operation declares in the table, such as a language model that is not configured here).

Bounded: at most 25 examples per operation, no shrinking, no example database; the
whole module runs in well under a minute. Half of the examples aim at a seeded cube and
its memories (a random cube name is almost always a 404), so that bodies reach the core.
Every request carries a valid admin API key, so that it passes authentication and the
permission checks and reaches the routes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from memkern import MemOS
from memkern.api.spec import COMMON_ERRORS
from memkern.api.table import OPERATIONS
from memkern.errors import MemkernError, error_for
from memkern.server import create_app

from . import live_server

SEED_CUBE = "fuzz"
#: The operation behind each route, for the errors it declares.
ROUTES = {(op.http.method, "/v1" + op.http.path): op for op in OPERATIONS.values()}
_seeded_ids: list[str] = []
#: The admin API key every fuzzed request carries (the server requires keys).
_admin_key: list[str] = []


@pytest.fixture
def api_schema(mos: MemOS) -> Iterator[Any]:
    admin = mos.create_user("Fuzzer", "admin", user_id="fuzzer")
    _admin_key[:] = [mos.create_api_key(admin)]
    cube = mos.create_cube(SEED_CUBE, owner="fuzzer")
    added = cube.add([{"role": "user", "name": "Ada", "content": "I keep bees on the roof.",
                       "time": "2024-01-02T10:00:00Z"},
                      {"role": "user", "name": "Ada", "content": "The honey tastes of linden.",
                       "time": "2024-01-02T10:05:00Z"}], session_id="s1")
    fact = cube.add(text="Ada's hives are painted blue.", tags=["bees"])
    _seeded_ids[:] = [m.id for m in added.added + fact.added]
    with live_server(create_app(mos, max_body_bytes=200_000, max_upload_bytes=200_000)) as url:
        yield schemathesis.openapi.from_url(f"{url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@schema.given(aim=st.booleans(), pick=st.integers(min_value=0, max_value=2))
@settings(max_examples=25, deadline=None, database=None, derandomize=True,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: Any, aim: bool, pick: int) -> None:
    deleting_the_cube = case.method.upper() == "DELETE" and case.path == "/v1/cubes/{cube}"
    if aim and case.path_parameters and not deleting_the_cube:
        if "cube" in case.path_parameters:
            case.path_parameters["cube"] = SEED_CUBE
        if "memory_id" in case.path_parameters and _seeded_ids:
            case.path_parameters["memory_id"] = _seeded_ids[pick % len(_seeded_ids)]
    if case.path_parameters and case.path_parameters.get("user_id") == "fuzzer":
        case.path_parameters["user_id"] = "someone-else"  # keep the key's user alive
    response = case.call(timeout=15, headers={"Authorization": f"Bearer {_admin_key[0]}"})
    if response.status_code >= 400:
        assert response.headers["content-type"][0].startswith("application/problem+json")
        problem = response.json()
        assert problem["status"] == response.status_code and problem["title"] and problem["type"]
    if response.status_code >= 500:  # only a failure the table declares (no LLM here, no LoRA extras)
        op = ROUTES[(case.method.upper(), case.path)]
        raised = error_for(problem["type"], problem.get("error"), response.status_code)
        assert issubclass(raised, (*COMMON_ERRORS, *op.errors)) and raised is not MemkernError, (
            f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}")
