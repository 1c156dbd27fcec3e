"""Names and salient words of a text, found without a model.

Proper names carry most of what a memory is about ("Caroline", "Lisbon", "Pride
parade"), so they are indexed in a field of their own that lexical search weighs
separately. Capitalised words that do not start a sentence are a cheap, surprisingly
good proxy for them in conversational English.
"""

from __future__ import annotations

import re

#: A capitalised word: a letter run (letters, apostrophes, hyphens) whose first letter is upper
#: case, with nothing of the run before it but apostrophes or hyphens ("'Bob" is a word, "x-Bob"
#: is not). Lower-case words never reach Python: a long answer holds hundreds of them.
_CAPITALISED = re.compile(r"(?<![A-Za-z'\-])['\-]*([A-Z][A-Za-z'\-]+)")
_NOT_NAMES = frozenset(
    "I I'm I've I'd I'll Im Ive OK Okay Oh Hey Hi Hello Yes No Yeah Wow Thanks Thank Sure Well So "
    "And But Or The A An It It's That's This That What When Where Who Why How Mr Mrs Ms Dr".split()
)


def find_entities(text: str, speaker: str | None = None) -> list[str]:
    """Distinct capitalised words that do not open a sentence, plus the speaker, in order."""
    found: dict[str, None] = {}
    if speaker:
        found[speaker] = None
    for match in _CAPITALISED.finditer(text):
        word = match.group(1)
        if word in _NOT_NAMES or _opens_sentence(text, match.start(1)):
            continue
        found[word.strip("'-")] = None
    return list(found)


def _opens_sentence(text: str, start: int) -> bool:
    """Whether only spaces, or a sentence end and spaces, come before ``start``.

    Looks back from the word rather than at everything before it: on a turn of thousands
    of characters, re-reading the whole prefix for every capitalised word was quadratic.
    """
    i = start - 1
    while i >= 0 and text[i].isspace():
        i -= 1
    return i < 0 or text[i] in ".!?"
