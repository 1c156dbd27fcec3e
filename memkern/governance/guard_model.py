"""The guard's learned layer: a logistic regression over what the rule layer reads.

Rules fit their author's phrasings; a linear model over broader features may carry further to
texts nobody wrote rules from. Its features, all computed without a language model:

- the bundled static embedder's sentence vector (``memkern.embed.static``, 256 numbers) of the
  text as a model would read it (``model_text``: the normalised view, its respelling and every
  decoded or hidden piece that ``guard_text.views`` found);
- hashed word uni- and bigrams and in-word character n-grams of that text (a fixed number of
  buckets, ``zlib.crc32``: stable across processes, unlike ``hash()``);
- the rule layer's findings on the same text (its reason names such as ``override`` or
  ``base64:exfiltration``), hashed into the same buckets.

The weights are trained by ``scripts/train_guard.py`` (numpy only) on every window of the evaluation
set's training splits (dev, heldout, holdout2, holdout3 and ten authors' ``train_a`` ... ``train_j``,
written to be trained on) and of ordinary LongMemEval turns of even-index questions, never on holdout4
or holdout5 (two more authors' halves, which measure it), and ship
as ``memkern/data/guard/classifier.safetensors`` with ``classifier.json`` beside it: the file's
sha256, the feature settings, the decision thresholds (chosen by cross-validation on the training
data) and the training provenance. They are read once per process, on first use, and
a missing or altered file raises ``GuardModelError``. ``memkern.governance.guard`` combines the
probability with the rules' score; this module only scores.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from memkern.embed.static import StaticEmbedder
from memkern.errors import GuardModelError
from memkern.governance.guard_text import Views

MODEL_DIR = Path(__file__).resolve().parent.parent / "data" / "guard"
WEIGHTS_FILE = "classifier.safetensors"
CARD_FILE = "classifier.json"
#: Width of the embedding block at the start of the feature vector.
EMBED_DIM = 256
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class FeatureSpec:
    """How a text becomes features; stored in ``classifier.json`` so that training and use agree."""

    hash_bits: int = 16
    #: Word n-gram orders (1 = words, 2 = adjacent word pairs).
    word_ngrams: tuple[int, ...] = (1, 2)
    #: In-word character n-gram orders (empty: none); they carry spelling across languages and disguises.
    char_ngrams: tuple[int, ...] = ()
    #: Multipliers of the three blocks (each block is unit-length before scaling).
    embed_scale: float = 1.0
    hashed_scale: float = 1.0
    rule_scale: float = 1.0

    @property
    def width(self) -> int:
        return EMBED_DIM + (1 << self.hash_bits)

    def to_json(self) -> dict[str, Any]:
        return {"hash_bits": self.hash_bits, "word_ngrams": list(self.word_ngrams),
                "char_ngrams": list(self.char_ngrams), "embed_scale": self.embed_scale,
                "hashed_scale": self.hashed_scale, "rule_scale": self.rule_scale}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> FeatureSpec:
        return cls(hash_bits=int(raw["hash_bits"]), word_ngrams=tuple(int(n) for n in raw["word_ngrams"]),
                   char_ngrams=tuple(int(n) for n in raw["char_ngrams"]), embed_scale=float(raw["embed_scale"]),
                   hashed_scale=float(raw["hashed_scale"]), rule_scale=float(raw["rule_scale"]))


@dataclass
class SparseRows:
    """Feature rows in compressed sparse row form: row ``i`` is ``indices/values[indptr[i]:indptr[i+1]]``."""

    indices: np.ndarray  # int64
    values: np.ndarray  # float32
    indptr: np.ndarray  # int64, len(rows) + 1

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def dot(self, weights: np.ndarray) -> np.ndarray:
        """``X @ weights`` for every row."""
        products = self.values * weights[self.indices]
        sums = np.concatenate(([0.0], np.cumsum(products, dtype=np.float64)))
        return (sums[self.indptr[1:]] - sums[self.indptr[:-1]]).astype(np.float32)

    def rows(self, selected: np.ndarray) -> SparseRows:
        """The rows at positions ``selected`` (in that order)."""
        starts, ends = self.indptr[selected], self.indptr[selected + 1]
        lengths = ends - starts
        take = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths) + np.arange(lengths.sum())
        return SparseRows(self.indices[take], self.values[take], np.concatenate(([0], np.cumsum(lengths))))


def model_text(seen: Views) -> str:
    """What a model reading the memory would understand: the plain view, its respelling and hidden parts."""
    parts = [seen.plain]
    if seen.respelled != seen.plain:
        parts.append(seen.respelled)
    parts += [hidden for _, hidden in seen.hidden]
    return "\n".join(parts)


def _codes(tokens: Sequence[str]) -> np.ndarray:
    return np.fromiter((zlib.crc32(token.encode("utf-8")) for token in tokens), dtype=np.uint64, count=len(tokens))


#: Longest word kept in the cache below: natural words are far shorter, and a run of thousands of
#: letters with no space (hostile or not) would hold megabytes per entry (its n-grams' buckets, and
#: the word itself as the key).
_CACHED_WORD_CHARS = 40


def _word_hashes(word: str, orders: tuple[int, ...], hash_bits: int) -> tuple[int, np.ndarray]:
    """``zlib.crc32`` of ``word``, and the hashed buckets of its in-word character n-grams (padded as
    ``<word>``, each n-gram prefixed by its order ``n``, its code plus ``n``, masked to ``hash_bits``)
    for every order."""
    padded = f"<{word}>"
    mask = (1 << hash_bits) - 1
    return zlib.crc32(word.encode("utf-8")), np.array(
        [(zlib.crc32(f"{n}{padded[i:i + n]}".encode()) + n) & mask
         for n in orders for i in range(len(padded) - n + 1)], dtype=np.uint64)


#: ``_word_hashes`` kept per word: hashing each gram of each text was most of the classifier's cost,
#: and a word's hashes never change (bounded: the least recently used words are dropped).
_cached_word_hashes = functools.lru_cache(maxsize=1 << 15)(_word_hashes)


def _hashes_of(word: str, orders: tuple[int, ...], hash_bits: int) -> tuple[int, np.ndarray]:
    """``_word_hashes`` of ``word``, from the cache unless the word is too long to keep."""
    if len(word) > _CACHED_WORD_CHARS:
        return _word_hashes(word, orders, hash_bits)
    return _cached_word_hashes(word, orders, hash_bits)


def _unit(buckets: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ``buckets`` (sorted) with equal values of total length ``scale``.

    Sorted and deduplicated by hand: ``np.unique`` took a hash-table path here that cost more."""
    keys = np.sort(buckets)
    keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))] if len(keys) else keys
    return keys, np.full(len(keys), scale / np.sqrt(max(1, len(keys))), dtype=np.float32)


