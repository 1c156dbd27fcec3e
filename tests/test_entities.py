"""The zero-LLM name finder: capitalised words that do not open a sentence, plus the speaker."""

from __future__ import annotations

import pytest

from memkern.reader.entities import find_entities


@pytest.mark.parametrize(("text", "expected"), [
    ("Yesterday I met Caroline in Lisbon. She liked the Pride parade.", ["Caroline", "Lisbon", "Pride"]),
    ("we said 'Bob' twice, and x-Bob once", ["Bob"]),         # quotes are not part of a name
    ("rock-'n'-Roll and macOS are not names; 1-Alice is", ["Alice"]),
    ("Hi there! Thanks, Dr Smith", ["Smith"]),                  # greetings and titles are not names
    ("I'm fine. I've seen O'Brien", ["O'Brien"]),
])
def test_names(text: str, expected: list[str]) -> None:
    assert find_entities(text) == expected


def test_the_speaker_comes_first() -> None:
    assert find_entities("met Melanie", speaker="Caroline") == ["Caroline", "Melanie"]
