"""Turning a query into lexical search terms.

Questions are mostly function words ("what did ... do ... the"); sent to BM25 as they
are they match everything weakly and drown the few words that matter. Stopwords are
dropped and the rest is left for the store's own stemmer.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"[0-9A-Za-z\u00C0-\u024F]+")

STOPWORDS = frozenset("""
a about above after again against all am an and any are aren't as at be because been before being below
between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during each
few for from further had hadn't has hasn't have haven't having he he'd he'll he's her here here's hers
herself him himself his how how's i i'd i'll i'm i've if in into is isn't it it's its itself let's me more
most mustn't my myself no nor not of off on once only or other ought our ours ourselves out over own same
shan't she she'd she'll she's should shouldn't so some such than that that's the their theirs them
themselves then there there's these they they'd they'll they're they've this those through to too under
until up very was wasn't we we'd we'll we're we've were weren't what what's when when's where where's which
while who who's whom why why's with won't would wouldn't you you'd you'll you're you've your yours yourself
yourselves s t d ll m re ve also just like really would kind sort much many one thing things get got
""".split()) | frozenset(
    # Hedges ("What would Caroline's political leaning likely be?", "What job might Maria pursue?") say how sure
    # an answer is, not what it is about, and match every turn that hedges ("Maybe! That might be fun.").
    # LoCoMo dev: session_any@5 +1 question, turn_any@10 and turn_all@10 -1 (another question).
    "might likely probably possibly perhaps maybe".split())


def singular(word: str) -> str:
    """``word`` lower-cased, without a plural's final "s" (a crude stem: "videos" -> "video", "class" stays)."""
    word = word.lower()
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def query_terms(text: str, limit: int = 32) -> list[str]:
    """Distinct lowercase content words of ``text``, in order, at most ``limit`` of them."""
    terms: dict[str, None] = {}
    for token in _TOKEN.findall(text.lower()):
        if token not in STOPWORDS and (len(token) > 1 or token.isdigit()):
            terms[token] = None
    return list(terms)[:limit]
