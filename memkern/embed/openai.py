"""Embeddings from any OpenAI-compatible ``/v1/embeddings`` endpoint (OpenAI, Ollama, vLLM,
llama.cpp's server).

The dimension is checked on every response: a server that silently changes models
would otherwise corrupt the index with vectors of another space.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import httpx
import numpy as np

from memkern.errors import EmbedderError

_RETRY_STATUS = {429, 500, 502, 503, 504}


class OpenAIEmbedder:
    """``Embedder`` backed by an HTTP endpoint; ``dim`` is probed once when not given."""

    def __init__(self, *, base_url: str, model: str, api_key: str | None = None, dim: int | None = None,
                 timeout_s: float = 30.0, retries: int = 3) -> None:
        self.model = model
        self.name = f"openai:{model}"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s)
        self._retries = retries
        self.dim = dim if dim is not None else self._request(["dimension probe"]).shape[1]

    def _request(self, texts: Sequence[str]) -> np.ndarray:
        payload = {"model": self.model, "input": list(texts)}
        for attempt in range(self._retries + 1):
            try:
                response = self._client.post("/embeddings", json=payload)
            except httpx.HTTPError as exc:
                if attempt == self._retries:
                    raise EmbedderError(f"embedding endpoint {self._client.base_url} unreachable: {exc}") from exc
            else:
                if response.status_code not in _RETRY_STATUS or attempt == self._retries:
                    break
            time.sleep(min(8.0, 0.5 * 2**attempt))
        if response.status_code != 200:
            raise EmbedderError(
                f"embedding endpoint {self._client.base_url} answered {response.status_code}: {response.text[:200]}"
            )
        try:
            data = sorted(response.json()["data"], key=lambda row: row["index"])
            vectors = np.asarray([row["embedding"] for row in data], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbedderError(f"embedding endpoint returned an unusable body: {response.text[:200]}") from exc
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise EmbedderError(f"embedding endpoint returned {len(vectors)} vectors for {len(texts)} texts")
        return vectors

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._request(texts)
        if vectors.shape[1] != self.dim:
            raise EmbedderError(
                f"embedding endpoint returned {vectors.shape[1]}-dimensional vectors; {self.name} has {self.dim}"
            )
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)
