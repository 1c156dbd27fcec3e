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
``build``/``rebuild`` (or the scheduler's ``rebuild`` job) replaces it.

Safety: nothing here unpickles anything. The KV file's size, sha256 and header (magic, version,
token count) are verified before llama.cpp is asked to restore it; in a cube file it is covered by the
checksum table, and a load refuses one built for another GGUF (``verify_cube_entry``). See
docs/activation.md for why the slot file is kept as llama.cpp writes it rather than as safetensors.

One module per concern: ``manifest`` (the record), ``engine`` (what runs the model: llama.cpp's
slots), ``directory`` (where activations live, reading and verifying their files), ``block`` (which
memories, rendered how), ``freshness`` (``status``), ``builder`` (``build``, ``rebuild``, ``drop``),
``answer`` (chat with the restored KV cache), ``cubefile`` (the ``memory.activation`` section of a
cube file) and ``hooks`` (the scheduler's ``promote`` and ``rebuild``).
"""

from memkern.memory.activation.answer import answer_with_activation, question_suffix
from memkern.memory.activation.block import DEFAULT_BLOCK_TOKENS
from memkern.memory.activation.builder import build, drop, rebuild
from memkern.memory.activation.cubefile import CubeFileSection, export_for_dump, install_loaded
from memkern.memory.activation.directory import drop_files, verify_files
from memkern.memory.activation.engine import KVEngine, LocalKVEngine
from memkern.memory.activation.freshness import ActivationStatus, status
from memkern.memory.activation.hooks import promote_hook, rebuild_hook
from memkern.memory.activation.manifest import ActivationManifest

__all__ = ["DEFAULT_BLOCK_TOKENS", "ActivationManifest", "ActivationStatus", "CubeFileSection", "KVEngine",
           "LocalKVEngine", "answer_with_activation", "build", "drop", "drop_files", "export_for_dump",
           "install_loaded", "promote_hook", "question_suffix", "rebuild", "rebuild_hook", "status", "verify_files"]
