"""The activation manifest (``activation.json``): what a saved KV state was computed from.

It is the record of an activation: written last and atomically, so that a directory without a
valid manifest holds no activation. It names everything that decides whether a KV state may be
restored: the model (GGUF sha256), its tokenizer, llama.cpp's state format, the prefix text and
the memory versions the block was rendered from.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

FORMAT_NAME = "memkern-activation"
FORMAT_VERSION = 1
#: The manifest's file name in an activation directory.
MANIFEST = "activation.json"
#: Chat template the prefix is written in (the local model's: Qwen2.5 / ChatML).
TEMPLATE = "chatml"


class StrictModel(BaseModel):
    """A record that refuses unknown fields: a manifest of another format is refused, not half-read."""

    model_config = ConfigDict(extra="forbid")


class FileRef(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,200}$")
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ModelRef(StrictModel):
    name: str
    gguf_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    gguf_size: int = Field(ge=0)


class TokenizerRef(StrictModel):
    #: The tokenizer is the one embedded in the GGUF (its sha256 pins it).
    source: str = "gguf"
    gguf_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    #: sha256 of the prefix's token ids (little-endian int32): the same text must tokenize the same.
    prefix_tokens_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class KVRef(StrictModel):
    engine: str = "llama.cpp"
    format: str = "llama.cpp-slot-state"
    state_magic: int
    state_version: int
    dtype_k: str = "f16"
    dtype_v: str = "f16"
    n_ctx: int = Field(ge=0)
    slot: int = 0


class ActivationManifest(StrictModel):
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
