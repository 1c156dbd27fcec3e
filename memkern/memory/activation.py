"""Activation memory: a cube's memory block, pre-read by the local model and kept as its KV cache.

A cube's *memory block* is its owner's profile (facts, preferences, summaries) and its hottest
memories (by access count, importance and recency), rendered as dated lines inside the system
message of the local model's chat template. ``build`` runs the model over exactly that text (the
*prefix*), saves the KV state of the slot with llama.cpp's slot-save (a file of a few MB), and keeps
it beside the store with a JSON manifest::

    $MEMKERN_HOME/activation/<cube_id>/      (the directory of the SQLite store, else $MEMKERN_HOME)
        activation.json        the manifest (below); written last, atomically: it *is* the record
        kv-<sha16>.bin         llama.cpp's slot file (``ggsq`` sequence state), byte for byte
        prefix-<sha16>.txt     the exact prefix text the KV state was computed from (UTF-8)

The manifest names the model (name, GGUF sha256 and size), the tokenizer (the one inside that GGUF,
plus the sha256 of the prefix's token ids), the KV dtype, the llama.cpp state format (magic and
version), ``n_tokens``, the sha256 of the prefix text, size and sha256 of both files, and the memory
versions (``id@vN``) the block was built from.

Freshness: an activation is *fresh* while every listed version is still the current, active version
of its memory; any update, invalidation, archive or delete makes it *stale*. ``status`` checks that
with one store read; chat never uses a stale activation (``answer_with_activation``), and
``activate``/``rebuild`` (or the scheduler's ``rebuild`` job) replaces it.

Safety: nothing here unpickles anything. The KV file's size, sha256 and header (magic, version,
token count) are verified before llama.cpp is asked to restore it; in a cube file it is covered by the
checksum table, and a load refuses one built for another GGUF (``verify_cube_entry``). See
docs/activation.md for why the slot file is kept as llama.cpp writes it rather than as safetensors.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import struct
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from memkern.errors import CubeFileError, InvalidInputError, LLMError
from memkern.files import atomic_file, memkern_home, sha256_file
from memkern.models import (
    ActivationReport,
    ChatAnswer,
    ChatUsage,
    Filters,
    Hit,
    LifecycleState,
    MemoryItem,
    MemoryKind,
    parse_version_id,
    utcnow,
)
from memkern.ops.context import OpContext
from memkern.prompts import ANSWER_PROMPT, ANSWER_PROMPT_SHA256, NOT_AVAILABLE, newest_first, render_memory

if TYPE_CHECKING:
    from memkern.store.base import Store

log = logging.getLogger("memkern.activation")

FORMAT_NAME = "memkern-activation"
FORMAT_VERSION = 1
MANIFEST = "activation.json"
#: llama.cpp's sequence-state file: u32 magic ``ggsq``, u32 version, u32 token count, i32 tokens[count], state.
GGSQ_MAGIC = 0x67677371
#: Chat template the prefix is written in (the local model's: Qwen2.5 / ChatML).
TEMPLATE = "chatml"
DEFAULT_BLOCK_TOKENS = 1024
#: Most memories considered for a block (the hottest, after the profile).
MAX_CANDIDATES = 2_000
#: Largest KV file accepted (generous: ~12 KiB per token for the local model, n_ctx at most 32k).
MAX_KV_BYTES = 1024**3
_HOT_HALF_LIFE_DAYS = 30.0
_PROFILE_KINDS = (MemoryKind.FACT, MemoryKind.PREFERENCE, MemoryKind.SUMMARY)


# -- the manifest ------------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileRef(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,200}$")
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ModelRef(_Strict):
    name: str
    gguf_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    gguf_size: int = Field(ge=0)


class TokenizerRef(_Strict):
    #: The tokenizer is the one embedded in the GGUF (its sha256 pins it).
    source: str = "gguf"
    gguf_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    #: sha256 of the prefix's token ids (little-endian int32): the same text must tokenize the same.
    prefix_tokens_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class KVRef(_Strict):
    engine: str = "llama.cpp"
    format: str = "llama.cpp-slot-state"
    state_magic: int
    state_version: int
    dtype_k: str = "f16"
    dtype_v: str = "f16"
    n_ctx: int = Field(ge=0)
    slot: int = 0


class ActivationManifest(_Strict):
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION
    cube_id: str
    built_at: datetime
    model: ModelRef
    tokenizer: TokenizerRef
    kv: KVRef
    template: str = TEMPLATE
    n_tokens: int = Field(gt=0)
    prefix_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    #: The memory versions (``id@vN``) the block was rendered from, in block order.
    versions: list[str]
    kv_file: FileRef
    prefix_file: FileRef
    build_seconds: float = 0.0


@dataclass
class ActivationStatus:
    """What ``status`` found: ``state`` is ``fresh``, ``stale`` or ``missing``."""

    state: str
    manifest: ActivationManifest | None = None
    #: Why it is stale: ``"<id>@vN: updated to v3"``, ``"<id>@vN: deleted"``...
    reasons: list[str] = field(default_factory=list)
    directory: Path | None = None

    @property
    def fresh(self) -> bool:
        return self.state == "fresh"

    def report(self) -> ActivationReport:
        m = self.manifest
        if m is None:
            return ActivationReport(state=self.state, reasons=self.reasons)
        return ActivationReport(state=self.state, reasons=self.reasons, n_tokens=m.n_tokens, memories=len(m.versions),
                                model=m.model.name, built_at=m.built_at, kv_bytes=m.kv_file.size)


# -- the engine: what runs the model ---------------------------------------------------------------
@dataclass
class Generation:
    text: str
    token_ids: list[int]
    prompt_tokens: int
    #: Prompt tokens taken from the slot's KV cache rather than read again.
    cached_tokens: int
    #: Time to first token: restore (if any) + prompt processing + the first generated token.
    ttft_s: float
    wall_s: float
    restore_s: float = 0.0


class KVEngine(Protocol):
    """What activation memory needs from a model; ``LocalKVEngine`` runs the real local model."""

    model: ModelRef
    kv: KVRef

    def tokenize(self, text: str) -> list[int]: ...

    def fill_and_save(self, prefix: str, dest: Path) -> int:
        """Read ``prefix`` into a fresh slot and save its KV state to ``dest``; returns its token count."""

    def generate(self, prompt: str, *, kv_file: Path | None, max_tokens: int) -> Generation:
        """Greedy completion of ``prompt``: after restoring ``kv_file`` into the slot, or from an empty slot."""


def read_state_header(path: Path) -> tuple[int, int, int]:
    """``(magic, version, token_count)`` of a llama.cpp slot file; ``ValueError`` if it is not one."""
    with open(path, "rb") as fh:
        head = fh.read(12)
    if len(head) < 12:
        raise ValueError("shorter than a llama.cpp state header")
    magic, version, count = struct.unpack("<III", head)
    if magic != GGSQ_MAGIC:
        raise ValueError(f"magic 0x{magic:08x} is not llama.cpp's sequence state 0x{GGSQ_MAGIC:08x}")
    if path.stat().st_size < 12 + 4 * count:
        raise ValueError(f"its header declares {count} tokens but the file is shorter than that")
    return magic, version, count


class LocalKVEngine:
    """The in-process local model (``memkern.llm.local.LocalLLM``), slot 0."""

    def __init__(self, llm: Any) -> None:
        from memkern.llm import local

        if not isinstance(llm, local.LocalLLM):
            raise InvalidInputError(f"activation memory needs the local model (MEMKERN_LLM=local), not "
                                    f"{type(llm).__name__}")
        self.llm = llm.load()
        params_k = params_v = "f16"  # llama.cpp's default KV type; LocalLLM does not change it
        self.model = ModelRef(name=local.MODEL_NAME, gguf_sha256=local.MODEL_SHA256, gguf_size=local.MODEL_SIZE)
        self.kv = KVRef(state_magic=GGSQ_MAGIC, state_version=0, dtype_k=params_k, dtype_v=params_v,
                        n_ctx=int(llm.n_ctx))

    def tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text)

    def _slot(self, action: str, filename: str | None = None) -> dict[str, Any]:
        body = {"filename": filename} if filename is not None else {}
        return self.llm.http_post(f"/slots/0?action={action}", body)

    def fill_and_save(self, prefix: str, dest: Path) -> int:
        slot_dir = self.llm.slot_dir
        name = f"memkern-build-{os.getpid()}-{time.monotonic_ns()}.bin"
        with self.llm.runtime_lock:
            self._slot("erase")
            self.llm.complete_prompt(prefix, max_tokens=0)
            saved = self._slot("save", name)
        staged = slot_dir / name
        try:
            _move(staged, dest)
        finally:
            staged.unlink(missing_ok=True)
        _, version, _ = read_state_header(dest)
        self.kv = self.kv.model_copy(update={"state_version": version})
        return int(saved.get("n_saved", 0))

    def generate(self, prompt: str, *, kv_file: Path | None, max_tokens: int) -> Generation:
        staged: Path | None = None
        restore_s = 0.0
        if kv_file is not None:
            staged = self.llm.slot_dir / f"memkern-restore-{os.getpid()}-{time.monotonic_ns()}.bin"
            _link_or_copy(kv_file, staged)
        try:
            with self.llm.runtime_lock:
                started = time.perf_counter()
                self._slot("erase")
                if staged is not None:
                    self._slot("restore", staged.name)
                    restore_s = time.perf_counter() - started
                result = self.llm.complete_prompt(prompt, max_tokens=max_tokens, token_ids=True)
                wall = time.perf_counter() - started
        finally:
            if staged is not None:
                staged.unlink(missing_ok=True)
        choice = result["choices"][0]
        content = (choice.get("logprobs") or {}).get("content") or []
        timings = result.get("timings") or {}
        predicted_n = int(timings.get("predicted_n") or 0)
        first_token_ms = float(timings.get("predicted_ms") or 0.0) / predicted_n if predicted_n else 0.0
        ttft = restore_s + (float(timings.get("prompt_ms") or 0.0) + first_token_ms) / 1000.0
        usage = result.get("usage") or {}
        return Generation(text=str(choice.get("text") or ""), token_ids=[int(t["id"]) for t in content],
                          prompt_tokens=int(usage.get("prompt_tokens") or 0),
                          cached_tokens=int(timings.get("cache_n") or 0), ttft_s=ttft, wall_s=wall,
                          restore_s=restore_s)


def _move(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(src, dest)
    except OSError:  # another file system
        with open(src, "rb") as fi, atomic_file(dest) as fo:
            while chunk := fi.read(1 << 20):
                fo.write(chunk)


def _link_or_copy(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError:
        with open(src, "rb") as fi, open(dest, "wb") as fo:
            while chunk := fi.read(1 << 20):
                fo.write(chunk)


# -- where activations live ------------------------------------------------------------------------
def activation_root(store: Store) -> Path:
    """``<directory of the SQLite store>/activation``, else ``$MEMKERN_HOME/activation`` (or ``~/.memkern``)."""
    path = getattr(store, "path", None)
    if isinstance(path, Path) and str(path) not in ("", ":memory:"):
        return path.resolve().parent / "activation"
    return memkern_home() / "activation"


def cube_dir(store: Store, cube_id: str) -> Path:
    if not cube_id or "/" in cube_id or "\\" in cube_id or cube_id in (".", ".."):
        raise InvalidInputError(f"invalid cube id {cube_id!r}")
    return activation_root(store) / cube_id


def _tokens_sha(tokens: Sequence[int]) -> str:
    return hashlib.sha256(struct.pack(f"<{len(tokens)}i", *tokens)).hexdigest()


def _write_private(path: Path, data: bytes) -> None:
    with atomic_file(path) as handle:
        handle.write(data)


def read_manifest(directory: Path) -> ActivationManifest | None:
    path = directory / MANIFEST
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return ActivationManifest.model_validate_json(raw)
    except ValidationError as exc:
        raise LLMError(f"the activation manifest {path} is invalid ({exc.error_count()} errors); delete the "
                       "directory or rebuild the activation") from exc


# -- the memory block ------------------------------------------------------------------------------
def hotness(item: MemoryItem, now: datetime | None = None) -> float:
    """How much a memory deserves a place in the block: use, importance and recency."""
    now = now or utcnow()
    last = item.last_accessed_at or item.event_time or item.recorded_at
    age_days = max((now - last).total_seconds(), 0.0) / 86_400 if last else 365.0
    recency = 0.5 ** (age_days / _HOT_HALF_LIFE_DAYS)
    return math.log1p(max(item.access_count, 0)) + float(item.importance) + recency


def select_memories(items: Iterable[MemoryItem], now: datetime | None = None,
                    prefer: Iterable[str] = ()) -> list[MemoryItem]:
    """Candidates in priority order: ``prefer``-red ids, then the profile, then the hottest memories."""
    wanted = set(prefer)
    pool = [i for i in items if i.state is LifecycleState.ACTIVE]
    return sorted(pool, key=lambda i: (i.id not in wanted, i.kind not in _PROFILE_KINDS, -hotness(i, now),
                                       i.recorded_at, i.id))


def _when(item: MemoryItem) -> str:
    when = item.event_time or item.valid_from
    return when.isoformat() if when else "~"


def render_prefix(owner: str, items: Sequence[MemoryItem]) -> str:
    """The exact prefix: the system message (answer rules + the memory block) in the ChatML template.

    It ends with ``<|im_end|>\\n`` so that whatever follows starts at a special token: the prefix
    tokenizes the same alone and inside any longer prompt."""
    lines = [render_memory(n, item) for n, item in enumerate(block_order(items), start=1)]
    block = (f"\n\nWhat you already know about {owner}: their profile, then the memories they use most "
             f"(oldest first). These are memories too; the question may also list more.\n" + "\n".join(lines))
    return f"<|im_start|>system\n{ANSWER_PROMPT}{block}<|im_end|>\n"


def block_order(items: Sequence[MemoryItem]) -> list[MemoryItem]:
    """Profile first, then the rest, each oldest first: an order that does not depend on how hot
    the memories are, so that the same memories always make the same text (and KV state)."""
    def key(item: MemoryItem) -> tuple[str, str]:
        return (_when(item), item.id)

    profile = sorted((i for i in items if i.kind in _PROFILE_KINDS), key=key)
    rest = sorted((i for i in items if i.kind not in _PROFILE_KINDS), key=key)
    return [*profile, *rest]


def fit_block(engine: KVEngine, owner: str, candidates: Sequence[MemoryItem],
              max_tokens: int) -> tuple[list[MemoryItem], str, list[int]]:
    """The longest priority-ordered run of ``candidates`` whose prefix fits ``max_tokens`` tokens."""
    base = len(engine.tokenize(render_prefix(owner, [])))
    if base >= max_tokens:
        raise InvalidInputError(f"max_tokens={max_tokens} leaves no room for memories (the instructions take {base})")
    chosen: list[MemoryItem] = []
    used = base
    for item in candidates[:MAX_CANDIDATES]:
        cost = len(engine.tokenize(render_memory(len(chosen) + 1, item) + "\n"))
        if used + cost > max_tokens:
            if used + 8 > max_tokens:
                break
            continue
        chosen.append(item)
        used += cost
    while True:  # per-line counts are estimates: settle on the exact count
        prefix = render_prefix(owner, block_order(chosen))
        tokens = engine.tokenize(prefix)
        if len(tokens) <= max_tokens or not chosen:
            return block_order(chosen), prefix, tokens
        chosen.pop()


# -- build, status, load ---------------------------------------------------------------------------
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
    _write_private(directory / prefix_name, prefix_bytes)
    manifest = ActivationManifest(
        cube_id=cube.id, built_at=utcnow(), model=engine.model,
        tokenizer=TokenizerRef(gguf_sha256=engine.model.gguf_sha256, prefix_tokens_sha256=_tokens_sha(tokens)),
        kv=engine.kv, n_tokens=n_tokens, prefix_sha256=prefix_sha, versions=versions,
        kv_file=FileRef(name=kv_name, size=(directory / kv_name).stat().st_size, sha256=kv_sha),
        prefix_file=FileRef(name=prefix_name, size=len(prefix_bytes), sha256=prefix_sha),
        build_seconds=round(time.perf_counter() - started, 3))
    write_manifest(directory, manifest)
    return manifest


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


def write_manifest(directory: Path, manifest: ActivationManifest) -> None:
    """Write the manifest (atomically) and remove files it no longer names."""
    _write_private(directory / MANIFEST, manifest.model_dump_json(indent=2).encode("utf-8"))
    keep = {MANIFEST, manifest.kv_file.name, manifest.prefix_file.name}
    for path in directory.iterdir():
        if path.name not in keep and not path.name.startswith("."):
            path.unlink(missing_ok=True)


def staleness(store: Store, cube_id: str, versions: Sequence[str]) -> list[str]:
    """Why ``versions`` are no longer the cube's current, active versions (empty: all still are)."""
    wanted = [parse_version_id(v) for v in versions]
    current = store.get_memories(cube_id, [memory_id for memory_id, _ in wanted])
    reasons = []
    for (memory_id, number), version_id in zip(wanted, versions):
        now = current.get(memory_id)
        if now is None:
            reasons.append(f"{version_id}: deleted")
        elif now.version != number:
            reasons.append(f"{version_id}: now v{now.version}")
        elif now.state is not LifecycleState.ACTIVE:
            reasons.append(f"{version_id}: {now.state.value}")
    return reasons