def _hashed_block(text: str, reasons: Sequence[str], spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    """(buckets, values) of the n-grams of ``text`` and of the rule ``reasons``, each group unit-length.

    A word n-gram's code combines its words' crc32 codes with numpy; n-grams present count once."""
    mask = np.uint64((1 << spec.hash_bits) - 1)
    words = _WORD.findall(text)
    hashes = {word: _hashes_of(word, spec.char_ngrams, spec.hash_bits) for word in set(words)}
    codes = np.fromiter((hashes[word][0] for word in words), dtype=np.uint64, count=len(words))
    parts = []
    for n in spec.word_ngrams:
        combined = codes[: len(codes) - n + 1].copy()
        for offset in range(1, n):
            combined = combined * np.uint64(1_000_003) + codes[offset: len(codes) - n + 1 + offset]
        parts.append((combined + np.uint64(n)) & mask)
    parts += [buckets for _, buckets in hashes.values()]
    gram_keys, gram_values = _unit(np.concatenate(parts) if parts else np.zeros(0, np.uint64), spec.hashed_scale)
    rule_keys, rule_values = _unit(_codes(["rule:" + r for r in reasons] or ["rule:none"]) & mask, spec.rule_scale)
    keys = np.concatenate((gram_keys, rule_keys)).astype(np.int64) + EMBED_DIM
    return keys, np.concatenate((gram_values, rule_values))


@functools.cache
def _bundled_embedder() -> StaticEmbedder:
    """The bundled embedder, made once: making one resolves its folder's path, a cost per memory otherwise."""
    return StaticEmbedder()


def featurize(texts: Sequence[str], reasons: Sequence[Sequence[str]], spec: FeatureSpec,
              embedder: StaticEmbedder | None = None) -> SparseRows:
    """Feature rows of ``texts`` (each a ``model_text``) with the rules' ``reasons`` on each."""
    model = embedder or _bundled_embedder()
    vectors = model.embed(list(texts))
    vectors *= spec.embed_scale
    dense_index = np.arange(EMBED_DIM, dtype=np.int64)
    indices: list[np.ndarray] = []
    values: list[np.ndarray] = []
    lengths = []
    for vector, text, found in zip(vectors, texts, reasons):
        keys, hashed = _hashed_block(text, found, spec)
        indices += [dense_index, keys]
        values += [vector.astype(np.float32), hashed]
        lengths.append(EMBED_DIM + len(keys))
    indptr = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    if not lengths:
        return SparseRows(np.zeros(0, np.int64), np.zeros(0, np.float32), indptr)
    return SparseRows(np.concatenate(indices), np.concatenate(values), indptr)


@dataclass(frozen=True)
class GuardClassifier:
    """The trained model: ``probabilities`` of texts being poison, and the thresholds the guard uses."""

    spec: FeatureSpec
    weights: np.ndarray
    bias: float
    #: At or above this probability the classifier quarantines on its own.
    alone_at: float
    #: At or above this probability it quarantines a text the rules found uncertain.
    with_rules_at: float
    card: dict[str, Any]

    def probabilities(self, texts: Sequence[str], reasons: Sequence[Sequence[str]]) -> np.ndarray:
        logits = featurize(texts, reasons, self.spec).dot(self.weights) + self.bias
        return (1.0 / (1.0 + np.exp(-np.clip(logits, -40, 40)))).astype(np.float32)


_lock = threading.Lock()
_loaded: dict[str, GuardClassifier] = {}
#: The key of the bundled classifier in ``_loaded``.
_BUNDLED = ""


def load_classifier(folder: Path | str | None = None) -> GuardClassifier:
    """The classifier in ``folder`` (default: the bundled one), read and verified once per process."""
    if folder is None and _BUNDLED in _loaded:  # the write path's case: no path resolved per memory
        return _loaded[_BUNDLED]
    path = Path(folder) if folder is not None else MODEL_DIR
    key = _BUNDLED if folder is None else str(path.resolve())
    with _lock:
        if key not in _loaded:
            _loaded[key] = _read(path)
        return _loaded[key]


def _read(folder: Path) -> GuardClassifier:
    card_path, weights_path = folder / CARD_FILE, folder / WEIGHTS_FILE
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
        blob = weights_path.read_bytes()
    except (OSError, ValueError) as exc:
        raise GuardModelError(f"guard classifier: cannot read {card_path} / {weights_path}: {exc}") from exc
    digest = hashlib.sha256(blob).hexdigest()
    if not isinstance(card, dict) or digest != card.get("weights_sha256"):
        raise GuardModelError(
            f"guard classifier: sha256 of {weights_path} is {digest}, {card_path} expects "
            f"{card.get('weights_sha256') if isinstance(card, dict) else None}: the file is corrupt or was "
            "modified (restore the package or re-run scripts/train_guard.py)")
    try:
        from safetensors.numpy import load as load_safetensors

        tensors = load_safetensors(blob)
        spec = FeatureSpec.from_json(card["features"])
        weights = np.asarray(tensors["weights"], dtype=np.float32)
        bias = float(np.asarray(tensors["bias"]).reshape(-1)[0])
        alone_at, with_rules_at = float(card["thresholds"]["alone"]), float(card["thresholds"]["with_rules"])
    except Exception as exc:  # safetensors raises its own error types
        raise GuardModelError(f"guard classifier: {weights_path} or {card_path} is malformed: {exc!r}") from exc
    if weights.shape != (spec.width,) or not np.isfinite(weights).all() or not np.isfinite(bias):
        raise GuardModelError(f"guard classifier: weights of shape {weights.shape} (expected ({spec.width},)) "
                              "or non-finite values in " + str(weights_path))
    weights.setflags(write=False)
    return GuardClassifier(spec, weights, bias, alone_at, with_rules_at, card)
