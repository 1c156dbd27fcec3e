"""Verifying an adapter's two files before anything reads its tensors into a model.

An adapter may come from a cube file written elsewhere: its manifest must name this memkern's
base model and its tensors must be exactly the LoRA matrices that model takes. No pickle is read.
"""

from __future__ import annotations

import hashlib
import json
import re

from memkern.errors import CubeFileError
from memkern.memory.parametric.base_model import LAYERS, PROJECTION_SHAPES, TARGET_MODULES, base_model_ref
from memkern.memory.parametric.manifest import (
    ADAPTER_FILE,
    ADAPTER_ID_RE,
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST_FILE,
    AdapterInfo,
)

_TENSOR_RE = re.compile(r"^base_model\.model\.model\.layers\.(\d+)\.self_attn\.(q_proj|k_proj|v_proj|o_proj)"
                        r"\.lora_(A|B)\.weight$")


def check_adapter(manifest_bytes: bytes, tensor_bytes: bytes, where: str) -> AdapterInfo:
    """Verify an adapter's two files; ``CubeFileError`` naming the first problem.

    The manifest must be a ``memkern-lora`` document for this memkern's base model, the tensors must
    have the SHA-256 and size it records, and every tensor must be a finite float32 LoRA matrix of a
    listed target module with the recorded rank and the base model's shapes. No pickle is read."""
    try:
        doc = json.loads(manifest_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CubeFileError(f"{where}: {MANIFEST_FILE} is not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise CubeFileError(f"{where}: {MANIFEST_FILE} is not a {FORMAT_NAME} manifest")
    if doc.get("format_version") != FORMAT_VERSION:
        raise CubeFileError(f"{where}: adapter format version {doc.get('format_version')!r} is not supported "
                            f"(this memkern reads {FORMAT_VERSION})")
    try:
        info = AdapterInfo(path="", **doc)
    except TypeError as exc:
        raise CubeFileError(f"{where}: {MANIFEST_FILE} is invalid ({exc})") from exc
    base = base_model_ref()
    theirs = info.base_model if isinstance(info.base_model, dict) else {}
    if theirs.get("sha256") != base["sha256"]:
        raise CubeFileError(
            f"{where}: the adapter was trained on base model {theirs.get('name')!r} (sha256 {theirs.get('sha256')}), "
            f"not on this memkern's {base['name']!r} (sha256 {base['sha256']}); a LoRA adapter only works on the "
            "exact model it was trained on")
    if not (isinstance(info.rank, int) and 1 <= info.rank <= 64) or not isinstance(info.alpha, (int, float)):
        raise CubeFileError(f"{where}: rank {info.rank!r} or alpha {info.alpha!r} is invalid")
    if not info.target_modules or not set(info.target_modules) <= set(TARGET_MODULES):
        raise CubeFileError(f"{where}: target modules {info.target_modules!r} are not among {list(TARGET_MODULES)}")
    if not ADAPTER_ID_RE.match(str(info.adapter_id)):
        raise CubeFileError(f"{where}: adapter id {info.adapter_id!r} is invalid")
    if len(tensor_bytes) != info.adapter_size or hashlib.sha256(tensor_bytes).hexdigest() != info.adapter_sha256:
        raise CubeFileError(f"{where}: {ADAPTER_FILE} does not match the size and sha256 its manifest records: "
                            "the adapter was modified or is corrupt")
    _check_tensors(tensor_bytes, info, where)
    return info


def _check_tensors(data: bytes, info: AdapterInfo, where: str) -> None:
    import numpy as np
    from safetensors.numpy import load as load_tensors

    try:
        tensors = load_tensors(data)
    except Exception as exc:  # noqa: BLE001 - any parse failure means a bad file
        raise CubeFileError(f"{where}: {ADAPTER_FILE} is not a valid float32 safetensors file ({exc})") from exc
    expected = {f"base_model.model.model.layers.{i}.self_attn.{m}.lora_{ab}.weight"
                for i in range(LAYERS) for m in info.target_modules for ab in "AB"}
    if set(tensors) != expected:
        odd = sorted(set(tensors) ^ expected)[0]
        raise CubeFileError(f"{where}: {ADAPTER_FILE} does not hold exactly the LoRA tensors of "
                            f"{info.target_modules} on {LAYERS} layers (first difference: {odd!r})")
    for name, array in tensors.items():
        m = _TENSOR_RE.match(name)
        assert m is not None
        fan_in, fan_out = PROJECTION_SHAPES[m[2]]
        shape = (info.rank, fan_in) if m[3] == "A" else (fan_out, info.rank)
        if array.dtype != np.float32 or array.shape != shape:
            raise CubeFileError(f"{where}: tensor {name} is {array.dtype} {array.shape}, expected float32 {shape}")
        if not np.isfinite(array).all():
            raise CubeFileError(f"{where}: tensor {name} holds NaN or infinite values")
