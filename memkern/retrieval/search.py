"""Hybrid retrieval: lexical and dense evidence fused, then shaped by conversation structure.

Lexical search finds the rare exact words (names, places, "pottery"); dense search finds
paraphrases ("moved" for "relocated"). They fail on different questions, so their
rankings are fused; every hit carries each signal's share of its score.

Time and people in the question shape the ranking too: a named day or month, or a relative
one ("a week ago") counted back from when the question is asked (``filters.until``, else
now); a speaker the question names, and for turns stored without names their role ("I" in
a question is the user; the assistant when the question refers to what it said).

The form of the question counts as well: the text signals read a request for advice without
its frame ("Can you recommend ...", :func:`request_content`), and a question asking for a
list ("What books has John read?") or a count ("How many times ...?") gathers the best turns of several sessions
before the third turn of any one. So does the form of a turn: of the best candidates, one of a few words
("Cool! What did it look like?") loses a little, since it ranks high for being short, and so does one that ends
by asking, for the share of it that asks, and one in which the person the question asks about speaks only of the
person they address ("You're doing something amazing!", :func:`_said_little`). A question about the first or the
latest of something ("his first two turtles") puts the best sessions in that order of time (:func:`asks_for_order`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

import numpy as np

from memkern.embed.base import Embedder
from memkern.models import Filters, Hit, LifecycleState, MemoryKind, ScoreParts, utcnow
from memkern.reader.temporal import mentioned_periods, resolve_dates
from memkern.retrieval.config import SearchConfig
from memkern.retrieval.dense import dense_top
from memkern.retrieval.index import CubeIndex
from memkern.retrieval.text import query_terms
from memkern.store.base import Store

_LEXICAL_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="memkern-lexical")


def filter_mask(index: CubeIndex, filters: Filters) -> np.ndarray:
    """Rows of the index that the filters allow."""
    if filters.state is LifecycleState.ACTIVE:
        mask = index.active.copy()
    else:
        mask = index.live.copy()  # rows replaced or deleted since they were read stay in the copy
        if filters.state is not None:
            mask &= index.states == filters.state.value
        else:  # quarantined memories are never searched (memkern.governance.guard)
            mask &= index.states != "quarantined"
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


def rank(index: CubeIndex, store: Store, cube_id: str, query: str, query_vector: np.ndarray,
         filters: Filters, config: SearchConfig, top_k: int, now: datetime | None = None,
         question: str | None = None) -> list[tuple[int, float, ScoreParts]]:
    """The ``top_k`` best rows of the index with their fused score and its parts.

    ``question``: the question as asked, when ``query`` is only its content (``memkern.organize.deep``); its form
    says whether the answer is a list gathered from several sessions (:func:`asks_for_list`).

    Scoring works on arrays over the few hundred candidate rows; ``ScoreParts`` are built
    only for the hits returned.
    """
    if len(index) == 0:
        return []
    mask = filter_mask(index, filters)
    allowed = int(np.count_nonzero(mask))
    if allowed == 0:
        return []

    # The lexical query runs in the store (SQLite and psycopg release the GIL) while the
    # dense scan runs here (numpy does too): on two cores a search costs the slower of the
    # two rather than their sum.
    mentioned = _mentioned_speakers(index, query)
    lexical = None
    if config.lexical_weight > 0:
        terms = query_terms(signal_text(query, config))
        if config.drop_speaker_terms:
            lowered = {name.lower() for name in mentioned}
            terms = [t for t in terms if t not in lowered] or terms
        # The store's lexical rows are its current memories; ask for more only as far as the filters drop
        # some of them (tombstoned rows of the copy are never among them): asking for four times as many
        # after any update or delete made every later search at 100,000 turns twice as slow.
        limit = config.candidates if allowed >= index.live_count else \
            min(config.candidates * 4, -(-config.candidates * index.live_count // allowed))
        lexical = _LEXICAL_POOL.submit(store.lexical_search, cube_id, terms, limit)

    dense_rows = np.zeros(0, dtype=np.int64)
    dense_cosines = None
    if config.dense_weight > 0:
        dense_rows, dense_cosines = dense_top(index, store, cube_id, query_vector, mask, filters, config.candidates,
                                              allowed)

    lexical_rows: list[int] = []
    bm25_scores: list[float] = []
    if lexical is not None:
        scored = lexical.result()
        hit_rows = index.row_of.get_all([memory_id for memory_id, _ in scored])
        found = [(row, lexical_score) for row, (_, lexical_score) in zip(hit_rows, scored)
                 if row is not None and mask[row]]
        # Equal BM25 scores (short turns sharing one query word) come back from the store in an order
        # that depends on its storage layout (random memory ids): the earlier row goes first, so that the
        # same memories searched twice rank the same.
        found.sort(key=lambda pair: (-pair[1], pair[0]))
        for row, lexical_score in found[:config.candidates]:
            lexical_rows.append(row)
            bm25_scores.append(lexical_score)

    no_rows = np.zeros(0, dtype=np.int64)
    dated = _period_rows(index, mask, mentioned_periods(query)) if config.date_weight > 0 else no_rows
    # A relative period ("a week ago") is fuzzier than a named date: it only lifts what the text found.
    relative = _period_rows(index, mask, relative_periods(query, now or filters.until or utcnow())) \
        if config.date_weight > 0 else no_rows
    # The candidates, sorted: a candidate's slot in the arrays below is its place in this order (replies the
    # text signals missed are added after them).
    candidates = rows = np.unique(np.concatenate([dense_rows, np.asarray(lexical_rows, dtype=np.int64), dated]))
    if len(rows) == 0:
        return []
    n = len(rows)

    def place(values_rows: Sequence[int] | np.ndarray, values: np.ndarray | float) -> np.ndarray:
        """An array over the candidates holding ``values`` at the slots of ``values_rows`` (all in ``candidates``)."""
        out = np.zeros(n)
        out[np.searchsorted(candidates, np.asarray(values_rows, dtype=np.int64))] = values
        return out

    dense = place(dense_rows, config.dense_weight / (config.rrf_k + np.arange(1, len(dense_rows) + 1)))
    lexical_part = place(lexical_rows, config.lexical_weight / (config.rrf_k + np.arange(1, len(lexical_rows) + 1)))
    base = dense + lexical_part
    turns: dict[int, _Turn] = {}  # read once for the answer rule and the short-turn penalty
    answer = np.zeros(n)
    if config.answer_weight > 0:
        replies, asked = _replies(store, cube_id, index, rows, base, mask, turns)
        new = np.setdiff1d(replies, candidates)  # sorted
        if len(new):  # a reply the text signals missed becomes a candidate with nothing of its own
            rows = np.concatenate([candidates, new])
            n = len(rows)
            dense, lexical_part, base, answer = (np.concatenate([part, np.zeros(len(new))])
                                                 for part in (dense, lexical_part, base, answer))
        slots = np.where(np.isin(replies, candidates), np.searchsorted(candidates, replies),
                         len(candidates) + np.searchsorted(new, replies))
        np.maximum.at(answer, slots, asked)
    codes = index.session_codes[rows]
    session = config.session_weight * _session_strength(codes, base, config.session_top) \
        if config.session_weight > 0 else np.zeros(n)
    neighbour = config.answer_weight * answer
    if config.neighbour_weight > 0:
        neighbour = neighbour + config.neighbour_weight * _best_neighbour(index, rows, base)
    first_place = 1.0 / (config.rrf_k + 1)
    speaker: np.ndarray = np.zeros(n)
    if mentioned and config.speaker_weight > 0:
        speaker = config.speaker_weight * first_place * np.isin(index.speakers[rows], list(mentioned))
    date = place(dated, config.date_weight * first_place) if len(dated) else np.zeros(n)
    if len(relative):
        # Worth less the more of the memory it covers: "last month" in a month-long history says nothing.
        specific = 1.0 - len(relative) / allowed
        date = np.maximum(date, specific * config.date_weight * first_place * np.isin(rows, relative))
    total = base + session + neighbour + speaker + date
    if config.short_weight > 0 or config.asking_weight > 0 or config.addressee_weight > 0:
        total = total - first_place * _said_little(store, cube_id, index, rows, total, mask, config, turns,
                                                   mentioned)
    if config.order_weight > 0 and (order := asks_for_order(question or query)):
        lift = config.order_weight * first_place * _in_time_order(index, rows, codes, total, latest=order > 0)
        date = date + lift
        total = total + lift
    recency = np.zeros(n)
    if config.recency_weight > 0:
        age_days = np.maximum(0.0, ((now or utcnow()).timestamp() - index.event_times[rows]) / 86400.0)
        decay = np.nan_to_num(0.5 ** (age_days / config.recency_half_life_days), nan=0.0)
        recency = config.recency_weight * total.max() * decay
        total = total + recency

    if config.gather_weight > 0 and asks_for_list(question or query):
        # A list is gathered from several sessions: past the first few turns of a session, each further one
        # makes way for the best turns of other sessions.
        total = total - config.gather_weight * first_place * _beyond_first(codes, total, GATHER_FREE)

    cosine = place(dense_rows, dense_cosines) if dense_cosines is not None else None
    bm25 = place(lexical_rows, np.asarray(bm25_scores)) if lexical_rows else None
    in_dense, in_lexical = set(dense_rows.tolist()), set(lexical_rows)
    ranked = []
    for i in np.argsort(-total, kind="stable")[:top_k]:
        row = int(rows[i])
        ranked.append((row, float(total[i]), ScoreParts.model_construct(  # floats computed here: nothing to check
            lexical=float(lexical_part[i]), dense=float(dense[i]), session=float(session[i]),
            neighbour=float(neighbour[i]), speaker=float(speaker[i]), date=float(date[i]),
            recency=float(recency[i]),
            cosine=float(cosine[i]) if cosine is not None and row in in_dense else None,
            bm25=float(bm25[i]) if bm25 is not None and row in in_lexical else None,
        )))
    return ranked


#: The best candidates whose length and questions count (``SearchConfig.short_weight``, ``asking_weight``), and
#: those whose reply is lifted when they are questions (``SearchConfig.answer_weight``): the texts of these are read,
#: about 0.4 ms for 30 on SQLite, once per index row (``_read_turns``).
#: On LoCoMo dev 50 or 100 change one question (session_any@5), 60 rows took 0.8 ms.
SHORT_POOL = 30


@dataclass(frozen=True)
class _Turn:
    """What ranking reads in a turn among its best candidates (:func:`_said_little`, :func:`_replies`): worked
    out once per index row and kept with the index (``memkern.retrieval.row_texts``), without the text."""

    words: int
    #: It ends by asking (``_ASKS``), and the share of its words in sentences that ask (:func:`_asking_share`).
    asks: bool
    asking_share: float
    #: Its speaker speaks in it only of the person addressed (:func:`_about_addressee`).
    of_addressee: bool


def _turn(text: str, speaker: str | None) -> _Turn:
    """What ranking reads in ``text``, a turn said by ``speaker``."""
    asks = _ASKS.search(text) is not None
    return _Turn(words=len(text.split()), asks=asks, asking_share=_asking_share(text) if asks else 0.0,
                 of_addressee=bool(speaker) and _about_addressee(text, str(speaker)))


def _read_turns(store: Store, cube_id: str, index: CubeIndex, rows: np.ndarray, turns: dict[int, _Turn]) -> None:
    """Add to ``turns`` those of the ``rows`` it does not hold yet: what the index keeps of them, then one store
    read of the others' texts, worked out and kept for later searches."""
    wanted = [row for row in map(int, rows) if row not in turns]
    turns.update(index.texts.found(wanted))
    missing = {index.ids[row]: row for row in wanted if row not in turns}
    if missing:
        read = {missing[memory_id]: _turn(memory.text, index.speakers[missing[memory_id]])
                for memory_id, memory in store.get_texts(cube_id, list(missing)).items()}
        turns.update(read)
        index.texts.keep(read)


