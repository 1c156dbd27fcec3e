"""The ``memory.parametric`` section of a cube file: writing the adapter, verifying and installing one.

A load verifies the adapter (base model, tensors against the manifest, names and shapes) before
it is installed beside the new cube.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memkern.errors import CubeFileError
from memkern.memory.parametric.manifest import ADAPTER_FILE, MANIFEST_FILE, AdapterInfo
from memkern.memory.parametric.storage import METADATA_KEY, cube_reference, parametric_home, read_adapter, reference_of
from memkern.memory.parametric.verify import check_adapter
from memkern.models import MemoryItem

if TYPE_CHECKING:
    from memkern.models import CubeInfo


def dump_members(cube_info: CubeInfo) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    """The ``memory.parametric`` manifest entries and member files of a cube file (none without an adapter)."""
    if reference_of(cube_info) is None:
        return [], {}
    try:
        info, tensor_bytes = read_adapter(cube_info)
    except CubeFileError as exc:
        raise CubeFileError(f"cannot dump cube {cube_info.name!r}: its parametric memory is broken ({exc}); "
                            "distil it again or remove it (memkern parametric forget)") from exc
    prefix = f"parametric/{info.adapter_id}/"
    members = {prefix + MANIFEST_FILE: Path(info.path, MANIFEST_FILE).read_bytes(), prefix + ADAPTER_FILE: tensor_bytes}
    entry = {"kind": "lora", "adapter_id": info.adapter_id, "manifest": prefix + MANIFEST_FILE,
             "tensors": prefix + ADAPTER_FILE, "base_model_sha256": info.base_model["sha256"], "rank": info.rank,
             "target_modules": info.target_modules, "sources": len(info.sources)}
    return [entry], members


def entry_members(entries: Sequence[dict[str, Any]]) -> set[str]:
    """The member names the ``memory.parametric`` entries use (``CubeFileError`` for a malformed entry)."""
    names: set[str] = set()
    if len(entries) > 1:
        raise CubeFileError("manifest.json: a cube holds at most one parametric adapter")
    for entry in entries:
        if entry.get("kind") != "lora" or not isinstance(entry.get("manifest"), str) \
                or not isinstance(entry.get("tensors"), str):
            raise CubeFileError(f"manifest.json: parametric entry {entry!r} is not a LoRA entry this memkern reads")
        names |= {entry["manifest"], entry["tensors"]}
    return names


def verify_entries(entries: Sequence[dict[str, Any]], data: dict[str, bytes]) -> list[tuple[AdapterInfo, bytes, bytes]]:
    """Verify every parametric entry of a cube file; ``(info, manifest bytes, tensor bytes)`` each."""
    verified = []
    for entry in entries:
        info = check_adapter(data[entry["manifest"]], data[entry["tensors"]], entry["tensors"])
        if entry.get("base_model_sha256") != info.base_model["sha256"] or entry.get("adapter_id") != info.adapter_id:
            raise CubeFileError(f"manifest.json: parametric entry for {entry.get('adapter_id')!r} does not match "
                                f"its adapter manifest")
        if entry.get("rank") != info.rank:
            raise CubeFileError("manifest.json: parametric entry rank does not match its adapter manifest")
        verified.append((info, data[entry["manifest"]], data[entry["tensors"]]))
    return verified


def install_adapters(verified: Sequence[tuple[AdapterInfo, bytes, bytes]], cube_id: str,
                     metadata: dict[str, Any]) -> list[Path]:
    """Write verified adapters beside a newly loaded cube and point ``metadata`` at them (in place).

    The manifest keeps the original cube id and paths of the cube it was distilled in: it is written
    byte for byte, so that its checksum still holds. Returns the directories written (for clean-up)."""
    metadata.pop(METADATA_KEY, None)
    written = []
    for info, manifest_bytes, tensor_bytes in verified:
        directory = parametric_home() / cube_id / info.adapter_id
        directory.mkdir(parents=True, exist_ok=True)
        for name, payload in ((MANIFEST_FILE, manifest_bytes), (ADAPTER_FILE, tensor_bytes)):
            (directory / name).write_bytes(payload)
            os.chmod(directory / name, 0o600)
        written.append(directory)
        info.path = str(directory)
        metadata[METADATA_KEY] = cube_reference(info, hashlib.sha256(manifest_bytes).hexdigest())
    return written


class CubeFileSection:
    """The ``memory.parametric`` section of a cube file, for ``memkern.cubefile.read_cube_file``."""

    def members(self, entries: list[dict[str, Any]]) -> list[str]:
        return sorted(entry_members(entries))

    def verify(self, entries: list[dict[str, Any]], data: dict[str, bytes], versions: list[MemoryItem],
               cube_id: str) -> list[tuple[AdapterInfo, bytes, bytes]]:
        return verify_entries(entries, data)
