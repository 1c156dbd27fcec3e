"""Hybrid retrieval: lexical and dense evidence fused, then shaped by conversation structure.

Lexical search finds the rare exact words (names, places, "pottery"); dense search finds
paraphrases ("moved" for "relocated"). They fail on different questions, so their
rankings are fused; every hit carries each signal's share of its score.
"""

from __future__ import annotations

import math
from datetime import datetime, time, timezone

import numpy as np

from memkern.embed.base import Embedder
from memkern.models import Filters, Hit, ScoreParts, utcnow
from memkern.retrieval.config import SearchConfig
from memkern.retrieval.index import CubeIndex
from memkern.reader.temporal import mentioned_periods
from memkern.retrieval.text import query_terms
from memkern.store.base import Store


def filter_mask(index: CubeIndex, filters: Filters) -> np.ndarray:
    """Rows of the index that the filters allow."""
    mask = np.ones(len(index), dtype=bool)
    if filters.state is not None:
        mask &= index.states == filters.state.value
    if (sessions := filters.session_ids()) is not None:
        mask &= np.isin(np.asarray(index.session_names, dtype=object)[index.session_codes], sessions)
    if (kinds := filters.kinds()) is not None:
        mask &= np.isin(index.kinds, [k.value for k in kinds])
    if filters.speaker is not None:
        mask &= index.speakers == filters.speaker
    if filters.since is not None:
        mask &= index.event_times >= filters.since.timestamp()
    if filters.until is not None:
        mask &= index.event_times <= filters.until.timestamp()
    if filters.tags:
        wanted = set(filters.tags)
        mask &= np.fromiter((wanted.issubset(t) for t in index.tags), dtype=bool, count=len(index))
    return mask


def _top_rows(scores: np.ndarray, count: int) -> np.ndarray:
    """Indexes of the ``count`` largest finite scores, best first."""
    finite = np.flatnonzero(np.isfinite(scores))
    if len(finite) <= count:
        order = finite[np.argsort(-scores[finite], kind="stable")]
        return order
    part = np.argpartition(-scores, count)[:count]
    return part[np.argsort(-scores[part], kind="stable")]


def rank(index: CubeIndex, store: Store, cube_id: str, query: str, query_vector: np.ndarray,
         filters: Filters, config: SearchConfig, top_k: int, now: datetime | None = None
         ) -> list[tuple[int, float, ScoreParts]]:
    """The ``top_k`` best rows of the index with their fused score and its parts."""
    if len(index) == 0:
        return []
    mask = filter_mask(index, filters)
    if not mask.any():
        return []
    parts: dict[int, ScoreParts] = {}

    def part(row: int) -> ScoreParts:
        if row not in parts:
            parts[row] = ScoreParts()
        return parts[row]

    if config.dense_weight > 0:
        cosine = index.vectors @ query_vector
        cosine = np.where(mask, cosine, -np.inf)
        for position, row in enumerate(_top_rows(cosine, config.candidates)):
            p = part(int(row))
            p.cosine = float(cosine[row])
            p.dense = config.dense_weight / (config.rrf_k + position + 1)

    mentioned = _mentioned_speakers(index, query)
    if config.lexical_weight > 0:
        terms = query_terms(query)
        if config.drop_speaker_terms:
            lowered = {name.lower() for name in mentioned}
            terms = [t for t in terms if t not in lowered] or terms
        limit = config.candidates if mask.all() else config.candidates * 4
        position = 0
        for memory_id, bm25 in store.lexical_search(cube_id, terms, limit):
            row = index.row_of.get(memory_id)
            if row is None or not mask[row]:
                continue
            p = part(row)
            p.bm25 = bm25
            p.lexical = config.lexical_weight / (config.rrf_k + position + 1)
            position += 1
            if position >= config.candidates:
                break

    base = {row: p.lexical + p.dense for row, p in parts.items()}
    _add_structure(index, base, parts, config)
    if config.date_weight > 0:
        _add_date_match(index, parts, mask, query, config)
    if mentioned and config.speaker_weight > 0:
        for row, p in parts.items():
            if index.speakers[row] in mentioned:
                p.speaker = config.speaker_weight / (config.rrf_k + 1)
    if config.recency_weight > 0:
        _add_recency(index, parts, config, now or utcnow())

    scored = sorted(((row, _total(p), p) for row, p in parts.items()), key=lambda entry: -entry[1])
    return scored[:top_k]


