"""A cube's index copy saved to files, so that a new process's first search reads it instead
of every row through SQL (``memkern.retrieval.index`` decides when to save and load).

A cache, never a source of truth: whatever is wrong with the files (missing, half written, another
format, another cube, dimension or embedder), :func:`read` says None and the caller loads from the
store, and a copy read from here is checked against the store's change feed and patched with what
changed since it was saved. It holds ids, vectors and the fields search filters read (session ids,
positions, kinds, speakers, states, event times, tags), of live rows only, and no memory text but
what a saved part derives from it (the profile's slot values: "Lisbon", "UX designer"). A delete
removes the whole directory.

Layout of a cube's directory (``Store.index_cache``)::

    current.json          which generation is complete, the feed position and the small tables
    <generation>/*.npy    one array per column (vectors: rows x dim float32, then spare rows) and
                          the four of the memory ids (``memkern.retrieval.ids.SavedIds``: their
                          bytes, ends, sorted hashes and rows), read with ``allow_pickle=False``
                          and memory-mapped
    <generation>/ann.usearch  the approximate dense index over the first ``ann_rows`` rows, when
                          every row it covered was live (``memkern.retrieval.ann``); optional
    <generation>/part-<name>.json  a value derived from the copy's rows and saved with it, such as
                          the profile (``IndexCache.keep_part``); optional

A generation is written whole and made durable before ``current.json`` names it (replaced
atomically), so a reader never sees half of one; older generations are removed afterwards.

The vectors file holds :func:`spare_rows` more rows than the copy, left as a hole (no disk is
written for them). The reading process maps the file copy-on-write and keeps that mapping as its
matrix, appending into the spare rows: copying a million rows' vectors into fresh memory cost
2.9 s inside the first search, faulting the mapping's pages in one by one 1.4 s, asking the
kernel to map them all at once (``MADV_POPULATE_READ``) 0.08 s. The file itself never changes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import mmap
import os
import re
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from memkern.files import atomic_file
from memkern.retrieval.ids import SavedIds

log = logging.getLogger(__name__)

#: Version of the layout; a directory written in another one is ignored (2: ids in arrays, not JSON).
FORMAT = 2
POINTER = "current.json"
ANN = "ann.usearch"
#: Rows copied per step when writing vectors (bounds the memory a save takes beside the index).
WRITE_CHUNK = 65_536
#: Names of derived parts saved with a copy (file names are made from them).
_PART_NAME = re.compile(r"[a-z]{1,32}")
#: ``madvise`` asking the kernel to map every page of a range now (Linux 5.14; Python 3.11 lacks the name).
_MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22) if sys.platform.startswith("linux") else None

#: The per-row numeric columns: file name -> dtype.
_COLUMNS = {"session_codes": np.int32, "positions": np.int64, "event_times": np.float64, "kind_codes": np.int32,
            "speaker_codes": np.int32, "state_codes": np.int32, "tag_codes": np.int32}
#: The small tables the codes index into (kept in ``current.json``).
_TABLES = ("session_names", "kinds", "speakers", "states", "tag_sets")


@dataclass
class SavedIndex:
    """The live rows of a cube's index copy, column by column, and where in the feed it stands.

    Text-like columns are codes into small tables (one entry per distinct session, kind, speaker,
    state or tag set), which is also how they are interned again when read.
    """

    cube_id: str
    embedder: str
    dim: int
    #: Feed position of the copy (``Store.index_rows``): highest row seq, removal seq, revision.
    last_seq: int
    removal_seq: int
    revision: int
    #: Memory id of the row with seq ``last_seq``, if that row is live: checked against the store.
    last_id: str | None
    ids: SavedIds
    #: At least ``len(self)`` rows; in a copy read from files, the rows past them are spare room to append to.
    vectors: np.ndarray
    session_codes: np.ndarray
    positions: np.ndarray
    event_times: np.ndarray
    kind_codes: np.ndarray
    speaker_codes: np.ndarray
    state_codes: np.ndarray
    tag_codes: np.ndarray
    session_names: list[str | None]
    kinds: list[str]
    speakers: list[str | None]
    states: list[str]
    tag_sets: list[list[str]]
    #: Rows of ``vectors`` that are the copy's, in order (None: all of them): a copy being saved
    #: points into the live index's matrix rather than copying it whole first.
    vector_rows: np.ndarray | None = None
    #: Rows the saved approximate dense index covers (the first ones; 0: none saved), and its file.
    ann_rows: int = 0
    ann_path: Path | None = None
    #: The derived parts saved with the copy, by name (read lazily by whoever derived them).
    part_paths: dict[str, Path] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def position(self) -> tuple[int, int]:
        """How far in the feed the copy is: a newer copy is never replaced by an older one."""
        return self.removal_seq, self.last_seq


def write(directory: Path, saved: SavedIndex, save_graph: Callable[[Path], bool] | None = None,
          parts: Mapping[str, bytes] | None = None) -> None:
    """Write ``saved`` as a new generation of ``directory`` and make it the current one.

    The caller holds the store's lock on ``directory`` (``Store.index_cache``). A current
    generation further in the feed, or as far with as much of the approximate index, is kept and
    nothing is written. ``save_graph(path)``
    writes the approximate index over the first ``saved.ann_rows`` rows, or says False. ``parts``:
    derived values as of the copy's rows, by name (lower-case letters).
    """
    parts = dict(parts or {})
    if not all(_PART_NAME.fullmatch(name) for name in parts):
        raise ValueError(f"part names must be lower-case letters: {sorted(parts)}")
    directory.mkdir(parents=True, exist_ok=True)
    current = _pointer(directory)
    if current is not None:
        at = (current.get("removal_seq", -1), current.get("last_seq", -1))
        if at > saved.position() or (at == saved.position() and current.get("ann_rows", 0) >= saved.ann_rows
                                     and set(current.get("parts", [])) >= set(parts)):
            return
    # Leftovers of writers that died half way.
    _remove_generations(directory, keep=None if current is None else str(current.get("generation")))
    generation = f"g{saved.removal_seq}-{saved.last_seq}-{secrets.token_hex(4)}"
    target = directory / generation
    target.mkdir()
    for name in SavedIds.ARRAYS:
        _write_array(target / f"id_{name}.npy", getattr(saved.ids, name))
    vectors = np.lib.format.open_memmap(target / "vectors.npy", mode="w+", dtype=np.float32,
                                        shape=(len(saved) + spare_rows(len(saved)), saved.dim))
    for start in range(0, len(saved), WRITE_CHUNK):
        chunk = slice(start, min(start + WRITE_CHUNK, len(saved)))
        rows = chunk if saved.vector_rows is None else saved.vector_rows[chunk]
        vectors[chunk] = saved.vectors[rows]
    vectors.flush()
    del vectors
    _sync(target / "vectors.npy")
    for name, dtype in _COLUMNS.items():
        _write_array(target / f"{name}.npy", np.asarray(getattr(saved, name), dtype=dtype))
    ann_rows = 0
    if save_graph is not None and saved.ann_rows and save_graph(target / ANN):
        _sync(target / ANN)
        ann_rows = saved.ann_rows
    for name, data in parts.items():
        (target / f"part-{name}.json").write_bytes(data)
        _sync(target / f"part-{name}.json")
    _sync(target)
    meta = {
        "format": FORMAT, "generation": generation, "rows": len(saved), "ann_rows": ann_rows, "parts": sorted(parts),
        **{f.name: getattr(saved, f.name) for f in fields(SavedIndex)
           if f.name in ("cube_id", "embedder", "dim", "last_seq", "removal_seq", "revision", "last_id")},
        **{name: getattr(saved, name) for name in _TABLES},
    }
    with atomic_file(directory / POINTER) as handle:
        handle.write(json.dumps(meta, separators=(",", ":")).encode("utf-8"))
    _sync(directory)
    _remove_generations(directory, keep=generation)


def read(directory: Path, cube_id: str, dim: int, embedder: str) -> SavedIndex | None:
    """The current generation of ``directory`` if it is complete and of this cube, dimension and
    embedder; None otherwise (logged, unless there is simply none). Arrays are memory-mapped."""
    try:
        meta = _pointer(directory)
        if meta is None:
            return None
        expected = {"format": FORMAT, "cube_id": cube_id, "dim": dim, "embedder": embedder}
        wrong = {key: meta.get(key) for key, value in expected.items() if meta.get(key) != value}
        if wrong:
            log.info("index snapshot of cube %s ignored: %s where %s was expected", cube_id, wrong, expected)
            return None
        return _columns(directory / str(meta["generation"]), meta)
    except (OSError, ValueError, KeyError, TypeError) as exc:  # corrupt or half removed: load from the store
        log.warning("index snapshot of cube %s in %s ignored: %s", cube_id, directory, exc)
        return None


def spare_rows(rows: int) -> int:
    """Rows the vectors file holds past a copy of ``rows`` rows: an eighth more, as a copy read from
    the store gets (``memkern.retrieval.index``), so that the first writes after reading it need no
    copy of every vector."""
    return rows // 8


def remove(directory: Path) -> None:
    """Remove a cube's snapshot, every generation of it (the caller holds the store's lock)."""
    shutil.rmtree(directory, ignore_errors=True)


def _columns(generation: Path, meta: dict[str, Any]) -> SavedIndex:
    rows, dim = int(meta["rows"]), int(meta["dim"])
    ids = SavedIds(*(np.load(generation / f"id_{name}.npy", mmap_mode="r", allow_pickle=False).view(np.ndarray)
                     for name in SavedIds.ARRAYS))
    if len(ids) != rows:
        raise ValueError(f"the ids of {len(ids)} rows were saved, not {rows}")
    ids.check()
    vectors = _vectors(generation / "vectors.npy", rows, dim)
    columns: dict[str, Any] = {name: _array(generation / f"{name}.npy", dtype, (rows,))
                               for name, dtype in _COLUMNS.items()}
    tables: dict[str, Any] = {name: meta[name] for name in _TABLES}
    for name, table in tables.items():
        if not isinstance(table, list):
            raise ValueError(f"table {name} is not a list")
    for codes, table in (("session_codes", "session_names"), ("kind_codes", "kinds"),
                         ("speaker_codes", "speakers"), ("state_codes", "states"), ("tag_codes", "tag_sets")):
        values = columns[codes]
        if rows and (int(values.min()) < 0 or int(values.max()) >= len(tables[table])):
            raise ValueError(f"{codes} point outside {table}")
    last_id = meta.get("last_id")
    ann_rows = meta.get("ann_rows", 0)
    if not isinstance(ann_rows, int) or not 0 <= ann_rows <= rows:
        raise ValueError(f"ann_rows {ann_rows!r} is not a row count of the copy")
    names = meta.get("parts", [])
    if not isinstance(names, list) or not all(isinstance(name, str) and _PART_NAME.fullmatch(name) for name in names):
        raise ValueError(f"parts {names!r} are not part names")
    return SavedIndex(cube_id=str(meta["cube_id"]), embedder=str(meta["embedder"]), dim=dim,
                      last_seq=int(meta["last_seq"]), removal_seq=int(meta["removal_seq"]),
                      revision=int(meta["revision"]), last_id=None if last_id is None else str(last_id),
                      ids=ids, vectors=vectors, **columns, **tables, ann_rows=ann_rows,
                      ann_path=generation / ANN if ann_rows else None,
                      part_paths={name: generation / f"part-{name}.json" for name in names})


def _vectors(path: Path, rows: int, dim: int) -> np.ndarray:
    """The vectors file mapped copy-on-write (writes stay in this process), its first ``rows`` rows
    mapped in at once (see the module docstring); a plain array view, spare rows included."""
    array = np.load(path, mmap_mode="c", allow_pickle=False)
    if array.dtype != np.dtype(np.float32) or array.ndim != 2 or array.shape[1] != dim or array.shape[0] < rows:
        raise ValueError(f"{path.name} holds {array.dtype} {array.shape}, not float32 ({rows} rows or more, {dim})")
    mapping = array.base
    if isinstance(mapping, mmap.mmap) and _MADV_POPULATE_READ is not None and rows:
        # On an older kernel this fails and the pages are faulted in as they are read.
        with contextlib.suppress(OSError, ValueError):
            mapping.madvise(_MADV_POPULATE_READ, 0, array.offset + rows * dim * array.itemsize)
    return array.view(np.ndarray)


def _array(path: Path, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    """A column file mapped read-only, as a plain array view: indexing a ``np.memmap`` costs several
    times more per call (each result is a memmap too), and a search indexes these per candidate."""
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    if array.dtype != np.dtype(dtype) or array.shape != shape:
        raise ValueError(f"{path.name} holds {array.dtype} {array.shape}, not {np.dtype(dtype)} {shape}")
    return array.view(np.ndarray)


def _pointer(directory: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((directory / POINTER).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    if not isinstance(meta, dict):
        raise ValueError(f"{POINTER} is not an object")
    return meta


def _generations(directory: Path) -> Iterator[Path]:
    return (entry for entry in directory.iterdir() if entry.is_dir() and entry.name.startswith("g"))


def _remove_generations(directory: Path, keep: str | None) -> None:
    for entry in list(_generations(directory)):
        if entry.name != keep:
            shutil.rmtree(entry, ignore_errors=True)


def _write_array(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())


def _sync(path: Path) -> None:
    """Make ``path`` (a file, or a directory's entries) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
