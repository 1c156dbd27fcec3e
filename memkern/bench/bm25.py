"""Plain Okapi BM25 over turns, in numpy: the baseline every memkern retrieval result is compared with.

Deliberately plain and fixed so that its numbers mean the same from one run to the next:
k1 = 1.2, b = 0.75, idf = ln(1 + (N - df + 0.5) / (df + 0.5)); lowercase word tokens
(``[a-z0-9]+``), English stopwords removed, a Snowball (Porter 2) stem when ``snowballstemmer``
is importable and none otherwise (the run's config says which). Each distinct query term is
counted once. The text of a turn is ``"speaker: text"`` plus ``" " + image caption`` if any.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np

from memkern.bench.locomo_data import Conversation
from memkern.bench.metrics import RankedHit

K1 = 1.2
B = 0.75
_TOKEN = re.compile(r"[a-z0-9]+")

#: NLTK's English stopword list (the usual one for a BM25 baseline).
_STOPWORD_TEXT = """
i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself yourselves he him his
himself she she's her hers herself it it's its itself they them their theirs themselves what which who whom
this that that'll these those am is are was were be been being have has had having do does did doing a an the
and but if or because as until while of at by for with about against between into through during before after
above below to from up down in out on off over under again further then once here there when where why how all
any both each few more most other some such no nor not only own same so than too very s t can will just don
don't should should've now d ll m o re ve y ain aren aren't couldn couldn't didn didn't doesn doesn't hadn
hadn't hasn hasn't haven haven't isn isn't ma mightn mightn't mustn mustn't needn needn't shan shan't shouldn
shouldn't wasn wasn't weren weren't won won't wouldn wouldn't
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def _make_stemmer() -> tuple[Callable[[str], str], str]:
    try:
        import snowballstemmer
    except ImportError:
        return (lambda word: word), "none"
    stemmer = snowballstemmer.stemmer("english")
    return lru_cache(maxsize=200_000)(stemmer.stemWord), "snowball-english"


_stem, STEMMER = _make_stemmer()


def tokenize(text: str) -> list[str]:
    """Lowercase word tokens, stopwords removed, stemmed when a stemmer is available."""
    return [_stem(token) for token in _TOKEN.findall(text.lower()) if token not in STOPWORDS]


class BM25Index:
    """An immutable BM25 index over a list of texts; per-posting weights are precomputed."""

    def __init__(self, texts: Sequence[str], k1: float = K1, b: float = B):
        self.k1, self.b = k1, b
        self.n_docs = len(texts)
        vocabulary: dict[str, int] = {}
        term_ids: list[int] = []
        doc_ids: list[int] = []
        lengths = np.zeros(self.n_docs, dtype=np.float64)
        for doc, text in enumerate(texts):
            tokens = tokenize(text)
            lengths[doc] = len(tokens)
            for token in tokens:
                term_ids.append(vocabulary.setdefault(token, len(vocabulary)))
                doc_ids.append(doc)
        self.vocabulary = vocabulary
        n_terms = len(vocabulary)
        if not term_ids:
            self._starts = np.zeros(n_terms + 1, dtype=np.int64)
            self._docs = np.zeros(0, dtype=np.int64)
            self._weights = np.zeros(0, dtype=np.float64)
            return
        # Postings: unique (term, doc) pairs with their term frequency, grouped by term.
        pairs = np.asarray(term_ids, dtype=np.int64) * max(self.n_docs, 1) + np.asarray(doc_ids, dtype=np.int64)
        unique, tf = np.unique(pairs, return_counts=True)
        terms, docs = np.divmod(unique, max(self.n_docs, 1))
        df = np.bincount(terms, minlength=n_terms).astype(np.float64)
        idf = np.log1p((self.n_docs - df + 0.5) / (df + 0.5))
        avgdl = lengths.mean() if self.n_docs and lengths.mean() > 0 else 1.0
        norm = k1 * (1.0 - b + b * lengths[docs] / avgdl)
        self._weights = idf[terms] * tf * (k1 + 1.0) / (tf + norm)
        self._docs = docs
        self._starts = np.searchsorted(terms, np.arange(n_terms + 1))

    def scores(self, query: str) -> np.ndarray:
        """The BM25 score of every document for ``query``."""
        scores = np.zeros(self.n_docs, dtype=np.float64)
        for token in dict.fromkeys(tokenize(query)):
            term = self.vocabulary.get(token)
            if term is None:
                continue
            start, end = self._starts[term], self._starts[term + 1]
            scores[self._docs[start:end]] += self._weights[start:end]
        return scores

    def top(self, query: str, top_k: int) -> list[tuple[int, float]]:
        """The ``top_k`` best (doc, score) with a positive score, best first; ties by document order."""
        scores = self.scores(query)
        candidates = np.flatnonzero(scores > 0)
        if candidates.size > top_k:
            candidates = candidates[np.argpartition(-scores[candidates], top_k - 1)[:top_k]]
        order = np.lexsort((candidates, -scores[candidates]))
        return [(int(candidates[i]), float(scores[candidates[i]])) for i in order]


class BM25Adapter:
    """The benchmark adapter for plain BM25 over the turns of one conversation at a time."""

    name = "bm25"

    def __init__(self, k1: float = K1, b: float = B):
        self.k1, self.b = k1, b
        self._index: BM25Index | None = None
        self._turn_ids: list[str] = []
        self._texts: list[str] = []

    def ingest(self, conversation: Conversation) -> None:
        turns = conversation.turns
        self._turn_ids = [turn.dia_id for turn in turns]
        self._texts = [turn.render() for turn in turns]
        self._index = BM25Index(self._texts, k1=self.k1, b=self.b)

    def search(self, question: str, top_k: int) -> list[RankedHit]:
        if self._index is None:
            raise RuntimeError("BM25Adapter.search called before ingest")
        return [RankedHit(turn_ids=(self._turn_ids[doc],), text=self._texts[doc], score=score)
                for doc, score in self._index.top(question, top_k)]

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "k1": self.k1, "b": self.b, "stemmer": STEMMER,
                "stopwords": "nltk-english", "embedder": None, "dim": None}

    def close(self) -> None:
        self._index = None