def status(ctx: OpContext) -> ActivationStatus:
    """Fresh, stale (with reasons) or missing; one manifest read and one store read."""
    cube, store = ctx.cube, ctx.kernel.store
    directory = cube_dir(store, cube.id)
    manifest = read_manifest(directory)
    if manifest is None:
        return ActivationStatus("missing", directory=directory)
    reasons = staleness(store, cube.id, manifest.versions)
    if manifest.cube_id != cube.id:
        reasons.insert(0, f"built for cube {manifest.cube_id}")
    return ActivationStatus("stale" if reasons else "fresh", manifest, reasons, directory)


def drop(ctx: OpContext) -> bool:
    """Remove the cube's activation; False if it had none."""
    return drop_files(ctx.kernel.store, ctx.cube.id)


def drop_files(store: Store, cube_id: str, *, if_built_from: Iterable[str] | None = None) -> bool:
    """Remove a cube's activation directory -- only if it was built from one of the memory ids
    ``if_built_from`` when given. False if nothing was removed."""
    directory = cube_dir(store, cube_id)
    if not directory.exists():
        return False
    if if_built_from is not None:
        try:
            manifest = read_manifest(directory)
        except LLMError:
            manifest = None  # unreadable: it may hold anything, so it goes
        wanted = set(if_built_from)
        if manifest is not None and not any(parse_version_id(v)[0] in wanted for v in manifest.versions):
            return False
    for path in directory.iterdir():
        path.unlink(missing_ok=True)
    directory.rmdir()
    return True


