"""The ``store`` fixture: one fresh, empty store per test, for every back end.

Every back end must pass the same contract suite (``test_store_contract.py``). Today
that is SQLite; PostgreSQL joins when ``MEMKERN_TEST_POSTGRES_DSN`` names a database
to test against (the test is skipped otherwise).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from memkern.store.base import Store

POSTGRES_DSN_ENV = "MEMKERN_TEST_POSTGRES_DSN"

BACKENDS = ["sqlite", "postgres"]


def make_store(backend: str, tmp_path: Path) -> Store:
    """A fresh, empty store of the given back end."""
    if backend == "sqlite":
        from memkern.store.sqlite import SQLiteStore

        return SQLiteStore(tmp_path / "store.db")

    if backend == "postgres":
        # ---- PostgreSQL back end -------------------------------------------------------------
        # Isolation between tests (a fresh schema or database per test) is the back end's job:
        # PostgresStore(dsn) must give an empty store, or offer reset() to empty it.
        dsn = os.environ.get(POSTGRES_DSN_ENV)
        if not dsn:
            pytest.skip(f"set {POSTGRES_DSN_ENV} to run the store contract suite against PostgreSQL")
        import atexit
        import uuid

        from memkern.store.postgres import PostgresStore, drop_schema

        # A throwaway schema per store: tests never see each other's rows (even when run in
        # parallel) and never touch the default ``memkern`` schema of the database. Schemas are
        # dropped when the test process exits (after every store is closed).
        schema = f"t_{uuid.uuid4().hex[:20]}"
        atexit.register(drop_schema, dsn, schema)
        return PostgresStore(dsn, schema=schema)
        # ---------------------------------------------------------------------------------------

    raise ValueError(f"unknown store back end {backend!r}")


def _cleanup(store: Store) -> None:
    try:
        if hasattr(store, "reset"):  # leave the shared PostgreSQL database empty for the next run
            store.reset()
    finally:
        store.close()


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def store(backend, tmp_path):
    s = make_store(backend, tmp_path)
    try:
        yield s
    finally:
        _cleanup(s)

