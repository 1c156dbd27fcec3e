"""Faster yes/no regex searches for the guard's frames, with the same answers.

Python's regex engine skips quickly through a text only when a pattern starts with a literal
or a character class: it then jumps to the characters a match can start with. The guard's
frame patterns start with ``\\b`` or a lookbehind, so the engine tries every branch at every
position of a long assistant answer. ``existence_pattern(p)`` returns a pattern that matches
a text exactly when ``p`` matches somewhere in it, written ``[C](?<=(?=p)[C])``, where ``C``
holds every character a match of ``p`` can start with: the engine jumps between characters of
``C``, steps back one and tries ``p`` there, in the whole text (so ``\\b``, ``^`` and
lookbehinds see what they saw before). Only whether there is a match is kept: where it is and
what it covers are not (the guard's frames only ask whether they fire).
"""

from __future__ import annotations

import re
from typing import Any

try:  # Python 3.11+
    from re import _constants as sre_constants  # type: ignore[attr-defined]
    from re import _parser as sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants
    import sre_parse

_REPEATS = tuple(getattr(sre_constants, name) for name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT")
                 if hasattr(sre_constants, name))
_ZERO_WIDTH = (sre_constants.AT, sre_constants.ASSERT, sre_constants.ASSERT_NOT)
#: Character ranges wider than this are not spelled out (the pattern is then left as it is).
_MAX_RANGE = 512


def _class_chars(items: Any) -> set[str] | None:
    chars: set[str] = set()
    for op, av in items:
        if op is sre_constants.LITERAL:
            chars.add(chr(av))
        elif op is sre_constants.RANGE and av[1] - av[0] < _MAX_RANGE:
            chars.update(chr(code) for code in range(av[0], av[1] + 1))
        else:  # negated classes, \w, \s, wide ranges: not a short list
            return None
    return chars


def first_chars(items: Any) -> set[str] | None:
    """Every character a non-empty match of the parsed sequence ``items`` can start with, or None
    when that is not a known short list (or when the sequence can match only the empty string)."""
    out: set[str] = set()
    for op, av in items:
        if op in _ZERO_WIDTH:
            continue
        if op is sre_constants.LITERAL:
            return out | {chr(av)}
        if op is sre_constants.IN:
            chars = _class_chars(av)
            return None if chars is None else out | chars
        if op is sre_constants.BRANCH:
            for alternative in av[1]:
                found = first_chars(alternative)
                if found is None:
                    return None
                out |= found
            return out if all(alternative.getwidth()[0] > 0 for alternative in av[1]) else None
        if op is sre_constants.SUBPATTERN or op in _REPEATS:
            sub = av[3] if op is sre_constants.SUBPATTERN else av[2]
            found = first_chars(sub)
            if found is None:
                return None
            out |= found
            if sub.getwidth()[0] > 0 and (op is sre_constants.SUBPATTERN or av[0] > 0):
                return out
            continue  # it may match nothing: what follows may start the match
        return None
    return None


def existence_pattern(pattern: re.Pattern[str]) -> re.Pattern[str]:
    """A pattern whose ``search`` finds a match exactly when ``pattern``'s does (see the module
    docstring); ``pattern`` itself when its first characters are not a known short list."""
    if pattern.flags & re.IGNORECASE:
        return pattern
    try:
        parsed = sre_parse.parse(pattern.pattern, pattern.flags)
    except re.error:  # pragma: no cover - it compiled once already
        return pattern
    if parsed.getwidth()[0] == 0:
        return pattern
    chars = first_chars(parsed.data)
    if not chars:
        return pattern
    first = "[" + "".join(re.escape(ch) for ch in sorted(chars)) + "]"
    return re.compile(f"{first}(?<=(?=(?:{pattern.pattern})){first})", pattern.flags)
