"""Which query terms a large SQLite lexical index leaves out (``SQLiteStore._selective``).

Past ``PRUNE_FROM_ROWS`` rows, terms in more than ``COMMON_TERM_SHARE`` of them are dropped, and
of the rest only the rarest whose rows add up to ``POSTINGS_BUDGET``; the rarest always stays.
The thresholds are lowered here so that a few dozen rows stand for a million.
"""

from __future__ import annotations

import pytest

import memkern.store.sqlite as sqlite_store
from memkern.store.sqlite import SQLiteStore

from .test_store_contract import add, cube_info, fact


@pytest.fixture
def store(tmp_path, monkeypatch) -> SQLiteStore:
    monkeypatch.setattr(sqlite_store, "PRUNE_FROM_ROWS", 10)
    monkeypatch.setattr(sqlite_store, "COMMON_TERM_SHARE", 0.5)
    store = SQLiteStore(tmp_path / "store.db")
    yield store
    store.close()


def _rows_about(cube_id: str, counts: dict[str, int]) -> list:
    """``counts[word]`` rows holding ``word`` (and a filler word each), one word per row."""
    return [fact(cube_id, f"{word} filler{i}") for word, n in counts.items() for i in range(n)]


def _kept(store: SQLiteStore, cube_id: str, terms: list[str]) -> list[str]:
    store.lexical_search(cube_id, terms, 10)  # counts the index's rows, as any search does
    return list(store._selective(terms))


def test_common_terms_and_terms_past_the_budget_are_left_out(store, monkeypatch):
    cube = store.create_cube(cube_info())
    add(store, cube.id, _rows_about(cube.id, {"everywhere": 30, "often": 12, "sometimes": 6, "rare": 2}))

    # 50 rows: "everywhere" is in 60 % of them (over the 50 % share), the others are kept.
    monkeypatch.setattr(sqlite_store, "POSTINGS_BUDGET", 1_000)
    assert _kept(store, cube.id, ["everywhere", "often", "sometimes", "rare"]) == ["often", "sometimes", "rare"]

    # A budget of 10 rows keeps the rarest terms that fit, in the query's own order.
    monkeypatch.setattr(sqlite_store, "POSTINGS_BUDGET", 10)
    assert _kept(store, cube.id, ["often", "sometimes", "rare"]) == ["sometimes", "rare"]

    # The rarest term stays even alone over the budget.
    monkeypatch.setattr(sqlite_store, "POSTINGS_BUDGET", 1)
    assert _kept(store, cube.id, ["often", "sometimes"]) == ["sometimes"]
    assert _kept(store, cube.id, ["everywhere", "nowhere"]) == ["nowhere"]


def test_a_query_of_common_terms_only_has_no_lexical_half(store):
    cube = store.create_cube(cube_info())
    add(store, cube.id, _rows_about(cube.id, {"everywhere": 30, "rare": 2}))
    assert _kept(store, cube.id, ["everywhere"]) == []
    assert store.lexical_search(cube.id, ["everywhere"], 10) == []
    assert [score > 0 for _, score in store.lexical_search(cube.id, ["everywhere", "rare"], 10)] == [True, True]


def test_small_indexes_keep_every_term(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_store, "POSTINGS_BUDGET", 1)
    store = SQLiteStore(tmp_path / "small.db")
    try:
        cube = store.create_cube(cube_info())
        add(store, cube.id, _rows_about(cube.id, {"often": 6, "rare": 2}))
        assert _kept(store, cube.id, ["often", "rare"]) == ["often", "rare"]
        hits = store.lexical_search(cube.id, ["often", "rare"], 10)
        assert len(hits) == 8
    finally:
        store.close()
