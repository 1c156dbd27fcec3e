"""A small deterministic hashing embedder for the portable-cube tests.

Every lowercase word is hashed with BLAKE2 (stable across processes, unlike ``hash``) to a
bucket and a sign; the counts are L2-normalised. ``name`` and ``dim`` are parameters so
that a test can build "another embedder" and check that loading re-embeds.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

_WORD = re.compile(r"\w+")


class HashEmbedder:
    def __init__(self, dim: int = 64, name: str | None = None) -> None:
        self.dim = dim
        self.name = name or f"portable-test-hash-{dim}"
        self.calls: list[int] = []  # batch sizes, so tests can see that (and how) it was used

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                value = int.from_bytes(hashlib.blake2b(word.encode("utf-8", "surrogatepass"),
                                                       digest_size=8).digest(), "little")
                out[row, value % self.dim] += 1.0 if (value >> 32) & 1 else -1.0
            norm = float(np.linalg.norm(out[row]))
            if norm > 0:
                out[row] /= norm
        return out


def main_embedder():
    """The bundled static embedder if it can be built here, else a hashing one."""
    try:
        from memkern.embed.static import StaticEmbedder

        return StaticEmbedder()
    except Exception:
        return HashEmbedder()
