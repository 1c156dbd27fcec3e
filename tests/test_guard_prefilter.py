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
from memkern.regexes import required_literals


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
    """Each frame's ``literals`` holds a substring of what it matched, on every text where it fires."""
    fired = 0
    for text in eval_texts():
        plain = gf._passages(text.lower())
        joined = "\n".join(chunk for chunk, _ in plain)
        for frame in FRAMES:
            match = frame.pattern.search(joined)
            if match:
                fired += 1
                assert frame.literals, frame.name
                assert any(literal in match.group() for literal in frame.literals), (frame.name, match.group())
    assert fired > 1000


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
