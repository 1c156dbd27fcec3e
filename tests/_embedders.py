"""Embedders for the test suite, importable by conftest and by subprocess scripts.

``HashingEmbedder`` is a small deterministic bag-of-words embedder: every lowercase word
is hashed (BLAKE2, so the result is the same in every process, unlike ``hash``) to a
bucket and a sign, and the counts are L2-normalised. Texts sharing words get a positive
cosine, which is all the tests need from dense search.

``embedder_by_name`` rebuilds, in a subprocess, the embedder the parent test chose: the
parent passes ``embedder.name`` in the ``MEMKERN_TEST_EMBEDDER`` environment variable.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence

import numpy as np

HASH_NAME = "test-hash-64"
HASH_DIM = 64
ENV_VAR = "MEMKERN_TEST_EMBEDDER"

_WORD = re.compile(r"\w+")


class HashingEmbedder:
    """Deterministic hashing embedder (name ``test-hash-64``, 64 dimensions)."""

    name = HASH_NAME
    dim = HASH_DIM

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                digest = hashlib.blake2b(word.encode("utf-8", "surrogatepass"), digest_size=8).digest()
                value = int.from_bytes(digest, "little")
                out[row, value % self.dim] += 1.0 if (value >> 32) & 1 else -1.0
            norm = float(np.linalg.norm(out[row]))
            if norm > 0:
                out[row] /= norm
        return out


def default_test_embedder():
    """The bundled static embedder if it can be built here, else the hashing one."""
    try:
        from memkern.embed.static import StaticEmbedder

        return StaticEmbedder()
    except Exception:  # noqa: BLE001 - not built yet, model files missing, ...: fall back
        return HashingEmbedder()


def embedder_by_name(name: str | None = None):
    """The embedder called ``name`` (default: ``$MEMKERN_TEST_EMBEDDER``, else hashing)."""
    name = name if name is not None else os.environ.get(ENV_VAR, HASH_NAME)
    if name == HASH_NAME:
        return HashingEmbedder()
    from memkern.embed.static import StaticEmbedder

    embedder = StaticEmbedder()
    if embedder.name != name:
        raise RuntimeError(f"parent used embedder {name!r} but this process built {embedder.name!r}")
    return embedder
