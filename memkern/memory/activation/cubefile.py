"""The ``memory.activation`` section of a cube file: writing a fresh activation, verifying and installing one.

A KV cache is only valid for the exact model that computed it, so a load refuses one built for
another GGUF, and one whose manifest, prefix or KV bytes disagree with each other. A stale
activation is never written.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import Field, ValidationError

from memkern.errors import CubeFileError, LLMError
from memkern.memory.activation.directory import cube_dir, read_manifest, verify_files, write_manifest, write_private
from memkern.memory.activation.engine import GGSQ_MAGIC
from memkern.memory.activation.manifest import ActivationManifest, StrictModel
from memkern.models import LifecycleState, MemoryItem

if TYPE_CHECKING:
    from memkern.store.base import Store

#: Largest KV file accepted (generous: ~12 KiB per token for the local model, n_ctx at most 32k).
MAX_KV_BYTES = 1024**3


class CubeEntry(StrictModel):
    """One ``memory.activation`` entry of a cube file's manifest."""

    manifest: str
    kv: str
    prefix: str
    model: str
    gguf_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    n_tokens: int = Field(gt=0)


@dataclass
class LoadedActivation:
    manifest: ActivationManifest
    kv: bytes
    prefix: bytes


def export_for_dump(store: Store, cube_id: str, versions: Sequence[MemoryItem]) -> tuple[list[dict[str, Any]],
                                                                                       dict[str, bytes]]:
    """The cube file's ``memory.activation`` entries and members: the fresh activation, if any
    (a stale one is not written). The bytes are checked against the manifest first."""
    directory = cube_dir(store, cube_id)
    try:
        manifest = read_manifest(directory)
    except LLMError:
        return [], {}
    if manifest is None or manifest.cube_id != cube_id:
        return [], {}
    current = {v.version_id for v in versions if v.expired_at is None and v.state is LifecycleState.ACTIVE}
    if any(v not in current for v in manifest.versions):
        return [], {}
    try:
        kv_path, prefix = verify_files(directory, manifest)
        kv = kv_path.read_bytes()
    except (LLMError, OSError, UnicodeDecodeError):
        return [], {}
    if hashlib.sha256(kv).hexdigest() != manifest.kv_file.sha256:
        return [], {}
    members = {"activation/0/activation.json": manifest.model_dump_json(indent=2).encode("utf-8"),
               "activation/0/kv.bin": kv, "activation/0/prefix.txt": prefix.encode("utf-8")}
    entry = CubeEntry(manifest="activation/0/activation.json", kv="activation/0/kv.bin",
                      prefix="activation/0/prefix.txt", model=manifest.model.name,
                      gguf_sha256=manifest.model.gguf_sha256, n_tokens=manifest.n_tokens)
    return [entry.model_dump()], members


def entry_members(raw: dict[str, Any]) -> list[str]:
    """Member names an entry uses (``CubeFileError`` for a malformed entry)."""
    entry = _entry(raw)
    return [entry.manifest, entry.kv, entry.prefix]


def _entry(raw: dict[str, Any]) -> CubeEntry:
    try:
        return CubeEntry.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise CubeFileError(f"manifest.json: the file holds activation memories, which this memkern cannot load "
                            f"({first['msg']} at {'.'.join(str(p) for p in first['loc']) or 'entry'}); it was "
                            "written by another memkern version, or the entry is corrupt") from exc


def expected_model_sha256() -> str:
    from memkern.llm import local

    return local.MODEL_SHA256


