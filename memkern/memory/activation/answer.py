"""Chat with the cube's activation restored into the model.

The prompt starts with the cached prefix, so llama.cpp reads only what follows it: the retrieved
memories not already in the block, and the question.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from memkern.errors import InvalidInputError, LLMError
from memkern.memory.activation.directory import verify_files
from memkern.memory.activation.engine import KVEngine, LocalKVEngine, is_local
from memkern.memory.activation.freshness import status
from memkern.models import ChatAnswer, ChatUsage, Hit, parse_version_id
from memkern.ops.context import OpContext
from memkern.prompts import ANSWER_PROMPT_SHA256, NOT_AVAILABLE, newest_first, render_memory

log = logging.getLogger("memkern.activation")


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
