"""The guard's shortcuts (trigger words, needed literals, skipped note-only frames) change no verdict.

``frames_in`` skips frame searches that cannot match, to keep ingestion fast. This test runs the
guard over the whole evaluation set twice, once as is and once with a reference ``frames_in``
that searches every frame on its passages, and asserts identical scores and reasons.
"""

from __future__ import annotations

import json

import pytest

from memkern.governance import guard
from memkern.governance import guard_frames as gf
from memkern.governance.guard_frames import FRAMES


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


def test_needed_literals_occur_in_every_match() -> None:
    """Each frame's ``needs`` holds a literal of what it matched on the texts where it fires."""
    for text in eval_texts():
        plain = gf._passages(text.lower())
        joined = "\n".join(chunk for chunk, _ in plain)
        for frame in FRAMES:
            match = frame.pattern.search(joined) if frame.needs else None
            if match:
                assert any(literal in match.group() for literal in frame.needs), (frame.name, match.group())
