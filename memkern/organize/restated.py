"""Numbers a speaker restated later with a different value, found among a few memories without an LLM.

The profile (``memkern.organize.profile``) knows where someone lives or works; most of what
changes is not a slot of it: "I got pre-approved for $350,000 from Wells Fargo" in August,
"remember when I got pre-approved for $400,000 from Wells Fargo?" in November; "I've watched
10 Crash Course videos", then 15. Both turns match the question and a small model reading
them takes whichever it reads first. :func:`restatements` pairs them: the same speaker, a
later day, a quantity in both, and at least :data:`SHARED_WORDS` of the content words around
the two quantities the same. Chat's context then says which value is the latest
(``memkern.prompts.organised_context``).

It only ever looks at the memories a context already holds (tens), so it costs nothing next to
the answer. A pair is a hint, not a supersession: both turns stay as they are, and the later
value may be a second event rather than a correction ("I ran 5 miles on Monday", "I ran 10
miles on Saturday"); the context says "said later", not "no longer true".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from memkern.models import MemoryItem, Restatement
from memkern.reader.temporal import MONTH_NAMES
from memkern.retrieval.text import STOPWORDS, singular

__all__ = ["Quantity", "quantities", "restatements"]

#: Content words within this many words of a quantity describe it ("pre-approved for _ from Wells Fargo").
WINDOW = 5
#: Describing words two quantities must share to be the same thing said again.
SHARED_WORDS = 2
#: Speakers whose numbers are not statements of fact about the speaker: an assistant's arithmetic
#: ("$2,000 + $3,250 = $5,250") repeats and recombines the user's numbers in every answer.
ASSISTANTS = frozenset({"assistant", "system", "tool"})

_NUMBER_WORDS = {word: value for value, word in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
_NUMBER_WORDS.update({"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
                      "ninety": 90, "hundred": 100, "dozen": 12})
# "one" says "a" as often as it counts ("one of my friends", "the one I bought"): not a quantity here.
del _NUMBER_WORDS["one"]
_MONTHS = frozenset(MONTH_NAMES) | {name[:3] for name in MONTH_NAMES} | {"sept"}
#: Words too general to say what a quantity counts: time units (a duration or "2 weeks ago" counts time, not
#: the thing said around it) and hedges.
_GENERAL = frozenset("second minute hour day week month year time ago around about approximately roughly "
                     "nearly almost least total".split())
#: Words after a time unit that make a number a relative date ("three weeks ago"): said on different days,
#: "three weeks ago" and "two weeks ago" can be the same day.
_RELATIVE = frozenset("ago later earlier before after".split())
_TIME_UNITS = frozenset("second minute hour day week month year".split())
#: A number with its range and short unit when written together ("$350,000", "12.5%", "70-200mm", "40L"), or a word.
_TOKEN = re.compile(r"\$?\d(?:[\d,]*\d)?(?:\.\d+)?(?:-\d(?:[\d,]*\d)?(?:\.\d+)?)?(?:%|[A-Za-z]{1,3}\b)?|[A-Za-z]+")
_LEADING_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
#: Longest sentence quoted whole as the later value's phrase; a longer one is cut to the words around the value.
PHRASE_CHARS = 200
_SENTENCE = re.compile(r"[.!?;:\n]+(?:\s|$)")


@dataclass(frozen=True)
class Quantity:
    """A number said in a text: as written, its value, the content words around it and the phrase it is in."""

    value: str
    amount: float
    words: frozenset[str]
    phrase: str


def _amount(token: str) -> float | None:
    """The number a token says, or None: ``$350,000`` -> 350000, ``four`` -> 4; a bare year is no quantity."""
    lowered = token.lower()
    if lowered in _NUMBER_WORDS:
        return float(_NUMBER_WORDS[lowered])
    number = _LEADING_NUMBER.search(token)
    if number is None:
        return None
    digits = number.group().replace(",", "")
    amount = float(digits)
    if token == digits and len(digits) == 4 and 1900 <= amount <= 2100:
        return None
    return amount


def quantities(text: str) -> list[Quantity]:
    """The quantities of ``text``, each with the content words (stemmed) within :data:`WINDOW` words of it in
    its sentence. A number beside a month name is a date and one after a capitalised word part of a name."""
    found = []
    for sentence in _SENTENCE.split(text):
        tokens = list(_TOKEN.finditer(sentence))
        for i, match in enumerate(tokens):
            amount = _amount(match.group())
            if amount is None:
                continue
            near = tokens[max(0, i - WINDOW):i] + tokens[i + 1:i + 1 + WINDOW]
            if any(t.group().lower() in _MONTHS for t in tokens[max(0, i - 1):i + 2]):
                continue
            after = [singular(t.group()) for t in tokens[i + 1:i + 3]]
            if len(after) == 2 and after[0] in _TIME_UNITS and after[1] in _RELATIVE:
                continue
            if i > 0 and tokens[i - 1].group()[0].isupper() and tokens[i - 1].group().isalpha():
                continue  # a name's number, not a quantity: "Fitbit Charge 3", "ProTactic 450"
            words = frozenset(singular(t.group()) for t in near
                              if t.group().isalpha() and len(t.group()) > 2 and t.group().lower() not in STOPWORDS
                              and t.group().lower() not in _NUMBER_WORDS and singular(t.group()) not in _GENERAL)
            phrase = sentence.strip()
            if len(phrase) > PHRASE_CHARS:
                start, end = near[0].start() if near else match.start(), near[-1].end() if near else match.end()
                phrase = sentence[min(start, match.start()):max(end, match.end())].strip()
            found.append(Quantity(match.group(), amount, words, phrase))
    return found


def _kind(value: str) -> tuple[bool, bool]:
    """Money and percentages are compared only with their own kind: "$70" is never a later "20 hours"."""
    return value.startswith("$"), value.endswith("%")


def restatements(memories: Sequence[MemoryItem]) -> list[Restatement]:
    """Pairs of ``memories`` in which a speaker (not an assistant) states a quantity on one day and, on a
    later day, a different value of the same thing: per earlier quantity, the latest such later one that
    shares the most describing words. Order: as the earlier memories come."""
    said: list[tuple[MemoryItem, datetime, str]] = []
    for memory in memories:
        when, who = memory.said_at, (memory.provenance.speaker or "").lower()
        if when is not None and who and who not in ASSISTANTS:
            said.append((memory, when, who))
    counted = {m.id: quantities(m.text) for m, _, _ in said}
    found: list[Restatement] = []
    for earlier, when, who in said:
        for old in counted[earlier.id]:
            best: tuple[int, datetime, MemoryItem, Quantity] | None = None
            for later, later_when, later_who in said:
                if later_who != who or later_when.date() <= when.date():
                    continue
                for new in counted[later.id]:
                    shared = len(old.words & new.words)
                    if shared < SHARED_WORDS or new.amount == old.amount or _kind(new.value) != _kind(old.value):
                        continue
                    if best is None or (shared, later_when) > (best[0], best[1]):
                        best = (shared, later_when, later, new)
            if best is not None:
                _, later_when, later, new = best
                found.append(Restatement(earlier_id=earlier.id, earlier_value=old.value, later_id=later.id,
                                         later_value=new.value, phrase=new.phrase, later_said=later_when))
    return found
