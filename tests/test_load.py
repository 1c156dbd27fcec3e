"""The load harness at small scale: real `memkern serve` processes, client processes, one SIGKILL.

Against SQLite always, and against PostgreSQL when ``MEMKERN_TEST_POSTGRES_DSN`` is set
(in a throwaway schema, dropped afterwards). Also ``open_store`` and ``$MEMKERN_STORE``.
"""

from __future__ import annotations

import os
import uuid

import pytest

from memkern.errors import InvalidInputError
from memkern.store import open_store, parse_store_url
from memkern.store.sqlite import SQLiteStore

POSTGRES_DSN_ENV = "MEMKERN_TEST_POSTGRES_DSN"

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        yield str(tmp_path / "load.db")
        return
    dsn = os.environ.get(POSTGRES_DSN_ENV)
    if not dsn:
        pytest.skip(f"set {POSTGRES_DSN_ENV} to run the load test against PostgreSQL")
    from memkern.store.postgres import drop_schema

    schema = f"t_{uuid.uuid4().hex[:20]}"
    sep = "&" if "?" in dsn else "?"
    try:
        yield f"{dsn}{sep}schema={schema}"
    finally:
        drop_schema(dsn, schema)


def _check(report: dict, clients: int, writes: int) -> None:
    assert report["ok"], report
    assert report["checks_ok"], report["checks"]
    assert report["clients_reported"] == clients
    assert report["writes_acked"] == clients * writes
    assert report["missing_count"] == 0 and report["duplicated_count"] == 0 and not report["unknown"]
    # Shared messages were sent by every client but stored once.
    assert report["memories_in_store"] == report["distinct_ids_acked"] == report["distinct_ids_attempted"]
    assert report["duplicate_answers"] >= clients * writes - report["memories_in_store"]
    assert report["write_latency"]["n"] == clients * writes and report["write_latency"]["p95_ms"] > 0
    assert report["search_latency"]["n"] == report["searches"] > 0


def test_load_with_sigkill_and_restart(store_url):
    from memkern.bench.load import format_report, run_load

    clients, writes = 4, 50
    report = run_load(store_url, clients=clients, writes=writes, kill_at=60, timeout_s=120)
    _check(report, clients, writes)
    kill = report["kill"]
    assert kill["acked_at_kill"] >= 60 and "restart_error" not in kill
    assert report["backend"] == parse_store_url(store_url)[0]
    assert "OK: every acknowledged write" in format_report(report)
    # The cube and the temporary admin were dropped at the end; the store is still there and usable.
    store = open_store(store_url)
    try:
        assert store.list_cubes() == []
        assert not [u for u in store.list_users() if u.id.startswith("load-bench-")]
    finally:
        store.close()


def test_load_without_kill_two_nodes_sqlite(tmp_path):
    """Two server processes on one SQLite file, no crash: every add answered exactly once."""
    from memkern.bench.load import run_load

    report = run_load(str(tmp_path / "two.db"), clients=3, writes=20, nodes=2, timeout_s=120)
    _check(report, 3, 20)
    assert report["checks"]["added_answers_match_store"]
    assert report["retries"] == 0


def test_run_load_refuses_bad_arguments():
    from memkern.bench.load import run_load

    for kwargs in ({"clients": 0}, {"clients": 65}, {"writes": 0}, {"kill_at": 0}, {"kill_at": 100},
                   {"nodes": 9}, {"search_every": -1}):
        with pytest.raises(InvalidInputError):
            run_load(None, **{"clients": 2, "writes": 50, **kwargs})


# ------------------------------------------------------------------------------------ open_store

def test_parse_store_url():
    assert parse_store_url("/tmp/x.db") == ("sqlite", {"path": "/tmp/x.db"})
    assert parse_store_url("sqlite:////tmp/x.db") == ("sqlite", {"path": "/tmp/x.db"})
    assert parse_store_url("sqlite:///rel/x.db") == ("sqlite", {"path": "rel/x.db"})
    kind, args = parse_store_url("postgresql://u:p@h:5432/db?schema=app1&sslmode=require")
    assert kind == "postgres"
    assert args == {"dsn": "postgresql://u:p@h:5432/db?sslmode=require", "schema": "app1"}
    assert parse_store_url("postgres://u@h/db")[1] == {"dsn": "postgresql://u@h/db", "schema": "memkern"}
    for bad in ("", "  ", "mysql://h/db", "sqlite://x.db", "postgresql://h/db?schema=", "postgresql://h/db?schema=a&schema=b"):
        with pytest.raises(InvalidInputError):
            parse_store_url(bad)


def test_open_store_and_env(tmp_path, monkeypatch, embedder):
    from memkern.mos import MemOS

    store = open_store(tmp_path / "a.db")
    assert isinstance(store, SQLiteStore)
    store.close()
    store = open_store(f"sqlite:///{tmp_path}/b.db")
    assert isinstance(store, SQLiteStore) and store.path == tmp_path / "b.db"
    store.close()

    monkeypatch.setenv("MEMKERN_STORE", f"sqlite:///{tmp_path}/env.db")
    with MemOS(embedder=embedder, llm=None) as mos:
        assert isinstance(mos.store, SQLiteStore) and mos.store.path == tmp_path / "env.db"
    with MemOS(tmp_path / "explicit.db", embedder=embedder, llm=None) as mos:  # a path still wins
        assert mos.store.path == tmp_path / "explicit.db"


def test_open_store_postgres(embedder):
    dsn = os.environ.get(POSTGRES_DSN_ENV)
    if not dsn:
        pytest.skip(f"set {POSTGRES_DSN_ENV} to test open_store on PostgreSQL")
    from memkern.mos import MemOS
    from memkern.store.postgres import PostgresStore, drop_schema

    schema = f"t_{uuid.uuid4().hex[:20]}"
    sep = "&" if "?" in dsn else "?"
    try:
        store = open_store(f"{dsn}{sep}schema={schema}")
        assert isinstance(store, PostgresStore) and store.schema == schema
        with MemOS(store=store, embedder=embedder, llm=None) as mos:
            mos.create_cube("c1")
            assert [c.name for c in mos.list_cubes()] == ["c1"]
    finally:
        drop_schema(dsn, schema)


def test_cli_store_option(tmp_path):
    from typer.testing import CliRunner

    from memkern.cli.main import app

    runner = CliRunner()
    url = f"sqlite:///{tmp_path}/cli.db"
    result = runner.invoke(app, ["--store", url, "cube", "create", "k1"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["--db", str(tmp_path / "cli.db"), "--json", "cube", "list"])
    assert result.exit_code == 0 and '"k1"' in result.output
    result = runner.invoke(app, ["--db", str(tmp_path / "x.db"), "--store", url, "cube", "list"])
    assert result.exit_code == 2
    result = runner.invoke(app, ["--store", "mysql://h/db", "cube", "list"])
    assert result.exit_code == 1 and "unknown store URL scheme" in result.output
