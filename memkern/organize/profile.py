"""A zero-LLM profile: what each subject's slots hold now, and what they held before.

Turns are never rewritten, so a memory of turns alone cannot tell "I live in Paris" (March)
from "I now live in Alfama" (May): both match "Where does Alice live?". The profile reads
first-person statements of each speaker with a few measured rules ("I live in X", "I moved
to X", "I work as X", "my wife X", "my cat X", "I'm vegetarian") and keeps, per subject and
slot, the values in the order they became true (bi-temporal: ``since`` is when it was said,
``until`` when a later value replaced it). Every value points to the turns it came from.

Exclusive slots (residence, job, partner, diet) hold one value at a time: a different value
said later supersedes the current one, which stays in the history with ``until`` set. Other
slots (pets, likes) accumulate. The same value said again only adds its turn as a source.

The profile is derived from the cube's turns and rebuilt incrementally as turns arrive
(:class:`ProfileCache`); it is never stored in the database, so it cannot drift from the
memories. Beside a large cube's saved index copy (``memkern.retrieval.snapshot``) it is saved
as of that copy, and the next process starts from it and reads only the turns written since:
a million turns took 44-53 s to read and fold on the first slot question of every process. It
goes wherever the copy goes: any delete removes both.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from memkern.models import LifecycleState, MemoryKind
from memkern.organize.follow import IndexFollower
from memkern.reader.temporal import MONTH_NAMES
from memkern.retrieval.index import CubeIndex, IndexCache
from memkern.store.base import MemoryText, Store

log = logging.getLogger(__name__)

#: Name of the profile's file beside a saved index copy, and the version of its layout.
SAVED_PART = "profile"
_SAVED_FORMAT = 1

__all__ = ["Profile", "ProfileCache", "SlotValue", "asked_slot", "first_person", "statements"]

#: Slots that hold one value at a time; a new value supersedes the old one.
EXCLUSIVE = frozenset({"residence", "job", "partner", "diet"})

_VALUE = r"(?P<value>[^.,;!?\n]{2,60}?)(?=\s+(?:and|but|so|because|since|where|which|for now)\b|[.,;!?\n]|$)"
_I = r"\bI(?:'m|'ve| am| have)?"
_NOW = r"(?:\s+(?:now|currently|still|also|just|recently|finally|officially|been))*"

#: (slot, pattern); the pattern's ``value`` group is the slot's value. Order matters only for overlaps.
RULES: list[tuple[str, re.Pattern[str]]] = [
    ("residence", re.compile(_I + _NOW + r"\s+(?:live|living|reside|residing|based|settled)\s+(?:in|at)\s+"
                             + _VALUE, re.I)),
    ("residence", re.compile(_I + _NOW + r"\s+(?:moved|relocated|moving|relocating)\s+(?:back\s+)?to\s+"
                             + _VALUE, re.I)),
    ("residence", re.compile(r"\bmy (?:home|flat|apartment|house) is in\s+" + _VALUE, re.I)),
    ("job", re.compile(_I + _NOW + r"\s+(?:work|working)\s+as\s+" + _VALUE, re.I)),
    ("job", re.compile(_I + _NOW + r"\s+(?:start|started|starting|begin|began)\s+(?:working\s+)?as\s+" + _VALUE,
                       re.I)),
    ("job", re.compile(_I + _NOW + r"\s+(?:got|landed|accepted|took)\s+(?:a|the)\s+(?:new\s+)?(?:job|position|role)"
                       r"\s+as\s+" + _VALUE, re.I)),
    ("job", re.compile(r"\bmy (?:new )?(?:job|position|role) is\s+" + _VALUE, re.I)),
    ("partner", re.compile(r"\bmy (?:new )?(?P<kind>wife|husband|partner|boyfriend|girlfriend|fianc[eé]e?)"
                           r",?\s+(?P<value>[A-Z][\w'-]+)")),
    ("pet", re.compile(r"\b[Mm]y (?:new )?(?P<kind>cat|dog|puppy|kitten|rabbit|hamster|parrot|horse)"
                       r",?\s+(?:(?:is )?(?:named|called)\s+)?(?P<value>[A-Z][\w'-]+)")),
    ("diet", re.compile(_I + _NOW + r"\s+(?:a\s+)?(?P<value>vegetarian|vegan|pescatarian|gluten[- ]free|"
                        r"lactose[- ]intolerant)\b", re.I)),
    ("likes", re.compile(_I + r"\s+(?:only|really|mostly)\s+(?:drink|eat|listen to|read|watch)\s+" + _VALUE, re.I)),
]

#: (slot, pattern over a question): which slot a question asks about.
QUESTION_SLOTS: list[tuple[str, re.Pattern[str]]] = [
    ("residence", re.compile(r"\bwhere\b.*\b(?:live|lives|living|based|reside|resides|home)\b|"
                             r"\b(?:city|town|country|neighbou?rhood)\b.*\b(?:live|lives|living)\b", re.I)),
    ("job", re.compile(r"\b(?:job|occupation|profession|employer|works? as|work for|works for)\b|"
                       r"\bwhat does \w+ do for a living\b", re.I)),
    ("partner", re.compile(r"\b(?:partner|wife|husband|boyfriend|girlfriend|fianc[eé]e?)\b", re.I)),
    ("pet", re.compile(r"\b(?:pet|pets|cat|dog|puppy|kitten)\b", re.I)),
    ("diet", re.compile(r"\b(?:vegetarian|vegan|diet|dietary)\b", re.I)),
]
_EVENT_QUESTION = re.compile(r"\s*(?:when|why|how)\b", re.I)
_FIRST_PERSON = re.compile(r"\b(?:I|me|my|mine|I'm|I've)\b")


@dataclass
class SlotValue:
    """One value a slot held: since when, until when (None: still current), and the turns that said it."""

    subject: str
    slot: str
    value: str
    since: datetime | None
    sources: list[str] = field(default_factory=list)
    until: datetime | None = None
    superseded_by: str | None = None

    @property
    def current(self) -> bool:
        return self.superseded_by is None


@dataclass(frozen=True)
class Statement:
    """A slot value found in one turn."""

    slot: str
    value: str


def statements(text: str) -> list[Statement]:
    """The slot values a first-person ``text`` states ("I now live in Alfama" -> residence: Alfama)."""
    found: list[Statement] = []
    taken: list[range] = []
    for slot, pattern in RULES:
        for match in pattern.finditer(text):
            span = range(match.start(), match.end())
            if any(span.start < t.stop and t.start < span.stop for t in taken):
                continue
            value = _clean(match.group("value"))
            if slot == "residence":
                value = re.split(r"\s+(?:for|to|with|in order)\s+", value, maxsplit=1)[0]  # "LA for my studies"
                if not value or not value[0].isupper():
                    continue  # "moving to a new apartment" names no place
            if not value:
                continue
            kind = match.groupdict().get("kind")
            taken.append(span)
            found.append(Statement(slot, f"{kind.lower()} {value}" if kind and slot == "pet" else value))
    return found


_DAYS = r"(?:mon|tues|wednes|thurs|fri|satur|sun)day"
_PERIODS = r"(?:week|weekend|month|year|summer|winter|spring|fall|autumn|night|" + _DAYS + ")"
_MONTHS = "(?:" + "|".join(MONTH_NAMES) + ")"
#: When something became true, said after the value ("I moved to Lisbon last Saturday"): not part of the value.
_TRAILING_TIME = re.compile(
    r"(?:\s+(?:now|again|too|anymore|these days|yesterday|today|tonight|recently|lately|soon|shortly|later"
    r"|(?:last|this|next|past)\s+" + _PERIODS + r"s?"
    r"|(?:a|one|two|three|four|five|six|several|a few|a couple of|\d+)\s+(?:days?|weeks?|months?|years?)\s+ago"
    r"|(?:in|on|since|back in|around)\s+(?:(?:19|20)\d\d|" + _MONTHS + r"(?:\s+\d{1,2})?(?:,?\s+(?:19|20)\d\d)?|"
    + _DAYS + r")))+$", re.I)


def _clean(value: str) -> str:
    value = re.sub(r"^(?:the\s+(?=[A-Z])|an?\s+)", "", value.strip())
    value = _TRAILING_TIME.sub("", value)
    return value.strip(" '\"")


def _same(a: str, b: str) -> bool:
    return " ".join(a.lower().split()) == " ".join(b.lower().split())


class Profile:
    """Every subject's slot histories, oldest value first; the last value of an exclusive slot is current."""

    def __init__(self) -> None:
        self._slots: dict[tuple[str, str], list[SlotValue]] = {}

    def subjects(self) -> set[str]:
        return {subject for subject, _ in self._slots}

    def slots(self) -> set[tuple[str, str]]:
        """Every (subject, slot) with at least one value."""
        return set(self._slots)

    def history(self, subject: str, slot: str) -> list[SlotValue]:
        """The values ``subject``'s ``slot`` held, oldest first (empty when never stated)."""
        return list(self._slots.get((subject, slot), []))

    def current(self, subject: str, slot: str) -> list[SlotValue]:
        """The values that hold now: the last one of an exclusive slot, every one of the others."""
        return [value for value in self._slots.get((subject, slot), []) if value.current]

    def forget(self, memory_id: str) -> None:
        """Take back what one turn stated (it was edited or erased); a value no turn states any more goes."""
        for key in list(self._slots):
            values = self._slots[key]
            for value in values:
                if memory_id in value.sources:
                    value.sources.remove(memory_id)
            kept = [value for value in values if value.sources]
            if len(kept) == len(values):
                continue
            if kept:
                self._slots[key] = kept
                if key[1] in EXCLUSIVE:
                    _chain(kept)
            else:
                del self._slots[key]

    def to_json(self) -> bytes:
        """Every history as JSON, for saving beside the index copy (:meth:`from_json` reads it back)."""
        values = [[v.subject, v.slot, v.value, _time(v.since), v.sources, _time(v.until), v.superseded_by]
                  for values in self._slots.values() for v in values]
        return json.dumps({"format": _SAVED_FORMAT, "values": values}, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> Profile:
        """A profile written by :meth:`to_json`; ValueError if ``data`` is not one."""
        try:
            raw = json.loads(data)
            if not isinstance(raw, dict) or raw.get("format") != _SAVED_FORMAT or not isinstance(raw.get("values"), list):
                raise ValueError("not a saved profile")
            profile = cls()
            for subject, slot, value, since, sources, until, superseded_by in raw["values"]:
                if not all(isinstance(x, str) for x in (subject, slot, value)) or not isinstance(sources, list) \
                        or not all(isinstance(x, str) for x in sources) \
                        or not (superseded_by is None or isinstance(superseded_by, str)):
                    raise ValueError("a saved profile value has a field of the wrong type")
                profile._slots.setdefault((subject, slot), []).append(
                    SlotValue(subject, slot, value, _parse_time(since), list(sources), _parse_time(until), superseded_by))
        except (TypeError, UnicodeDecodeError, json.JSONDecodeError) as exc:  # a wrong shape unpacked, bad bytes
            raise ValueError(f"not a saved profile: {exc}") from exc
        return profile

    def observe(self, memory_id: str, subject: str, text: str, said_at: datetime | None) -> None:
        """Read one turn of ``subject`` and fold what it states into the histories."""
        for statement in statements(text):
            self._record(subject, statement, memory_id, said_at)

    def _record(self, subject: str, statement: Statement, memory_id: str, said_at: datetime | None) -> None:
        values = self._slots.setdefault((subject, statement.slot), [])
        for value in values:
            if _same(value.value, statement.value):
                if memory_id not in value.sources:
                    value.sources.append(memory_id)
                return
        new = SlotValue(subject, statement.slot, statement.value, said_at, [memory_id])
        values.append(new)
        if statement.slot not in EXCLUSIVE:
            return
        # Valid time orders the history, whatever order the turns arrived in.
        _chain(values)


def _chain(values: list[SlotValue]) -> None:
    """Order an exclusive slot's values by valid time and let each one close the one before."""
    values.sort(key=lambda v: (v.since is None, v.since or datetime.min))
    for older, newer in zip(values, values[1:]):
        older.until, older.superseded_by = newer.since, newer.value
    values[-1].until = values[-1].superseded_by = None


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("a saved profile time is not a string")
    return datetime.fromisoformat(value)


def first_person(query: str) -> bool:
    return bool(_FIRST_PERSON.search(query))


def asked_slot(query: str) -> str | None:
    """The slot a question asks about ("Where does Alice live?" -> residence), or None. Questions
    about when, why or how ("When did John get his dog?") ask about an event, not a slot's value."""
    if _EVENT_QUESTION.match(query):
        return None
    for slot, pattern in QUESTION_SLOTS:
        if pattern.search(query):
            return slot
    return None


class ProfileCache(IndexFollower[Profile]):
    """One :class:`Profile` per cube, following its search index (``memkern.organize.follow``): a look
    reads the turns of new rows and takes back what newly dead rows had stated (an edit is both: its
    old row dies, its new version is appended), so each write costs its own turns, never the cube.

    Given the kernel's ``indexes``, each profile this process holds is saved with its cube's index
    copy, and a profile saved by an earlier process is where the first look starts."""

    def __init__(self, store: Store, indexes: IndexCache | None = None) -> None:
        def grew(profile: Profile, cube_id: str, index: CubeIndex, start: int, stop: int) -> None:
            rows = [row for row in range(start, stop)
                    if index.live[row] and index.kinds[row] == MemoryKind.TURN.value]
            memories = store.get_texts(cube_id, [str(index.ids[row]) for row in rows]) if rows else {}
            for row in rows:
                memory = memories.get(str(index.ids[row]))
                if memory is not None and memory.state is LifecycleState.ACTIVE:
                    _observe(profile, memory)

        def died(profile: Profile, cube_id: str, index: CubeIndex, rows: np.ndarray) -> None:
            for row in rows:
                profile.forget(str(index.ids[row]))

        def saved(cube_id: str) -> tuple[Profile, int, str | None] | None:
            found = None if indexes is None else indexes.saved_part(cube_id, SAVED_PART)
            if found is None:
                return None
            data, rows, last_id = found
            try:
                return Profile.from_json(data), rows, last_id
            except ValueError as exc:  # read from the turns instead
                log.warning("saved profile of cube %s not used: %s", cube_id, exc)
                return None

        super().__init__(Profile, grew, died, saved=saved)
        if indexes is not None:
            indexes.keep_part(SAVED_PART, lambda cube_id, index: self.value_at(cube_id, index, Profile.to_json),
                              self.holds)


def _observe(profile: Profile, memory: MemoryText) -> None:
    speaker = memory.speaker or ""
    if not speaker or memory.role == "assistant" or speaker == "assistant":
        return  # an assistant does not live or work anywhere
    text = memory.text
    prefix = f"{speaker}: "
    if text.startswith(prefix):
        text = text[len(prefix):]
    profile.observe(memory.id, speaker, text.split(" [image: ", 1)[0], memory.said_at)
