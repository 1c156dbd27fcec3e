"""The memory ids of an index copy (``memkern.retrieval.ids``): a saved copy's ids are read from
their arrays, found by hash and confirmed by their bytes (also when two ids share a hash), rows
written later win over saved ones, and arrays that do not add up are refused."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from memkern.retrieval.ids import IdColumn, RowLookup, SavedIds

#: Two ids with the same CRC-32 (found once by drawing random ids until two collided).
COLLIDING = ("446fae5b7acbf932", "da48020c4b9ad19b")


IDS = ["a", "bé", "", "日本", "x" * 300, *COLLIDING, "tail"]


def test_saved_ids_give_each_rows_id_and_each_ids_row():
    saved = SavedIds.of(IDS)
    saved.check()
    assert list(saved) == IDS and saved[-1] == "tail"
    assert saved.find_all([*IDS, "absent", "m"]) == [*range(len(IDS)), None, None]
    assert [saved.find(memory_id) for memory_id in reversed(IDS)] == list(reversed(range(len(IDS))))
    assert SavedIds.of([]).find_all(["a"]) == [None]


def test_the_colliding_ids_share_a_hash():
    first, second = COLLIDING
    assert zlib.crc32(first.encode()) == zlib.crc32(second.encode())


def test_rows_written_later_win_and_forgetting_leaves_the_saved_row():
    lookup = RowLookup(SavedIds.of(IDS))
    lookup.add(["a", "new"], [10, 11])
    assert lookup.get_all(["a", "bé", "new", "none"]) == [10, 1, 11, None]
    lookup.forget("a", 9)  # not its newest row: kept
    assert lookup.get("a") == 10
    lookup.forget("a", 10)
    assert lookup.get("a") == 0  # the saved row, which the copy has tombstoned: callers check liveness


def test_the_id_column_reads_saved_rows_from_the_arrays_and_later_ones_from_the_writer():
    written = np.empty(len(IDS) + 2, dtype=object)
    written[len(IDS):] = ["later", "last"]
    column = IdColumn(SavedIds.of(IDS), written)
    assert len(column) == len(IDS) + 2
    assert column.take(np.arange(len(column))) == [*IDS, "later", "last"]
    assert column[np.int64(1)] == "bé" and column[-1] == "last"


def _damaged(**arrays: np.ndarray) -> SavedIds:
    saved = SavedIds.of(IDS)
    return SavedIds(**{name: arrays.get(name, getattr(saved, name)) for name in SavedIds.ARRAYS})


@pytest.mark.parametrize("damage", [
    {"ends": SavedIds.of(IDS).ends[:-1]},
    {"ends": SavedIds.of(IDS).ends[::-1].copy()},
    {"hashes": SavedIds.of(IDS).hashes[::-1].copy()},
    {"hashes": SavedIds.of(IDS).hashes.astype(np.int64)},
    {"order": SavedIds.of(IDS).order[::-1].copy()},
    {"order": SavedIds.of(IDS).order + 1},
    {"blob": SavedIds.of(IDS).blob[:-1]},
], ids=["rows", "offsets", "unsorted", "dtype", "wrong-rows", "out-of-range", "short-blob"])
def test_arrays_that_do_not_add_up_are_refused(damage):
    with pytest.raises(ValueError):
        _damaged(**damage).check()


def test_an_id_saved_twice_is_refused():
    with pytest.raises(ValueError, match="twice"):
        SavedIds.of(["a", "b", "a"]).check()