def verify_files(directory: Path, manifest: ActivationManifest) -> tuple[Path, str]:
    """The KV file's path and the prefix text, after checking sizes, sha256 and the KV header.

    Raises ``LLMError`` naming the file when anything differs: llama.cpp is never handed a file whose
    digest is not the recorded one."""
    kv_path, prefix_path = directory / manifest.kv_file.name, directory / manifest.prefix_file.name
    for path, ref in ((kv_path, manifest.kv_file), (prefix_path, manifest.prefix_file)):
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise LLMError(f"activation file {path} is missing; rebuild the activation") from None
        if size != ref.size or sha256_file(path) != ref.sha256:
            raise LLMError(f"activation file {path} does not match its manifest (size or sha256): it was "
                           "modified or is corrupt; refusing to restore it (rebuild the activation)")
    try:
        magic, version, _ = read_state_header(kv_path)
    except ValueError as exc:
        raise LLMError(f"activation file {kv_path} is not a llama.cpp slot file: {exc}") from exc
    if (magic, version) != (manifest.kv.state_magic, manifest.kv.state_version):
        raise LLMError(f"activation file {kv_path} has state version {version}, the manifest says "
                       f"{manifest.kv.state_version}")
    prefix = prefix_path.read_bytes().decode("utf-8")
    return kv_path, prefix


