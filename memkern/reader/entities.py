"""Names and salient words of a text, found without a model.

Proper names carry most of what a memory is about ("Caroline", "Lisbon", "Pride
parade"), so they are indexed in a field of their own that lexical search weighs
separately. Capitalised words that do not start a sentence are a cheap, surprisingly
good proxy for them in conversational English.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]+")
_SENTENCE_END = re.compile(r"[.!?]\s*$")
_NOT_NAMES = frozenset(
    "I I'm I've I'd I'll Im Ive OK Okay Oh Hey Hi Hello Yes No Yeah Wow Thanks Thank Sure Well So "
    "And But Or The A An It It's That's This That What When Where Who Why How Mr Mrs Ms Dr".split()
)


def find_entities(text: str, speaker: str | None = None) -> list[str]:
    """Distinct capitalised words that do not open a sentence, plus the speaker, in order."""
    found: dict[str, None] = {}
    if speaker:
        found[speaker] = None
    for match in _WORD.finditer(text):
        word = match.group(0)
        if not word[0].isupper() or word in _NOT_NAMES:
            continue
        before = text[: match.start()]
        if not before.strip() or _SENTENCE_END.search(before):
            continue
        found[word.strip("'-")] = None
    return list(found)
