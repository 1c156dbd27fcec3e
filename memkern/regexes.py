"""Faster regex searches with the same answers, for the patterns run on every write (the
guard's frames, the reader's time expressions).

Four shortcuts, all read from the pattern itself so that they cannot drift from it:
``required_literals(p)`` lists strings one of which every match of ``p`` contains (a text
holding none of them is not searched: a few substring tests instead of a regex scan),
``existence_pattern(p)`` searches faster where a match can start, and ``FastSearch`` answers
"does ``p`` match?" alternative by alternative (``a|b|c`` matches where one of them does), so
that each top-level alternative is skipped by its own literals, and ``required_words(p)`` lists
whole words one of which every match holds (a text whose words include none cannot match: one
set lookup for a text's words instead of substring tests).

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

import itertools
import re
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
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
#: The most strings a piece of a pattern may spell before it counts as "could be anything".
_MAX_SPELLINGS = 64
#: A class of more characters than this is not spelled out into literals.
_MAX_CLASS = 16


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


def _spellings(items: Any) -> set[str] | None:
    """Every string the parsed sequence ``items`` can match, when they are few (at most
    ``_MAX_SPELLINGS``): literals, small classes, alternations and short optional parts
    ("prefers?" -> prefer, prefers). None when it can match open-ended text (``\\w+``, ``.``)."""
    out = {""}
    for op, av in items:
        if op in _ZERO_WIDTH:
            continue  # \b, ^ and lookarounds consume nothing
        node: set[str] | None
        if op is sre_constants.LITERAL:
            node = {chr(av)}
        elif op is sre_constants.IN:
            node = _class_chars(av)
            node = node if node is not None and len(node) <= _MAX_CLASS else None
        elif op is sre_constants.BRANCH:
            alternatives = [_spellings(alternative) for alternative in av[1]]
            node = None if any(a is None for a in alternatives) else set().union(*alternatives)  # type: ignore[arg-type]
        elif op is sre_constants.SUBPATTERN:
            node = None if av[1] & re.IGNORECASE else _spellings(av[3])
        elif op in _REPEATS and av[1] <= 2:
            inner = _spellings(av[2])
            node = None if inner is None else {"".join(parts) for count in range(av[0], av[1] + 1)
                                               for parts in itertools.product(sorted(inner), repeat=count)}
        else:
            node = None
        if node is None:
            return None
        out = {head + tail for head in out for tail in node}
        if len(out) > _MAX_SPELLINGS:
            return None
    return out


def _better(candidate: set[str] | None, best: set[str] | None) -> set[str] | None:
    """The more selective of two literal sets: longer shortest literal, then fewer literals."""
    if not candidate or "" in candidate:
        return best
    if best is None or (min(map(len, candidate)), -len(candidate)) > (min(map(len, best)), -len(best)):
        return candidate
    return best


def _required(items: Any) -> set[str] | None:
    """Strings one of which every match of the parsed sequence ``items`` contains, or None."""
    best: set[str] | None = None
    run: list[Any] = []  # consecutive pieces with few spellings: spelled out together
    for op, av in [*items, (None, None)]:
        if op is not None and _spellings([(op, av)]) is not None:
            run.append((op, av))
            continue
        if run:
            best = _better(_spellings(run), best)
            run = []
        if op is sre_constants.BRANCH:
            alternatives = [_required(alternative) for alternative in av[1]]
            if all(alternatives):
                best = _better(set().union(*alternatives), best)  # type: ignore[arg-type]
        elif op is sre_constants.SUBPATTERN and not av[1] & re.IGNORECASE:
            best = _better(_required(av[3]), best)
        elif op in _REPEATS and av[0] >= 1:
            best = _better(_required(av[2]), best)
    return best


def required_literals(pattern: re.Pattern[str]) -> tuple[str, ...]:
    """Strings one of which every match of ``pattern`` contains, the fewest such that none
    contains another (a text holding "hide_from_user" holds "hide_from_user\""'s shorter
    form), shortest first (the likelier to be found, which ends a search for any of them
    sooner); empty when the pattern gives no such guarantee (or ignores case)."""
    if pattern.flags & re.IGNORECASE:
        return ()
    return _minimal_literals(pattern.pattern, pattern.flags)


def required_literals_ignoring_case(pattern: re.Pattern[str]) -> tuple[str, ...]:
    """For a pattern that ignores case: strings in lower case one of which the lower-cased text
    holds wherever ``pattern`` matches (test them against ``text.lower()``). Exact for every
    letter whose lower case is its case fold; the few that ``re`` folds further (the long s,
    the Kelvin sign) are not looked for."""
    return _shortest_first({literal.lower() for literal in
                            _minimal_literals(pattern.pattern, pattern.flags & ~re.IGNORECASE)})


def _shortest_first(literals: Any) -> tuple[str, ...]:
    return tuple(sorted(literals, key=lambda text: (len(text), text)))


def _minimal_literals(source: str, flags: int) -> tuple[str, ...]:
    try:
        found = _required(sre_parse.parse(source, flags).data)
    except re.error:  # pragma: no cover - it compiled once already
        return ()
    kept: list[str] = []
    for literal in _shortest_first(found or ()):
        if not any(shorter in literal for shorter in kept):
            kept.append(literal)
    return tuple(kept)


def top_level_alternatives(pattern: re.Pattern[str]) -> list[re.Pattern[str]]:
    """``pattern`` cut at the ``|`` that are outside every group and character class, each
    piece compiled with its flags: the text matches ``pattern`` where it matches one piece.
    ``[pattern]`` when there is nothing to cut, or when inline global flags, verbose mode or
    references to numbered groups would make the cut pieces read differently."""
    source = pattern.pattern
    if (pattern.flags & re.VERBOSE or re.match(r"\(\?[aiLmsux]+\)", source)
            or re.search(r"\\[1-9]|\(\?P=|\(\?\(", source)):
        return [pattern]
    pieces, depth, start, i, in_class = [], 0, 0, 0, False
    while i < len(source):
        char = source[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            i += 1 + (source[i + 1:i + 2] == "^")
            i += source[i:i + 1] == "]"  # a "]" right after "[" or "[^" is a member, not the end
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            pieces.append(source[start:i])
            start = i + 1
        i += 1
    pieces.append(source[start:])
    if len(pieces) == 1:
        return [pattern]
    return [re.compile(piece, pattern.flags) for piece in pieces]


@dataclass(frozen=True)
class FastSearch:
    """Whether ``pattern`` matches somewhere in a text, with every shortcut above: each
    top-level alternative is tried only on a text holding one of its required words (when the
    caller knows the text's words) and one of its required literals, and then by its existence
    pattern. Same answers as ``pattern.search(text) is not None``."""

    pattern: re.Pattern[str]
    #: (required literals, existence pattern) of each top-level alternative.
    branches: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...]
    #: Each alternative's required words (``required_words``; empty when it has none), in order.
    words: tuple[frozenset[str], ...]
    #: Every alternative's literals together, looked for first when there are several
    #: alternatives and each has some: most texts hold none and are done with in one pass.
    literals: tuple[str, ...] = ()

    @classmethod
    def of(cls, pattern: re.Pattern[str]) -> FastSearch:
        pieces = top_level_alternatives(pattern)
        branches = tuple((required_literals(piece), existence_pattern(piece)) for piece in pieces)
        together: tuple[str, ...] = ()
        if len(branches) > 1 and all(literals for literals, _ in branches):
            together = _shortest_first({literal for literals, _ in branches for literal in literals})
        return cls(pattern, branches, tuple(required_words(piece) for piece in pieces), together)

    def found_in(self, text: str, words: AbstractSet[str] | None = None) -> bool:
        """Whether ``pattern`` matches in ``text``. ``words``, when given, holds every word of
        ``text`` (and may hold more), as ``required_words`` counts words: a set lookup then rules
        an alternative out before any substring test."""
        # The substring tests run in C (``filter``/``map`` over ``text.__contains__``); with several
        # alternatives, each literal is looked for once and the alternatives ask the set found.
        present = set(filter(text.__contains__, self.literals)) if self.literals else None
        if present is not None and not present:
            return False
        for (literals, searcher), needed in zip(self.branches, self.words):
            if words is not None and needed and needed.isdisjoint(words):
                continue
            if literals and (present.isdisjoint(literals) if present is not None
                             else not any(map(text.__contains__, literals))):
                continue
            if searcher.search(text) is not None:
                return True
        return False


_EDGE_BEFORE = (sre_constants.AT_BOUNDARY, sre_constants.AT_BEGINNING, sre_constants.AT_BEGINNING_STRING)
_EDGE_AFTER = (sre_constants.AT_BOUNDARY, sre_constants.AT_END, sre_constants.AT_END_STRING)
_NON_WORD_CATEGORIES = (sre_constants.CATEGORY_SPACE, sre_constants.CATEGORY_NOT_WORD)
#: A word as the guard's word sets hold them: letters, joined by underscores ("hide_from_user").
_WHOLE_WORD = re.compile(r"[^\W\d_]+(?:_[^\W\d_]+)*")


def _is_word_char(char: str) -> bool:
    """Whether ``\\b`` counts ``char`` as part of a word."""
    return char.isalnum() or char == "_"


def _non_word_class(av: Any) -> bool:
    """Whether a character class holds no character that can be part of a word."""
    chars = _class_chars(av)
    if chars is not None:
        return not any(map(_is_word_char, chars))
    return all(op is sre_constants.CATEGORY and category in _NON_WORD_CATEGORIES for op, category in av)


def _at_edge(pieces: Any, edges: tuple[Any, ...], outer: bool, backwards: bool) -> bool:
    """Whether the first of the parsed ``pieces`` (read backwards: the last) matches outside a word
    or is a word edge among ``edges``; ``outer`` when the pieces can all match nothing. Branches
    count when every alternative does; optional parts when they and what follows them do."""
    def ordered(sequence: Any) -> Any:
        return list(reversed(sequence)) if backwards else sequence

    for op, av in pieces:
        if op is sre_constants.AT:
            return av in edges
        if op is sre_constants.LITERAL:
            return not _is_word_char(chr(av))
        if op is sre_constants.IN:
            return _non_word_class(av)
        if op is sre_constants.BRANCH:
            return all(_at_edge(ordered(alternative), edges, False, backwards) for alternative in av[1])
        if op is sre_constants.SUBPATTERN and not av[1] & re.IGNORECASE:
            return _at_edge(ordered(av[3]), edges, False, backwards)
        if op in _REPEATS and _at_edge(ordered(av[2]), edges, False, backwards):
            if av[0] >= 1:
                return True
            continue  # it may match nothing: what comes next must be outside a word too
        return False
    return outer


def _edge_after(items: Any, start: int, edge_at_end: bool) -> bool:
    """Whether what ``items[start:]`` matches begins outside a word (or at a word edge)."""
    return _at_edge(items[start:], _EDGE_AFTER, edge_at_end, backwards=False)


def _edge_before(items: Any, end: int, edge_at_start: bool) -> bool:
    """Whether what ``items[:end]`` matches ends outside a word (or at a word edge)."""
    return _at_edge(list(reversed(items[:end])), _EDGE_BEFORE, edge_at_start, backwards=True)


def _fewer_words(candidate: set[str] | None, best: set[str] | None) -> set[str] | None:
    """The better of two sets of required words: whole words only, then the fewest, then the longest."""
    if not candidate or not all(_WHOLE_WORD.fullmatch(word) for word in candidate):
        return best
    if best is None or (len(candidate), -min(map(len, candidate))) < (len(best), -min(map(len, best))):
        return candidate
    return best


def _required_words(items: Any, edge_at_start: bool, edge_at_end: bool) -> set[str] | None:
    """Whole words one of which every match of the parsed sequence ``items`` holds, or None: a
    run of spelled pieces counts when what comes before it ends outside a word and what comes
    after it begins outside one, so that every spelling is a word of the matched text."""
    best: set[str] | None = None
    index = 0
    while index < len(items):
        op, av = items[index]
        end = index
        while (end < len(items) and items[end][0] is not sre_constants.AT
               and _spellings([items[end]]) is not None):
            end += 1
        if end > index:  # a run of spelled pieces
            if _edge_before(items, index, edge_at_start) and _edge_after(items, end, edge_at_end):
                best = _fewer_words(_spellings(items[index:end]), best)
            index = end
            continue
        before, after = _edge_before(items, index, edge_at_start), _edge_after(items, index + 1, edge_at_end)
        if op is sre_constants.BRANCH:
            alternatives = [_required_words(alternative, before, after) for alternative in av[1]]
            if all(alternatives):
                best = _fewer_words(set().union(*alternatives), best)  # type: ignore[arg-type]
        elif op is sre_constants.SUBPATTERN and not av[1] & re.IGNORECASE:
            best = _fewer_words(_required_words(av[3], before, after), best)
        index += 1
    return best


def required_words(pattern: re.Pattern[str]) -> frozenset[str]:
    """Whole words one of which every match of ``pattern`` holds (through every alternative);
    empty when the pattern gives no such guarantee (or ignores case). A text whose words include
    none of them cannot match."""
    if pattern.flags & re.IGNORECASE:
        return frozenset()
    try:
        words = _required_words(sre_parse.parse(pattern.pattern, pattern.flags).data, False, False)
    except re.error:  # pragma: no cover - it compiled once already
        return frozenset()
    return frozenset(words or ())
