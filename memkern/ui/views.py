"""What the pages show, computed from operation results: no I/O here, so each piece is testable alone.

- ``parse_filters``: the timeline's and search's filter form as ``Filters`` (bad values are an
  ``InvalidInputError``, shown to the user like any other).
- ``tally``: counts by kind, state and session over pages of ``get_all``.
- ``timeline``: a page of memories grouped by session, each derived memory (fact, event,
  preference, summary) beside the turn it came from when that turn is on the same page.
- ``version_chart``: the bi-temporal intervals of a memory's versions as SVG geometry.
- ``score_bars``: a hit's score parts as bar widths.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from pydantic import ValidationError

from memkern.errors import InvalidInputError
from memkern.models import CubeStats, Filters, LifecycleState, MemoryItem, MemoryKind, ScoreParts
from memkern.models.memory import utcnow
from memkern.validation import describe

#: The filter form's "any state" value (``Filters.state=None``).
ANY_STATE = "any"
#: The parts of a search score, in the order the bars are drawn.
SCORE_PARTS = ("lexical", "dense", "session", "neighbour", "speaker", "date", "recency")


# -- filters ---------------------------------------------------------------------------------------
def parse_filters(params: Mapping[str, str | list[str]]) -> Filters:
    """``Filters`` from form fields: ``session``, ``kind`` (repeatable), ``speaker``, ``since``,
    ``until`` (ISO dates or times, UTC when no zone is given), ``tags`` (comma-separated: all
    must match) and ``state`` (a lifecycle state, or ``any``; default active)."""

    def one(name: str) -> str | None:
        value = params.get(name)
        if isinstance(value, list):
            value = value[0] if value else None
        value = (value or "").strip()
        return value or None

    kinds = params.get("kind") or []
    kinds = [k for k in ([kinds] if isinstance(kinds, str) else kinds) if k.strip()]
    tags = [t.strip() for t in (one("tags") or "").split(",") if t.strip()]
    state = one("state") or LifecycleState.ACTIVE.value
    raw = {
        "session_id": one("session"),
        "kind": kinds or None,
        "speaker": one("speaker"),
        "since": one("since"),
        "until": one("until"),
        "tags": tags or None,
        "state": None if state == ANY_STATE else state,
    }
    try:
        return Filters.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInputError(f"filters: {describe(exc)}") from None


def filter_query(filters: Filters) -> dict[str, str | list[str]]:
    """The form fields that give ``filters`` back (for links that keep the filters)."""
    out: dict[str, str | list[str]] = {}
    sessions = filters.session_ids()
    if sessions:
        out["session"] = sessions[0]
    kinds = filters.kinds()
    if kinds:
        out["kind"] = [k.value for k in kinds]
    if filters.speaker:
        out["speaker"] = filters.speaker
    if filters.since:
        out["since"] = filters.since.isoformat()
    if filters.until:
        out["until"] = filters.until.isoformat()
    if filters.tags:
        out["tags"] = ",".join(filters.tags)
    out["state"] = filters.state.value if filters.state is not None else ANY_STATE
    return out


# -- counts ----------------------------------------------------------------------------------------
@dataclass
class Tally:
    """Counts by kind, state and session of a cube's memories (the ``stats`` operation)."""

    by_kind: Counter[str] = field(default_factory=Counter)
    by_state: Counter[str] = field(default_factory=Counter)
    by_session: Counter[str] = field(default_factory=Counter)
    counted: int = 0


def tally(stats: CubeStats) -> Tally:
    """The counts tables of a cube, from its ``stats``."""
    return Tally(by_kind=Counter(stats.by_kind), by_state=Counter(stats.by_state),
                 by_session=Counter({session or "(none)": n for session, n in stats.by_session.items()}),
                 counted=stats.total)


# -- the timeline ----------------------------------------------------------------------------------
@dataclass
class Row:
    """A turn and what was derived from it on this page; ``turn`` is None for a derived memory
    whose source turn is not on the page (or a memory of another kind: a document chunk)."""

    turn: MemoryItem | None
    derived: list[MemoryItem] = field(default_factory=list)


