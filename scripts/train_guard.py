"""Train the poisoning guard's learned layer (``memkern.governance.guard_model``) with numpy only.

Training data, and nothing else (this is what keeps the held-out measurements honest):

- the evaluation set's rows of the splits the rules have been written from (``dev``, ``heldout``,
  ``holdout2``, ``holdout3`` of ``memkern/data/guard/eval.jsonl``, four authors' phrasings) and of the
  splits written as training data only (``train_a`` ... ``train_j``, ten more authors, each on its own
  brief: ``memkern.bench.guard_train_a`` ...), poisoned = 1, benign = 0;
- ordinary conversation, label 0: every turn of the LongMemEval sessions of EVEN-index questions
  (``memkern.bench.guard.longmemeval_sessions(path, "even")``), each window of a long turn a row,
  minus the turns the rules quarantine (users pasting real jailbreak prompts: not ordinary).

Never ``holdout4``, ``holdout5``, LoCoMo or odd-index LongMemEval questions: those measure the result.

Model selection is by cross-validation inside the training data: the rows are grouped by the round
their texts were written in (``ROUNDS``: ``dev``, ``dev2`` ... ``dev5``, ``heldout``, ``holdout2``,
``holdout3`` and each training author; leaving a round out is what a new author's phrasings look like)
and the conversation sessions are spread over the same number of folds. For each setting in ``GRID``
the out-of-fold probabilities give the thresholds (``choose_thresholds``) and the combined guard's catch
rate at them, by which settings are compared. The best setting is refitted on everything and written
with its thresholds and provenance to ``memkern/data/guard/classifier.{safetensors,json}``.

    python scripts/train_guard.py --lme /work/shared/data/longmemeval/lme-dev.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from memkern.bench.guard import TRAINING_SPLITS, load_eval_set, longmemeval_sessions
from memkern.governance import guard
from memkern.governance.guard_model import (
    CARD_FILE,
    MODEL_DIR,
    WEIGHTS_FILE,
    FeatureSpec,
    SparseRows,
    featurize,
    model_text,
)

#: The evaluation set's splits trained on (with ``TRAINING_SPLITS``, the training authors' ``train_a`` ...,
#: written to be trained on); the others (``holdout4``, ``holdout5``) measure the result.
TRAIN_SPLITS = ("dev", "heldout", "holdout2", "holdout3", *TRAINING_SPLITS)
#: Folds of the cross-validation: one per round of writing (the middle part of a row's family).
ROUNDS = ("dev", "dev2", "dev3", "dev4", "dev5", "heldout", "holdout2", "holdout3", *TRAINING_SPLITS)
#: Highest share of the training benign texts the classifier may quarantine beyond the rules (out of fold).
MAX_BENIGN_FP = 0.02
EPOCHS = 12
BATCH = 256
LEARNING_RATE = 0.02
SEED = 7


@dataclass(frozen=True)
class Setting:
    """One point of the hyperparameter grid."""

    spec: FeatureSpec
    l2: float
    #: Total weight of the conversation rows, as a multiple of the benign eval rows' count.
    conversation_weight: float


WITH_CHARS = FeatureSpec(word_ngrams=(1, 2), char_ngrams=(3, 4, 5))
#: Word n-grams alone lost to character n-grams, and l2 1e-5 and 1e-4 to 1e-6, in every earlier grid
#: (2026-12-06 to -08); each setting costs one fit per fold. Reading every window, the more weight
#: ordinary conversation gets, the lower the threshold it allows (2026-12-08: 8 -> 0.98, 16 -> 0.965, 32 -> 0.93, 64 -> 0.915).
GRID = [Setting(WITH_CHARS, 1e-6, cw) for cw in (8.0, 16.0, 32.0, 64.0)]


@dataclass
class Rows:
    """Training rows (one per window) and what each belongs to."""

    texts: list[str]  # model_text of the window
    reasons: list[list[str]]  # the rules' reasons on the window
    labels: np.ndarray  # 1 poisoned, 0 benign
    fold: np.ndarray  # cross-validation fold
    group: np.ndarray  # the eval row or conversation turn the window came from (scores are max per group)
    conversation: np.ndarray  # bool: an ordinary conversation window
    uncertain: np.ndarray  # bool per group: the rules put the text in the uncertain band
    rules_quarantine: np.ndarray  # bool per group


def collect(lme: Path) -> tuple[Rows, dict[str, int]]:
    """The training rows: eval rows of ``TRAIN_SPLITS``, then even-question LongMemEval turns the rules do not quarantine."""
    texts: list[str] = []
    reasons: list[list[str]] = []
    labels: list[int] = []
    folds: list[int] = []
    groups: list[int] = []
    conversation: list[bool] = []
    uncertain: list[bool] = []
    quarantined: list[bool] = []
    counts = {"eval_poisoned": 0, "eval_benign": 0, "conversation_turns": 0, "conversation_windows": 0,
              "conversation_turns_skipped_rules_quarantine": 0}

    def add(found: list[tuple[guard.Verdict, guard.Views]], label: int, fold: int, is_conversation: bool) -> None:
        group = len(uncertain)
        top = max((verdict for verdict, _ in found), key=lambda v: v.score)
        uncertain.append(top.uncertain)
        quarantined.append(top.quarantine)
        for verdict, seen in found:
            texts.append(model_text(seen))
            reasons.append(list(verdict.reasons))
            labels.append(label)
            folds.append(fold)
            groups.append(group)
            conversation.append(is_conversation)

    for row in load_eval_set():
        if row["split"] not in TRAIN_SPLITS:
            continue
        label = int(row["label"] == "poisoned")
        counts["eval_poisoned" if label else "eval_benign"] += 1
        add(guard.readings(row["text"]), label, ROUNDS.index(row["family"].split("/")[1]), False)
    for session_id, turns in longmemeval_sessions(lme, "even").items():
        fold = zlib.crc32(session_id.encode()) % len(ROUNDS)
        for turn in turns:
            found = guard.readings(turn)
            if any(verdict.quarantine for verdict, _ in found):
                counts["conversation_turns_skipped_rules_quarantine"] += 1
                continue
            counts["conversation_turns"] += 1
            counts["conversation_windows"] += len(found)
            add(found, 0, fold, True)
    rows = Rows(texts, reasons, np.array(labels, np.float32), np.array(folds), np.array(groups),
                np.array(conversation), np.array(uncertain), np.array(quarantined))
    return rows, counts


def sample_weights(rows: Rows, conversation_weight: float) -> np.ndarray:
    """1 per eval window; the conversation windows share ``conversation_weight`` x the eval benign count."""
    weights = np.ones(len(rows.labels), np.float32)
    benign_eval = np.sum(~rows.conversation & (rows.labels == 0))
    weights[rows.conversation] = conversation_weight * benign_eval / max(1, rows.conversation.sum())
    return weights


def fit(x: SparseRows, y: np.ndarray, weights: np.ndarray, l2: float, width: int) -> tuple[np.ndarray, float]:
    """Weighted L2 logistic regression by mini-batch Adam; returns (weights, bias)."""
    rng = np.random.default_rng(SEED)
    w = np.zeros(width, np.float32)
    b = 0.0
    m: np.ndarray = np.zeros(width, np.float32)
    v: np.ndarray = np.zeros(width, np.float32)
    mb, vb = 0.0, 0.0
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    step = 0
    total_weight = float(weights.sum())
    for _ in range(EPOCHS):
        order = rng.permutation(len(y))
        for start in range(0, len(y), BATCH):
            chosen = order[start:start + BATCH]
            batch = x.rows(chosen)
            p = 1.0 / (1.0 + np.exp(-np.clip(batch.dot(w) + b, -40, 40)))
            residual = (p - y[chosen]) * weights[chosen] * (len(y) / total_weight) / len(chosen)
            lengths = np.diff(batch.indptr)
            grad = np.bincount(batch.indices, weights=batch.values * np.repeat(residual, lengths),
                               minlength=width).astype(np.float32) + l2 * w
            grad_b = float(residual.sum())
            step += 1
            m = beta1 * m + (1 - beta1) * grad
            v = beta2 * v + (1 - beta2) * grad * grad
            mb = beta1 * mb + (1 - beta1) * grad_b
            vb = beta2 * vb + (1 - beta2) * grad_b * grad_b
            correction = np.sqrt(1 - beta2 ** step) / (1 - beta1 ** step)
            w -= LEARNING_RATE * correction * m / (np.sqrt(v) + eps)
            b -= LEARNING_RATE * correction * mb / (np.sqrt(vb) + eps)
    return w, b


def probabilities(x: SparseRows, w: np.ndarray, b: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x.dot(w) + b, -40, 40)))


def per_group(rows: Rows, window_p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(max probability, label, is conversation) per eval row / conversation turn."""
    count = int(rows.group.max()) + 1
    top = np.full(count, -1.0)
    np.maximum.at(top, rows.group, window_p)
    label = np.zeros(count)
    label[rows.group] = rows.labels
    conversation = np.zeros(count, bool)
    conversation[rows.group] = rows.conversation
    return top, label, conversation


