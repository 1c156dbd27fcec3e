"""Links between memories (A-MEM's linked notes), found when asked, without an LLM.

A memory rarely answers alone: "Yes, twice!" means nothing without the question before it, a
fact means more beside the turn it was read from, "I moved to Lisbon" closes "I live in Paris",
and everything said about Melanie's pottery class is spread over months. ``links`` names
those relations for one memory:

===============  ===========================================================================
follows          the turn said just before it in its conversation (from the index: session
followed_by      and position), and the one said just after it
derived_from     the turns a fact or event was extracted from (an LLM extraction records
source_of        them: ``metadata.source_memory_ids``), and back from a turn to its facts
updates          a slot value this memory's value replaced, and the value that replaced it
updated_by       (the cube's profile, ``memkern.organize.profile``: bi-temporal, by rules)
contradicted_by  the turns that made an LLM's update decision invalidate a fact (recorded then:
                 ``metadata.invalidated_by``)
same_entity      other memories naming a person, place or thing this one names (its indexed
                 entities, looked up in the lexical index; ``via`` names the entity)
same_event       memories of other conversations naming one of those names and a day this one
                 names or was said on ("I ran the Lisbon half marathon today"; the next day
                 "yesterday's Lisbon race was tough")
===============  ===========================================================================

Nothing is stored: every kind is read from what the cube already keeps (the index, the
profile, the timeline, the lexical index), so a link cannot outlive an edit or a deletion,
and a cube of a million memories pays for a link only when one is asked for. With an LLM
configured the links get richer without a call here: its extraction writes the facts that
``derived_from`` and ``source_of`` join to their turns, and its update decisions give them
versions (``history``) or invalidate them (``contradicted_by``).

Search does not expand along these links: measured on both dev splits, adding entity and
session neighbours to the ranked pool changed no result (``memkern.organize.deep``). Chat shows
the model the turns around its best hits (``follows``, ``followed_by``; ``memkern.ops.chat``),
which measured better answers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from datetime import date

from memkern.models import LinkKind, MemoryItem, MemoryKind
from memkern.organize.profile import Profile
from memkern.organize.timeline import Timeline
from memkern.retrieval.index import CubeIndex
from memkern.retrieval.text import query_terms
from memkern.store.base import Store

__all__ = ["Link", "memory_links"]

#: (kind, linked memory id, via).
Link = tuple[LinkKind, str, str | None]

#: Rows on each side of a turn looked at first for the turns said before and after it.
NEARBY_ROWS = 64
#: Names of a memory searched for ``same_entity`` (the first said), and of those the rarest linked by.
NAMES_SEARCHED = 10
ENTITIES_LOOKED_UP = 5
#: Memories naming each name looked at for ``same_event`` (best lexical match first).
EVENT_POOL = 40
#: Rows of a session read when a turn's facts are looked for (``source_of``); a longer session reads its newest.
SESSION_ROWS_READ = 2_000


def memory_links(store: Store, index: CubeIndex, cube_id: str, memory: MemoryItem, kinds: Sequence[LinkKind],
                 limit: int, profile: Callable[[], Profile], timeline: Callable[[], Timeline]) -> list[Link]:
    """The links of ``memory`` of each of ``kinds``, at most ``limit`` per kind, to active memories only.

    ``profile`` and ``timeline`` give the cube's profile and timeline, read only for the kinds needing them."""
    found: list[Link] = []
    row = index.row_of.get(memory.id)
    if LinkKind.FOLLOWS in kinds or LinkKind.FOLLOWED_BY in kinds:
        found += _conversation(index, row, kinds, timeline)
    if LinkKind.DERIVED_FROM in kinds:
        sources = memory.metadata.get("source_memory_ids")
        if isinstance(sources, list):
            found += [(LinkKind.DERIVED_FROM, source, None) for source in sources[:limit]
                      if isinstance(source, str) and _active(index, source)]
    if LinkKind.SOURCE_OF in kinds and memory.kind is MemoryKind.TURN and row is not None:
        found += _facts_of(store, index, cube_id, memory.id, row, timeline(), limit)
    if LinkKind.UPDATES in kinds or LinkKind.UPDATED_BY in kinds:
        found += _slot_changes(profile(), index, memory, kinds, limit)
    if LinkKind.CONTRADICTED_BY in kinds:
        evidence = memory.metadata.get("invalidated_by")
        sources = evidence.get("source_memory_ids") if isinstance(evidence, dict) else None
        if isinstance(sources, list):
            found += [(LinkKind.CONTRADICTED_BY, source, None) for source in sources[:limit]
                      if isinstance(source, str) and _active(index, source)]
    if LinkKind.SAME_ENTITY in kinds or LinkKind.SAME_EVENT in kinds:
        names = _names(memory)
        named = _naming(store, index, cube_id, memory, names, max(4 * limit + 1, EVENT_POOL)) if names else []
        if LinkKind.SAME_ENTITY in kinds:
            found += _same_entity(named, limit)
        if LinkKind.SAME_EVENT in kinds:
            found += _same_event(store, cube_id, memory, named, limit)
    distinct: dict[tuple[LinkKind, str], Link] = {}
    for link in found:
        if link[1] != memory.id:
            distinct.setdefault((link[0], link[1]), link)
    return list(distinct.values())


