"""An adapter's manifest (``adapter.json``, format ``memkern-lora``): what it was trained on and how."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any

FORMAT_NAME = "memkern-lora"
FORMAT_VERSION = 1
ADAPTER_FILE = "adapter_model.safetensors"
MANIFEST_FILE = "adapter.json"
#: An adapter id (a uuid4 in hex): also the name of its directory.
ADAPTER_ID_RE = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class AdapterInfo:
    """One distilled adapter (the content of its ``adapter.json``, plus where it is)."""

    adapter_id: str
    cube_id: str
    path: str
    created_at: str
    base_model: dict[str, Any]
    rank: int
    alpha: int
    target_modules: list[str]
    training: dict[str, Any]
    sources: list[str]
    qa: list[dict[str, str]]
    metrics: dict[str, Any]
    adapter_sha256: str = ""
    adapter_size: int = 0
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION

    def manifest(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("path")
        return doc


def manifest_bytes(info: AdapterInfo) -> bytes:
    """The ``adapter.json`` bytes of ``info``; the cube's reference records their sha256."""
    return json.dumps(info.manifest(), indent=1, ensure_ascii=False).encode("utf-8")