@dataclass
class SessionGroup:
    session_id: str | None
    rows: list[Row] = field(default_factory=list)

    @property
    def started(self) -> datetime | None:
        """The earliest time of the session's memories on this page."""
        times = [m.event_time or m.recorded_at for r in self.rows for m in ([r.turn] if r.turn else []) + r.derived]
        return min(times) if times else None


def month_bounds(key: str) -> dict[str, str] | None:
    """The timeline's filter for a month of the tree (``2024-05``: since 1 May, until the end of 31 May);
    ``None`` for the ``undated`` node."""
    try:
        first = date.fromisoformat(key + "-01")
    except ValueError:
        return None
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return {"since": first.isoformat(), "until": f"{following - timedelta(days=1)}T23:59:59"}


def source_turn_ids(item: MemoryItem) -> list[str]:
    """The ids of the turn memories a derived memory names as its sources (extraction writes them)."""
    found = item.metadata.get("source_memory_ids")
    return [i for i in found if isinstance(i, str)] if isinstance(found, list) else []


def timeline(items: Sequence[MemoryItem]) -> list[SessionGroup]:
    """Group a page of memories (in store order) by session, derived memories beside their turns."""
    groups: dict[str | None, SessionGroup] = {}
    rows_by_turn: dict[str, Row] = {}
    turn_by_message: dict[str, str] = {}
    for item in items:
        if item.kind is MemoryKind.TURN:
            for message_id in item.provenance.message_ids:
                turn_by_message.setdefault(message_id, item.id)
    for item in items:
        group = groups.setdefault(item.provenance.session_id, SessionGroup(item.provenance.session_id))
        if item.kind is MemoryKind.TURN:
            row = Row(turn=item)
            rows_by_turn[item.id] = row
            group.rows.append(row)
            continue
        sources = source_turn_ids(item) + [turn_by_message[m] for m in item.provenance.message_ids
                                           if m in turn_by_message]
        home = next((rows_by_turn[s] for s in sources if s in rows_by_turn), None)
        if home is not None:
            home.derived.append(item)
        else:
            group.rows.append(Row(turn=None, derived=[item]))
    return list(groups.values())


# -- the version chart -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Bar:
    """One interval on the chart: x and width in pixels; ``open`` when it has no end yet."""

    version: int
    axis: str  # "valid" or "recorded"
    x: float
    width: float
    y: float
    start: datetime
    end: datetime | None

    @property
    def open(self) -> bool:
        return self.end is None


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    start: datetime
    end: datetime


def version_chart(versions: Sequence[MemoryItem], *, now: datetime | None = None, width: int = 560,
                  row: int = 14, left: int = 0) -> Chart:
    """Two bars per version: when it was true in the world (valid_from..valid_to; an unknown
    start is drawn from when it was recorded) and when the store believed it
    (recorded_at..expired_at). Open ends run to ``now``."""
    now = now or utcnow()
    spans: list[tuple[int, str, datetime, datetime | None]] = []
    for v in versions:
        spans.append((v.version, "valid", v.valid_from or v.recorded_at, v.valid_to))
        spans.append((v.version, "recorded", v.recorded_at, v.expired_at))
    points = [s[2] for s in spans] + [s[3] for s in spans if s[3] is not None] + [now]
    start, end = min(points), max(points)
    scale = (width - left) / max((end - start).total_seconds(), 1.0)
    bars = []
    for i, (version, axis, begin, finish) in enumerate(spans):
        x = left + (begin - start).total_seconds() * scale
        stop = left + ((finish or now) - start).total_seconds() * scale
        bars.append(Bar(version=version, axis=axis, x=round(x, 1), width=round(max(stop - x, 2.0), 1),
                        y=i * row, start=begin, end=finish))
    return Chart(width=width, height=max(len(spans), 1) * row, bars=bars, start=start, end=end)


# -- score bars ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScoreBar:
    name: str
    value: float
    width: float  # pixels, of ``full``


def score_bars(parts: ScoreParts, scale: float, full: int = 160) -> list[ScoreBar]:
    """The score parts as bars; ``scale`` is the largest part on the page (all hits share it)."""
    return [ScoreBar(name, getattr(parts, name), round(full * max(getattr(parts, name), 0.0) / scale, 1)
                     if scale > 0 else 0.0) for name in SCORE_PARTS]
