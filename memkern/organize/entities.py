"""The named entities a text mentions, found by rules (no model): proper names and quoted titles.

The deep path of search (``memkern.organize.deep``) reads them in the query: a question naming
two or more ("Did Alice visit Sacramento?") needs several memories.
"""

from __future__ import annotations

import re

from memkern.reader.temporal import MONTH_NAMES

__all__ = ["CALENDAR_WORDS", "entities"]

_NAME = re.compile(r"\b(?:Dr|Mr|Mrs|Ms|St)\.\s+[A-Z][\w'-]+|\b[A-Z][\w'&-]*[a-z][\w'&-]*(?:\s+[A-Z][\w'&-]+)*")
_QUOTED = re.compile(r"[\"“']([A-Z][^\"”'\n]{2,60})[\"”']")
#: Characters after which a capitalised word opens a sentence (checked on the text just before it).
_OPENERS = '.!?:;\n"“('

#: Days, months and their neighbours: capitalised, but time, which is the timeline's, not a name.
CALENDAR_WORDS = frozenset("monday tuesday wednesday thursday friday saturday sunday today tomorrow yesterday".split()
                           + list(MONTH_NAMES))
#: Capitalised words that are not names: openers of a longer capitalised run ("The Louvre", "What
#: Sapiens"), and the calendar's.
_NOT_NAMES = CALENDAR_WORDS | frozenset("""
i i'm i've i'd i'll hi hey hello thanks thank yes no ok okay oh well so also but and or the a an this that
these those what when where which who why how can could would should will may might do does did is are was
were have has had it its my your our their his her we you they he she there here please sure great
""".split())


def entities(text: str) -> set[str]:
    """The names and quoted titles ``text`` mentions, lower-cased ("I met Dr. Smith in Lisbon" ->
    {"dr. smith", "lisbon"}). A single capitalised word opening a sentence is left out: every
    sentence opens with one ("Sounds great"), and telling "Lisbon is lovely" from it takes a lexicon."""
    found: set[str] = set()
    for match in _NAME.finditer(text):
        words = match.group(0).split()
        start = match.start()
        before = text[max(0, start - 16):start].rstrip()
        opens = before[-1:] in _OPENERS if before else start <= 16
        if opens and len(words) == 1:
            continue
        while words and words[0].lower() in _NOT_NAMES:
            words = words[1:]  # "The Louvre" -> "Louvre"; "What Sapiens" -> "Sapiens"
        if words and len(" ".join(words)) > 2:
            found.add(" ".join(words).lower())
    found.update(title.strip().lower() for title in _QUOTED.findall(text))
    return found
