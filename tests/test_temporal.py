"""Relative time expressions are resolved against the time a message was said, in any letter case."""

from __future__ import annotations

import re
from datetime import date, datetime

import pytest

from memkern.reader.temporal import resolve_dates
from memkern.regexes import required_literals_ignoring_case

SAID_AT = datetime(2023, 5, 10, 14, 0)  # a Wednesday


@pytest.mark.parametrize(("text", "expected"), [
    ("We met Yesterday.", [("Yesterday", date(2023, 5, 9), "day")]),
    ("LAST FRIDAY was fun", [("LAST FRIDAY", date(2023, 5, 5), "day")]),
    ("I moved 2 Weeks Ago and start next month", [("2 Weeks Ago", date(2023, 4, 26), "week"),
                                                  ("next month", date(2023, 6, 1), "month")]),
    ("see you this coming Monday, or tomorrow", [("this coming Monday", date(2023, 5, 15), "day"),
                                                 ("tomorrow", date(2023, 5, 11), "day")]),
    ("A plain sentence about a dayroom and agony.", []),
])
def test_expressions_are_resolved(text: str, expected: list[tuple[str, date, str]]) -> None:
    assert [(r.text, r.date, r.granularity) for r in resolve_dates(text, SAID_AT)] == expected


def test_literals_of_a_case_insensitive_pattern_are_lower_case() -> None:
    pattern = re.compile(r"\b(Last|Next) (Week|Month)\b", re.I)
    assert required_literals_ignoring_case(pattern) == ("last week", "next week", "last month", "next month")
