"""What each node of a cube's timeline holds and is about, without an LLM.

The timeline (``memkern.organize.timeline``) arranges sessions under days, ISO weeks and
months. MemForest summarises every node of such a tree with an LLM; here a node's digest is
first built from what the cube already keeps: its sessions and active memories counted, the
names said most often in it, and its representative memories. A session's representative is
the memory nearest its mean vector (the one most like the rest of it: what it is mostly
about); a day's, week's or month's are those of its largest sessions. An LLM's written
summaries build on these nodes (``memkern.ops.timeline``); :class:`SummaryCache` keeps them
with what they were written from, so a write costs a new summary only for the session it
touched and the nodes above it, never a rewrite of the tree, and a delete drops them all.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timezone

import numpy as np

from memkern.files import atomic_file
from memkern.organize.entities import CALENDAR_WORDS
from memkern.organize.timeline import Timeline
from memkern.reader.entities import find_entities
from memkern.retrieval.index import CubeIndex
from memkern.store.base import Store

log = logging.getLogger(__name__)

__all__ = ["LEVELS", "Node", "SummaryCache", "entities_of", "node_key", "nodes", "representatives", "session_name", "session_rows"]

#: The levels of the tree, leaves first.
LEVELS = ("session", "day", "week", "month")
#: Memories of a node read to find the names said most often in it (evenly spread over the node).
ENTITY_SAMPLE = 200
#: Sessions of a node whose memories are sampled for its names (evenly spread over the node).
SESSIONS_SAMPLED = 40
#: Names listed per node.
ENTITIES_SHOWN = 8
#: Sessions of a day, week or month whose representatives stand for it, largest first.
REPRESENTED_SESSIONS = 3


@dataclass
class Node:
    """One node of the tree as asked: its level, key, sessions (codes, oldest first) and their active memories."""

    level: str
    key: str
    sessions: list[int] = field(default_factory=list)
    #: Active memories per session.
    sizes: dict[int, int] = field(default_factory=dict)
    start: float = math.inf
    end: float = -math.inf

    @property
    def size(self) -> int:
        return sum(self.sizes.values())

    def when(self) -> tuple[datetime | None, datetime | None]:
        if not math.isfinite(self.start):
            return None, None
        return (datetime.fromtimestamp(self.start, timezone.utc), datetime.fromtimestamp(self.end, timezone.utc))


def node_key(level: str, day: date | None, session: str) -> str:
    """The key of the node of ``level`` holding a session named ``session`` that started on ``day``."""
    if level == "session":
        return session
    if day is None:
        return "undated"
    if level == "day":
        return day.isoformat()
    if level == "week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{day.year}-{day.month:02d}"


def session_name(index: CubeIndex, code: int) -> str:
    """The id of the session with index code ``code`` (``(no session)`` for memories of none)."""
    name = index.session_names[code] if code < len(index.session_names) else None
    return name or "(no session)"


def session_rows(timeline: Timeline, index: CubeIndex, code: int) -> list[int]:
    """The active rows of a session, in the order written."""
    return [row for row in timeline.live_rows(code, index.live) if index.active[row]]


def nodes(timeline: Timeline, index: CubeIndex, level: str, since: date | None = None, until: date | None = None,
          limit: int | None = None) -> list[Node]:
    """The first ``limit`` nodes of ``level`` whose sessions started between ``since`` and ``until`` (inclusive;
    either open), oldest first; sessions with no active memory left are skipped. Sessions without a time come
    last, under ``undated``, when no bound is given.

    The active memories of every session are counted in one pass over the index (a million rows: a few
    milliseconds), so listing the nodes reads no session's rows."""
    codes = timeline.sessions_between(since or date.min, until or date.max)
    if since is None and until is None:
        codes += sorted(timeline.undated)
    counts = np.bincount(index.session_codes[index.active], minlength=len(index.session_names))
    found: dict[str, Node] = {}
    for code in codes:
        if code >= len(counts) or not counts[code]:
            continue
        session = timeline.sessions[code]
        key = node_key(level, session.day, session_name(index, code))
        node = found.get(key)
        if node is None:
            if limit is not None and len(found) == limit:
                break  # sessions come in time order, so a node's sessions are together
            node = found[key] = Node(level, key)
        node.sessions.append(code)
        node.sizes[code] = int(counts[code])
        if math.isfinite(session.start):
            node.start, node.end = min(node.start, session.start), max(node.end, session.end)
    return list(found.values())


def representatives(node: Node, timeline: Timeline, index: CubeIndex) -> list[int]:
    """The row standing for each of the node's largest sessions: the memory nearest the session's mean vector
    said by someone other than the assistant (its first such memory where the index holds no vectors)."""
    largest = sorted(node.sessions, key=lambda code: -node.sizes[code])[:REPRESENTED_SESSIONS]
    chosen = []
    for code in sorted(largest, key=node.sessions.index):
        rows = session_rows(timeline, index, code)
        if not rows:
            continue
        # What people said, not the assistant's questions about it ("How do you like Paris?").
        said = [row for row in rows if index.speakers[row] != "assistant"] or rows
        if not index.holds_vectors or len(rows) < 3:
            chosen.append(said[0])
            continue
        mean = index.vectors[rows].mean(axis=0)
        chosen.append(said[int(np.argmax(index.vectors[said] @ mean))])
    return chosen