def _best_turns(index: CubeIndex, rows: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Slots of the ``SHORT_POOL`` best candidates by ``scores`` that are turns, best first."""
    best = np.argsort(-scores, kind="stable")[:SHORT_POOL]
    return best[index.kinds[rows[best]] == MemoryKind.TURN.value]


def _said_little(store: Store, cube_id: str, index: CubeIndex, rows: np.ndarray, total: np.ndarray,
                 mask: np.ndarray, config: SearchConfig, turns: dict[int, _Turn],
                 mentioned: set[str]) -> np.ndarray:
    """For each of the ``SHORT_POOL`` best candidates that is a turn, the first places it loses for saying little:
    ``config.short_weight`` times how far its text falls short of ``config.short_words`` words (1 for no words,
    down to 0 at that many), plus ``config.asking_weight`` times the share of its words that ask, when it ends
    by asking and another person, not the assistant, replies (:func:`_asking_share`, :func:`_reply_row`), plus
    ``config.addressee_weight`` when the query names one person only, who said the turn to another person and
    speaks in it only of them (:func:`_about_addressee`); 0 for every other candidate.

    Short turns rank high for being short, not for what they say: BM25 favours a short text matching one query
    word, and a few words' vector lies close to a question's (LoCoMo dev: evidence turns have a median of 30
    words, the wrong turns in the top 10 23, all turns 20). A question shares the form and often the words of
    the question searched for, yet it asks rather than tells: what it is about is told in the reply (lifted
    by ``SearchConfig.answer_weight``). LoCoMo dev: of all turns 25% end by asking, of the evidence 12%, of the
    wrong turns in the top 10 23%. A user's question to an assistant is another matter: it is where the user
    says what they do and want ("I just moved to Lisbon, which neighbourhoods are quiet?"), and keeps its place
    (LongMemEval dev, asking turns all penalised: session recall_all@10 0.978 -> 0.967).

    A question about one person ("What do Melanie's kids like?") is answered by what that person says of
    themselves; their turns that speak only of the person they talk to ("You're doing something amazing!") tell
    about that other person. LoCoMo dev, the named person's turns among the best candidates: 2 % of the evidence
    speaks only of the addressee, 14 % of the rest. An assistant's turns, and a user's turns to an assistant,
    address someone by role and keep their place."""
    best = _best_turns(index, rows, total)
    out = np.zeros(len(rows))
    _read_turns(store, cube_id, index, rows[best], turns)
    asked_about = next(iter(mentioned)) if len(mentioned) == 1 else None
    for slot in best:
        row = int(rows[slot])
        turn = turns.get(row)
        if turn is None:
            continue
        out[slot] = config.short_weight * max(0.0, 1.0 - turn.words / config.short_words)
        asks = config.asking_weight > 0 and turn.asks
        about_other = config.addressee_weight > 0 and asked_about is not None \
            and index.speakers[row] == asked_about and turn.of_addressee
        if (asks or about_other) and _reply_row(index, row, mask) is not None:  # another person replies
            if asks:
                out[slot] += config.asking_weight * turn.asking_share
            if about_other:
                out[slot] += config.addressee_weight
    return out


_FIRST_PERSON_WORDS = re.compile(r"\b(?:I|I'm|I've|I'd|I'll|me|my|mine|myself|we|we're|we've|we'd|we'll|us|our|ours|"
                                 r"ourselves)\b", re.IGNORECASE)
_SECOND_PERSON_WORDS = re.compile(r"\b(?:you|you're|you've|you'd|you'll|ya|your|yours|yourself|yourselves)\b",
                                  re.IGNORECASE)


def _about_addressee(text: str, speaker: str) -> bool:
    """Whether the words ``speaker`` says in a turn (``"Name: words [image: caption]"``, see
    ``memkern.reader.chat.render_turn``) speak of the person addressed and never of the speaker: "you" or "your",
    and no "I", "my", "we" or "our"."""
    said = text.removeprefix(f"{speaker}: ").split(" [image: ", 1)[0]
    return bool(_SECOND_PERSON_WORDS.search(said)) and not _FIRST_PERSON_WORDS.search(said)


#: A turn that asks: a question mark followed by nothing but punctuation, quotes or emoji ("Really?!", "How? :)").
_ASKS = re.compile(r"\?[^\w?]*$")
#: How many rows after a question its reply is looked for: a session's turns are written together, so the next
#: turn is almost always the next row; one written apart (an edited turn) is not looked for.
_REPLY_ROWS = 4
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _asking_share(text: str) -> float:
    """The share of the words of ``text`` in sentences that ask ("Cool, Nate! So we both like films. What type of
    movies do you like best?" -> 8 of 15)."""
    sentences = _SENTENCE_END.split(text.strip())
    asking = sum(len(sentence.split()) for sentence in sentences if "?" in sentence)
    return asking / max(1, len(text.split()))


def _replies(store: Store, cube_id: str, index: CubeIndex, rows: np.ndarray, base: np.ndarray, mask: np.ndarray,
             turns: dict[int, _Turn]) -> tuple[np.ndarray, np.ndarray]:
    """The rows of the replies to the questions among the ``SHORT_POOL`` best candidates by their own score, and
    each question's base score.

    A question that matches the query ("What did you paint last week?") is answered in the next turn ("A sunset
    over the lake"), which may share no word with the query. The reply is the next turn of the session when
    another person says it; the assistant's turns are left out, as what it answers is the user's question,
    not something the user said or did."""
    best = _best_turns(index, rows, base)
    _read_turns(store, cube_id, index, rows[best], turns)
    replies: list[int] = []
    asked: list[float] = []
    for slot in best:
        row = int(rows[slot])
        turn = turns.get(row)
        if turn is None or not turn.asks:
            continue
        reply = _reply_row(index, row, mask)
        if reply is not None:
            replies.append(reply)
            asked.append(float(base[slot]))
    return np.asarray(replies, dtype=np.int64), np.asarray(asked)


def _reply_row(index: CubeIndex, row: int, mask: np.ndarray) -> int | None:
    """The row of the next turn of ``row``'s session when another person, not the assistant, says it: the reply
    of someone asked (None for the assistant's reply, the last turn of a session, or a turn not found)."""
    if index.positions[row] < 0:
        return None
    for after in range(row + 1, min(row + 1 + _REPLY_ROWS, len(index))):
        if (index.session_codes[after] == index.session_codes[row]
                and index.positions[after] == index.positions[row] + 1 and mask[after]):
            speaker = index.speakers[after]
            return after if speaker and speaker != "assistant" and speaker != index.speakers[row] else None
    return None


def _period_rows(index: CubeIndex, mask: np.ndarray, periods: list[tuple[date, date]]) -> np.ndarray:
    """Rows dated inside any of the inclusive day ranges.

    For a day or month the query names ("on 11 December, 2023") every memory of that period
    becomes a candidate, not only those the text signals found: the date may be the only
    thing the query and the memory share.
    """
    if not periods:
        return np.zeros(0, dtype=np.int64)
    inside = np.zeros(len(index), dtype=bool)
    for first, last in periods:
        start = datetime.combine(first, time.min, timezone.utc).timestamp()
        end = datetime.combine(last, time.max, timezone.utc).timestamp()
        inside |= (index.event_times >= start) & (index.event_times <= end)
    return np.flatnonzero(inside & mask)


_BEFORE_NOW = re.compile(r"\b(?:before|until|till|up to|prior to|so far)\s+(?:today|tonight|now)\b", re.I)

#: Days on each side of a resolved relative date that still count as that date: people round
#: ("a week ago" said of eight days ago); "last month" and "last week" keep their calendar bounds.
_DAY_SLACK = {"day": 1, "week": 3}


def relative_periods(query: str, now: datetime) -> list[tuple[date, date]]:
    """Inclusive day ranges of the relative expressions in ``query`` resolved against ``now``
    ("a week ago" -> that day give or take three days; "last month" -> that month). ``now`` is
    when the question is asked: the end of the searched period when the filters give one
    (``until``), else the present. Years are left out: a whole year singles out nothing."""
    periods: list[tuple[date, date]] = []
    for resolved in resolve_dates(query, now):
        if _BEFORE_NOW.search(query) and resolved.date == now.date():
            continue  # "before today" bounds the question, it does not point at today
        day = resolved.date
        if resolved.granularity == "month":
            last = (day.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
            periods.append((day, last))
        elif resolved.granularity == "week" and "ago" not in resolved.text.lower():
            periods.append((day, day + timedelta(days=6)))  # "last week": that calendar week
        elif resolved.granularity in _DAY_SLACK:
            slack = timedelta(days=_DAY_SLACK[resolved.granularity])
            periods.append((day - slack, day + slack))
    return periods


#: A question about the first or earliest of something ("When did Nate get his first two turtles?"); "first place"
#: is a rank and "the first half" part of a period, not an order of time.
FIRST_QUESTION = re.compile(r"\b(?:first|earliest)\b(?!\s+(?:place|half)\b)", re.IGNORECASE)
#: A question about the latest or most recent of something ("What was the most recent book I read?").
LATEST_QUESTION = re.compile(r"\b(?:latest|most recent)\b", re.IGNORECASE)
#: The best sessions that ``SearchConfig.order_weight`` puts in an order of time (LoCoMo dev: 5 of them lifted
#: one question less; 20 as many as 10).
ORDER_SESSIONS = 10


def asks_for_order(question: str) -> int:
    """-1 if ``question`` asks for the first or earliest of something, 1 for the latest or most recent, 0 for
    neither (or both)."""
    return int(bool(LATEST_QUESTION.search(question))) - int(bool(FIRST_QUESTION.search(question)))


def _in_time_order(index: CubeIndex, rows: np.ndarray, codes: np.ndarray, total: np.ndarray, *, latest: bool
                   ) -> np.ndarray:
    """For each candidate of the ``ORDER_SESSIONS`` best sessions (by their best candidate's ``total``), how early
    its session is among them, from 1 for the earliest down to nearly 0 (how late, when ``latest``); 0 for the
    candidates of other sessions and of sessions without a time. A session's time is its best candidate's."""
    order = np.argsort(-total, kind="stable")
    _, first_seen = np.unique(codes[order], return_index=True)
    leaders = order[np.sort(first_seen)[:ORDER_SESSIONS]]  # each best session's best candidate, best first
    times = index.event_times[rows[leaders]]
    leaders = leaders[~np.isnan(times)]
    times = times[~np.isnan(times)]
    if len(leaders) == 0:
        return np.zeros(len(rows))
    in_time = np.argsort(-times if latest else times, kind="stable")
    place = np.empty(len(leaders))
    place[in_time] = 1.0 - np.arange(len(leaders)) / len(leaders)
    lift = dict(zip(codes[leaders].tolist(), place.tolist()))
    return np.array([lift.get(code, 0.0) for code in codes.tolist()])


def _session_strength(codes: np.ndarray, base: np.ndarray, top: int) -> np.ndarray:
    """For each candidate, the mean of the ``top`` best base scores of its session."""
    order = np.lexsort((-base, codes))
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    rank_in_session = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    kept = rank_in_session < top
    group = np.cumsum(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]]) - 1
    sums = np.bincount(group[kept], weights=base[order][kept], minlength=len(starts))
    strength = np.empty(len(codes))
    strength[order] = sums[group] / top
    return strength


#: A question asking for a list, by a plural object before its verb ("What books has John read?", "Which
#: cities did Tim visit?", "What kind of activities does Maria do?"): its answer is spread over sessions.
LIST_QUESTION = re.compile(r"^\s*(?:what|which)\s+(?:\w+\s+){0,2}?\w+s\s+(?:has|have|does|do|did|are|were)\b",
                           re.IGNORECASE)
#: A question asking for a count ("How many tournaments has Nate won?", "How many times has he ..."): its answer
#: is gathered like a list's.
COUNT_QUESTION = re.compile(r"^\s*how\s+(?:many|often)\b", re.IGNORECASE)


def asks_for_list(question: str) -> bool:
    """Whether the answer to ``question`` is a list or a count, gathered from several sessions."""
    return bool(LIST_QUESTION.search(question) or COUNT_QUESTION.search(question))


#: The best turns of a session a list question keeps in place before the next ones make way
#: (``SearchConfig.gather_weight``).
GATHER_FREE = 2


def _beyond_first(codes: np.ndarray, total: np.ndarray, free: int) -> np.ndarray:
    """For each candidate, 0 if it is among the ``free`` best of its session, else 1 for the next one, 2 for
    the one after, and so on."""
    order = np.lexsort((-total, codes))
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    rank_in_session = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    out = np.empty(len(codes))
    out[order] = np.maximum(0, rank_in_session - free + 1)
    return out


#: The turns around a candidate whose evidence it shares, with the share: a question is often answered in
#: the next turn, and as often two turns on (a short reply, then the account; a photo, then what it shows).
#: LoCoMo dev, the two turns at distance two added at half: turn_all@10 0.717 -> 0.725, turn_any@10
#: 0.850 -> 0.854; LongMemEval dev unchanged.
NEIGHBOUR_STEPS = ((-1, 1.0), (1, 1.0), (-2, 0.5), (2, 0.5))


def _best_neighbour(index: CubeIndex, rows: np.ndarray, base: np.ndarray) -> np.ndarray:
    """For each candidate, the best base score of the candidates around it in its session (``NEIGHBOUR_STEPS``),
    times their share. Candidates are matched by (session, position) in sorted arrays, not one lookup each."""
    codes = index.session_codes[rows].astype(np.int64)
    positions = index.positions[rows].astype(np.int64)
    placed = positions >= 0
    keys = np.where(placed, (codes << 32) | np.maximum(positions, 0), -1)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    best = np.zeros(len(rows))
    for step, weight in NEIGHBOUR_STEPS:
        wanted = positions + step
        target = (codes << 32) | np.maximum(wanted, 0)
        at = np.minimum(np.searchsorted(sorted_keys, target), len(rows) - 1)
        found = placed & (wanted >= 0) & (sorted_keys[at] == target)
        best = np.where(found, np.maximum(best, weight * base[order[at]]), best)
    return best


_FIRST_PERSON = re.compile(r"\b(?:I|me|my|mine|myself)\b")
#: "You" in a question is mostly an address ("Can you recommend a film for me?"): the question asks
#: about the assistant's own turns only when it refers to what the assistant said or to a past chat.
_ASSISTANT_SAID = re.compile(
    r"\byou(?:'ve| have| had)?\s+(?:\w+\s+){0,2}?(?:said|told|mentioned|suggested|recommended|gave|given|listed|"
    r"provided|shared|explained|described|wrote|written|talked|named|proposed)\b"
    r"|\byour\s+(?:\w+\s+)?(?:suggestions?|recommendations?|answers?|advice|lists?|responses?|explanations?|ideas?|"
    r"tips?|words)\b"
    r"|\b(?:our|the|that)\s+(?:\w+\s+)?(?:previous|last|earlier|past)\s+(?:conversation|chat|discussion|session)s?\b"
    r"|\b(?:did|do|have|had)\s+you\s+(?:\w+\s+)?(?:say|tell|mention|suggest|recommend|give|list|provide|share|"
    r"explain|describe|write|talk|name|propose)\b"
    r"|\bour\s+conversations?\b", re.IGNORECASE)


def _mentioned_speakers(index: CubeIndex, query: str) -> set[str]:
    """Speakers of the cube that the query names, by full name or a prefix ("Mel" for "Melanie")."""
    words = {w for w in query_terms(query, limit=64) if len(w) >= 3}
    speakers = index.speaker_names()
    found = set()
    # Turns stored without a name carry their role: "I"/"my" in a question is the user; the
    # assistant only when the question refers to what it said ("what you suggested", "our last chat").
    if "user" in speakers and _FIRST_PERSON.search(query):
        found.add("user")
    if "assistant" in speakers and _ASSISTANT_SAID.search(query):
        found.add("assistant")
    if not words:
        return found
    for speaker in speakers:
        name = speaker.lower()
        if name in words or any(name.startswith(w) for w in words):
            found.add(speaker)
    return found


#: The frame of a request for advice ("Can you recommend ...", "Any tips?", "... that I might find interesting"):
#: it says what is asked for, not what it is about, and matches every other request in the memory as well as
#: the turns where the user said what they like or do.
_REQUEST_FRAME = re.compile(
    r"\b(?:can|could|would|will) you (?:please )?(?:recommend|suggest|give me|provide|share|offer|point me to)"
    r"(?: (?:some|a few|any|a couple of|me))?\b"
    r"|\b(?:do you have|have you got|are there|got) (?:any )?(?:good |other |more )?"
    r"(?:ideas|suggestions|tips|recommendations|advice)(?: (?:on|for|about))?\b"
    r"|\bany (?:other |more )?(?:ideas|suggestions|tips|recommendations|advice)\b"
    r"|\b(?:that|which) I (?:might|may|would|could) (?:find interesting|find useful|like|enjoy|be interested in)\b",
    re.IGNORECASE)


def request_content(query: str) -> str:
    """``query`` without the frame of a request for advice ("Can you recommend some recent publications
    that I might find interesting?" -> "recent publications?"), or ``query`` when nothing is left."""
    content = " ".join(_REQUEST_FRAME.sub(" ", query).split())
    return content if re.search(r"\w{3}", content) else query


def signal_text(query: str, config: SearchConfig) -> str:
    """What the text signals (lexical terms, query vector) read of ``query``: without the frame of a
    request for advice when ``config.drop_request_frame`` says so (:func:`request_content`)."""
    return request_content(query) if config.drop_request_frame else query


def search(store: Store, index: CubeIndex, embedder: Embedder, cube_id: str, query: str, *,
           top_k: int, filters: Filters, config: SearchConfig) -> list[Hit]:
    """Ranked hits for ``query``: the store's current memories with their score parts."""
    query_vector = embedder.embed([signal_text(query, config)])[0]
    ranked = rank(index, store, cube_id, query, query_vector, filters, config, top_k)
    memories = store.get_memories(cube_id, [index.ids[row] for row, _, _ in ranked])
    return [
        Hit(memory=memories[index.ids[row]], score=score, parts=parts)
        for row, score, parts in ranked
        if index.ids[row] in memories  # deleted by another process since the index was read
    ]
