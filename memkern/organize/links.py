"""Links between memories by entity, derived without an LLM (A-MEM's linked notes, by rules).

Memories naming the same proper name or quoted title ("Sacramento", "Dr. Johnson",
"'Sapiens'") are linked across sessions. An entity's *thread* is every session naming it: a
question about it may need each of them ("How often do I see Dr. Johnson?"). (The other links
a memory has are kept where they already live: its neighbouring turns in the index's
(session, position) map, which search reads as the neighbour signal, and the values that
replaced a slot's value in ``memkern.organize.profile``.)

Entities need the memories' text. :class:`LinkCache` keeps them per
cube and reads only the rows its index gained since the last look (a write costs its own
turns), as :class:`memkern.organize.profile.ProfileCache` does; dead rows are skipped when
read, and only a rebuilt (renumbered) index makes it start again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from memkern.organize.follow import IndexFollower
from memkern.retrieval.index import CubeIndex
from memkern.store.base import MemoryText, Store

__all__ = ["LinkCache", "Links", "entities"]

_NAME = re.compile(r"\b(?:Dr|Mr|Mrs|Ms|St)\.\s+[A-Z][\w'-]+|\b[A-Z][\w'&-]*[a-z][\w'&-]*(?:\s+[A-Z][\w'&-]+)*")
_QUOTED = re.compile(r"[\"“']([A-Z][^\"”'\n]{2,60})[\"”']")
#: Characters after which a capitalised word opens a sentence (checked on the text just before it).
_OPENERS = '.!?:;\n"“('

#: Capitalised words that are not names: openers of a longer capitalised run ("The Louvre", "What
#: Sapiens"), days and months (time is the timeline's).
_NOT_NAMES = frozenset("""
i i'm i've i'd i'll hi hey hello thanks thank yes no ok okay oh well so also but and or the a an this that
these those what when where which who why how can could would should will may might do does did is are was
were have has had it its my your our their his her we you they he she there here please sure great
monday tuesday wednesday thursday friday saturday sunday january february march april may june july august
september october november december today tomorrow yesterday
""".split())


def entities(text: str) -> set[str]:
    """The names and quoted titles ``text`` mentions, lower-cased ("I met Dr. Smith in Lisbon" ->
    {"dr. smith", "lisbon"}). A single capitalised word opening a sentence is left out: every
    sentence opens with one ("Sounds great"), and telling "Lisbon is lovely" from it takes a lexicon."""
    found: set[str] = set()
    for match in _NAME.finditer(text):
        words = match.group(0).split()
        start = match.start()
        before = text[max(0, start - 16):start].rstrip()
        opens = before[-1:] in _OPENERS if before else start <= 16
        if opens and len(words) == 1:
            continue
        while words and words[0].lower() in _NOT_NAMES:
            words = words[1:]  # "The Louvre" -> "Louvre"; "What Sapiens" -> "Sapiens"
        if words and len(" ".join(words)) > 2:
            found.add(" ".join(words).lower())
    found.update(title.strip().lower() for title in _QUOTED.findall(text))
    return found


@dataclass
class Links:
    """Entity -> rows naming it, and row -> its entities, over a cube's index rows."""

    rows_of: dict[str, list[int]] = field(default_factory=dict)
    entities_of: dict[int, frozenset[str]] = field(default_factory=dict)

    def add(self, row: int, names: set[str]) -> None:
        if not names:
            return
        self.entities_of[row] = frozenset(names)
        for name in names:
            self.rows_of.setdefault(name, []).append(row)

    def thread(self, entity: str, index: CubeIndex) -> list[int]:
        """Rows naming ``entity`` that the index snapshot still holds."""
        live, n = index.live, len(index)
        return [row for row in self.rows_of.get(entity.lower(), []) if row < n and live[row]]


def _without_speaker(memory: MemoryText) -> str:
    """The turn's text without its "Caroline: " prefix (a speaker is not something the turn talks about)."""
    speaker = memory.speaker
    if speaker and memory.text.startswith(f"{speaker}: "):
        return memory.text[len(speaker) + 2:]
    return memory.text


class LinkCache(IndexFollower[Links]):
    """One :class:`Links` per cube, following its search index (``memkern.organize.follow``): a look
    reads only the rows appended since the last one; dead rows are skipped when a thread is read."""

    def __init__(self, store: Store) -> None:
        def grew(links: Links, cube_id: str, index: CubeIndex, start: int, stop: int) -> None:
            rows = [row for row in range(start, stop) if index.live[row]]
            memories = store.get_texts(cube_id, [index.ids[row] for row in rows]) if rows else {}
            for row in rows:
                memory = memories.get(index.ids[row])
                if memory is not None:
                    links.add(row, entities(_without_speaker(memory)))

        super().__init__(Links, grew)