def entities_of(node: Node, timeline: Timeline, index: CubeIndex, store: Store, cube_id: str) -> list[str]:
    """The names said most often in the node's memories, speakers, days and months left out: at most
    :data:`ENTITY_SAMPLE` memories read, from at most :data:`SESSIONS_SAMPLED` sessions, evenly spread."""
    codes = node.sessions
    if len(codes) > SESSIONS_SAMPLED:
        codes = [codes[i] for i in dict.fromkeys(np.linspace(0, len(codes) - 1, SESSIONS_SAMPLED).astype(int).tolist())]
    rows = [row for code in codes for row in session_rows(timeline, index, code)]
    if len(rows) > ENTITY_SAMPLE:
        rows = [rows[i] for i in np.linspace(0, len(rows) - 1, ENTITY_SAMPLE).astype(int)]
    texts = store.get_texts(cube_id, [index.ids[row] for row in rows])
    speakers = {found.speaker.casefold() for found in texts.values() if found.speaker}
    counts: Counter[str] = Counter()
    for found in (texts[index.ids[row]] for row in rows if index.ids[row] in texts):  # ties: first said first
        text = found.text
        if found.speaker and text.startswith(f"{found.speaker}: "):  # a turn's text opens with its speaker
            text = text[len(found.speaker) + 2:]
        names = (name.removesuffix("'s") for name in find_entities(text))
        counts.update(name for name in names if name.casefold() not in speakers and name.casefold() not in CALENDAR_WORDS)
    return [name for name, _ in counts.most_common(ENTITIES_SHOWN)]


@dataclass
class _CubeSummaries:
    """One cube's summaries, as of the cube's removal seq (its count of deletes) when they were kept."""

    removal_seq: int
    #: (level, key) -> (fingerprint, summary, model).
    entries: dict[tuple[str, str], tuple[str, str, str]] = field(default_factory=dict)


class SummaryCache:
    """Written summaries of timeline nodes, per cube and node, each with a fingerprint of what it was
    written from; a summary whose fingerprint no longer matches is written again.

    Kept in memory and, where the store keeps an index cache for the cube (SQLite:
    ``Store.index_cache``), in ``summaries.json`` beside the index copy, so the next process (a CLI
    call) does not write them again. A summary holds words of the memories it was written from, so
    a delete in the cube drops every one of them: the store removes the directory with the delete,
    and here a cube's summaries are kept only as of the removal seq (the count of deletes) they were
    written at. At most ``per_cube`` summaries per cube are kept, the oldest written going first.
    """

    FILE = "summaries.json"
    _FORMAT = 1

    def __init__(self, store: Store, per_cube: int = 20_000) -> None:
        self._store, self.per_cube = store, per_cube
        self._cubes: dict[str, _CubeSummaries] = {}
        self._lock = threading.Lock()

    def get(self, cube_id: str, level: str, key: str, fingerprint: str) -> tuple[str, str] | None:
        """(summary, model) if one was written from exactly ``fingerprint`` since the cube's last delete."""
        kept = self._current(cube_id)
        with self._lock:
            entry = kept.entries.get((level, key))
        return (entry[1], entry[2]) if entry is not None and entry[0] == fingerprint else None

    def put(self, cube_id: str, level: str, key: str, fingerprint: str, summary: str, model: str) -> None:
        """Keep a summary written from ``fingerprint``, and save the cube's summaries for the next process."""
        kept = self._current(cube_id)
        with self._lock:
            kept.entries.pop((level, key), None)
            kept.entries[(level, key)] = (fingerprint, summary, model)
            while len(kept.entries) > self.per_cube:
                del kept.entries[next(iter(kept.entries))]
            data = json.dumps({"format": self._FORMAT, "cube": cube_id, "removal_seq": kept.removal_seq,
                               "entries": [[*node, *entry] for node, entry in kept.entries.items()]})
        with self._store.index_cache(cube_id, create=True) as directory:
            if directory is None or self._removal_seq(cube_id) != kept.removal_seq:
                return  # no cache kept here, or a delete since: its summaries must not be saved
            with atomic_file(directory / self.FILE) as handle:
                handle.write(data.encode("utf-8"))

    def _removal_seq(self, cube_id: str) -> int:
        return self._store.index_rows(cube_id, 2**62, None, count=False, limit=0).removal_seq

    def _current(self, cube_id: str) -> _CubeSummaries:
        """The cube's summaries as of its last delete: those kept here, else those saved, else none."""
        removal_seq = self._removal_seq(cube_id)
        with self._lock:
            kept = self._cubes.get(cube_id)
            if kept is not None and kept.removal_seq == removal_seq:
                return kept
        saved = self._saved(cube_id, removal_seq) or _CubeSummaries(removal_seq)
        with self._lock:
            kept = self._cubes.get(cube_id)
            if kept is None or kept.removal_seq != removal_seq:
                kept = self._cubes[cube_id] = saved
            return kept

    def _saved(self, cube_id: str, removal_seq: int) -> _CubeSummaries | None:
        """The summaries saved for the cube at ``removal_seq``; None when there are none or they are unsound."""
        with self._store.index_cache(cube_id) as directory:
            if directory is None or not (directory / self.FILE).is_file():
                return None
            raw = (directory / self.FILE).read_bytes()
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("format") != self._FORMAT or data.get("cube") != cube_id \
                    or data.get("removal_seq") != removal_seq or not isinstance(data.get("entries"), list):
                return None
            kept = _CubeSummaries(removal_seq)
            for entry in data["entries"]:
                if not (isinstance(entry, list) and len(entry) == 5 and all(isinstance(x, str) for x in entry)):
                    raise ValueError("an entry is not five strings")
                kept.entries[(entry[0], entry[1])] = (entry[2], entry[3], entry[4])
            return kept
        except (ValueError, UnicodeDecodeError) as exc:
            log.warning("saved summaries of cube %s ignored: %s", cube_id, exc)
            return None
