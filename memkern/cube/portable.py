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

Loading verifies the *whole* file (container, member set, sizes, checksums, manifest,
every JSON line, every vector, the consistency of the versions) before the store is
touched, then inserts the cube in one transaction (``Store.import_cube``): a bad file
raises ``CubeFileError`` naming the member and what was expected, and leaves the store
exactly as it was. Nothing in the file is ever unpickled.

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
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO
from uuid import uuid4

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from memkern.embed.base import Embedder
from memkern.errors import CubeFileError, EmbedderError, InvalidInputError, StoreError
from memkern.files import atomic_file
from memkern.models import CubeInfo, LifecycleState, MemoryItem, utcnow
from memkern.store.base import Store, dedup_keys

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
#: Largest cube file accepted on disk.
MAX_FILE_BYTES = MAX_UNCOMPRESSED_BYTES + 64 * 1024**2
#: Texts embedded per call when a load re-embeds.
EMBED_BATCH = 512

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


class _Manifest(BaseModel):
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


def _describe(error: ValidationError, limit: int = 3) -> str:
    parts = []
    for issue in error.errors()[:limit]:
        where = ".".join(str(p) for p in issue["loc"]) or "value"
        parts.append(f"{where}: {issue['msg']}")
    more = len(error.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


# -- dump ------------------------------------------------------------------------------------------
def dump_cube(store: Store, info: CubeInfo, path: Path) -> Path:
    """Write the cube to ``path`` as one cube file and return the path.

    The file is written to a temporary file in the same directory, flushed to disk and
    renamed over ``path``, so that ``path`` is always either the old file or the whole
    new one. A new file is readable by its owner only (it holds personal memories); an
    existing file keeps its permissions.
    """
    from memkern import __version__

    path = Path(path)
    if path.is_dir():
        raise InvalidInputError(f"cannot dump the cube to {path}: it is a directory")
    info = store.get_cube(info.id)  # the current CubeInfo; NotFoundError if the cube is gone
    versions, vectors = store.export_versions(info.id)
    current = [v for v in versions if v.expired_at is None]
    vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, info.dim)
    if len(vectors) != len(current):
        raise StoreError(
            f"cube {info.name!r} has {len(current)} current memories but {len(vectors)} vectors in the store"
        )

    from safetensors.numpy import save as save_tensors

    from memkern.memory.activation import export_for_dump

    memories = b"".join(v.model_dump_json().encode("utf-8") + b"\n" for v in versions)
    tensors = save_tensors({TENSOR: vectors}, metadata={"format": FORMAT_NAME, "embedder": info.embedder})
    members = {MEMORIES: memories, VECTORS: tensors}
    # A fresh activation (KV cache + its manifest + prefix text) travels with the cube; a stale one does not.
    activation_entries, activation_members = export_for_dump(store, info.id, versions)
    members.update(activation_members)
    from memkern.memory.parametric import dump_members as parametric_members

    parametric_entries, adapter_members = parametric_members(info)
    members.update(adapter_members)
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
        "memory": {
            "plaintext": {"versions": MEMORIES, "vectors": VECTORS, "tensor": TENSOR},
            "activation": activation_entries,
            "parametric": parametric_entries,
        },
        "files": {
            name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()} for name, data in members.items()
        },
    }
    payload = {MANIFEST: json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf-8"), **members}
    _write_atomically(path, payload, created)
    return path


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


# -- load ------------------------------------------------------------------------------------------
def load_cube(store: Store, embedder: Embedder, path: Path, *, name: str | None,
              owner: str | None) -> CubeInfo:
    """Verify the cube file at ``path`` whole, then insert it as a new cube and return its info.

    The cube gets a new id; ``name`` and ``owner`` default to the file's. With a new
    owner every version is rewritten to that owner. ``metadata["loaded_from"]`` records
    the original cube id and the sha256 of the file.

    Vectors are derived data: when the file was written with another embedder (name or
    dimension) than ``embedder``, the file's vectors are not used; the current versions'
    texts are re-embedded with ``embedder`` and the cube records it. Otherwise the
    stored vectors are used as they are.

    Raises ``CubeFileError`` for anything wrong with the file (nothing is written),
    ``ConflictError`` if the name is taken, ``InvalidInputError`` for a bad name or owner.
    """
    for value, what in ((name, "cube name"), (owner, "owner")):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise InvalidInputError(f"{what} must be a non-empty string, not {value!r}")
    if name is not None and len(name) > 200:
        raise InvalidInputError("cube name is longer than 200 characters")

    loaded = read_cube_file(Path(path))
    file_info = loaded.manifest.cube
    versions, vectors = loaded.versions, loaded.vectors

    new_id = uuid4().hex
    new_owner = owner if owner is not None else file_info.owner
    rewrite: dict[str, Any] = {"cube_id": new_id}
    if owner is not None:
        rewrite["owner"] = owner
    versions = [v.model_copy(update=rewrite) for v in versions]

    emb_name, emb_dim = embedder.name, int(embedder.dim)
    if emb_name != file_info.embedder or emb_dim != file_info.dim:
        vectors = _reembed(embedder, [v.text for v in versions if v.expired_at is None])

    metadata = dict(file_info.metadata)
    metadata["loaded_from"] = {
        "cube_id": file_info.id,
        "name": file_info.name,
        "file_sha256": loaded.file_sha256,
        "loaded_at": utcnow().isoformat(),
        "embedder": file_info.embedder,
        "dim": file_info.dim,
    }
    info = file_info.model_copy(update={
        "id": new_id,
        "name": name if name is not None else file_info.name,
        "owner": new_owner,
        "embedder": emb_name,
        "dim": emb_dim,
        "metadata": metadata,
    })
    from memkern.memory.parametric import install_adapters

    written = install_adapters(loaded.adapters, new_id, metadata)  # also drops the file's stale reference
    try:
        imported = store.import_cube(info, versions, vectors)
    except BaseException:
        import shutil

        for directory in written:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    if loaded.activations:
        from memkern.memory.activation import install_loaded

        try:
            for activation in loaded.activations:
                install_loaded(store, imported.id, activation)
        except OSError as exc:  # the memories are in; the cache is only an accelerator
            raise CubeFileError(f"the cube was loaded as {imported.name!r} but its activation memory could not be "
                                f"written beside the store: {exc}; rebuild it with memkern.memory.activation.activate(cube)") from exc
    return imported


def _reembed(embedder: Embedder, texts: list[str]) -> np.ndarray:
    dim = int(embedder.dim)
    chunks = []
    for start in range(0, len(texts), EMBED_BATCH):
        batch = texts[start:start + EMBED_BATCH]
        out = np.asarray(embedder.embed(batch), dtype=np.float32)
        if out.shape != (len(batch), dim):
            raise EmbedderError(
                f"embedder {embedder.name!r} returned vectors of shape {out.shape}, expected ({len(batch)}, {dim})"
            )
        chunks.append(out)
    vectors = np.concatenate(chunks) if chunks else np.zeros((0, dim), dtype=np.float32)
    if not np.isfinite(vectors).all():
        raise EmbedderError(f"embedder {embedder.name!r} returned NaN or infinite values")
    return np.ascontiguousarray(vectors)


@dataclass(frozen=True)
class LoadedCube:
    """A verified cube file, ready to insert (see ``read_cube_file``)."""

    manifest: _Manifest
    versions: list[MemoryItem]
    #: float32, shape (current versions, dim), in the order of the current versions.
    vectors: np.ndarray
    file_sha256: str
    #: Verified activation memories (``memkern.memory.activation.LoadedActivation``), installed after the insert.
    activations: list[Any] = field(default_factory=list)
    #: Verified LoRA adapters (``memkern.memory.parametric.verify_entries``), installed with the insert.
    adapters: list[Any] = field(default_factory=list)


def read_cube_file(path: Path) -> LoadedCube:
    """Read and verify a whole cube file; ``CubeFileError`` on the first problem found."""
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
            return _verify(zf, path, file_sha256)


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


def _verify(zf: zipfile.ZipFile, path: Path, file_sha256: str) -> LoadedCube:
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
    from memkern.memory.activation import entry_members, verify_cube_entry

    for entry in manifest.memory.activation:
        for name in entry_members(entry):
            if name in used:
                raise CubeFileError(f"{MANIFEST}: member {name!r} is used twice")
            used.add(name)
    from memkern.memory.parametric import entry_members as adapter_members
    from memkern.memory.parametric import verify_entries as verify_adapters

    for name in sorted(adapter_members(manifest.memory.parametric)):
        if name in used:
            raise CubeFileError(f"{MANIFEST}: member {name!r} is used twice")
        used.add(name)
    for name in sorted(used):
        if name not in listed:
            raise CubeFileError(f"{MANIFEST}: memory.plaintext names {name!r} but the checksum table does not list it")
    unused = sorted(listed - used)
    if unused:
        raise CubeFileError(f"{MANIFEST}: the checksum table lists {unused[0]!r} but no memory section uses it")

    data = {name: _read_member(zf, by_name[name], manifest.files[name]) for name in sorted(listed)}
    versions = _parse_versions(manifest.memory.plaintext.versions, data[manifest.memory.plaintext.versions],
                               manifest)
    vectors = _parse_vectors(manifest.memory.plaintext.vectors, data[manifest.memory.plaintext.vectors], manifest)
    _check_consistency(manifest, versions, vectors)
    activations = [verify_cube_entry(entry, data, versions, manifest.cube.id) for entry in manifest.memory.activation]
    adapters = verify_adapters(manifest.memory.parametric, data)
    return LoadedCube(manifest=manifest, versions=versions, vectors=vectors, file_sha256=file_sha256,
                      activations=activations, adapters=adapters)


def _read_capped(zf: zipfile.ZipFile, zinfo: zipfile.ZipInfo, limit: int) -> tuple[bytes, str]:
    """The member's bytes (never more than ``limit``, else ``CubeFileError``) and their sha256."""
    digest = hashlib.sha256()
    chunks: list[bytes] = []
    total = 0
    try:
        with zf.open(zinfo) as member:
            while True:
                chunk = member.read(min(_CHUNK, limit + 1 - total))
                if not chunk:
                    break
                total += len(chunk)
                if total > limit:
                    raise CubeFileError(
                        f"member {zinfo.filename!r} holds more than the {limit:,} bytes it declares; refusing it"
                    )
                digest.update(chunk)
                chunks.append(chunk)
    except CubeFileError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, RuntimeError,
            NotImplementedError) as exc:
        raise CubeFileError(f"member {zinfo.filename!r} is corrupt or truncated: {exc}") from exc
    return b"".join(chunks), digest.hexdigest()


