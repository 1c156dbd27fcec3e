"""Retrieval metrics of the LoCoMo benchmark, defined once so every system is scored the same way.

For one question, the ranked hits are expanded into their source turn ids in rank order (a hit
may cover several turns, and then spends several of the k) and the first ``k`` *distinct* turn
ids are kept:

* ``turn_any@k``: 1 if any evidence id is among them;
* ``turn_all@k``: 1 if every evidence id is among them;
* ``session_any@k``: the same over the first ``k`` distinct *sessions* of the expanded turns
  (turn ``"D3:7"`` is session 3): 1 if any evidence session is among them;
* ``context_tokens@k``: whitespace tokens of the memory text handed back up to the point where
  ``k`` distinct turns are reached: the sum over the hits consumed (every hit ranked before the
  one that brought the k-th distinct turn, that one included; all hits if fewer than k turns).

Scores are averaged per category (1..5) and over categories 1-4 together. Questions with empty
evidence are left out of every average and counted in ``n_no_evidence``; ``n`` is the number of
questions averaged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from memkern.bench.locomo_data import session_of as _session_of

CATEGORIES = (1, 2, 3, 4, 5)
ALL_BUT_ADVERSARIAL = "1-4"
METRIC_NAMES = ("turn_any", "turn_all", "session_any", "context_tokens")


@dataclass(frozen=True)
class RankedHit:
    """One retrieved memory, as the metrics see it: the turns it covers and the text it returns."""

    turn_ids: tuple[str, ...]
    text: str
    score: float = 0.0


def metric_keys(ks: Sequence[int]) -> list[str]:
    """``["turn_any@1", "turn_all@1", "session_any@1", "context_tokens@1", "turn_any@3", ...]``."""
    return [f"{name}@{k}" for k in ks for name in METRIC_NAMES]


def distinct_turns(hits: Sequence[RankedHit]) -> list[str]:
    """Every distinct turn id the hits cover, in rank order."""
    seen: dict[str, None] = {}
    for hit in hits:
        for turn_id in hit.turn_ids:
            seen.setdefault(turn_id, None)
    return list(seen)


def question_scores(hits: Sequence[RankedHit], evidence: Iterable[str], ks: Sequence[int],
                    session_of: Callable[[str], int | None] = _session_of) -> dict[str, float]:
    """The metrics of one question at each k (see the module docstring); evidence must be non-empty."""
    evidence_turns = set(evidence)
    if not evidence_turns:
        raise ValueError("question_scores needs non-empty evidence")
    evidence_sessions = {s for s in (session_of(t) for t in evidence_turns) if s is not None}

    # One pass: distinct turns in order, the tokens consumed when each new turn appears, distinct sessions.
    turns: list[str] = []
    tokens_at: list[int] = []           # tokens_at[i]: tokens of the hits consumed when turns[i] first appeared
    sessions: list[int] = []
    seen_turns: set[str] = set()
    seen_sessions: set[int] = set()
    consumed = 0
    for hit in hits:
        consumed += len(hit.text.split())
        for turn_id in hit.turn_ids:
            if turn_id in seen_turns:
                continue
            seen_turns.add(turn_id)
            turns.append(turn_id)
            tokens_at.append(consumed)
            session = session_of(turn_id)
            if session is not None and session not in seen_sessions:
                seen_sessions.add(session)
                sessions.append(session)

    scores: dict[str, float] = {}
    for k in ks:
        top = set(turns[:k])
        top_sessions = set(sessions[:k])
        scores[f"turn_any@{k}"] = float(bool(top & evidence_turns))
        scores[f"turn_all@{k}"] = float(evidence_turns <= top)
        scores[f"session_any@{k}"] = float(bool(top_sessions & evidence_sessions))
        scores[f"context_tokens@{k}"] = float(tokens_at[k - 1] if len(turns) >= k else consumed)
    return scores


class MetricAccumulator:
    """Collects per-question scores and averages them per category and over categories 1-4."""

    def __init__(self, ks: Sequence[int]):
        self.ks = tuple(ks)
        self.keys = metric_keys(self.ks)
        self._rows: dict[int, list[list[float]]] = {c: [] for c in CATEGORIES}
        self._no_evidence: dict[int, int] = {c: 0 for c in CATEGORIES}

    def add(self, category: int, hits: Sequence[RankedHit], evidence: Sequence[str],
            session_of: Callable[[str], int | None] = _session_of) -> dict[str, float] | None:
        """Score one question; returns its scores, or None when it has no evidence (then only counted)."""
        self._rows.setdefault(category, [])
        self._no_evidence.setdefault(category, 0)
        if not evidence:
            self._no_evidence[category] += 1
            return None
        scores = question_scores(hits, evidence, self.ks, session_of)
        self._rows[category].append([scores[key] for key in self.keys])
        return scores

    def summary(self) -> dict[str, dict[str, float | int | None]]:
        """``{"1": {"n": .., "n_no_evidence": .., "turn_any@1": .., ...}, ..., "5": {...}, "1-4": {...}}``."""
        out: dict[str, dict[str, float | int | None]] = {}
        groups: list[tuple[str, list[int]]] = [(str(c), [c]) for c in sorted(self._rows)]
        groups.append((ALL_BUT_ADVERSARIAL, [c for c in sorted(self._rows) if 1 <= c <= 4]))
        for name, categories in groups:
            rows = [row for c in categories for row in self._rows[c]]
            entry: dict[str, float | int | None] = {
                "n": len(rows),
                "n_no_evidence": sum(self._no_evidence[c] for c in categories),
            }
            means = np.asarray(rows, dtype=np.float64).mean(axis=0) if rows else [None] * len(self.keys)
            for key, value in zip(self.keys, means):
                entry[key] = None if value is None else round(float(value), 4)
            out[name] = entry
        return out


def percentile_ms(seconds: Sequence[float], q: float) -> float | None:
    """The q-th percentile of durations given in seconds, in milliseconds."""
    if not seconds:
        return None
    return round(float(np.percentile(np.asarray(seconds, dtype=np.float64) * 1000.0, q)), 3)
