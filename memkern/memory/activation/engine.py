"""The engine: what runs the model over a prefix, saves its KV state and restores it.

``KVEngine`` is what activation memory needs from a model (tests give a fake one);
``LocalKVEngine`` is the in-process local model, whose llama.cpp server saves and restores
slot 0 through its ``/slots`` endpoint, in files under its slot directory.
"""

from __future__ import annotations

import os
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from memkern.errors import InvalidInputError
from memkern.files import atomic_file
from memkern.memory.activation.manifest import KVRef, ModelRef
from memkern.ops.context import OpContext

#: llama.cpp's sequence-state file: u32 magic ``ggsq``, u32 version, u32 token count, i32 tokens[count], state.
GGSQ_MAGIC = 0x67677371


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


def is_local(llm: Any) -> bool:
    """Whether ``llm`` is the in-process local model, without importing it (its extra may be missing)."""
    module = sys.modules.get("memkern.llm.local")
    return module is not None and isinstance(llm, module.LocalLLM)


def engine_for(ctx: OpContext) -> LocalKVEngine:
    """The KV engine of the kernel's LLM, which must be the in-process local model."""
    if not is_local(ctx.kernel.llm):
        raise InvalidInputError("activation memory needs the local model (MEMKERN_LLM=local, "
                                "pip install 'memkern[local]')")
    return LocalKVEngine(ctx.kernel.llm)
