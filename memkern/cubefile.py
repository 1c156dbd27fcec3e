"""The portable MemCube file: one cube in one verifiable file.

A cube file is a zip archive (deflated) with these members::

    manifest.json          what the file is and a size + sha256 for every other member
    memories.jsonl         every version of every memory, one ``MemoryItem`` JSON per line,
                           in store order (``Store.export_versions``)
    vectors.safetensors    one float32 tensor ``"vectors"``: the vectors of the current
                           versions, in the order they appear in ``memories.jsonl``

The manifest (format ``"memkern-cube"``, version 1)::

    {
      "format": "memkern-cube", "format_version": 1,
      "memkern_version": "0.1.0", "created_at": "2024-...Z",
      "cube": {...CubeInfo...},
      "embedder": {"name": "...", "dim": 256},
      "counts": {"memories": ids, "versions": lines, "current": current versions, "vectors": rows},
      "memory": {
        "plaintext": {"versions": "memories.jsonl", "vectors": "vectors.safetensors", "tensor": "vectors"},
        "activation": [],
        "parametric": []
      },
      "files": {"memories.jsonl": {"size": n, "sha256": "..."}, "vectors.safetensors": {...}}
    }

``activation`` holds the cube's activation memory when it was fresh at dump time
(``memkern.memory.activation``): one entry ``{"manifest", "kv", "prefix", "model",
"gguf_sha256", "n_tokens"}`` naming the members ``activation/0/activation.json`` (its
manifest), ``activation/0/kv.bin`` (llama.cpp's slot file) and ``activation/0/prefix.txt``.
A load refuses a KV cache built for another GGUF than the local model, or whose bytes
disagree with its manifest, and installs it beside the store under the new cube id.
``parametric`` holds the cube's LoRA adapter when it has one (``memkern.memory.parametric``): one
entry ``{"kind": "lora", "adapter_id", "manifest", "tensors", "base_model_sha256", "rank",
"target_modules", "sources"}`` naming the members ``parametric/<adapter id>/adapter.json`` (its
manifest) and ``parametric/<adapter id>/adapter_model.safetensors``. A load refuses an adapter
trained on another base model than the local GGUF, or whose tensors disagree with its manifest
(checksum, names, shapes), and installs it beside the new cube. Every member file (whatever
section names it) has an entry in the ``files`` checksum table. Readers ignore manifest keys they do
not know; anything that changes the meaning of the file bumps ``format_version``.

Reading verifies the *whole* file (container, member set, sizes, checksums, manifest,
every JSON line, every vector, the consistency of the versions) before anything uses it:
a bad file raises ``CubeFileError`` naming the member and what was expected. Nothing in
the file is ever unpickled. A file is hostile until proven otherwise: members are read in
chunks and never past the size the manifest declares, ``memories.jsonl`` is parsed line by
line as it is read (a line longer than ``MAX_LINE_BYTES`` is refused as soon as it gets
there), the vectors are read only when their size fits the versions already counted, JSON
nesting is bounded before any parser runs, and every memory meets the limits ``add``
applies (``memkern.validation.check_memory``; names follow ``check_cube_name``). This module is the format only; ``memkern.ops.portable``
dumps and loads cubes with it (the activation and parametric sections are verified by
their own modules, handed in as ``Section`` objects).

Vectors are derived data: they are kept in the file so that a load into a store with
the same embedder is fast and bit-identical, but a load with another embedder simply
re-embeds the current versions' texts and records the new embedder on the cube.

The operation log is an audit trail of *this* store and is not exported; the loaded
cube's log starts with its import.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
import zlib
from collections.abc import Generator, Iterable, Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from memkern.errors import CubeFileError, InvalidInputError
from memkern.files import atomic_file
from memkern.models import CubeInfo, LifecycleState, MemoryItem, utcnow
from memkern.store.base import dedup_keys
from memkern.validation import (
    MAX_JSON_DEPTH,
    check_cube_name,
    check_json_depth,
    check_memory,
    check_metadata,
    check_name,
    check_note,
    describe,
)
from memkern.version import __version__

FORMAT_NAME = "memkern-cube"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MEMORIES = "memories.jsonl"
VECTORS = "vectors.safetensors"
TENSOR = "vectors"

#: Largest total uncompressed size of all members a cube file may declare (zip-bomb guard).
MAX_UNCOMPRESSED_BYTES = 2 * 1024**3
#: Largest manifest accepted.
MAX_MANIFEST_BYTES = 16 * 1024**2
#: Largest number of members accepted (a v1 file has three).
MAX_MEMBERS = 1_000
#: Longest line of ``memories.jsonl``: one memory of the API's largest text and metadata, JSON-escaped.
MAX_LINE_BYTES = 16 * 1024**2
#: Most versions one file may hold.
MAX_VERSIONS = 2_000_000
#: Largest safetensors header accepted in front of the vectors.
MAX_TENSOR_HEADER_BYTES = 64 * 1024
#: Deepest JSON nesting in the manifest or a memory line (metadata's limit plus the record around it).
MAX_JSON_DEPTH_IN_FILE = MAX_JSON_DEPTH + 8
#: Largest cube file accepted on disk.
MAX_FILE_BYTES = MAX_UNCOMPRESSED_BYTES + 64 * 1024**2
#: The memory sections besides plaintext, in manifest order.
SECTIONS = ("activation", "parametric")

_CHUNK = 1024 * 1024
_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"
_NOT_A_CUBE = "not a memkern cube file"


# -- manifest schema -------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _FileEntry(_Strict):
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class _EmbedderEntry(_Strict):
    name: str
    dim: int = Field(gt=0)


class _Counts(_Strict):
    memories: int = Field(ge=0)
    versions: int = Field(ge=0)
    current: int = Field(ge=0)
    vectors: int = Field(ge=0)


class _Plaintext(_Strict):
    versions: str
    vectors: str
    tensor: str = TENSOR


class _MemorySections(_Strict):
    plaintext: _Plaintext
    activation: list[dict[str, Any]] = Field(default_factory=list)
    parametric: list[dict[str, Any]] = Field(default_factory=list)


class Manifest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    format: str
    format_version: int
    memkern_version: str
    created_at: datetime
    cube: CubeInfo
    embedder: _EmbedderEntry
    counts: _Counts
    memory: _MemorySections
    files: dict[str, _FileEntry]


# -- writing ---------------------------------------------------------------------------------------
def write_cube_file(path: Path, info: CubeInfo, versions: list[MemoryItem], vectors: np.ndarray,
                    sections: Mapping[str, tuple[list[dict[str, Any]], dict[str, bytes]]]) -> None:
    """Write one cube file: ``versions`` (every version, store order), the vectors of the current
    ones, and the other memory sections (``{"activation": (entries, members), ...}``).

    The file is written to a temporary file in the same directory, flushed to disk and
    renamed over ``path``, so that ``path`` is always either the old file or the whole
    new one. A new file is readable by its owner only (it holds personal memories); an
    existing file keeps its permissions.
    """
    from safetensors.numpy import save as save_tensors

    current = [v for v in versions if v.expired_at is None]
    memories = b"".join(v.model_dump_json().encode("utf-8") + b"\n" for v in versions)
    tensors = save_tensors({TENSOR: vectors}, metadata={"format": FORMAT_NAME, "embedder": info.embedder})
    members = {MEMORIES: memories, VECTORS: tensors}
    memory: dict[str, Any] = {"plaintext": {"versions": MEMORIES, "vectors": VECTORS, "tensor": TENSOR}}
    for section in SECTIONS:
        entries, extra = sections.get(section, ([], {}))
        memory[section] = entries
        members.update(extra)
    created = utcnow()
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "memkern_version": __version__,
        "created_at": created.isoformat(),
        "cube": info.model_dump(mode="json"),
        "embedder": {"name": info.embedder, "dim": info.dim},
        "counts": {
            "memories": len({v.id for v in versions}),
            "versions": len(versions),
            "current": len(current),
            "vectors": int(vectors.shape[0]),
        },
        "memory": memory,
        "files": {
            name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()} for name, data in members.items()
        },
    }
    payload = {MANIFEST: json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf-8"), **members}
    _write_atomically(path, payload, created)


def _write_atomically(path: Path, members: dict[str, bytes], created: datetime) -> None:
    mode = path.stat().st_mode & 0o777 if path.exists() else None
    with atomic_file(path, mode=mode) as fh, zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        stamp = created.timetuple()[:6]
        for name, data in members.items():
            zinfo = zipfile.ZipInfo(name, date_time=stamp)
            zinfo.compress_type = zipfile.ZIP_DEFLATED
            zinfo.external_attr = 0o600 << 16
            zf.writestr(zinfo, data, compresslevel=6)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not possible on every platform (Windows); the rename is done anyway
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@dataclass(frozen=True)
class LoadedCube:
    """A verified cube file, ready to insert (see ``read_cube_file``)."""

    manifest: Manifest
    versions: list[MemoryItem]
    #: float32, shape (current versions, dim), in the order of the current versions.
    vectors: np.ndarray
    file_sha256: str
    #: What each section's ``verify`` returned (``{"activation": [...], "parametric": [...]}``).
    sections: dict[str, Any] = field(default_factory=dict)


class Section(Protocol):
    """A memory section other than plaintext (activation, parametric): the memory module that
    owns it says which members its manifest entries name and checks them."""

    def members(self, entries: list[dict[str, Any]]) -> list[str]: ...

    def verify(self, entries: list[dict[str, Any]], data: dict[str, bytes], versions: list[MemoryItem],
               cube_id: str) -> Any: ...


def read_cube_file(path: Path, sections: Mapping[str, Section]) -> LoadedCube:
    """Read and verify a whole cube file, each memory section by its ``Section``; ``CubeFileError``
    on the first problem found."""
    path = Path(path)
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise CubeFileError(f"no cube file at {path}") from None
    except IsADirectoryError:
        raise CubeFileError(f"{path} is a directory, not a cube file") from None
    except OSError as exc:
        raise CubeFileError(f"cannot read {path}: {exc}") from exc
    with fh:
        size = os.fstat(fh.fileno()).st_size
        if size > MAX_FILE_BYTES:
            raise CubeFileError(f"{path} is {size:,} bytes; the limit for a cube file is {MAX_FILE_BYTES:,}")
        file_sha256 = _hash_file(fh)
        fh.seek(0)
        head = fh.read(4)
        fh.seek(0)
        zf = _open_zip(fh, path, head, size)
        with zf:
            return _verify(zf, path, file_sha256, sections)


def _hash_file(fh: BinaryIO) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: fh.read(_CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()


def _open_zip(fh: BinaryIO, path: Path, head: bytes, size: int) -> zipfile.ZipFile:
    looks_like_zip = head in (_ZIP_MAGIC, _EMPTY_ZIP_MAGIC)
    try:
        zf = zipfile.ZipFile(fh, "r")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        if looks_like_zip:
            raise CubeFileError(
                f"{path} is truncated or corrupt: it starts like a zip archive but its central "
                f"directory cannot be read ({exc})"
            ) from exc
        raise CubeFileError(f"{path} is {_NOT_A_CUBE} (not a zip archive)") from exc
    if not looks_like_zip:
        zf.close()
        raise CubeFileError(f"{path} is {_NOT_A_CUBE} (data before the zip archive)")
    # The end-of-central-directory record is the last 22 bytes of a file memkern wrote.
    fh.seek(max(size - 22, 0))
    tail = fh.read(22)
    fh.seek(0)
    if not tail.startswith(_EMPTY_ZIP_MAGIC) or tail[20:22] != b"\x00\x00":
        zf.close()
        raise CubeFileError(f"{path} is corrupt: there is data after the end of the zip archive")
    return zf


def _check_member_name(name: str) -> None:
    parts = name.split("/")
    if (not name or name.startswith("/") or "\\" in name or ":" in name or "\x00" in name
            or any(part in ("", ".", "..") for part in parts)):
        raise CubeFileError(
            f"refusing member {name!r}: a member name must be a relative file path without '..' "
            "(no directories, absolute paths or drive letters)"
        )


def _verify(zf: zipfile.ZipFile, path: Path, file_sha256: str, sections: Mapping[str, Section]) -> LoadedCube:
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise CubeFileError(f"{path} has {len(infos):,} members; a cube file has at most {MAX_MEMBERS:,}")
    by_name: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for zinfo in infos:
        _check_member_name(zinfo.filename)
        if zinfo.filename in by_name:
            raise CubeFileError(f"member {zinfo.filename!r} appears twice in {path}")
        if zinfo.flag_bits & 0x1:
            raise CubeFileError(f"member {zinfo.filename!r} is encrypted; cube files are never encrypted")
        if zinfo.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise CubeFileError(
                f"member {zinfo.filename!r} uses compression method {zinfo.compress_type}; "
                "cube files use deflate (or no compression)"
            )
        total += zinfo.file_size
        if total > MAX_UNCOMPRESSED_BYTES:
            raise CubeFileError(
                f"{path} declares more than {MAX_UNCOMPRESSED_BYTES:,} bytes of uncompressed content "
                f"(member {zinfo.filename!r} alone is {zinfo.file_size:,}); refusing it"
            )
        by_name[zinfo.filename] = zinfo

    if MANIFEST not in by_name:
        raise CubeFileError(f"{path} is {_NOT_A_CUBE} (the zip archive has no {MANIFEST})")
    manifest = _read_manifest(zf, by_name[MANIFEST])

    # The member set must be exactly the manifest plus the checksum table.
    listed = set(manifest.files)
    for name in sorted(listed):
        _check_member_name(name)
    present = set(by_name) - {MANIFEST}
    if MANIFEST in listed:
        raise CubeFileError(f"{MANIFEST}: the checksum table lists {MANIFEST} itself")
    missing = sorted(listed - present)
    if missing:
        raise CubeFileError(f"member {missing[0]!r} is listed in {MANIFEST} but missing from {path}")
    extra = sorted(present - listed)
    if extra:
        raise CubeFileError(f"unexpected member {extra[0]!r} in {path}: it is not listed in {MANIFEST}")
    used = {manifest.memory.plaintext.versions, manifest.memory.plaintext.vectors}
    for section in SECTIONS:
        for name in sections[section].members(getattr(manifest.memory, section)):
            if name in used:
                raise CubeFileError(f"{MANIFEST}: member {name!r} is used twice")
            used.add(name)
    for name in sorted(used):
        if name not in listed:
            raise CubeFileError(f"{MANIFEST}: memory.plaintext names {name!r} but the checksum table does not list it")
    unused = sorted(listed - used)
    if unused:
        raise CubeFileError(f"{MANIFEST}: the checksum table lists {unused[0]!r} but no memory section uses it")

    plaintext = manifest.memory.plaintext
    versions = _read_versions(zf, by_name[plaintext.versions], manifest.files[plaintext.versions], manifest)
    current = _check_versions(manifest, versions)
    vectors = _read_vectors(zf, by_name[plaintext.vectors], manifest.files[plaintext.vectors], manifest, current)
    _check_vectors(manifest, current, vectors)
    data = {name: _read_member(zf, by_name[name], manifest.files[name])
            for name in sorted(listed - {plaintext.versions, plaintext.vectors})}
    for name, raw in data.items():  # the sections' own manifests, before their modules parse them
        if name.endswith(".json"):
            try:
                check_json_depth(raw, f"member {name!r}", MAX_JSON_DEPTH_IN_FILE)
            except InvalidInputError as exc:
                raise CubeFileError(str(exc)) from exc
    verified = {section: sections[section].verify(getattr(manifest.memory, section), data, versions,
                                                  manifest.cube.id) for section in SECTIONS}
    return LoadedCube(manifest=manifest, versions=versions, vectors=vectors, file_sha256=file_sha256,
                      sections=verified)


def _chunks(zf: zipfile.ZipFile, zinfo: zipfile.ZipInfo, expected: _FileEntry | None,
            limit: int) -> Generator[bytes, None, None]:
    """The member's bytes, one chunk at a time: never more than ``limit`` are read, so a member
    that lies about its size (or a zip bomb) costs one chunk of memory before it is refused.
    With ``expected``, the size and sha256 are checked once the last chunk was read."""
    name = zinfo.filename
    digest = hashlib.sha256()
    total = 0
    try:
        with zf.open(zinfo) as member:
            while True:
                chunk = member.read(min(_CHUNK, limit + 1 - total))
                if not chunk:
                    break
                total += len(chunk)
                if total > limit:
                    raise CubeFileError(f"member {name!r} holds more than the {limit:,} bytes it may; refusing it")
                digest.update(chunk)
                yield chunk
    except CubeFileError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, RuntimeError,
            NotImplementedError) as exc:
        raise CubeFileError(f"member {name!r} is corrupt or truncated: {exc}") from exc
    if expected is None:
        return
    if total != expected.size:
        raise CubeFileError(f"member {name!r} is truncated: read {total:,} bytes, {MANIFEST} says {expected.size:,}")
    if digest.hexdigest() != expected.sha256:
        raise CubeFileError(
            f"member {name!r} has sha256 {digest.hexdigest()} but {MANIFEST} says {expected.sha256}: "
            "the file was modified or is corrupt"
        )


def _check_declared_size(zinfo: zipfile.ZipInfo, expected: _FileEntry) -> None:
    if zinfo.file_size != expected.size:
        raise CubeFileError(
            f"member {zinfo.filename!r} is {zinfo.file_size:,} bytes but {MANIFEST} says {expected.size:,}: "
            "the file was modified or is corrupt"
        )


def _parse_json(raw: bytes, what: str) -> Any:
    """``raw`` parsed as JSON, refused (naming ``what``) if it is not UTF-8 JSON or nests too deeply."""
    try:
        check_json_depth(raw, what, MAX_JSON_DEPTH_IN_FILE)
        return json.loads(raw.decode("utf-8"))
    except InvalidInputError as exc:
        raise CubeFileError(str(exc)) from exc
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CubeFileError(f"{_NOT_A_CUBE}: {what} is not valid JSON ({exc})") from exc


def _read_manifest(zf: zipfile.ZipFile, zinfo: zipfile.ZipInfo) -> Manifest:
    if zinfo.file_size > MAX_MANIFEST_BYTES:
        raise CubeFileError(
            f"{MANIFEST} is {zinfo.file_size:,} bytes; the limit is {MAX_MANIFEST_BYTES:,}"
        )
    with closing(_chunks(zf, zinfo, None, zinfo.file_size)) as chunks:
        raw = b"".join(chunks)
    if len(raw) != zinfo.file_size:
        raise CubeFileError(f"{MANIFEST} is truncated: {len(raw):,} bytes, the archive declares {zinfo.file_size:,}")
    doc = _parse_json(raw, MANIFEST)
    if not isinstance(doc, dict):
        raise CubeFileError(f"{_NOT_A_CUBE}: {MANIFEST} is a JSON {type(doc).__name__}, not an object")
    if doc.get("format") != FORMAT_NAME:
        raise CubeFileError(
            f"{_NOT_A_CUBE}: {MANIFEST} has format {doc.get('format')!r}, expected {FORMAT_NAME!r}"
        )
    version = doc.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CubeFileError(f"{MANIFEST}: format_version is {version!r}, expected an integer")
    if version != FORMAT_VERSION:
        newer = " (written by a newer memkern: upgrade memkern to load it)" if version > FORMAT_VERSION else ""
        raise CubeFileError(
            f"unsupported cube file format version {version}; this memkern reads version {FORMAT_VERSION}{newer}"
        )
    try:
        manifest = Manifest.model_validate(doc)
    except ValidationError as exc:
        raise CubeFileError(f"{MANIFEST} is invalid: {describe(exc, 3)}") from exc
    return manifest


def _read_member(zf: zipfile.ZipFile, zinfo: zipfile.ZipInfo, expected: _FileEntry) -> bytes:
    _check_declared_size(zinfo, expected)
    with closing(_chunks(zf, zinfo, expected, expected.size)) as chunks:
        return b"".join(chunks)


def _lines(chunks: Iterable[bytes], member: str) -> Iterator[tuple[int, bytes]]:
    """Numbered lines of a streamed member, each at most ``MAX_LINE_BYTES`` (checked while reading)."""
    # Split on b"\n" only: text may hold U+2028 and friends, which str.splitlines would split on.
    pending = bytearray()
    number = 0
    for chunk in chunks:
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            pending += chunk[start:] if end < 0 else chunk[start:end]
            if len(pending) > MAX_LINE_BYTES:
                raise CubeFileError(f"{member} line {number + 1} is longer than {MAX_LINE_BYTES:,} bytes; "
                                    "no memory is that large")
            if end < 0:
                break
            number += 1
            yield number, bytes(pending)
            pending.clear()
            start = end + 1
    if pending:
        yield number + 1, bytes(pending)


def _read_versions(zf: zipfile.ZipFile, zinfo: zipfile.ZipInfo, expected: _FileEntry,
                   manifest: Manifest) -> list[MemoryItem]:
    """Every version in the member, parsed line by line while it is read (never held whole)."""
    _check_declared_size(zinfo, expected)
    member = zinfo.filename
    versions: list[MemoryItem] = []
    with closing(_chunks(zf, zinfo, expected, expected.size)) as chunks:
        for number, line in _lines(chunks, member):
            if number > MAX_VERSIONS:
                raise CubeFileError(f"{member} holds more than {MAX_VERSIONS:,} versions; refusing it")
            versions.append(_parse_version(member, number, line, manifest))
    return versions


def _parse_version(member: str, number: int, line: bytes, manifest: Manifest) -> MemoryItem:
    where = f"{member} line {number}"
    if not line.strip():
        raise CubeFileError(f"{where}: empty line")
    try:
        check_json_depth(line, where, MAX_JSON_DEPTH_IN_FILE)
        item = MemoryItem.model_validate_json(line)
    except InvalidInputError as exc:
        raise CubeFileError(str(exc)) from exc
    except ValidationError as exc:
        raise CubeFileError(f"{where} is not a valid memory: {describe(exc, 3)}") from exc
    if item.cube_id != manifest.cube.id:
        raise CubeFileError(
            f"{where}: memory {item.id!r} belongs to cube {item.cube_id!r}, "
            f"not to the file's cube {manifest.cube.id!r}"
        )
    if item.state is LifecycleState.DELETED:
        raise CubeFileError(f"{where}: {item.version_id} is in state 'deleted'; "
                            "deleted memories are never written to a cube file")
    try:
        return check_memory(item, where)
    except InvalidInputError as exc:
        raise CubeFileError(str(exc)) from exc


def _read_vectors(zf: zipfile.ZipFile, zinfo: zipfile.ZipInfo, expected: _FileEntry, manifest: Manifest,
                  current: int) -> np.ndarray:
    """The vectors, read only when their declared size fits the current versions already counted
    (a smaller member is read and refused by the shape checks, which say what is missing)."""
    _check_declared_size(zinfo, expected)
    member, dim = zinfo.filename, manifest.embedder.dim
    payload = current * dim * 4
    if expected.size > payload + 8 + MAX_TENSOR_HEADER_BYTES:
        raise CubeFileError(
            f"member {member!r} is {expected.size:,} bytes but {current:,} vectors of {dim} float32 values "
            f"take {payload:,} (plus a header of at most {MAX_TENSOR_HEADER_BYTES:,}); refusing it unread"
        )
    return _parse_vectors(member, _read_member(zf, zinfo, expected), manifest)


def _parse_vectors(member: str, data: bytes, manifest: Manifest) -> np.ndarray:
    from safetensors.numpy import load as load_tensors  # parses a header and raw arrays: no pickle

    tensor = manifest.memory.plaintext.tensor
    try:
        tensors = load_tensors(data)
    except Exception as exc:  # SafetensorError and friends: the bytes are not a safetensors file
        raise CubeFileError(f"{member} is not a valid safetensors file: {exc}") from exc
    if set(tensors) != {tensor}:
        raise CubeFileError(f"{member} holds tensors {sorted(tensors)}, expected exactly [{tensor!r}]")
    vectors = tensors[tensor]
    if vectors.dtype != np.float32:
        raise CubeFileError(f"{member}: tensor {tensor!r} has dtype {vectors.dtype}, expected float32")
    if vectors.ndim != 2:
        raise CubeFileError(f"{member}: tensor {tensor!r} has shape {vectors.shape}, expected (count, dim)")
    return vectors


def _check_versions(manifest: Manifest, versions: list[MemoryItem]) -> int:
    """Check the cube record and that the versions form consistent histories that agree with the
    manifest's counts; the number of current versions (the vectors the file must hold)."""
    cube, emb, counts = manifest.cube, manifest.embedder, manifest.counts
    try:
        check_cube_name(cube.name, f"{MANIFEST}: the cube's name")
        check_name(cube.owner, f"{MANIFEST}: the cube's owner")
        check_note(cube.description, f"{MANIFEST}: the cube's description")
        check_metadata(cube.metadata, f"{MANIFEST}: the cube's metadata")
    except InvalidInputError as exc:
        raise CubeFileError(str(exc)) from exc
    if (cube.embedder, cube.dim) != (emb.name, emb.dim):
        raise CubeFileError(
            f"{MANIFEST}: the cube says embedder {cube.embedder!r} ({cube.dim} dimensions) but the "
            f"embedder entry says {emb.name!r} ({emb.dim} dimensions)"
        )

    member = manifest.memory.plaintext.versions
    seen: dict[tuple[str, int], int] = {}
    current_line: dict[str, int] = {}
    highest: dict[str, int] = {}
    source_keys: dict[str, int] = {}
    content_keys: dict[str, int] = {}
    for number, item in enumerate(versions, start=1):
        key = (item.id, item.version)
        if key in seen:
            raise CubeFileError(
                f"{member} line {number}: duplicate version {item.version_id} (first at line {seen[key]})"
            )
        seen[key] = number
        highest[item.id] = max(highest.get(item.id, 0), item.version)
        if item.expired_at is None:
            if item.id in current_line:
                raise CubeFileError(
                    f"{member}: memory {item.id!r} has more than one current version "
                    f"(lines {current_line[item.id]} and {number})"
                )
            current_line[item.id] = number
            source_key, content_key = dedup_keys(item)
            if source_key is not None:
                if source_key in source_keys:
                    raise CubeFileError(f"{member} lines {source_keys[source_key]} and {number}: two current "
                                        "memories come from the same message")
                source_keys[source_key] = number
            if content_key in content_keys:
                raise CubeFileError(f"{member} lines {content_keys[content_key]} and {number}: two current "
                                    "memories have the same content")
            content_keys[content_key] = number
    for memory_id, top in highest.items():
        if memory_id not in current_line:
            raise CubeFileError(f"{member}: memory {memory_id!r} has no current version")
        line = current_line[memory_id]
        if versions[line - 1].version != top:
            raise CubeFileError(
                f"{member} line {line}: the current version of {memory_id!r} is v{versions[line - 1].version} "
                f"but v{top} exists"
            )

    actual = {"memories": len(highest), "versions": len(versions), "current": len(current_line)}
    for what, value in actual.items():
        expected = getattr(counts, what)
        if value != expected:
            raise CubeFileError(f"{MANIFEST} counts {expected} {what} but the file holds {value}")
    return len(current_line)


def _check_vectors(manifest: Manifest, current: int, vectors: np.ndarray) -> None:
    """One finite vector of the embedder's dimension per current version, as the manifest counts."""
    emb, member, vec_member = manifest.embedder, manifest.memory.plaintext.versions, manifest.memory.plaintext.vectors
    if vectors.shape[0] != current:
        raise CubeFileError(
            f"{vec_member} has {vectors.shape[0]} vectors but {member} has {current} current "
            "versions: every current version needs exactly one vector"
        )
    if manifest.counts.vectors != vectors.shape[0]:
        raise CubeFileError(f"{MANIFEST} counts {manifest.counts.vectors} vectors but the file holds "
                            f"{vectors.shape[0]}")
    if vectors.shape[1] != emb.dim:
        raise CubeFileError(
            f"{vec_member}: vectors have {vectors.shape[1]} dimensions but {MANIFEST} says {emb.dim}"
        )
    if vectors.size and not np.isfinite(vectors).all():
        row = int(np.argwhere(~np.isfinite(vectors))[0][0])
        raise CubeFileError(f"{vec_member}: vector {row} holds NaN or infinite values")
