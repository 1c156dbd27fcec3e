"""Text embedders: the bundled offline default and any OpenAI-compatible endpoint.

Which one ``MemOS()`` uses is chosen by ``MEMKERN_EMBEDDER``: unset or ``static`` for the
bundled model, ``openai`` for an endpoint described by ``MEMKERN_EMBED_BASE_URL``,
``MEMKERN_EMBED_MODEL``, ``MEMKERN_EMBED_API_KEY`` and optionally ``MEMKERN_EMBED_DIM``.
"""

from __future__ import annotations

import os

from memkern.embed.base import Embedder
from memkern.errors import EmbedderError

__all__ = ["Embedder", "default_embedder"]


def default_embedder() -> Embedder:
    """The embedder the environment asks for; the bundled static model if it asks for none."""
    choice = os.environ.get("MEMKERN_EMBEDDER", "static").strip().lower()
    if choice == "static":
        from memkern.embed.static import StaticEmbedder

        return StaticEmbedder()
    if choice == "openai":
        from memkern.embed.openai import OpenAIEmbedder

        base_url = os.environ.get("MEMKERN_EMBED_BASE_URL")
        model = os.environ.get("MEMKERN_EMBED_MODEL")
        if not base_url or not model:
            raise EmbedderError("MEMKERN_EMBEDDER=openai needs MEMKERN_EMBED_BASE_URL and MEMKERN_EMBED_MODEL")
        dim = os.environ.get("MEMKERN_EMBED_DIM")
        return OpenAIEmbedder(base_url=base_url, model=model, api_key=os.environ.get("MEMKERN_EMBED_API_KEY"),
                              dim=int(dim) if dim else None)
    raise EmbedderError(f"unknown MEMKERN_EMBEDDER {choice!r}; use 'static' or 'openai'")
