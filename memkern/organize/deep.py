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

Any other query takes the plain path unchanged and reads neither the timeline nor the links.

**The deep path** (:func:`deep_rank`) differs from the plain one in four ways:

* it ranks the question's **content** (:func:`content_query`): the words saying what shape the
  answer takes ("how many different types of", "the order of", "from earliest to latest") are
  dropped, since they match any turn listing types or orders as well as the evidence, and so is a
  span the question names (below), which is applied as time rather than matched as words
  (measured on LongMemEval dev, zero-LLM: session recall_all@5 0.923 -> 0.945 for the form words,
  -> 0.956 with the spans; the pool and the expansions left it as it was);
* it ranks a larger pool (:data:`POOL_FACTOR` times the hits asked for, at least :data:`MIN_POOL`);
* a **span** the question names and that ends when it is asked ("in the past three months")
  lifts the sessions inside it, read from the **timeline** (``memkern.organize.timeline``),
  as much as a named day lifts in the plain ranking, less the more of the cube it covers;
* the pool is expanded along **entity links** (``memkern.organize.links``: each session of the
  thread of a name the query gives, other than a speaker's) and the timeline (each session of a
  day or month the query names): a session the pool missed joins through its turn closest to
  the query, after the pool.

Measured and left out: putting the best turn of each session first (it does not change which
sessions come first, and pushed second evidence turns of a session down), and moving a turn's
follow-up right behind it (LongMemEval dev turn recall_any@10 0.967 -> 0.956).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime

import numpy as np

from memkern.models import Filters, ScoreParts, utcnow
from memkern.organize.links import Links, entities
from memkern.organize.timeline import Timeline, spans, without_spans
from memkern.reader.temporal import mentioned_periods
from memkern.retrieval.config import SearchConfig
from memkern.retrieval.index import CubeIndex
from memkern.retrieval.search import filter_mask, rank, relative_periods, request_content
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
              links: Callable[[], Links], now: datetime | None = None) -> list[tuple[int, float, ScoreParts]]:
    """The ``top_k`` rows for a deep question, with their scores: a larger hybrid pool over the question's
    content, lifted inside a span the question names, expanded along entity threads and the timeline.

    The text signals read the question's content (:func:`content_query`), without a span it names
    either: "the past three months" is applied as time, not matched as words ("three months now").
    ``embed`` turns that text into the query vector. ``timeline`` and ``links`` give the cube's
    organisation, asked for only when the question names a period or an entity."""
    asked_at = now or filters.until or utcnow()
    windows = spans(question, asked_at)
    query = content_query(without_spans(question) if windows else question)
    query_vector = embed(request_content(query) if config.drop_request_frame else query)
    pool = rank(index, store, cube_id, query, query_vector, filters, config, max(POOL_FACTOR * top_k, MIN_POOL), now)
    if not pool:
        return pool
    allowed = filter_mask(index, filters)
    scored = {row: (score, parts) for row, score, parts in pool}
    periods = mentioned_periods(query) + relative_periods(query, asked_at)
    speakers = {name.lower() for name in index.speaker_names()}
    names = [name for name in entities(query) if name not in speakers]  # a speaker's thread is every session
    if windows:
        _lift_spans(scored, windows, index, timeline(), allowed, config)
    # Along entity links: every session of a named entity's thread; along the timeline: every session of a
    # named period. Each joins through its turn closest to the query, after the pool.
    sessions: set[int] = set()
    for name in names:
        sessions.update(int(index.session_codes[row]) for row in links().thread(name, index) if allowed[row])
    for first, last in periods:
        sessions.update(timeline().sessions_between(first, last))
    if sessions:
        _add_best_rows(scored, sessions, index, timeline(), allowed, query_vector, floor=pool[-1][1])
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


def _add_best_rows(scored: dict[int, tuple[float, ScoreParts]], sessions: set[int], index: CubeIndex,
                   timeline: Timeline, allowed: np.ndarray, query_vector: np.ndarray, floor: float) -> None:
    """Give each session not yet in ``scored`` its turn closest to the query, scored under the pool's last.

    One scan over the rows of every such session at once: an entity's thread can hold hundreds of
    sessions, and a loop per session cost as much as the whole hybrid ranking at 100,000 turns."""
    ranked_sessions = {int(index.session_codes[row]) for row in scored}
    codes = [code for code in timeline.ordered(sessions) if code not in ranked_sessions and code in timeline.sessions]
    if not codes:
        return
    groups = [np.asarray(timeline.sessions[code].rows, dtype=np.int64) for code in codes]
    rows = np.concatenate(groups)
    group = np.repeat(np.arange(len(groups)), [len(g) for g in groups])
    keep = rows < len(index.live)
    keep[keep] = index.live[rows[keep]] & allowed[rows[keep]]
    rows, group = rows[keep], group[keep]
    if len(rows) == 0:
        return
    cosine = index.row_cosines(rows, query_vector)  # scored by the store where the copy holds no vectors
    # The best row of each group: sort by group, then by cosine falling (the earliest row on ties).
    order = np.lexsort((np.arange(len(rows)), -cosine, group))
    firsts = order[np.unique(group[order], return_index=True)[1]]
    for at in firsts:
        if cosine[at] > 0:
            scored[int(rows[at])] = (floor * float(cosine[at]), ScoreParts(cosine=float(cosine[at])))
