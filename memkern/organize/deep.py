"""The deep path of search: for questions that need several memories or reasoning over time.

"How many projects have I led?", "What is the order of the three trips I took?", "When did I
book the Airbnb in Sacramento?" are answered by several memories, often one per session, that
plain top-k ranking crowds out with the many turns of its single best session. HyMem/D-Mem's
rule applies: cheap first, deep only on demand.

**The choice** (:func:`needs_deep`) is a cheap classifier on the query text alone, a few
regular expressions and no model: the query takes the deep path when it asks

* to count or gather ("how many", "how often", "in total", "all the", "different", "each"),
* about time ("when", "what date", "how long", "ago", "first", "last", "earliest", "before",
  "after", "since", "the order of", "recently", "the past three months"),
* what changed ("change", "now", "still", "anymore", "used to", "previous", "switch"), or
* about two or more named entities ("Did Alice visit Sacramento?").

Any other query takes the plain path unchanged and never reads the timeline.

**The deep path** (:func:`deep_rank`) differs from the plain one in three ways:

* it ranks the question's **content** (:func:`content_query`): the words saying what shape the
  answer takes ("how many different types of", "the order of", "from earliest to latest") are
  dropped, since they match any turn listing types or orders as well as the evidence, and so is a
  span the question names (below), which is applied as time rather than matched as words
  (measured on LongMemEval dev, zero-LLM: session recall_all@5 0.923 -> 0.945 for the form words,
  -> 0.956 with the spans; the larger pool left it as it was);
* it ranks a larger pool (:data:`POOL_FACTOR` times the hits asked for, at least :data:`MIN_POOL`),
  from which
* a **span** the question names and that ends when it is asked ("in the past three months")
  lifts the sessions inside it, read from the **timeline** (``memkern.organize.timeline``),
  as much as a named day lifts in the plain ranking, less the more of the cube it covers.

Measured and left out: putting the best turn of each session first (it does not change which
sessions come first, and pushed second evidence turns of a session down); moving a turn's
follow-up right behind it (LongMemEval dev turn recall_any@10 0.967 -> 0.956); and expanding the
pool along entity threads (every session naming an entity the question names) and named days or
months, each such session joining through its turn closest to the query. Scored after the pool,
those turns never reached the hits (the pool holds at least 60 rows); given up to a third of the
hits by their cosine, they changed no result on either dev set (LongMemEval session recall_all@5
0.967, LoCoMo turn_any@10 0.854 with and without); and finding the entities read every memory's
text (a million memories: 58 s on the first such question).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime

import numpy as np

from memkern.models import Filters, ScoreParts, utcnow
from memkern.organize.entities import entities
from memkern.organize.timeline import Timeline, spans, without_spans
from memkern.retrieval.config import SearchConfig
from memkern.retrieval.index import CubeIndex
from memkern.retrieval.search import filter_mask, rank, signal_text
from memkern.store.base import Store

__all__ = ["MIN_POOL", "POOL_FACTOR", "content_query", "deep_rank", "needs_deep"]

#: The pool ranked before expanding: this many times the hits asked for, at least ``MIN_POOL``.
POOL_FACTOR = 3
MIN_POOL = 60

_AGGREGATE = (r"how (?:many|much|often|long)|in total|altogether|combined|number of|\d+ times|times did|"
              r"all (?:the|of|my)|each|every|different|list|both")
_TEMPORAL = (r"^\s*when\b|what (?:date|day|time|year|month|week)|which (?:day|month|year|week)|first|last|"
             r"earliest|latest|most recent|the order|in order|before|after|since|until|ago|recently|previous|"
             r"the past (?:few|couple|\w+ (?:days|weeks|months|years))|so far")
_CHANGE = r"chang|switch|now\b|still|anymore|any more|used to|no longer|update|current"
DEEP_CUES = re.compile(rf"\b(?:{_AGGREGATE}|{_TEMPORAL}|{_CHANGE})", re.IGNORECASE)

#: Words that say what shape the answer takes (a count, an order, a list, a number of days), not what it
#: is about: "How many *different types of* food delivery services" matches "give me *different types
#: of* questions" as well as the evidence. Dates ("last week", "a month ago") are content and stay.
FORM_WORDS = re.compile(
    r"\b(?:how (?:many|much|often)(?: times| more| less| fewer)?|"
    r"(?:days|weeks|months|years)(?= (?:ago|before|after|later|since|between|passed|had passed|did it take))|"
    r"(?:the )?(?:total )?number of|in total|altogether|combined|"
    r"(?:different|various|distinct) (?:types|kinds|sorts) of|(?:types|kinds|sorts) of|different|various|distinct|"
    r"(?:what is |what was )?the order (?:of|in which)|in (?:what|which) order|"
    r"(?:from|in order from) (?:the )?(?:earliest|first|oldest) to (?:the )?(?:latest|last|most recent|newest)|"
    r"(?:from|in order from) (?:the )?(?:latest|most recent|newest) to (?:the )?(?:earliest|first|oldest))\b",
    re.IGNORECASE)


def content_query(query: str) -> str:
    """``query`` without its form words ("How many different types of food delivery services have I used
    recently?" -> "food delivery services have I used recently?"), or ``query`` when nothing is left."""
    content = " ".join(FORM_WORDS.sub(" ", query).split())
    return content if re.search(r"\w{3}", content) else query


def needs_deep(query: str) -> bool:
    """Whether ``query`` needs several memories or time reasoning (see the module docstring)."""
    return bool(DEEP_CUES.search(query)) or len(entities(query)) >= 2


def deep_rank(store: Store, index: CubeIndex, cube_id: str, question: str, embed: Callable[[str], np.ndarray],
              filters: Filters, config: SearchConfig, top_k: int, timeline: Callable[[], Timeline],
              now: datetime | None = None) -> list[tuple[int, float, ScoreParts]]:
    """The ``top_k`` rows for a deep question, with their scores: a larger hybrid pool over the question's
    content, lifted inside a span the question names.

    The text signals read the question's content (:func:`content_query`), without a span it names
    either: "the past three months" is applied as time, not matched as words ("three months now").
    ``embed`` turns that text into the query vector. ``timeline`` gives the cube's session -> day ->
    month tree, asked for only when the question names a span."""
    asked_at = now or filters.until or utcnow()
    windows = spans(question, asked_at)
    query = content_query(without_spans(question) if windows else question)
    query_vector = embed(signal_text(query, config))
    pool = rank(index, store, cube_id, query, query_vector, filters, config, max(POOL_FACTOR * top_k, MIN_POOL), now,
                question)
    if not pool:
        return pool
    scored = {row: (score, parts) for row, score, parts in pool}
    if windows:
        _lift_spans(scored, windows, index, timeline(), filter_mask(index, filters), config)
    order = sorted(scored, key=lambda row: -scored[row][0])[:top_k]
    return [(row, scored[row][0], scored[row][1]) for row in order]


def _lift_spans(scored: dict[int, tuple[float, ScoreParts]], windows: list[tuple[date, date]], index: CubeIndex,
                timeline: Timeline, allowed: np.ndarray, config: SearchConfig) -> None:
    """Lift the candidates of the sessions inside a span the question names ("in the past three months"),
    as much as a named date lifts in the plain ranking, times how little of the cube the span covers."""
    if not windows or config.date_weight <= 0:
        return
    inside = {code for first, last in windows for code in timeline.sessions_between(first, last)}
    if not inside:
        return
    covered = sum(len(timeline.live_rows(code, index.live)) for code in inside)
    specific = 1.0 - covered / max(int(allowed.sum()), 1)
    lift = specific * config.date_weight / (config.rrf_k + 1)
    if lift <= 0:
        return
    for row, (score, parts) in list(scored.items()):
        if int(index.session_codes[row]) in inside:
            scored[row] = (score + lift, parts.model_copy(update={"date": parts.date + lift}))