def rebuild(ctx: OpContext, *, force: bool = False) -> ActivationManifest:
    """Rebuild the activation if it is stale or missing (or ``force``), with the same token budget;
    a fresh one is returned as it is."""
    found = status(ctx)
    if found.fresh and not force and found.manifest is not None:
        return found.manifest
    budget = found.manifest.n_tokens if found.manifest is not None else DEFAULT_BLOCK_TOKENS
    return build(ctx, engine_for(ctx), max_tokens=max(budget, 256))


def engine_for(ctx: OpContext) -> LocalKVEngine:
    """The KV engine of the kernel's LLM, which must be the in-process local model."""
    if not is_local(ctx.kernel.llm):
        raise InvalidInputError("activation memory needs the local model (MEMKERN_LLM=local, "
                                "pip install 'memkern[local]')")
    return LocalKVEngine(ctx.kernel.llm)


def is_local(llm: Any) -> bool:
    module = sys.modules.get("memkern.llm.local")
    return module is not None and isinstance(llm, module.LocalLLM)


# -- chat ------------------------------------------------------------------------------------------
def question_suffix(query: str, hits: Sequence[Hit], first_number: int, skip: Iterable[str] = ()) -> str:
    """What follows the cached prefix: the retrieved memories not already in the block, and the question."""
    skipped = set(skip)
    extra = [h for h in newest_first(hits) if h.memory.id not in skipped]
    lines = [render_memory(n, h.memory) for n, h in enumerate(extra, start=first_number)]
    listed = ("More memories (newest first):\n" + "\n".join(lines) + "\n\n") if lines else ""
    return f"<|im_start|>user\n{listed}Question: {query}\nAnswer:<|im_end|>\n<|im_start|>assistant\n"


