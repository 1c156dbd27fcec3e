"""Relative time expressions are resolved against the time a message was said, in any letter case; dates named
outright are read as periods, a range of two dates as one."""

from __future__ import annotations

import re
from datetime import date, datetime

import pytest

from memkern.reader.temporal import mentioned_periods, resolve_dates
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


@pytest.mark.parametrize(("text", "expected"), [
    ("between 1 May 2023 and 3 June 2023", [(date(2023, 5, 1), date(2023, 6, 3))]),
    ("A trip from May 7, 2023 through May 9, 2023.", [(date(2023, 5, 7), date(2023, 5, 9))]),
    ("from May 2022 to July 2022, then 2024-01-05", [(date(2022, 5, 1), date(2022, 7, 31)),
                                                     (date(2024, 1, 5), date(2024, 1, 5))]),
    # Two dates that are no range stay two periods, in text order.
    ("On May 2022 and again on 2024-01-05", [(date(2022, 5, 1), date(2022, 5, 31)), (date(2024, 1, 5), date(2024, 1, 5))]),
    ("between May 2023 and then on 5 June 2023", [(date(2023, 5, 1), date(2023, 5, 31)),
                                                  (date(2023, 6, 5), date(2023, 6, 5))]),
    ("from 2023-05-03 to 2023-05-01", [(date(2023, 5, 3), date(2023, 5, 3)), (date(2023, 5, 1), date(2023, 5, 1))]),
    # A start that leaves out what it shares with the end takes it from there.
    ("Where was John between August 11 and August 15 2023?", [(date(2023, 8, 11), date(2023, 8, 15))]),
    ("from 3 to 7 May 2023", [(date(2023, 5, 3), date(2023, 5, 7))]),
    ("from May to July 2023", [(date(2023, 5, 1), date(2023, 7, 31))]),
    ("from December 28 to January 3, 2024", [(date(2023, 12, 28), date(2024, 1, 3))]),
    ("I went from 2 to 3 times on 7 May 2023", [(date(2023, 5, 7), date(2023, 5, 7))]),
])
def test_dates_named_outright_and_ranges_of_them(text: str, expected: list[tuple[date, date]]) -> None:
    assert mentioned_periods(text) == expected
