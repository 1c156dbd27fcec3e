"""The embedder protocol: what the store and retrieval need from a text embedding model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy


class Embedder(Protocol):
    name: str          # model name recorded by the store, e.g. "minilm-l6-static-256"
    dim: int
    def embed(self, texts: Sequence[str]) -> numpy.ndarray: ...   # float32, shape (len(texts), dim), L2-normalised rows; zero vector rows allowed for empty input