def _read_manifest(zf: zipfile.ZipFile, zinfo: zipfile.ZipInfo) -> _Manifest:
    if zinfo.file_size > MAX_MANIFEST_BYTES:
        raise CubeFileError(
            f"{MANIFEST} is {zinfo.file_size:,} bytes; the limit is {MAX_MANIFEST_BYTES:,}"
        )
    raw, _ = _read_capped(zf, zinfo, zinfo.file_size)
    if len(raw) != zinfo.file_size:
        raise CubeFileError(f"{MANIFEST} is truncated: {len(raw):,} bytes, the archive declares {zinfo.file_size:,}")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CubeFileError(f"{_NOT_A_CUBE}: {MANIFEST} is not valid JSON ({exc})") from exc
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
        manifest = _Manifest.model_validate(doc)
    except ValidationError as exc:
        raise CubeFileError(f"{MANIFEST} is invalid: {_describe(exc)}") from exc
    return manifest


def _read_member(zf: zipfile.ZipFile, zinfo: zipfile.ZipInfo, expected: _FileEntry) -> bytes:
    name = zinfo.filename
    if zinfo.file_size != expected.size:
        raise CubeFileError(
            f"member {name!r} is {zinfo.file_size:,} bytes but {MANIFEST} says {expected.size:,}: "
            "the file was modified or is corrupt"
        )
    data, sha = _read_capped(zf, zinfo, expected.size)
    if len(data) != expected.size:
        raise CubeFileError(
            f"member {name!r} is truncated: read {len(data):,} bytes, {MANIFEST} says {expected.size:,}"
        )
    if sha != expected.sha256:
        raise CubeFileError(
            f"member {name!r} has sha256 {sha} but {MANIFEST} says {expected.sha256}: "
            "the file was modified or is corrupt"
        )
    return data


