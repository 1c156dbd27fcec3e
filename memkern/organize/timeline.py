"""A hierarchical temporal index of a cube: session -> day -> week -> month.

Questions about time ("when did I...", "what did I do first", "the trips of the past three
months, in order") need the memories arranged by when they happened, not by how well their
words match. The tree groups the rows of a cube's search index (``CubeIndex``) by
conversation session and each session under the day, ISO week and month it started in
(MemForest's time-ordered trees, without the LLM summaries).

It is derived from the index alone (session codes, event times) and follows it the way the
index follows the store: rows are only appended, so a write adds its rows to their session
and, for a session seen for the first time, one entry to its day, week and month; nothing
else is touched. Rows that died since (replaced, deleted) stay in the tree and are skipped
when read, against the index snapshot's ``live`` mask. Only when the index itself was
rebuilt (its rows renumbered) is the tree built again.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import numpy as np

from memkern.organize.follow import IndexFollower
from memkern.retrieval.index import CubeIndex

__all__ = ["SessionNode", "Timeline", "TimelineCache", "spans", "without_spans"]

#: ISO (year, week) of a day.
Week = tuple[int, int]
#: (year, month) of a day.
Month = tuple[int, int]


@dataclass
class SessionNode:
    """One session: its rows in the index and the earliest and latest event time among them."""

    code: int
    rows: list[int] = field(default_factory=list)
    start: float = math.inf
    end: float = -math.inf

    @property
    def day(self) -> date | None:
        return datetime.fromtimestamp(self.start, timezone.utc).date() if math.isfinite(self.start) else None


class Timeline:
    """Sessions under days, days under ISO weeks, weeks under months; each level ordered by time when read."""

    def __init__(self) -> None:
        self.sessions: dict[int, SessionNode] = {}
        self.days: dict[date, set[int]] = {}
        self.weeks: dict[Week, set[date]] = {}
        self.months: dict[Month, set[Week]] = {}
        self.undated: set[int] = set()

    def add(self, row: int, code: int, event_time: float) -> None:
        """Place one new index row: in its session, and the session in its day, week and month."""
        self._extend(code, [row], event_time, event_time)

    def add_rows(self, rows: np.ndarray, codes: np.ndarray, event_times: np.ndarray) -> None:
        """Place new index rows (ascending) as :meth:`add` would one by one, a session at a time: a
        million rows took 2.3 s row by row."""
        if not len(rows):
            return
        order = np.argsort(codes, kind="stable")
        codes, rows = codes[order], rows[order]
        times = event_times[order].astype(np.float64)
        starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
        earliest = np.fmin.reduceat(times, starts)  # NaN only where every row of the session is undated
        latest = np.fmax.reduceat(times, starts)
        bounds = np.r_[starts, len(rows)].tolist()
        for i, code in enumerate(codes[starts].tolist()):
            self._extend(code, rows[bounds[i]:bounds[i + 1]].tolist(), float(earliest[i]), float(latest[i]))

    def _extend(self, code: int, rows: list[int], earliest: float, latest: float) -> None:
        """Append a session's new ``rows``, whose event times span ``earliest``..``latest`` (NaN: none)."""
        node = self.sessions.get(code)
        if node is None:
            node = self.sessions[code] = SessionNode(code)
        node.rows.extend(rows)
        if math.isnan(earliest):
            if not math.isfinite(node.start):
                self.undated.add(code)
            return
        old_day = node.day
        node.start, node.end = min(node.start, earliest), max(node.end, latest)
        new_day = node.day
        if new_day is None or new_day == old_day:
            return
        # A session lives under the day it started; an earlier row moves it (rare: turns arrive in order).
        self.undated.discard(code)
        if old_day is not None:
            self.days[old_day].discard(code)
        self.days.setdefault(new_day, set()).add(code)
        iso = new_day.isocalendar()
        week = (iso[0], iso[1])
        self.weeks.setdefault(week, set()).add(new_day)
        self.months.setdefault((new_day.year, new_day.month), set()).add(week)

    def sessions_between(self, first: date, last: date) -> list[int]:
        """Codes of the sessions that started on a day in ``[first, last]``, oldest first (equal starts by code).

        Walks the months, then the weeks, then the days of the range: a period costs the
        nodes inside it, not the whole cube."""
        found: list[int] = []
        for month in sorted(m for m in self.months if (first.year, first.month) <= m <= (last.year, last.month)):
            days = sorted(d for week in self.months[month] for d in self.weeks[week]
                          if first <= d <= last and (d.year, d.month) == month)
            for day in dict.fromkeys(days):
                found.extend(sorted(self.days[day], key=lambda code: (self.sessions[code].start, code)))
        return found

    def live_rows(self, code: int, live: np.ndarray) -> list[int]:
        """The rows of a session that the index snapshot still holds, in the order they were written."""
        node = self.sessions.get(code)
        return [row for row in node.rows if row < len(live) and live[row]] if node else []


_COUNTS = {"a": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
           "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "a couple of": 2, "a few": 3, "few": 3, "several": 4}
_UNIT_DAYS = {"day": 1, "week": 7, "month": 30.44, "year": 365.25}
_SPAN = re.compile(r"\b(?:in|over|during|within|for)?\s*the\s+(?:past|last|previous)\s+"
                   r"(?P<count>\d+|a couple of|a few|few|several|" + "|".join(k for k in _COUNTS if " " not in k)
                   + r")\s+(?P<unit>day|week|month|year)s?\b", re.IGNORECASE)


def spans(query: str, now: datetime) -> list[tuple[date, date]]:
    """Windows ending when the question is asked that ``query`` names ("in the past three months" ->
    the three months up to ``now``); a single "last month" is a calendar period, not a span, and is
    ``memkern.retrieval.search.relative_periods``'s."""
    found = []
    for match in _SPAN.finditer(query):
        raw = match.group("count").lower()
        count = int(raw) if raw.isdigit() else _COUNTS[raw]
        days = math.ceil(count * _UNIT_DAYS[match.group("unit").lower()])
        found.append((now.date() - timedelta(days=days), now.date()))
    return found


def without_spans(query: str) -> str:
    """``query`` with the spans it names left out ("trips I took in the past three months" -> "trips I took")."""
    return " ".join(_SPAN.sub(" ", query).split())


class TimelineCache(IndexFollower[Timeline]):
    """One :class:`Timeline` per cube, following its search index (``memkern.organize.follow``): a
    look adds only the rows appended since the last one."""

    def __init__(self) -> None:
        def grew(timeline: Timeline, cube_id: str, index: CubeIndex, start: int, stop: int) -> None:
            timeline.add_rows(np.arange(start, stop), index.session_codes[start:stop], index.event_times[start:stop])

        super().__init__(Timeline, grew)
