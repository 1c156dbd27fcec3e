"""Resolve relative time expressions ("yesterday", "last Saturday", "two weeks ago")
against the time a message was said.

A memory read months later has lost its anchor: "last Saturday" means nothing without
the date of the message. Resolving it at write time keeps the answer to "when did..."
questions inside the memory, with no LLM. Only expressions with one clear reading are
resolved; anything vaguer is left alone rather than guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from memkern.regexes import required_literals_ignoring_case

_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_NUMBERS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "a couple of": 2, "couple of": 2, "a few": 3, "few": 3,
}
_NUMBER = r"(\d{1,3}|a couple of|couple of|a few|few|an|a|one|two|three|four|five|six|seven|eight|nine|ten)"

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b(yesterday|last night)\b", re.I), "yesterday"),
    (re.compile(r"\b(today|tonight|this morning|this afternoon|this evening)\b", re.I), "today"),
    (re.compile(r"\b(tomorrow)\b", re.I), "tomorrow"),
    (re.compile(r"\b(?:last|this past|past) (" + "|".join(_WEEKDAYS) + r")\b", re.I), "last_weekday"),
    (re.compile(r"\b(next|this coming) (" + "|".join(_WEEKDAYS) + r")\b", re.I), "next_weekday"),
    (re.compile(r"\b(last|next|this) (week|weekend|month|year)\b", re.I), "relative_period"),
    (re.compile(r"\b" + _NUMBER + r" (day|week|month|year)s? ago\b", re.I), "ago"),
]
#: For each pattern, words one of which the lower-cased text holds wherever it matches ("yesterday",
#: " ago"...): most turns hold none of them and are not scanned (read from the patterns themselves).
_LITERALS = [required_literals_ignoring_case(pattern) for pattern, _ in _PATTERNS]


@dataclass(frozen=True)
class ResolvedDate:
    """A time expression found in text and the calendar period it names."""

    text: str
    date: date
    #: "day", "week", "month" or "year": how precise ``date`` is.
    granularity: str

    def as_dict(self) -> dict[str, str]:
        return {"text": self.text, "date": self.date.isoformat(), "granularity": self.granularity}

    def label(self) -> str:
        if self.granularity == "month":
            return self.date.strftime("%B %Y")
        if self.granularity == "year":
            return str(self.date.year)
        if self.granularity == "week":
            return "week of " + self.date.strftime("%-d %B %Y")
        return self.date.strftime("%-d %B %Y")


def _shift_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _resolve(kind: str, match: re.Match[str], anchor: date) -> tuple[date, str] | None:
    if kind == "yesterday":
        return anchor - timedelta(days=1), "day"
    if kind == "today":
        return anchor, "day"
    if kind == "tomorrow":
        return anchor + timedelta(days=1), "day"
    if kind == "last_weekday":
        back = (anchor.weekday() - _WEEKDAYS.index(match.group(1).lower())) % 7 or 7
        return anchor - timedelta(days=back), "day"
    if kind == "next_weekday":
        ahead = (_WEEKDAYS.index(match.group(2).lower()) - anchor.weekday()) % 7 or 7
        return anchor + timedelta(days=ahead), "day"
    if kind == "relative_period":
        direction = {"last": -1, "next": 1, "this": 0}[match.group(1).lower()]
        unit = match.group(2).lower()
        if unit in ("week", "weekend"):
            monday = anchor - timedelta(days=anchor.weekday()) + timedelta(weeks=direction)
            if unit == "weekend":
                return monday + timedelta(days=5), "week"
            return monday, "week"
        if unit == "month":
            return _shift_months(anchor, direction), "month"
        return date(anchor.year + direction, 1, 1), "year"
    if kind == "ago":
        raw = match.group(1).lower()
        count = int(raw) if raw.isdigit() else _NUMBERS[raw]
        unit = match.group(2).lower()
        if unit == "day":
            return anchor - timedelta(days=count), "day"
        if unit == "week":
            return anchor - timedelta(weeks=count), "week"
        if unit == "month":
            return _shift_months(anchor, -count), "month"
        return date(anchor.year - count, 1, 1), "year"
    return None


def resolve_dates(text: str, said_at: datetime | None) -> list[ResolvedDate]:
    """Every relative time expression in ``text`` resolved against ``said_at``, in text order."""
    if said_at is None:
        return []
    anchor = said_at.date()
    found: list[tuple[int, ResolvedDate]] = []
    taken: list[range] = []
    lowered = text.lower()
    for (pattern, kind), literals in zip(_PATTERNS, _LITERALS):
        if literals and not any(map(lowered.__contains__, literals)):  # substring tests in C
            continue
        for match in pattern.finditer(text):
            span = range(match.start(), match.end())
            if any(span.start < t.stop and t.start < span.stop for t in taken):
                continue
            resolved = _resolve(kind, match, anchor)
            if resolved is not None:
                taken.append(span)
                found.append((match.start(), ResolvedDate(match.group(0), *resolved)))
    return [item for _, item in sorted(found, key=lambda pair: pair[0])]


#: The months' names, lower case, in order: every module that recognises a month reads them here.
MONTH_NAMES = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
               "october", "november", "december")
_MONTH = r"(" + "|".join(MONTH_NAMES) + r"|" + "|".join(m[:3] for m in MONTH_NAMES) + r")\.?"
_ABSOLUTE: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b"), "iso"),
    (re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)? " + _MONTH + r",? (\d{4})\b", re.I), "day_month_year"),
    (re.compile(r"\b" + _MONTH + r" (\d{1,2})(?:st|nd|rd|th)?,? (\d{4})\b", re.I), "month_day_year"),
    (re.compile(r"\b" + _MONTH + r",? (\d{4})\b", re.I), "month_year"),
]


#: Month number by the first three letters of its name ("sep" -> 9), as ``_MONTH`` matches names and abbreviations.
_MONTH_NUMBER = {name[:3]: number for number, name in enumerate(MONTH_NAMES, start=1)}


def _month_number(name: str) -> int:
    return _MONTH_NUMBER[name.lower()[:3]]


#: What opens and what joins the two ends of a date range: "between A and B", "from A to B" ("until", "till",
#: "through", a dash).
_RANGE_OPEN = re.compile(r"\b(?:between|from)\s+$", re.I)
_JOIN = r",?\s+(?:and|to|until|till|through)\s+|\s*[-\u2013]\s*"
_RANGE_JOIN = re.compile(_JOIN, re.I)
#: The start of a range that takes its year, or its month and year, from the end: "between August 11 and
#: August 15, 2023", "from 3 to 7 May 2023", "from May to July 2023".
_SHORT_START = re.compile(r"\b(?:between|from)\s+(?:" + _MONTH + r"\s+(\d{1,2})(?:st|nd|rd|th)?|(\d{1,2})(?:st|nd|rd|th)?"
                          r"(?:\s+(?:of\s+)?" + _MONTH + r")?|" + _MONTH + r")(?:" + _JOIN + r")$", re.I)


def mentioned_periods(text: str) -> list[tuple[date, date]]:
    """Calendar days or months that ``text`` names outright ("11 December, 2023", "May 2022"),
    as inclusive ``(first, last)`` day ranges in text order.

    A range of two of them ("between 1 May 2023 and 3 June 2023", "from May 2022 to July 2022", "between
    August 11 and August 15, 2023") is one period from the first day of its start to the last of its end: the
    time meant is the whole span, and a reader taking the first period gets the range, not only its first day."""
    found: list[tuple[range, date, date]] = []
    for pattern, kind in _ABSOLUTE:
        for match in pattern.finditer(text):
            span = range(match.start(), match.end())
            if any(span.start < t.stop and t.start < span.stop for t, _, _ in found):
                continue
            try:
                if kind == "iso":
                    day = date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
                    found.append((span, day, day))
                elif kind == "day_month_year":
                    day = date(int(match.group(3)), _month_number(match.group(2)), int(match.group(1)))
                    found.append((span, day, day))
                elif kind == "month_day_year":
                    day = date(int(match.group(3)), _month_number(match.group(1)), int(match.group(2)))
                    found.append((span, day, day))
                else:
                    first = date(int(match.group(2)), _month_number(match.group(1)), 1)
                    found.append((span, first, _shift_months(first, 1) - timedelta(days=1)))
            except ValueError:  # "31 February": not a date, not a period
                continue
    found.sort(key=lambda item: item[0].start)
    periods: list[tuple[date, date]] = []
    i = 0
    while i < len(found):
        span, first, last = found[i]
        if i + 1 < len(found):
            end_span, _, end_last = found[i + 1]
            if (_RANGE_OPEN.search(text, 0, span.start) and _RANGE_JOIN.fullmatch(text, span.stop, end_span.start)
                    and first <= end_last):
                periods.append((first, end_last))
                i += 2
                continue
        periods.append((_short_start(text, span.start, first) or first, last))
        i += 1
    return periods


def _short_start(text: str, end_at: int, end: date) -> date | None:
    """The first day of a range whose start, written right before ``end_at``, leaves out what it shares with
    the range's end ``end`` (its year, or its month and year); None when nothing such is written there. A
    start with a month later in the year than the end is in the year before ("from December 28 to January 3,
    2024")."""
    match = _SHORT_START.search(text, 0, end_at)
    if match is None:
        return None
    month_name = match.group(1) or match.group(4) or match.group(5)
    month = _month_number(month_name) if month_name else end.month
    day = int(match.group(2) or match.group(3) or 1)
    try:
        start = date(end.year, month, day)
        if start <= end:
            return start
        return date(end.year - 1, month, day) if month_name else None  # "from 31 to 2 May": no range
    except ValueError:
        return None
