"""Portable cubes: ``dump`` a cube to one verifiable file, ``load_cube`` one into the store.

The file format is ``memkern.cubefile``; the activation and parametric sections are
written and verified by their own modules. A load verifies the whole file before the
store is touched, then inserts the cube in one transaction: a bad file changes nothing.

A cube file is untrusted input, however it arrives. Every memory in it has passed the
limits ``add`` applies (``memkern.validation.check_memory``, in the reader) and passes the
write policy ``add`` applies (``memkern.ops.writes.apply_write_policy``: PII tagged or
redacted, poison quarantined) under the *loading* cube's policy. The file's own policy
keys (guard, PII redaction, retention) are dropped, and recorded under
``metadata["loaded_from"]["policy"]``, unless the caller asks to keep them
(``keep_policy``, which needs the admin role; the dispatcher audits the call).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from uuid import uuid4

import numpy as np

from memkern.cubefile import LoadedCube, Section, read_cube_file, write_cube_file
from memkern.errors import CubeFileError, EmbedderError, InvalidInputError, StoreError
from memkern.files import sha256_file
from memkern.memory import activation, parametric
from memkern.models import CubeFile, CubeInfo, CubePolicy, LifecycleState, MemoryItem, Permission, utcnow
from memkern.ops.context import OpContext
from memkern.ops.writes import apply_write_policy

SECTIONS: dict[str, Section] = {"activation": activation.CubeFileSection(),
                                "parametric": parametric.CubeFileSection()}


def dump(ctx: OpContext, path: str) -> CubeFile:
    """Write the cube to ``path`` as one cube file. Quarantined memories are written only for a
    cube admin (nobody else may see them)."""
    target = Path(path)
    if target.is_dir():
        raise InvalidInputError(f"cannot dump the cube to {target}: it is a directory")
    store = ctx.kernel.store
    info = store.get_cube(ctx.cube.id)  # the current record; NotFoundError if the cube is gone
    versions, vectors = store.export_versions(info.id)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, info.dim)
    current = [v.id for v in versions if v.expired_at is None]
    if len(vectors) != len(current):
        raise StoreError(f"cube {info.name!r} has {len(current)} current memories but {len(vectors)} vectors")
    if not ctx.may(Permission.ADMIN):
        hidden = {v.id for v in versions if v.expired_at is None and v.state is LifecycleState.QUARANTINED}
        if hidden:
            vectors = vectors[[i for i, memory_id in enumerate(current) if memory_id not in hidden]]
            versions = [v for v in versions if v.id not in hidden]
    sections = {"activation": activation.export_for_dump(store, info.id, versions),
                "parametric": parametric.dump_members(info)}
    write_cube_file(target, info, versions, vectors, sections)
    return CubeFile(cube=info, path=str(target), bytes=target.stat().st_size, sha256=sha256_file(target))


def load_cube(ctx: OpContext, path: str, name: str | None = None, owner: str | None = None,
              keep_policy: bool = False) -> CubeInfo:
    """Verify the cube file at ``path`` whole, then insert it as a new cube and return its record.

    The cube gets a new id; ``name`` and ``owner`` default to the file's (the owner to the
    caller when a user is authenticated). With a new owner every version is rewritten to
    that owner. The cube gets the default policy, or the file's with ``keep_policy``, and
    every version passes that policy's write rules (see the module docstring).
    ``metadata["loaded_from"]`` records the original cube id, the sha256 of the file and
    the file's policy. Vectors are derived data: when the file was written with another
    embedder than this store's, or a text was redacted, the texts are re-embedded.
    """
    loaded = read_cube_file(Path(path), SECTIONS)
    owner = owner if owner is not None else (ctx.user.id if ctx.user is not None else None)
    info, versions, vectors = _as_new_cube(ctx, loaded, name, owner, keep_policy)
    store = ctx.kernel.store
    written = parametric.install_adapters(loaded.sections["parametric"], info.id, info.metadata)
    try:
        imported = store.import_cube(info, versions, vectors, actor=ctx.actor(None))
    except BaseException:
        for directory in written:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    try:
        for found in loaded.sections["activation"]:
            activation.install_loaded(store, imported.id, found)
    except OSError as exc:  # the memories are in; the cache is only an accelerator
        raise CubeFileError(f"the cube was loaded as {imported.name!r} but its activation memory could not be "
                            f"written beside the store: {exc}; rebuild it with memkern activation build") from exc
    return imported


def _as_new_cube(ctx: OpContext, loaded: LoadedCube, name: str | None, owner: str | None,
                 keep_policy: bool) -> tuple[CubeInfo, list[MemoryItem], np.ndarray]:
    file_info = loaded.manifest.cube
    new_id = uuid4().hex
    metadata, file_policy = _split_policy(file_info.metadata)
    if keep_policy:
        metadata.update(file_policy)
    metadata["loaded_from"] = {"cube_id": file_info.id, "name": file_info.name, "file_sha256": loaded.file_sha256,
                               "loaded_at": utcnow().isoformat(), "embedder": file_info.embedder,
                               "dim": file_info.dim, "policy": file_policy, "policy_kept": keep_policy}
    policy = CubePolicy.of(metadata)
    rewrite: dict[str, object] = {"cube_id": new_id}
    if owner is not None:
        rewrite["owner"] = owner
    versions = apply_write_policy(policy, [v.model_copy(update=rewrite) for v in loaded.versions])
    current = [v for v in versions if v.expired_at is None]
    embedder = ctx.kernel.embedder
    if embedder.name != file_info.embedder or int(embedder.dim) != file_info.dim:
        vectors = _embed(ctx, [v.text for v in current])
    else:
        vectors = np.array(loaded.vectors, dtype=np.float32)
        was = {v.version_id: v.text for v in loaded.versions if v.expired_at is None}
        changed = [row for row, v in enumerate(current) if v.text != was[v.version_id]]
        if changed:  # redacted: the file's vector was computed from the text before redaction
            vectors[changed] = _embed(ctx, [current[row].text for row in changed])
    info = file_info.model_copy(update={
        "id": new_id, "name": name if name is not None else file_info.name,
        "owner": owner if owner is not None else file_info.owner, "embedder": embedder.name,
        "dim": int(embedder.dim), "metadata": metadata,
    })
    return info, versions, np.ascontiguousarray(vectors, dtype=np.float32)


def _split_policy(metadata: dict[str, object]) -> tuple[dict[str, object], dict[str, object]]:
    """The cube metadata without its policy keys, and the policy keys."""
    policy = {key: value for key, value in metadata.items() if key in CubePolicy.model_fields}
    return {key: value for key, value in metadata.items() if key not in policy}, policy


def _embed(ctx: OpContext, texts: list[str]) -> np.ndarray:
    vectors = ctx.kernel.embed(texts)
    if not np.isfinite(vectors).all():
        raise EmbedderError(f"embedder {ctx.kernel.embedder.name!r} returned NaN or infinite values")
    return vectors
