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
    for pattern, kind in _PATTERNS:
        for match in pattern.finditer(text):
            span = range(match.start(), match.end())
            if any(span.start < t.stop and t.start < span.stop for t in taken):
                continue
            resolved = _resolve(kind, match, anchor)
            if resolved is not None:
                taken.append(span)
                found.append((match.start(), ResolvedDate(match.group(0), *resolved)))
    return [item for _, item in sorted(found, key=lambda pair: pair[0])]