def answer_with_activation(ctx: OpContext, llm: Any, query: str, hits: Sequence[Hit], *, max_tokens: int,
                           required: bool, engine: KVEngine | None = None) -> ChatAnswer | None:
    """Answer with the cube's activation restored into the model: the prompt starts with the cached
    prefix, so llama.cpp reads only the question part. ``None`` (when not ``required``) if there is
    no fresh activation or the LLM is not the local model; with ``required`` that is an error."""
    cube = ctx.cube
    if engine is None and not is_local(llm):
        if required:
            raise InvalidInputError("use_activation=True needs the local model (MEMKERN_LLM=local)")
        return None
    try:
        found = status(ctx)
    except LLMError:
        if required:
            raise
        log.warning("activation of cube %s is unreadable; answering without it", cube.id)
        return None
    if not found.fresh or found.manifest is None:
        if required:
            why = "; ".join(found.reasons[:3]) if found.reasons else "none was built"
            raise InvalidInputError(f"cube {cube.name!r} has no fresh activation ({found.state}: {why}); run "
                                    "memkern activation build, or let the scheduler's rebuild job do it")
        return None
    manifest = found.manifest
    engine = engine or LocalKVEngine(llm)
    if engine.model.gguf_sha256 != manifest.model.gguf_sha256:
        if required:
            raise InvalidInputError(f"the activation of {cube.name!r} was built for model "
                                    f"{manifest.model.name} ({manifest.model.gguf_sha256[:12]}), not this one")
        return None
    try:
        kv_path, prefix = verify_files(found.directory, manifest)  # type: ignore[arg-type]
    except LLMError as exc:
        if required:
            raise
        log.warning("%s; answering without the activation", exc)
        return None
    block_ids = {parse_version_id(v)[0] for v in manifest.versions}
    prompt = prefix + question_suffix(query, hits, len(manifest.versions) + 1, block_ids)
    gen = engine.generate(prompt, kv_file=kv_path, max_tokens=max_tokens)
    text = gen.text.strip() or NOT_AVAILABLE
    usage = ChatUsage(calls=1, prompt_tokens=gen.prompt_tokens, completion_tokens=len(gen.token_ids))
    if hasattr(llm, "usage"):
        from memkern.llm.base import LLMResponse

        llm.usage.record("chat", LLMResponse(text=gen.text, model=manifest.model.name,
                                             prompt_tokens=gen.prompt_tokens, completion_tokens=len(gen.token_ids)))
    return ChatAnswer(query=query, answer=text, hits=list(hits), model=manifest.model.name, usage=usage,
                      prompt_sha256=ANSWER_PROMPT_SHA256)


