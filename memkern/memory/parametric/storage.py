"""Where adapters live and how a cube points at its adapter.

An adapter is a directory ``$MEMKERN_HOME/parametric/<cube id>/<adapter id>/`` holding its
manifest and tensors; the cube's metadata key ``"parametric"`` references it with the manifest's
sha256, so that an adapter modified on disk is refused rather than applied.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memkern.errors import CubeFileError, NotFoundError
from memkern.files import atomic_file, memkern_home
from memkern.memory.parametric.manifest import ADAPTER_FILE, ADAPTER_ID_RE, MANIFEST_FILE, AdapterInfo, manifest_bytes
from memkern.memory.parametric.verify import check_adapter
from memkern.models import parse_version_id
from memkern.ops.context import OpContext

if TYPE_CHECKING:
    from memkern.models import CubeInfo
    from memkern.store.base import Store

#: The cube metadata key that references the cube's adapter.
METADATA_KEY = "parametric"


def parametric_home() -> Path:
    """``$MEMKERN_HOME/parametric``, or ``~/.memkern/parametric``."""
    return memkern_home() / "parametric"


def write_adapter(directory: Path, tensors: bytes, info: AdapterInfo) -> None:
    """Write an adapter's tensors and manifest into ``directory``, each atomically."""
    for name, data in ((ADAPTER_FILE, tensors), (MANIFEST_FILE, manifest_bytes(info))):
        with atomic_file(directory / name) as handle:
            handle.write(data)


def cube_reference(info: AdapterInfo, manifest_sha256: str) -> dict[str, Any]:
    """The value of the cube's ``METADATA_KEY``: where the adapter is and the sha256 of its manifest."""
    return {"adapter_id": info.adapter_id, "path": info.path, "manifest_sha256": manifest_sha256,
            "adapter_sha256": info.adapter_sha256, "base_model_sha256": info.base_model["sha256"],
            "rank": info.rank, "created_at": info.created_at, "sources": len(info.sources)}


def attach_adapter(ctx: OpContext, info: AdapterInfo) -> None:
    """Point the cube at ``info`` (already written) and remove the adapter it replaces."""
    store, cube_id = ctx.kernel.store, ctx.cube.id
    current = store.get_cube(cube_id)
    metadata = dict(current.metadata)
    old = metadata.get(METADATA_KEY)
    metadata[METADATA_KEY] = cube_reference(info, hashlib.sha256(manifest_bytes(info)).hexdigest())
    store.set_cube_metadata(cube_id, metadata)
    if isinstance(old, dict) and isinstance(old.get("path"), str) and old.get("adapter_id") != info.adapter_id:
        old_dir = Path(old["path"])
        if old_dir.parent == parametric_home() / cube_id and ADAPTER_ID_RE.match(old_dir.name):
            shutil.rmtree(old_dir, ignore_errors=True)


def reference_of(cube_info: CubeInfo) -> dict[str, Any] | None:
    """The cube's reference to its adapter; ``None`` when it has none."""
    ref = cube_info.metadata.get(METADATA_KEY)
    return ref if isinstance(ref, dict) and isinstance(ref.get("path"), str) else None


def read_adapter(cube_info: CubeInfo) -> tuple[AdapterInfo, bytes]:
    """The cube's adapter and its tensor bytes, verified against the cube's reference and its manifest.

    ``NotFoundError`` when the cube has none; ``CubeFileError`` when the files are missing or altered."""
    ref = reference_of(cube_info)
    if ref is None:
        raise NotFoundError(f"cube {cube_info.name!r} has no parametric memory; run distil first")
    directory = Path(ref["path"])
    try:
        manifest_bytes = (directory / MANIFEST_FILE).read_bytes()
        tensor_bytes = (directory / ADAPTER_FILE).read_bytes()
    except OSError as exc:
        raise CubeFileError(f"the adapter of cube {cube_info.name!r} cannot be read from {directory}: {exc}") from exc
    if hashlib.sha256(manifest_bytes).hexdigest() != ref.get("manifest_sha256"):
        raise CubeFileError(f"{directory / MANIFEST_FILE} does not match the sha256 the cube records: "
                            "the adapter was modified")
    info = check_adapter(manifest_bytes, tensor_bytes, str(directory))
    info.path = str(directory)
    return info, tensor_bytes


def forget_adapter(ctx: OpContext) -> bool:
    """Remove the cube's adapter (files and reference). ``True`` if there was one."""
    store = ctx.kernel.store
    found = reference_of(store.get_cube(ctx.cube.id)) is not None
    forget_files(store, ctx.cube.id)
    return found


def forget_files(store: Store, cube_id: str, *, if_built_from: Iterable[str] | None = None) -> bool:
    """Remove a cube's adapters (files, and the reference when the cube still exists) -- only if
    the current one was distilled from one of the memory ids ``if_built_from`` when given.

    An adapter memorises the facts it was trained on and its manifest lists the training
    questions, so deleting one of those memories deletes the adapter too. False if nothing
    was removed."""
    info = _cube_or_none(store, cube_id)
    ref = reference_of(info) if info is not None else None
    if if_built_from is not None:
        if ref is None:
            return False
        wanted = set(if_built_from)
        try:
            sources = json.loads((Path(ref["path"]) / MANIFEST_FILE).read_bytes()).get("sources", [])
            ids = {parse_version_id(str(v))[0] for v in sources}
        except (OSError, ValueError, AttributeError):
            ids = None  # unreadable: it may hold anything, so it goes
        if ids is not None and not ids & wanted:
            return False
    removed = False
    if info is not None and ref is not None:
        store.set_cube_metadata(cube_id, {k: v for k, v in info.metadata.items() if k != METADATA_KEY})
        removed = True
        elsewhere = Path(ref["path"])  # distil(out_dir=...) may have put it outside the home
        if ADAPTER_ID_RE.match(elsewhere.name) and (elsewhere / MANIFEST_FILE).exists():
            shutil.rmtree(elsewhere, ignore_errors=True)
    directory = parametric_home() / cube_id
    if directory.exists():
        shutil.rmtree(directory, ignore_errors=True)
        removed = True
    return removed


def _cube_or_none(store: Store, cube_id: str) -> CubeInfo | None:
    try:
        return store.get_cube(cube_id)
    except NotFoundError:
        return None
