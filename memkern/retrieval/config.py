"""Declarative search configuration, with ready-made recipes.

A search is described by data, not code paths: which signals count and how much. The
recipes are the configurations worth knowing by name; ``hybrid`` is the default and the
one the LoCoMo benchmark measures.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SearchConfig(BaseModel):
    """How lexical and dense evidence are fused into one ranking.

    Fusion is reciprocal-rank (``weight / (rrf_k + rank)``), which needs no score
    calibration between BM25 and cosine. On top of it, a memory gains from the best
    candidates of its own session (conversations are about something for a while), from
    its immediate neighbours (a question is often answered in the next turn), from being the
    reply to a question that matches, from being said by someone the query names, and from
    its session's place in time when the query asks for the first or the latest of something; a
    turn of a few words, one that asks another person, or one in which the person the query names
    speaks only of the person addressed, loses a little.

    The defaults were tuned on the LoCoMo development split (``memkern bench locomo``);
    the tuning moved turn_any@10 from 0.66 (plain fusion) to about 0.83.
    """

    model_config = ConfigDict(extra="forbid")

    lexical_weight: float = Field(1.0, ge=0)
    #: 0.7 before the short-turn penalty (``short_weight``); with it 0.5 does better (LoCoMo dev turn_any@10
    #: 0.859 -> 0.865, turn_all@10 0.737 -> 0.740, session_any@5 0.936 -> 0.940; LongMemEval dev the same).
    dense_weight: float = Field(0.5, ge=0)
    rrf_k: float = Field(10.0, gt=0)
    #: How many candidates each signal contributes before fusion.
    candidates: int = Field(200, ge=1, le=10_000)
    session_weight: float = Field(1.0, ge=0)
    #: A session's strength is the mean of its best ``session_top`` candidate scores.
    session_top: int = Field(3, ge=1)
    neighbour_weight: float = Field(0.5, ge=0)
    #: For a question among the best candidates by their own score (a turn ending in "?"), the share of its score
    #: the reply gets: the next turn, said by another person who is not the assistant, even one the text signals
    #: missed (``memkern.retrieval.search._replies``). Reported in the ``neighbour`` part.
    answer_weight: float = Field(0.5, ge=0)
    #: Bonus for memories said by a person the query names ("What did Caroline ..."), in
    #: units of a first-place rank: at 1.0 it counts as much as topping one signal.
    speaker_weight: float = Field(1.0, ge=0)
    #: Leave speaker names out of the lexical query (they match every turn of that speaker).
    drop_speaker_terms: bool = True
    #: Bonus, in the same units, for memories from a day or month the query names.
    date_weight: float = Field(1.0, ge=0)
    #: Leave the frame of a request for advice ("Can you recommend ...", "Any tips?") out of the text signals:
    #: it matches every other request in the memory rather than what the user said they like or do
    #: (``memkern.retrieval.search.request_content``).
    drop_request_frame: bool = True
    #: For a question asking for a list or a count ("What books has John read?", "How many times ...?",
    #: ``memkern.retrieval.search.asks_for_list``):
    #: the third best turn of a session loses this much, in first places, the fourth twice as much, and so on,
    #: so that the best turns of other sessions come first (LoCoMo dev multi-hop turn_all@10 0.218 -> 0.246).
    gather_weight: float = Field(0.3, ge=0)
    #: Penalty, in first places, for a turn of no words among the best candidates (``memkern.retrieval.search.
    #: SHORT_POOL``), shrinking linearly to nothing at ``short_words`` words: "Bye Joanna!" or "Cool! What did it
    #: look like?" ranks high for being short (BM25's length normalisation, a few words' vector), not for what it
    #: says. Derived memories (facts, summaries) are short by design and never lose. LoCoMo dev, with
    #: ``dense_weight`` 0.7: turn_any@10 0.854 -> 0.859, turn_all@10 0.725 -> 0.737, session_any@5 0.930 -> 0.936.
    #: LongMemEval dev, with ``dense_weight`` 0.5 too: session recall_all@5 the same (0.967), turn recall_any@1
    #: 0.670 -> 0.714, turn recall_any@10 0.989 -> 0.978 (one question's evidence turn from 10th to 12th).
    short_weight: float = Field(0.5, ge=0)
    short_words: int = Field(40, ge=1)
    #: Penalty, in first places, for a turn among the same best candidates that ends by asking another person (not
    #: the assistant), times the share of its words that ask ("Cool! So we both like films. What type of movies do
    #: you like best?"): it matches the question searched for by its form, but asks rather than tells
    #: (``memkern.retrieval.search._said_little``).
    #: LoCoMo dev: turn_any@10 0.874 -> 0.878, turn_all@10 0.745 -> 0.750, session_any@5 0.943 -> 0.945 (at 0.3
    #: 0.874 / 0.747 / 0.945, at 0.7 as at 0.5, at 1.0 0.878 / 0.751 / 0.943).
    asking_weight: float = Field(0.5, ge=0)
    #: Penalty, in first places, for a turn among the same best candidates said by the one person the query names,
    #: to another person (not the assistant), that speaks only of the person it addresses: "you" or "your" and no
    #: "I", "my", "we" or "our" ("Wow, Caroline! You're doing something amazing!"). It tells about the person
    #: addressed, while a question about someone is answered by what they say of themselves
    #: (``memkern.retrieval.search._about_addressee``). LoCoMo dev, of the named person's turns among the 30 best
    #: candidates: 2 % of the evidence speaks only of the addressee, 14 % of the rest. With it: turn_any@10
    #: 0.878 -> 0.879, turn_all@10 0.750 -> 0.754, session_any@5 0.945 -> 0.947 (no question worse; at 0.15 / 0.35
    #: / 0.5 turn_all@10 0.754 / 0.753 / 0.751).
    addressee_weight: float = Field(0.25, ge=0)
    #: For a question asking for the first or earliest of something ("When did Nate get his first two turtles?"),
    #: or the latest or most recent, the best ``ORDER_SESSIONS`` sessions (``memkern.retrieval.search``) gain up
    #: to this many first places in that order of time: the earliest (or latest) all of it, the next less, and so
    #: on down to nothing. What came first is told where it happened; a later session mentions it again in
    #: passing. Reported in the ``date`` part. LoCoMo dev: turn_any@10 0.879 -> 0.882, turn_all@10 0.754 -> 0.757,
    #: session_any@5 0.947 -> 0.949 (at 0.5: 0.880 / 0.755 / 0.949).
    order_weight: float = Field(1.0, ge=0)
    #: Extra weight for recent memories, decaying with this half-life.
    recency_weight: float = Field(0.0, ge=0)
    recency_half_life_days: float = Field(30.0, gt=0)
    #: Let a question that needs several memories or time reasoning ("how many times", "when",
    #: "first", several names) take the deep path of ``memkern.organize.deep``; others never do.
    deep: bool = True


RECIPES: dict[str, SearchConfig] = {
    "hybrid": SearchConfig(),
    "lexical": SearchConfig(dense_weight=0.0),
    "dense": SearchConfig(lexical_weight=0.0),
    "recent": SearchConfig(recency_weight=0.5),
}


def resolve_config(config: SearchConfig | str | None) -> SearchConfig:
    from memkern.errors import InvalidInputError

    if config is None:
        return RECIPES["hybrid"]
    if isinstance(config, SearchConfig):
        return config
    if config in RECIPES:
        return RECIPES[config]
    raise InvalidInputError(f"unknown search recipe {config!r}; known: {', '.join(sorted(RECIPES))}")
