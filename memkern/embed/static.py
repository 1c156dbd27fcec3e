"""memkern's bundled, offline default embedder: a static (model2vec-style) distillation of all-MiniLM-L6-v2.

A sentence vector is the L2-normalised mean of per-token vectors looked up in one matrix, so embedding is a
tokenizer call plus a gather and a segmented sum: no neural network runs at query time. Runtime needs only
numpy, ``tokenizers`` and ``safetensors``. The model folder is produced by ``scripts/distill_embedder.py``.

Model folder layout::

    config.json              name, dim, max_tokens, unk_token_id, embeddings_sha256, tokenizer_sha256, provenance
    embeddings.safetensors   one tensor "embeddings", shape (vocab, dim), float16 or float32
    tokenizer.json           a ``tokenizers`` tokenizer whose ids index rows of that tensor
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from memkern.embed.word_tokens import WordTokens
from memkern.errors import EmbedderError

DEFAULT_MODEL_NAME = "minilm-l6-static-256"
DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "data" / "minilm-static-256"
DEFAULT_MAX_TOKENS = 512
# Text is cut to this many characters per allowed token before tokenizing, so a huge input costs bounded time.
_CHARS_PER_TOKEN_BOUND = 16
# Texts per tokenizer call / gather: bounds the temporary (tokens x dim) array for huge inputs.
_CHUNK = 1024
# Texts of similar length summed together (see _embed_chunk): at most this many, the longest at most twice
# the shortest unless all are this short.
_GROUP = 32
_NARROW = 16

__all__ = ["DEFAULT_MODEL_NAME", "DEFAULT_MODEL_PATH", "StaticEmbedder"]


@dataclass(frozen=True)
class _Config:
    name: str
    dim: int
    max_tokens: int
    unk_token_id: int | None
    embeddings_file: str
    embeddings_tensor: str
    embeddings_sha256: str
    raw: dict[str, Any]


@dataclass(frozen=True)
class _Model:
    config: _Config
    matrix: np.ndarray  # float32, (vocab + 1, dim), last row all zeros (padding), read-only
    tokenizer: Any  # tokenizers.Tokenizer; never mutated after loading, so safe to share between threads
    max_chars: int
    tokens: WordTokens  # the tokenizer's ids, found faster word by word


_lock = threading.Lock()
_models: dict[str, _Model] = {}


def _get_model(path: Path) -> _Model:
    """The loaded model for folder ``path``, from the process-wide cache (loading it on first request)."""
    key = str(path.expanduser().resolve())
    model = _models.get(key)
    if model is None:
        with _lock:  # one loader at a time; a failed load is not cached, so a repaired folder can be retried
            model = _models.get(key)
            if model is None:
                model = _load_model(path, _read_config(path))
                _models[key] = model
    return model


def _read_config(path: Path) -> _Config:
    cfg_path = path / "config.json"
    try:
        raw = json.loads(cfg_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EmbedderError(f"static embedder: no config.json in model folder {path}") from None
    except (OSError, ValueError) as exc:
        raise EmbedderError(f"static embedder: cannot read {cfg_path}: {exc}") from exc
    try:
        unk = raw.get("unk_token_id")
        cfg = _Config(
            name=str(raw["name"]),
            dim=int(raw["dim"]),
            max_tokens=int(raw.get("max_tokens") or DEFAULT_MAX_TOKENS),
            unk_token_id=None if unk is None else int(unk),
            embeddings_file=str(raw.get("embeddings_file", "embeddings.safetensors")),
            embeddings_tensor=str(raw.get("embeddings_tensor", "embeddings")),
            embeddings_sha256=str(raw["embeddings_sha256"]).lower(),
            raw=raw,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise EmbedderError(f"static embedder: {cfg_path} is missing or has a bad field: {exc!r}") from exc
    if cfg.dim <= 0 or cfg.max_tokens <= 0:
        raise EmbedderError(f"static embedder: {cfg_path} has dim={cfg.dim}, max_tokens={cfg.max_tokens}")
    return cfg


def _load_model(path: Path, cfg: _Config) -> _Model:
    emb_path = path / cfg.embeddings_file
    try:
        blob = emb_path.read_bytes()
    except FileNotFoundError:
        raise EmbedderError(f"static embedder: embeddings file missing: {emb_path}") from None
    except OSError as exc:
        raise EmbedderError(f"static embedder: cannot read {emb_path}: {exc}") from exc
    digest = hashlib.sha256(blob).hexdigest()
    if digest != cfg.embeddings_sha256:
        raise EmbedderError(
            f"static embedder: sha256 mismatch for {emb_path}: config.json expects {cfg.embeddings_sha256}, "
            f"file has {digest}; the model file is corrupt or was modified (re-run scripts/distill_embedder.py "
            f"or restore the package)"
        )

    try:
        from safetensors.numpy import load as load_safetensors
        from tokenizers import Tokenizer
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise EmbedderError(f"static embedder needs the 'tokenizers' and 'safetensors' packages: {exc}") from exc

    try:
        tensors = load_safetensors(blob)
    except Exception as exc:  # safetensors raises its own error types
        raise EmbedderError(f"static embedder: {emb_path} is not a valid safetensors file: {exc}") from exc
    if cfg.embeddings_tensor not in tensors:
        raise EmbedderError(
            f"static embedder: {emb_path} has no tensor {cfg.embeddings_tensor!r} (has {sorted(tensors)})"
        )
    stored = tensors[cfg.embeddings_tensor]
    if stored.ndim != 2 or stored.shape[1] != cfg.dim:
        raise EmbedderError(f"static embedder: tensor shape {stored.shape} does not match dim={cfg.dim} in config")
    if not np.isfinite(stored).all():
        raise EmbedderError(f"static embedder: {emb_path} contains NaN or infinite values")
    # float32 in memory (float16 sums lose precision), plus one all-zero row used as padding by _embed_chunk.
    matrix = np.zeros((stored.shape[0] + 1, cfg.dim), dtype=np.float32)
    matrix[:-1] = stored
    matrix.setflags(write=False)

    tok_path = path / "tokenizer.json"
    try:
        tok_bytes = tok_path.read_bytes()
    except OSError as exc:
        raise EmbedderError(f"static embedder: cannot read tokenizer file {tok_path}: {exc}") from exc
    tok_expected = cfg.raw.get("tokenizer_sha256")
    if tok_expected is not None and hashlib.sha256(tok_bytes).hexdigest() != str(tok_expected).lower():
        raise EmbedderError(
            f"static embedder: sha256 mismatch for {tok_path}: the tokenizer file is corrupt or was modified"
        )
    try:
        tokenizer = Tokenizer.from_str(tok_bytes.decode("utf-8"))
    except Exception as exc:  # tokenizers raises a bare Exception for invalid files
        raise EmbedderError(f"static embedder: cannot load tokenizer {tok_path}: {exc}") from exc
    tokenizer.no_padding()
    tokenizer.enable_truncation(cfg.max_tokens)
    vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    if vocab > stored.shape[0]:
        raise EmbedderError(
            f"static embedder: tokenizer vocabulary ({vocab}) is larger than the embedding matrix ({stored.shape[0]})"
        )
    return _Model(cfg, matrix, tokenizer, cfg.max_tokens * _CHARS_PER_TOKEN_BOUND,
                  WordTokens(tokenizer, cfg.max_tokens))


class StaticEmbedder:
    """Static token-embedding model; implements :class:`memkern.embed.base.Embedder`.

    ``StaticEmbedder()`` uses the model bundled with memkern; ``StaticEmbedder(path)`` a folder written by
    ``scripts/distill_embedder.py``. Nothing is read at import time. The first construction for a folder loads
    the config, tokenizer and matrix and verifies the files' sha256 (a fraction of a second), raising
    :class:`memkern.errors.EmbedderError` if anything is missing or corrupt; the result is cached per folder for
    the whole process, so further constructions are free. Instances are thread safe.
    """

    name: str
    dim: int

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else DEFAULT_MODEL_PATH
        self._model = _get_model(self.path)
        self.name = self._model.config.name
        self.dim = self._model.config.dim

    def __repr__(self) -> str:
        return f"StaticEmbedder(name={self.name!r}, dim={self.dim}, path={str(self.path)!r})"

    @property
    def config(self) -> dict[str, Any]:
        """A copy of the model's config.json (provenance, distillation options)."""
        return json.loads(json.dumps(self._model.config.raw))

    def load(self) -> StaticEmbedder:
        """Kept for callers that want an explicit load step: the model is already loaded. Returns self."""
        return self

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``: float32 array of shape (len(texts), dim), unit rows; zero rows for empty input."""
        if isinstance(texts, (str, bytes)):
            raise TypeError("StaticEmbedder.embed takes a sequence of strings, not a single string")
        model = self._model
        n = len(texts)
        out = np.zeros((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        max_chars = model.max_chars
        batch: list[str] = []
        for t in texts:
            if not isinstance(t, str):
                raise TypeError(f"StaticEmbedder.embed expects str items, got {type(t).__name__}")
            batch.append(t if len(t) <= max_chars else t[:max_chars])

        for i in range(0, n, _CHUNK):
            _embed_chunk(model, batch[i : i + _CHUNK], out[i : i + _CHUNK])
        return out


def _embed_chunk(model: _Model, batch: list[str], out: np.ndarray) -> None:
    """Write the unit-norm mean token vectors of ``batch`` into ``out`` (pre-zeroed, len(batch) rows)."""
    n = len(batch)
    ids_per_text = model.tokens.ids(batch)

    lengths = np.fromiter(map(len, ids_per_text), dtype=np.int64, count=n)
    total = int(lengths.sum())
    if total == 0:
        return
    flat = np.fromiter(chain.from_iterable(ids_per_text), dtype=np.int64, count=total)
    unk = model.config.unk_token_id
    if unk is not None:
        keep = flat != unk
        if not keep.all():  # model2vec drops unknown tokens rather than averaging in the [UNK] vector
            rows = np.repeat(np.arange(n), lengths)[keep]
            flat = flat[keep]
            lengths = np.bincount(rows, minlength=n)
            if flat.size == 0:
                return

    # Sum, not mean: the mean's 1/len factor disappears in the L2 normalisation below. Texts are summed in groups
    # of similar length, each padded with the all-zero last row of the matrix: one gather + one dense sum per
    # group, several times faster than np.add.reduceat over a ragged (tokens x dim) array. A group ends where a
    # text is over twice as long as its shortest, so that padding at most doubles the rows gathered: a session's
    # few texts range from a word to 512 tokens.
    matrix = model.matrix
    pad_row = matrix.shape[0] - 1
    starts = np.cumsum(lengths) - lengths
    order = np.argsort(lengths, kind="stable")
    ascending = lengths[order]
    sums = np.zeros((n, matrix.shape[1]), dtype=np.float32)
    g = 0
    while g < n:
        widest = max(2 * int(ascending[g]), _NARROW)
        end = g + int(np.searchsorted(ascending[g : g + _GROUP], widest, side="right"))
        sel, sel_len, g = order[g:end], ascending[g:end], end
        width = int(sel_len[-1])  # sorted ascending, so the last is the longest
        if width == 0:
            continue
        cols = np.arange(width)
        pos = np.minimum(starts[sel, None] + cols, flat.size - 1)
        idx = np.where(cols < sel_len[:, None], flat[pos], pad_row)
        sums[sel] = matrix[idx].sum(axis=1)
    norms = np.sqrt(np.einsum("ij,ij->i", sums, sums))
    good = norms > 1e-12
    out[good] = sums[good] / norms[good, None]
