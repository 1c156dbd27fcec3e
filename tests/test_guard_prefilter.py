"""The guard's shortcuts (trigger words, required literals, skipped note-only frames) change no verdict.

``frames_in`` skips frame searches that cannot match, to keep ingestion fast. This test runs the
guard over the whole evaluation set twice, once as is and once with a reference ``frames_in``
that searches every frame on its passages, and asserts identical scores and reasons.
"""

from __future__ import annotations

import json
import re

import pytest

from memkern.governance import guard
from memkern.governance import guard_frames as gf
from memkern.governance.guard_frames import FRAMES
from memkern.regexes import required_literals, required_words, top_level_alternatives


def reference_frames_in(text: str, skip: frozenset[str] = frozenset()) -> set[str]:
    """Every frame searched on the passages its triggers choose, as before any shortcut."""
    passages = gf._passages(text)
    found: set[str] = set()
    for frame in FRAMES:
        if frame.name in found:
            continue
        chosen = [chunk for chunk, words in passages if not frame.triggers or not frame.triggers.isdisjoint(words)]
        if chosen and frame.pattern.search("\n".join(chosen)):
            found.add(frame.name)
    return found - skip if skip else found


def eval_texts() -> list[str]:
    path = gf.__file__.rsplit("/", 2)[0] + "/data/guard/eval.jsonl"
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line)["text"] for line in handle if line.strip()]


def test_shortcuts_change_no_verdict_on_the_eval_set(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = eval_texts()
    assert len(texts) > 1000
    fast = [guard.check(text) for text in texts]
    monkeypatch.setattr(guard, "frames_in", reference_frames_in)
    slow = [guard.check(text) for text in texts]
    differing = [(text[:80], f, s) for text, f, s in zip(texts, fast, slow)
                 if (f.score, f.reasons) != (s.score, s.reasons)]
    assert not differing, differing[:5]


def test_required_literals_occur_in_every_match() -> None:
    """Each alternative's literals hold a substring of what it matched, on every text where it fires."""
    fired = 0
    for text in eval_texts():
        plain = gf._passages(text.lower())
        joined = "\n".join(chunk for chunk, _ in plain)
        for frame in FRAMES:
            for piece, (literals, _) in zip(top_level_alternatives(frame.pattern), frame.search.branches):
                match = piece.search(joined)
                if match:
                    fired += 1
                    assert literals, (frame.name, piece.pattern[:60])
                    assert any(literal in match.group() for literal in literals), (frame.name, match.group())
    assert fired > 1000


def test_fast_search_answers_as_the_pattern_does() -> None:
    """With and without the text's words (which rule out alternatives by their required words)."""
    texts = eval_texts()[::4] + ["", "x|y", "a]b", "[|]"]
    for text in texts:
        plain = text.lower()
        words = set().union(*(words for _, words in gf._passages(plain)))
        for frame in FRAMES:
            expected = frame.pattern.search(plain) is not None
            assert frame.search.found_in(plain) == expected, (frame.name, text[:60])
            assert frame.search.found_in(plain, words) == expected, (frame.name, text[:60])


@pytest.mark.parametrize(("pattern", "pieces"), [
    (r"a|b(c|d)|[|]x|\|y|[]|]z|[^]|]w", ["a", "b(c|d)", "[|]x", r"\|y", "[]|]z", "[^]|]w"]),
    (r"abc", ["abc"]),
    (r"(?i)a|b", ["(?i)a|b"]),            # a global flag would stay with the first piece only
    (r"(a)|b\1", [r"(a)|b\1"]),            # group numbers would change
])
def test_top_level_alternatives(pattern: str, pieces: list[str]) -> None:
    assert [piece.pattern for piece in top_level_alternatives(re.compile(pattern))] == pieces


@pytest.mark.parametrize(("pattern", "literals"), [
    (r"\bprefers?\s+you", ("prefer",)),                    # an optional letter: the shorter spelling
    (r"(?:ignore|forget)\s+\w+\s+rules", ("forget", "ignore")),  # the longest required piece wins
    (r"hide_from_user\"?|\"hide_from_user\"", ("hide_from_user",)),  # none contains another
    (r"(?:x|y)?z", ("z",)),
    (r"\w+", ()),                                          # open-ended: no shortcut
    (r"ab|\w+", ()),                                       # one open alternative is enough
    (r"(?i:abc)", ()),                                      # case ignored: not a literal
    (r"(?i)abc", ()),
])
def test_required_literals_of_small_patterns(pattern: str, literals: tuple[str, ...]) -> None:
    assert required_literals(re.compile(pattern)) == literals


def test_required_words_are_words_of_every_text_a_frame_fires_on() -> None:
    """A frame tried only on texts holding one of its required words: every text it fires on
    (searched on all passages, as before the shortcut) holds one of them among its words."""
    gated = [frame for frame in FRAMES if frame.words]
    assert len(gated) >= 10
    fired = 0
    for text in eval_texts():
        joined = "\n".join(chunk for chunk, _ in gf._passages(text.lower()))
        words = set(gf._WORD.findall(joined))
        for frame in gated:
            if frame.pattern.search(joined):
                fired += 1
                assert frame.words & words, (frame.name, joined[:80])
    assert fired > 100


@pytest.mark.parametrize(("pattern", "words"), [
    (r"\b(?:ignore|forget)\s+(?:\w+\s+){0,4}?rules\b", {"rules"}),  # the fewest words that every match holds
    (r"\bprefers?\s+you", {"prefer", "prefers"}),
    (r"(?:^\s*|[.!?]\s+)(?:tell|say)\b", {"tell", "say"}),  # a sentence start is a word edge
    (r"\bhide_from_user\b|\bnote\s", {"hide_from_user", "note"}),
    (r"\bfoo", set()),                                      # "food" matches: no word edge after
    (r"ab\b", set()),                                       # "slab" matches: no word edge before
    (r"\bdear\s+model|\bhey,", set()),                      # "hey," is not a word: no guarantee
])
def test_required_words_of_small_patterns(pattern: str, words: set[str]) -> None:
    assert required_words(re.compile(pattern)) == words


def test_words_are_the_word_pattern_s() -> None:
    """``_words`` (translate and split on ASCII texts) finds what ``_WORD`` finds."""
    tricky = ["", "a_b __c_ 1x2y don't e-mail", "tab\tand\x1c\x1dcontrol\x0bchars", "café naïve 助手 ai", "x9_9y"]
    for text in tricky + eval_texts():
        for view in (text, text.lower()):
            assert gf._words(view) == set(gf._WORD.findall(view)), view[:80]