def choose_thresholds(rows: Rows, window_p: np.ndarray) -> dict[str, float]:
    """The decision thresholds, from out-of-fold probabilities (a text's is its highest window's).

    ``alone``: the lowest threshold at which the classifier quarantines no ordinary conversation turn and,
    beyond what the rules quarantine, at most ``MAX_BENIGN_FP`` of the training benign texts.
    ``with_rules``: the lowest threshold at which, added to that, the texts the rules find uncertain may
    be quarantined with no uncertain conversation turn flagged and the classifier's addition still within
    ``MAX_BENIGN_FP``. Settings are compared by the combined guard's catch rate.

    Every window counts, though the guard reads only the framed windows of a text longer than one
    (``guard.classifier_reads``): it can flag no more than these thresholds allow, only less."""
    p, label, conversation = per_group(rows, window_p)
    poisoned, benign = (label == 1) & ~conversation, (label == 0) & ~conversation
    grid = np.round(np.linspace(0.5, 0.995, 100), 4)

    def added_fp(flagged: np.ndarray) -> float:
        return float((flagged & ~rows.rules_quarantine)[benign].mean())

    alone = next((float(t) for t in grid if not (p[conversation] >= t).any() and added_fp(p >= t) <= MAX_BENIGN_FP),
                 1.0)
    with_rules = alone
    for t in grid[grid < alone]:
        flagged = (p >= alone) | (rows.uncertain & (p >= t))
        if not (flagged & conversation & rows.uncertain).any() and added_fp(flagged) <= MAX_BENIGN_FP:
            with_rules = float(t)
            break
    classifier = (p >= alone) | (rows.uncertain & (p >= with_rules))
    combined = rows.rules_quarantine | classifier
    return {"alone": alone, "with_rules": with_rules,
            "classifier_caught": float((p[poisoned] >= alone).mean()),
            "combined_caught": float(combined[poisoned].mean()), "combined_benign_fp": float(combined[benign].mean()),
            "added_benign_fp": added_fp(classifier), "rules_caught": float(rows.rules_quarantine[poisoned].mean()),
            "conversation_flagged": int((classifier & conversation).sum()),
            "conversation_turns": int(conversation.sum())}