def _active(index: CubeIndex, memory_id: str) -> bool:
    row = index.row_of.get(memory_id)
    return row is not None and bool(index.active[row])


def _conversation(index: CubeIndex, row: int | None, kinds: Sequence[LinkKind], timeline: Callable[[], Timeline]
                  ) -> list[Link]:
    """The turns said just before and after the turn at ``row`` in its session (positions are per session).

    A session's turns are mostly written together, so the rows around ``row`` are looked at first; the
    session's rows from the timeline only when a neighbour is not among them (a session resumed later)."""
    if row is None or index.positions[row] < 0 or index.session_names[int(index.session_codes[row])] is None:
        return []
    code, position = int(index.session_codes[row]), int(index.positions[row])
    near = range(max(0, row - NEARBY_ROWS), min(len(index), row + NEARBY_ROWS + 1))
    links: list[Link] = []
    for kind, wanted in ((LinkKind.FOLLOWS, position - 1), (LinkKind.FOLLOWED_BY, position + 1)):
        if kind not in kinds or wanted < 0:
            continue
        found = _turn_at(index, near, code, wanted)
        if found is None:
            found = _turn_at(index, timeline().live_rows(code, index.live), code, wanted)
        if found is not None:
            links.append((kind, index.ids[found], None))
    return links


def _turn_at(index: CubeIndex, rows: Iterable[int], code: int, position: int) -> int | None:
    """The active turn of session ``code`` at ``position`` among ``rows``, if there."""
    for row in rows:
        if (index.positions[row] == position and index.session_codes[row] == code and index.active[row]
                and index.kinds[row] == MemoryKind.TURN.value):
            return row
    return None


def _facts_of(store: Store, index: CubeIndex, cube_id: str, memory_id: str, row: int, timeline: Timeline,
              limit: int) -> list[Link]:
    """The facts and events of the turn's session whose extraction names the turn as a source."""
    code = int(index.session_codes[row])
    rows = [r for r in timeline.live_rows(code, index.live)[-SESSION_ROWS_READ:]
            if index.active[r] and index.kinds[r] != MemoryKind.TURN.value]
    if not rows:
        return []
    derived = store.get_memories(cube_id, [index.ids[r] for r in rows])
    links: list[Link] = [(LinkKind.SOURCE_OF, item.id, None) for item in derived.values()
                         if memory_id in (item.metadata.get("source_memory_ids") or [])]
    return links[:limit]


def _slot_changes(profile: Profile, index: CubeIndex, memory: MemoryItem, kinds: Sequence[LinkKind],
                  limit: int) -> list[Link]:
    """The turns stating the value before and after each slot value this memory states (the profile's
    subject of a turn is its speaker: it reads first-person statements)."""
    memory_id, speaker = memory.id, memory.provenance.speaker
    links: list[Link] = []
    for subject, slot in sorted(key for key in profile.slots() if key[0] == speaker):
        values = profile.history(subject, slot)
        for at, value in enumerate(values):
            if memory_id not in value.sources:
                continue
            if at > 0 and LinkKind.UPDATES in kinds:
                older = values[at - 1]
                if older.superseded_by == value.value:
                    via = f"{subject} {slot}: {older.value} -> {value.value}"
                    links += [(LinkKind.UPDATES, source, via) for source in older.sources[-limit:]
                              if _active(index, source)]
            if at + 1 < len(values) and value.superseded_by == values[at + 1].value and LinkKind.UPDATED_BY in kinds:
                newer = values[at + 1]
                via = f"{subject} {slot}: {value.value} -> {newer.value}"
                links += [(LinkKind.UPDATED_BY, source, via) for source in newer.sources[:limit]
                          if _active(index, source)]
    return links


