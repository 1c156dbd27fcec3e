"""Building, rebuilding and dropping a cube's activation.

``build`` renders the memory block, runs the model over it and saves the KV state beside the
store; the manifest is written last, so a build that fails half-way leaves the previous
activation (or none) in place.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from memkern.errors import InvalidInputError, LLMError
from memkern.files import sha256_file
from memkern.memory.activation.block import DEFAULT_BLOCK_TOKENS, fit_block, select_memories
from memkern.memory.activation.directory import (
    cube_dir,
    drop_files,
    read_manifest,
    verify_files,
    write_manifest,
    write_private,
)
from memkern.memory.activation.engine import KVEngine, engine_for
from memkern.memory.activation.freshness import status
from memkern.memory.activation.manifest import ActivationManifest, FileRef, TokenizerRef
from memkern.models import Filters, MemoryItem, utcnow
from memkern.ops.context import OpContext


def build(ctx: OpContext, engine: KVEngine | None = None, *, max_tokens: int = DEFAULT_BLOCK_TOKENS,
          prefer: Iterable[str] = (), items: Sequence[MemoryItem] | None = None) -> ActivationManifest:
    """Render the cube's memory block, run the model over it, save and record its KV state.

    ``items`` overrides the candidates (default: every active memory of the cube). Replaces any
    previous activation of the cube atomically (the manifest is written last)."""
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 64:
        raise InvalidInputError(f"max_tokens must be an integer of at least 64, not {max_tokens!r}")
    engine = engine or engine_for(ctx)
    if max_tokens > engine.kv.n_ctx - 256:
        raise InvalidInputError(f"max_tokens={max_tokens} leaves no room for a question in the model's "
                                f"context of {engine.kv.n_ctx} tokens")
    cube, store = ctx.cube, ctx.kernel.store
    started = time.perf_counter()
    pool = list(items) if items is not None else store.list_memories(cube.id, Filters())
    chosen, prefix, tokens = fit_block(engine, cube.owner, select_memories(pool, prefer=prefer), max_tokens)
    if not chosen:
        raise InvalidInputError(f"cube {cube.name!r} has no active memory to build an activation from")
    directory = cube_dir(store, cube.id)
    directory.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(directory, 0o700)
    prefix_bytes = prefix.encode("utf-8")
    prefix_sha = hashlib.sha256(prefix_bytes).hexdigest()
    versions = [i.version_id for i in chosen]
    reusable = _same_block(directory, engine, prefix_sha)
    if reusable is not None:
        # Only the versions moved (a lifecycle marker, metadata): the model would read the exact
        # same text, so its KV state is still right; re-point the manifest instead of re-reading.
        manifest = reusable.model_copy(update={"versions": versions, "built_at": utcnow(),
                                               "build_seconds": round(time.perf_counter() - started, 3)})
        write_manifest(directory, manifest)
        return manifest
    tmp_kv = directory / f".kv-{os.getpid()}-{time.monotonic_ns()}.tmp"
    try:
        n_tokens = engine.fill_and_save(prefix, tmp_kv)
        kv_sha = sha256_file(tmp_kv)
        kv_name = f"kv-{kv_sha[:16]}.bin"
        os.replace(tmp_kv, directory / kv_name)
    finally:
        tmp_kv.unlink(missing_ok=True)
    if n_tokens != len(tokens):
        raise LLMError(f"the model read {n_tokens} tokens of the prefix, but it tokenizes to {len(tokens)}")
    os.chmod(directory / kv_name, 0o600)
    prefix_name = f"prefix-{prefix_sha[:16]}.txt"
    write_private(directory / prefix_name, prefix_bytes)
    manifest = ActivationManifest(
        cube_id=cube.id, built_at=utcnow(), model=engine.model,
        tokenizer=TokenizerRef(gguf_sha256=engine.model.gguf_sha256, prefix_tokens_sha256=_tokens_sha(tokens)),
        kv=engine.kv, n_tokens=n_tokens, prefix_sha256=prefix_sha, versions=versions,
        kv_file=FileRef(name=kv_name, size=(directory / kv_name).stat().st_size, sha256=kv_sha),
        prefix_file=FileRef(name=prefix_name, size=len(prefix_bytes), sha256=prefix_sha),
        build_seconds=round(time.perf_counter() - started, 3))
    write_manifest(directory, manifest)
    return manifest


def _tokens_sha(tokens: Sequence[int]) -> str:
    return hashlib.sha256(struct.pack(f"<{len(tokens)}i", *tokens)).hexdigest()


def _same_block(directory: Path, engine: KVEngine, prefix_sha: str) -> ActivationManifest | None:
    """The existing activation, if this model computed it from exactly this prefix and its files verify."""
    try:
        manifest = read_manifest(directory)
        if manifest is None or manifest.prefix_sha256 != prefix_sha or manifest.model != engine.model \
                or manifest.kv != engine.kv:
            return None
        verify_files(directory, manifest)
    except LLMError:
        return None
    return manifest


def rebuild(ctx: OpContext, *, force: bool = False) -> ActivationManifest:
    """Rebuild the activation if it is stale or missing (or ``force``), with the same token budget;
    a fresh one is returned as it is."""
    found = status(ctx)
    if found.fresh and not force and found.manifest is not None:
        return found.manifest
    budget = found.manifest.n_tokens if found.manifest is not None else DEFAULT_BLOCK_TOKENS
    return build(ctx, engine_for(ctx), max_tokens=max(budget, 256))


def drop(ctx: OpContext) -> bool:
    """Remove the cube's activation; False if it had none."""
    return drop_files(ctx.kernel.store, ctx.cube.id)