def _lines(data: bytes) -> Iterable[tuple[int, bytes]]:
    # Split on b"\n" only: text may hold U+2028 and friends, which str.splitlines would split on.
    if not data:
        return
    if not data.endswith(b"\n"):
        data += b"\n"
    yield from enumerate(data[:-1].split(b"\n"), start=1)


def _parse_versions(member: str, data: bytes, manifest: _Manifest) -> list[MemoryItem]:
    versions: list[MemoryItem] = []
    for number, line in _lines(data):
        if not line.strip():
            raise CubeFileError(f"{member} line {number}: empty line")
        try:
            item = MemoryItem.model_validate_json(line)
        except ValidationError as exc:
            raise CubeFileError(f"{member} line {number} is not a valid memory: {_describe(exc)}") from exc
        if item.cube_id != manifest.cube.id:
            raise CubeFileError(
                f"{member} line {number}: memory {item.id!r} belongs to cube {item.cube_id!r}, "
                f"not to the file's cube {manifest.cube.id!r}"
            )
        if item.state is LifecycleState.DELETED:
            raise CubeFileError(f"{member} line {number}: {item.version_id} is in state 'deleted'; "
                                "deleted memories are never written to a cube file")
        versions.append(item)
    return versions


def _parse_vectors(member: str, data: bytes, manifest: _Manifest) -> np.ndarray:
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


def _check_consistency(manifest: _Manifest, versions: list[MemoryItem], vectors: np.ndarray) -> None:
    cube, emb, counts = manifest.cube, manifest.embedder, manifest.counts
    if not cube.name.strip() or len(cube.name) > 200 or not cube.owner.strip():
        raise CubeFileError(f"{MANIFEST}: the cube's name {cube.name!r} or owner {cube.owner!r} is invalid")
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

    vec_member = manifest.memory.plaintext.vectors
    if vectors.shape[0] != len(current_line):
        raise CubeFileError(
            f"{vec_member} has {vectors.shape[0]} vectors but {member} has {len(current_line)} current "
            "versions: every current version needs exactly one vector"
        )
    actual = {"memories": len(highest), "versions": len(versions), "current": len(current_line),
              "vectors": int(vectors.shape[0])}
    for what, value in actual.items():
        expected = getattr(counts, what)
        if value != expected:
            raise CubeFileError(f"{MANIFEST} counts {expected} {what} but the file holds {value}")
    if vectors.shape[1] != emb.dim:
        raise CubeFileError(
            f"{vec_member}: vectors have {vectors.shape[1]} dimensions but {MANIFEST} says {emb.dim}"
        )
    if vectors.size and not np.isfinite(vectors).all():
        row = int(np.argwhere(~np.isfinite(vectors))[0][0])
        raise CubeFileError(f"{vec_member}: vector {row} holds NaN or infinite values")
