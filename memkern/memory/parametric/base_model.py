"""The base model an adapter is trained on and applied to: the local GGUF, read by transformers.

It is the same verified file that ``memkern.llm.local`` assembles, dequantized to float32; nothing
comes from a model hub. torch, transformers and peft (extra ``memkern[lora]``) are imported only
here, when a model is trained or asked.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

from memkern.errors import LLMError
from memkern.files import sha256_file

INSTALL_HINT = "pip install 'memkern[lora]'"
#: The attention projections an adapter is trained on.
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
#: The base model's transformer layers and the shapes of its attention projections (Qwen2.5-0.5B):
#: ``(in_features, out_features)``; an adapter's tensors must fit them.
LAYERS = 24
PROJECTION_SHAPES = {"q_proj": (896, 896), "k_proj": (896, 128), "v_proj": (896, 128), "o_proj": (896, 896)}


def base_model_ref() -> dict[str, Any]:
    """Name, file, sha256 and size of the base model, as an adapter's manifest records them."""
    from memkern.llm import local

    return {"name": local.MODEL_NAME, "file": local.MODEL_FILENAME, "sha256": local.MODEL_SHA256,
            "size": local.MODEL_SIZE}


def training_libraries() -> tuple[Any, Any, Any]:
    """``(torch, transformers, peft)``; ``LLMError`` with the install hint when the extra is missing."""
    try:
        import peft
        import torch
        import transformers
    except ImportError as exc:
        raise LLMError(f"parametric memory needs torch, transformers, peft and gguf ({exc}); run {INSTALL_HINT}") \
            from None
    return torch, transformers, peft


def hf_cache_dir(models_dir: Path | None) -> Path:
    """Where the float32 copy of the base model is kept, beside the GGUF (see ``load_base_model``)."""
    from memkern.llm import local

    base = Path(models_dir) if models_dir is not None else local.default_models_dir()
    return base / (local.MODEL_NAME + "-hf-f32")


_BASE_CACHE: dict[str, tuple[Any, Any, float]] = {}


def load_base_model(models_dir: Path | None = None, *, threads: int | None = None,
                    disk_cache: bool = True) -> tuple[Any, Any, float]:
    """``(model, tokenizer, seconds)``: the verified local GGUF read by transformers, dequantized to float32.

    Reading the GGUF takes about 100 s (tokenizer conversion and dequantization), so the first load
    also saves the result (about 2 GB) beside the GGUF with a stamp of the GGUF's SHA-256 and of every
    saved file (unless ``disk_cache`` is false); later loads verify the stamp and read that in a few
    seconds. Kept per process and ``models_dir``."""
    torch, transformers, _ = training_libraries()
    from memkern.llm import local

    torch.set_num_threads(threads or min(4, os.cpu_count() or 1))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    key = str(models_dir)
    if key in _BASE_CACHE:
        return _BASE_CACHE[key]
    start = time.perf_counter()
    cache = hf_cache_dir(models_dir)
    stamp_path = cache / "memkern-stamp.json"
    model = tokenizer = None
    if stamp_path.is_file():
        try:
            stamp = json.loads(stamp_path.read_text(encoding="utf-8"))
            ok = stamp.get("gguf_sha256") == local.MODEL_SHA256 and all(
                sha256_file(cache / name) == digest for name, digest in stamp["files"].items())
        except (OSError, ValueError, KeyError, TypeError):
            ok = False
        if ok:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(cache), local_files_only=True)
            model = transformers.AutoModelForCausalLM.from_pretrained(str(cache), dtype=torch.float32,
                                                                      local_files_only=True)
    if model is None:
        gguf = local.assemble_model(models_dir)  # verifies size and SHA-256
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = transformers.AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                                      dtype=torch.float32)
        except ImportError as exc:
            raise LLMError(f"transformers cannot read the GGUF model ({exc}); run {INSTALL_HINT}") from None
        if disk_cache:
            _save_hf_cache(model, tokenizer, cache)
    model.eval()
    result = (model, tokenizer, time.perf_counter() - start)
    _BASE_CACHE[key] = result
    return result


def _save_hf_cache(model: Any, tokenizer: Any, cache: Path) -> None:
    from safetensors.torch import save_model

    from memkern.llm import local

    tmp = cache.with_name(cache.name + f".{uuid4().hex[:8]}.tmp")
    try:
        # save_pretrained refuses a model read from a GGUF (it counts as quantized, though the weights are
        # float32 now): write the weights (tied ones once), the config without its GGUF marks, the tokenizer.
        tmp.mkdir(parents=True)
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        config["torch_dtype"] = config["dtype"] = "float32"
        (tmp / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
        model.generation_config.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / "memkern-stamp.json").write_text(json.dumps({"gguf_sha256": local.MODEL_SHA256, "files": files},
                                                           indent=1), encoding="utf-8")
        shutil.rmtree(cache, ignore_errors=True)
        os.replace(tmp, cache)
    except Exception:  # noqa: BLE001 - a cache is an optimisation: without it the next load reads the GGUF
        pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
