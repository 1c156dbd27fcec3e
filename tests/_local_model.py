"""Whether the optional heavy parts are installed, for the tests that run the real local model."""

from __future__ import annotations

import importlib.util

import pytest

from memkern.errors import LLMError


def local_model_installed() -> bool:
    """xllamacpp and the model's part packages (extra ``memkern[local]``)."""
    if importlib.util.find_spec("xllamacpp") is None:
        return False
    from memkern.llm import local

    try:
        local.locate_parts()
    except LLMError:
        return False
    return True


def training_installed() -> bool:
    """The local model plus torch, peft, transformers and gguf (extra ``memkern[lora]``)."""
    if any(importlib.util.find_spec(m) is None for m in ("torch", "peft", "transformers", "gguf")):
        return False
    return local_model_installed()


needs_local_model = pytest.mark.skipif(not local_model_installed(), reason="needs pip install 'memkern[local]'")