# -- cube files ------------------------------------------------------------------------------------
class CubeEntry(_Strict):
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
    _write_private(directory / manifest.kv_file.name, loaded.kv)
    _write_private(directory / manifest.prefix_file.name, loaded.prefix)
    write_manifest(directory, manifest)


# -- the scheduler ---------------------------------------------------------------------------------
def promote_hook(ctx: OpContext, memories: list[MemoryItem]) -> list[str]:
    """Scheduler ``promote``: rebuild the block preferring these memories; returns the ids it holds
    (none without the local model)."""
    if not is_local(ctx.kernel.llm) or not memories:
        return []
    manifest = build(ctx, prefer=[m.id for m in memories])
    taken = {parse_version_id(v)[0] for v in manifest.versions}
    return [m.id for m in memories if m.id in taken]


def rebuild_hook(ctx: OpContext) -> dict[str, Any]:
    """Scheduler ``rebuild``: rebuild the cube's activation when it is stale (a fresh one is kept)."""
    found = status(ctx)
    if found.state != "stale":
        return {"state": found.state, "rebuilt": False}
    if not is_local(ctx.kernel.llm):
        return {"state": "stale", "rebuilt": False, "skipped": "no local model"}
    manifest = rebuild(ctx)
    return {"state": "fresh", "rebuilt": True, "n_tokens": manifest.n_tokens, "memories": len(manifest.versions)}


class CubeFileSection:
    """The ``memory.activation`` section of a cube file, for ``memkern.cubefile.read_cube_file``."""

    def members(self, entries: list[dict[str, Any]]) -> list[str]:
        return [name for entry in entries for name in entry_members(entry)]

    def verify(self, entries: list[dict[str, Any]], data: dict[str, bytes], versions: list[MemoryItem],
               cube_id: str) -> list[LoadedActivation]:
        return [verify_cube_entry(entry, data, versions, cube_id) for entry in entries]