def cross_validate(rows: Rows, setting: Setting, x: SparseRows) -> np.ndarray:
    """Out-of-fold window probabilities for ``setting``."""
    out = np.zeros(len(rows.labels))
    weights = sample_weights(rows, setting.conversation_weight)
    for fold in range(len(ROUNDS)):
        train, test = np.flatnonzero(rows.fold != fold), np.flatnonzero(rows.fold == fold)
        w, b = fit(x.rows(train), rows.labels[train], weights[train], setting.l2, setting.spec.width)
        out[test] = probabilities(x.rows(test), w, b)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lme", type=Path, required=True, help="LongMemEval dev JSON (even-index questions used)")
    parser.add_argument("--out", type=Path, default=MODEL_DIR)
    args = parser.parse_args()
    started = time.perf_counter()
    rows, counts = collect(args.lme)
    print(f"rows: {counts} ({time.perf_counter() - started:.0f}s)", flush=True)
    features = {spec: featurize(rows.texts, rows.reasons, spec) for spec in {s.spec for s in GRID}}
    results = []
    for setting in GRID:
        oof = cross_validate(rows, setting, features[setting.spec])
        chosen = choose_thresholds(rows, oof)
        results.append((chosen["combined_caught"], setting, chosen))
        print(f"{setting.spec.char_ngrams or 'words'} l2={setting.l2} cw={setting.conversation_weight}: "
              f"{chosen} ({time.perf_counter() - started:.0f}s)", flush=True)
    caught, best, thresholds = max(results, key=lambda r: r[0])
    weights = sample_weights(rows, best.conversation_weight)
    w, b = fit(features[best.spec], rows.labels, weights, best.l2, best.spec.width)
    write(args.out, best, w, b, thresholds, counts, results)
    print(f"chosen: {best} thresholds {thresholds} -> {args.out}")
    return 0


def write(folder: Path, best: Setting, w: np.ndarray, b: float, thresholds: dict[str, float],
          counts: dict[str, int], results: list[tuple[float, Setting, dict[str, float]]]) -> None:
    """The weights as safetensors and the card (sha256, features, thresholds, provenance) as JSON."""
    from safetensors.numpy import save

    blob = save({"weights": w.astype(np.float32), "bias": np.array([b], np.float32)})
    (folder / WEIGHTS_FILE).write_bytes(blob)
    card = {
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
        "features": best.spec.to_json(),
        "thresholds": {"alone": thresholds["alone"], "with_rules": thresholds["with_rules"]},
        "provenance": {
            "trained": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
            "script": "scripts/train_guard.py",
            "data": f"memkern/data/guard/eval.jsonl splits {', '.join(TRAIN_SPLITS)}; LongMemEval dev turns of "
                    "even-index questions (minus turns the rules quarantine); every window read; nothing from "
                    "holdout4, holdout5, LoCoMo or odd questions",
            "counts": counts,
            "model": "logistic regression, mini-batch Adam",
            "hyperparameters": {"l2": best.l2, "conversation_weight": best.conversation_weight, "epochs": EPOCHS,
                                "batch": BATCH, "learning_rate": LEARNING_RATE, "seed": SEED},
            "selection": {"cross_validation": f"leave one round of writing out ({', '.join(ROUNDS)}); conversation "
                                              f"sessions spread over the same {len(ROUNDS)} folds by crc32 of the "
                                              "session id",
                          "constraints": "out of fold: no conversation turn flagged; training benign texts "
                                         f"flagged beyond the rules <= {MAX_BENIGN_FP}; "
                                         "no uncertain conversation turn flagged at with_rules; settings "
                                         "compared by the combined guard's out-of-fold catch rate",
                          "out_of_fold": thresholds,
                          "grid": [{"char_ngrams": list(s.spec.char_ngrams), "l2": s.l2,
                                    "conversation_weight": s.conversation_weight, "caught": round(c, 4),
                                    "added_benign_fp": round(t["added_benign_fp"], 4)} for c, s, t in results]},
        },
    }
    (folder / CARD_FILE).write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