def _total(p: ScoreParts) -> float:
    return p.lexical + p.dense + p.session + p.neighbour + p.speaker + p.date + p.recency


def _add_date_match(index: CubeIndex, parts: dict[int, ScoreParts], mask: np.ndarray, query: str,
                    config: SearchConfig) -> None:
    """Bonus for memories from a day or month the query names ("on 11 December, 2023").

    Every memory of that period becomes a candidate, not only those the text signals
    found: the date may be the only thing the query and the memory share.
    """
    periods = mentioned_periods(query)
    if not periods:
        return
    bonus = config.date_weight / (config.rrf_k + 1)
    inside = np.zeros(len(index), dtype=bool)
    for first, last in periods:
        start = datetime.combine(first, time.min, timezone.utc).timestamp()
        end = datetime.combine(last, time.max, timezone.utc).timestamp()
        inside |= (index.event_times >= start) & (index.event_times <= end)
    for row in np.flatnonzero(inside & mask):
        parts.setdefault(int(row), ScoreParts()).date = bonus


def _mentioned_speakers(index: CubeIndex, query: str) -> set[str]:
    """Speakers of the cube that the query names, by full name or a prefix ("Mel" for "Melanie")."""
    words = {w for w in query_terms(query, limit=64) if len(w) >= 3}
    if not words:
        return set()
    found = set()
    for speaker in index.speaker_names():
        name = speaker.lower()
        if name in words or any(name.startswith(w) for w in words):
            found.add(speaker)
    return found


def _add_structure(index: CubeIndex, base: dict[int, float], parts: dict[int, ScoreParts],
                   config: SearchConfig) -> None:
    """Session and neighbour evidence, computed from the fused base scores."""
    if config.session_weight > 0:
        by_session: dict[int, list[float]] = {}
        for row, score in base.items():
            by_session.setdefault(int(index.session_codes[row]), []).append(score)
        strength = {code: sum(sorted(scores, reverse=True)[: config.session_top]) / config.session_top
                    for code, scores in by_session.items()}
        for row, p in parts.items():
            p.session = config.session_weight * strength[int(index.session_codes[row])]
    if config.neighbour_weight > 0:
        for row, p in parts.items():
            code, position = int(index.session_codes[row]), int(index.positions[row])
            if position < 0:
                continue
            around = [index.slot.get((code, position + step)) for step in (-1, 1)]
            best = max((base.get(r, 0.0) for r in around if r is not None), default=0.0)
            p.neighbour = config.neighbour_weight * best


def _add_recency(index: CubeIndex, parts: dict[int, ScoreParts], config: SearchConfig, now: datetime) -> None:
    top = max((_total(p) for p in parts.values()), default=0.0)
    for row, p in parts.items():
        when = index.event_times[row]
        if math.isnan(when):
            continue
        age_days = max(0.0, (now.timestamp() - when) / 86400.0)
        p.recency = config.recency_weight * top * 0.5 ** (age_days / config.recency_half_life_days)


def search(store: Store, index: CubeIndex, embedder: Embedder, cube_id: str, query: str, *,
           top_k: int, filters: Filters, config: SearchConfig) -> list[Hit]:
    """Ranked hits for ``query``: the store's current memories with their score parts."""
    query_vector = embedder.embed([query])[0]
    ranked = rank(index, store, cube_id, query, query_vector, filters, config, top_k)
    memories = store.get_memories(cube_id, [index.ids[row] for row, _, _ in ranked])
    return [
        Hit(memory=memories[index.ids[row]], score=score, parts=parts)
        for row, score, parts in ranked
        if index.ids[row] in memories  # deleted by another process since the index was read
    ]
