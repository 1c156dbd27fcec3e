"""Answering closed-book (no retrieval, the question alone) with the base model and a cube's adapter.

The chat model is llama.cpp on the quantized GGUF, which cannot take these PEFT tensors; answers
come from transformers with the adapter applied to the dequantized model it was trained on.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from memkern.errors import CubeFileError, InvalidInputError
from memkern.memory.parametric.base_model import base_model_ref, load_base_model, training_libraries
from memkern.memory.parametric.manifest import AdapterInfo
from memkern.memory.parametric.qa import prompt_ids
from memkern.memory.parametric.storage import read_adapter
from memkern.models import ParametricAnswer
from memkern.ops.context import OpContext


def _peft_from_bytes(model: Any, info: AdapterInfo, tensor_bytes: bytes) -> Any:
    torch, _, peft = training_libraries()
    from peft import set_peft_model_state_dict
    from safetensors.torch import load as load_tensors

    config = peft.LoraConfig(r=info.rank, lora_alpha=info.alpha, lora_dropout=0.0,
                             target_modules=list(info.target_modules), bias="none", task_type="CAUSAL_LM")
    lora = peft.get_peft_model(model, config)
    result = set_peft_model_state_dict(lora, load_tensors(tensor_bytes))
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        lora.unload()
        raise CubeFileError(f"the adapter holds tensors the model does not have: {unexpected[:3]}")
    lora.eval()
    return lora


def generate_answers(model: Any, tokenizer: Any, questions: Sequence[str], *, max_new_tokens: int = 32) -> list[str]:
    """Greedy closed-book answers (system prompt + question only), one per question."""
    torch, _, _ = training_libraries()
    answers = []
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    with torch.inference_mode():
        for question in questions:
            ids = torch.tensor([prompt_ids(tokenizer, question)])
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                 do_sample=False, eos_token_id=end, pad_token_id=tokenizer.pad_token_id or end)
            answers.append(tokenizer.decode(out[0][ids.shape[1]:], skip_special_tokens=True).strip())
    return answers


class AdapterSession:
    """The base model with (or, ``use_adapter=False``, without) a cube's adapter applied; a context manager."""

    def __init__(self, ctx: OpContext | None, *, use_adapter: bool = True, models_dir: Path | None = None,
                 threads: int | None = None) -> None:
        self.adapter: AdapterInfo | None = None
        tensor_bytes = b""
        if use_adapter:
            if ctx is None:
                raise InvalidInputError("use_adapter needs a cube")
            self.adapter, tensor_bytes = read_adapter(ctx.kernel.store.get_cube(ctx.cube.id))
        self.base, self.tokenizer, _ = load_base_model(models_dir, threads=threads)
        self.model = _peft_from_bytes(self.base, self.adapter, tensor_bytes) if self.adapter else self.base

    def ask(self, questions: Sequence[str], *, max_new_tokens: int = 32) -> list[str]:
        return generate_answers(self.model, self.tokenizer, questions, max_new_tokens=max_new_tokens)

    def close(self) -> None:
        if self.model is not self.base:
            self.model.unload()
            self.model = self.base

    def __enter__(self) -> AdapterSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def chat_with_adapter(ctx: OpContext, query: str, *, max_new_tokens: int = 48, use_adapter: bool = True,
                      models_dir: Path | None = None) -> ParametricAnswer:
    """Answer ``query`` closed-book (no retrieval) with the base model and the cube's adapter."""
    if not isinstance(query, str) or not query.strip():
        raise InvalidInputError("query must be a non-empty string")
    start = time.perf_counter()
    with AdapterSession(ctx, use_adapter=use_adapter, models_dir=models_dir) as session:
        text = session.ask([query.strip()], max_new_tokens=max_new_tokens)[0]
        adapter_id = session.adapter.adapter_id if session.adapter else None
    return ParametricAnswer(answer=text, adapter_id=adapter_id, seconds=round(time.perf_counter() - start, 2),
                            model=base_model_ref()["name"])