def verify_cube_entry(raw: dict[str, Any], data: dict[str, bytes], versions: Sequence[MemoryItem],
                      cube_id: str) -> LoadedActivation:
    """Check one activation entry of a cube file (members already checked against the checksum table).

    Refuses (``CubeFileError``) a KV cache built for another model than the local one (GGUF sha256), one
    whose manifest, prefix or KV bytes disagree with each other, or one built from versions the file
    does not hold as current."""
    entry = _entry(raw)
    try:
        manifest = ActivationManifest.model_validate_json(data[entry.manifest])
    except ValidationError as exc:
        raise CubeFileError(f"{entry.manifest} is not a valid activation manifest: {exc.errors()[0]['msg']}") from exc
    expected = expected_model_sha256()
    for what, sha in (("entry", entry.gguf_sha256), ("manifest", manifest.model.gguf_sha256),
                      ("tokenizer", manifest.tokenizer.gguf_sha256)):
        if sha != expected:
            raise CubeFileError(
                f"{entry.manifest}: the activation (KV cache) was built for another model ({what} says "
                f"{manifest.model.name!r}, GGUF sha256 {sha}); this memkern's local model has GGUF sha256 "
                f"{expected}: a KV cache is only valid for the exact model that computed it; refusing the file "
                "(dump the cube again without an activation, or rebuild it with this model)")
    kv, prefix = data[entry.kv], data[entry.prefix]
    if len(kv) > MAX_KV_BYTES:
        raise CubeFileError(f"{entry.kv} is {len(kv):,} bytes; the limit for a KV cache is {MAX_KV_BYTES:,}")
    if (len(kv), hashlib.sha256(kv).hexdigest()) != (manifest.kv_file.size, manifest.kv_file.sha256):
        raise CubeFileError(f"{entry.kv} does not match the size and sha256 in {entry.manifest}: the KV cache was "
                            "tampered with or is corrupt; refusing the file")
    if hashlib.sha256(prefix).hexdigest() != manifest.prefix_sha256 or manifest.prefix_file.sha256 != \
            manifest.prefix_sha256:
        raise CubeFileError(f"{entry.prefix} does not match the prefix sha256 in {entry.manifest}; refusing the file")
    if len(kv) < 12 or struct.unpack("<I", kv[:4])[0] != GGSQ_MAGIC or \
            struct.unpack("<I", kv[4:8])[0] != manifest.kv.state_version:
        raise CubeFileError(f"{entry.kv} is not a llama.cpp slot file of the version its manifest names")
    if entry.n_tokens != manifest.n_tokens:
        raise CubeFileError(f"{entry.manifest}: n_tokens {manifest.n_tokens} but the cube manifest says {entry.n_tokens}")
    try:
        prefix.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CubeFileError(f"{entry.prefix} is not UTF-8 text") from exc
    if manifest.cube_id != cube_id:
        raise CubeFileError(f"{entry.manifest} belongs to cube {manifest.cube_id!r}, not {cube_id!r}")
    current = {v.version_id for v in versions if v.expired_at is None and v.state is LifecycleState.ACTIVE}
    missing = [v for v in manifest.versions if v not in current]
    if missing:
        raise CubeFileError(f"{entry.manifest}: the activation was built from {missing[0]}, which is not a "
                            "current active version in this file (a stale activation is never written)")
    return LoadedActivation(manifest, kv, prefix)


def install_loaded(store: Store, cube_id: str, loaded: LoadedActivation) -> None:
    """Write a verified activation from a cube file beside the store, under the new cube id."""
    directory = cube_dir(store, cube_id)
    manifest = loaded.manifest.model_copy(update={
        "cube_id": cube_id,
        "kv_file": loaded.manifest.kv_file.model_copy(update={"name": f"kv-{loaded.manifest.kv_file.sha256[:16]}.bin"}),
        "prefix_file": loaded.manifest.prefix_file.model_copy(
            update={"name": f"prefix-{loaded.manifest.prefix_sha256[:16]}.txt"}),
    })
    directory.mkdir(parents=True, exist_ok=True)
    write_private(directory / manifest.kv_file.name, loaded.kv)
    write_private(directory / manifest.prefix_file.name, loaded.prefix)
    write_manifest(directory, manifest)


class CubeFileSection:
    """The ``memory.activation`` section of a cube file, for ``memkern.cubefile.read_cube_file``."""

    def members(self, entries: list[dict[str, Any]]) -> list[str]:
        return [name for entry in entries for name in entry_members(entry)]

    def verify(self, entries: list[dict[str, Any]], data: dict[str, bytes], versions: list[MemoryItem],
               cube_id: str) -> list[LoadedActivation]:
        return [verify_cube_entry(entry, data, versions, cube_id) for entry in entries]