def _names(memory: MemoryItem) -> list[str]:
    """The names a memory's links go by: its indexed entities (capitalised words that do not open a
    sentence, ``memkern.reader.entities``) without its speaker (every turn they said) and the dates it
    names (the timeline's), the first :data:`NAMES_SEARCHED` of them."""
    speaker = (memory.provenance.speaker or "").casefold()
    return [name for name in dict.fromkeys(memory.entities)
            if name.casefold() != speaker and not any(ch.isdigit() for ch in name)][:NAMES_SEARCHED]


def _naming(store: Store, index: CubeIndex, cube_id: str, memory: MemoryItem, names: list[str], per_name: int
            ) -> list[tuple[str, list[str]]]:
    """For the rarest :data:`ENTITIES_LOOKED_UP` of ``names``, the active memories whose text holds the name
    as a word, capitalised as here ("Biscuit is a beagle" names the dog Biscuit, "a biscuit" does not),
    best lexical match first, at most ``per_name`` looked at."""
    candidates: list[tuple[int, str, list[str]]] = []
    for name in names:
        terms = query_terms(name)
        if terms:
            ids = [memory_id for memory_id, _ in store.lexical_search(cube_id, terms, per_name)
                   if memory_id != memory.id and _active(index, memory_id)]
            candidates.append((len(ids), name, ids))
    rarest = sorted(candidates)[:ENTITIES_LOOKED_UP]
    texts = store.get_texts(cube_id, list(dict.fromkeys(i for _, _, ids in rarest for i in ids)))
    found = []
    for _, name, ids in rarest:
        word = re.compile(rf"(?<!\w){re.escape(name)}(?!\w)")
        found.append((name, [i for i in ids if i in texts and word.search(texts[i].text)]))
    return found


def _same_entity(named: list[tuple[str, list[str]]], limit: int) -> list[Link]:
    """Memories naming one of this memory's names, rarest name first, best lexical match first."""
    links: dict[str, Link] = {}
    for name, ids in named:
        for memory_id in ids:
            if len(links) < limit:
                links.setdefault(memory_id, (LinkKind.SAME_ENTITY, memory_id, name))
    return list(links.values())


def _days(memory: MemoryItem) -> set[date]:
    """The day a memory was said on and the days it names ("last Saturday": its resolved day)."""
    days = {memory.event_time.date()} if memory.event_time is not None else set()
    for found in memory.metadata.get("dates") or []:
        if isinstance(found, dict) and found.get("granularity") == "day" and isinstance(found.get("date"), str):
            try:
                days.add(date.fromisoformat(found["date"]))
            except ValueError:
                continue
    return days


def _same_event(store: Store, cube_id: str, memory: MemoryItem, named: list[tuple[str, list[str]]],
                limit: int) -> list[Link]:
    """Memories of other conversations naming a name this one names and a day it names or was said on:
    "I ran the Lisbon half marathon today" (20 May) and, the next day, "yesterday's Lisbon race was tough"."""
    days = _days(memory)
    pool = list(dict.fromkeys(i for _, ids in named for i in ids[:EVENT_POOL]))
    if not days or not pool:
        return []
    items = store.get_memories(cube_id, pool)
    session = memory.provenance.session_id
    links: dict[str, Link] = {}
    for name, ids in named:
        for memory_id in ids[:EVENT_POOL]:
            item = items.get(memory_id)
            if item is None or len(links) >= limit or (session is not None and item.provenance.session_id == session):
                continue
            shared = days & _days(item)
            if shared:
                links.setdefault(memory_id, (LinkKind.SAME_EVENT, memory_id, f"{name}, {min(shared):%-d %B %Y}"))
    return list(links.values())
