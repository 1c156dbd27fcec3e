"""Parametric memory: a cube's stable memories distilled into a LoRA adapter (extra ``memkern[lora]``).

``distil(ctx)`` (the ``parametric_distil`` operation) takes the cube's current facts, events and preferences (its turns when it has none),
turns each into question-answer pairs with fixed templates (no LLM, so the training set is
reproducible), and fine-tunes a small LoRA adapter (PEFT, rank 8, on the attention projections
``q_proj k_proj v_proj o_proj``) on top of the local model, on the CPU with torch. The base model
is the same verified GGUF file that ``memkern.llm.local`` assembles (Qwen2.5-Coder-0.5B-Instruct,
Q4_K_M); transformers reads it, tokenizer included, with the ``gguf`` package and dequantizes it
to float32. Nothing comes from a model hub.

The adapter is written to ``$MEMKERN_HOME/parametric/<cube id>/<adapter id>/`` as
``adapter_model.safetensors`` (float32 LoRA tensors, PEFT names) and ``adapter.json`` (format
``memkern-lora``: base model name, size and SHA-256, rank, alpha, target modules, training
settings, the version ids of the memories it was distilled from, the training questions, metrics
and the SHA-256 of the tensors). The cube's metadata key ``"parametric"`` points at it.

Using it: the in-process chat model is llama.cpp (xllamacpp) on the *quantized* GGUF; it can
load GGUF LoRA adapters, but converting the PEFT tensors to that format is not done here (the
adapter was trained against the dequantized weights, and a converter would have to be kept in
step with llama.cpp's tensor naming). ``chat_with_adapter(ctx, query)`` (``parametric_ask``) answers closed-book --
no retrieval, the question alone -- with transformers and the adapter instead.

What it achieves is measured by ``memkern bench parametric`` (trained questions vs paraphrases
never seen in training, with and without the adapter). A LoRA adapter is a lossy, slow-to-update copy of the plaintext memories, not a replacement for
retrieval: the plaintext cube stays the source of truth, and an adapter is stale as soon as a
memory it was distilled from changes (``adapter_status`` tells).

Cube files: ``dump`` writes the adapter into the file (``memory.parametric`` entries of
the manifest, every member checksummed) and ``load_cube`` verifies it (the base model must
be this memkern's, the tensors must match the manifest, names and shapes must fit the base model)
before installing it beside the new cube. torch is imported only to train or answer.

One module per concern: ``qa`` (templated question-answer pairs and their prompt), ``base_model``
(the local GGUF read by transformers), ``manifest`` (``adapter.json``), ``verify`` (checking an
adapter's files), ``storage`` (where adapters live, the cube's reference, forgetting),
``freshness`` (``adapter_status``), ``training`` (``distil``), ``answer`` (closed-book answers),
``cubefile`` (the ``memory.parametric`` section of a cube file) and ``hooks`` (the scheduler's
``distil``).
"""

from memkern.memory.parametric.answer import AdapterSession, chat_with_adapter
from memkern.memory.parametric.base_model import load_base_model
from memkern.memory.parametric.cubefile import CubeFileSection, dump_members, install_adapters
from memkern.memory.parametric.freshness import adapter_status
from memkern.memory.parametric.hooks import distil_hook
from memkern.memory.parametric.manifest import AdapterInfo
from memkern.memory.parametric.qa import QAPair, make_qa, select_memories
from memkern.memory.parametric.storage import forget_adapter, forget_files, read_adapter
from memkern.memory.parametric.training import distil

__all__ = ["AdapterInfo", "AdapterSession", "CubeFileSection", "QAPair", "adapter_status", "chat_with_adapter",
           "distil", "distil_hook", "dump_members", "forget_adapter", "forget_files", "install_adapters",
           "load_base_model", "make_qa", "read_adapter", "select_memories"]
