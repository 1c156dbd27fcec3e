"""Search: the memories of a cube that best answer a query, each with the parts of its score.

When the query asks about a slot of someone's profile ("Where does Alice live?",
``memkern.organize.profile``) and the profile knows its values, the turns stating the current
value come first and those stating older values follow, each marked (``Hit.slot``) as
current or superseded. Any other query is ranked by hybrid retrieval alone: the check is
a few regular expressions over the query, and the profile is only read when one matches.

A question that needs several memories or reasoning over time ("how many times", "when",
"what changed", "first", several names) takes the deep path of ``memkern.organize.deep``:
the choice is a cheap classifier on the query text (``needs_deep``, regular expressions, no
model), and only that path reads the cube's timeline (built on first use, then extended by
each write's rows). ``SearchConfig.deep = False`` keeps every query on the
plain path.
"""

from __future__ import annotations

import re

from memkern.kernel import Kernel
from memkern.models import Filters, Hit, LifecycleState, Permission, ScoreParts, SlotNote
from memkern.ops.context import OpContext
from memkern.ops.profile import profile_of
from memkern.organize.deep import deep_rank, needs_deep
from memkern.organize.profile import SlotValue, asked_slot, first_person
from memkern.retrieval.config import SearchConfig, resolve_config
from memkern.retrieval.index import CubeIndex
from memkern.retrieval.search import filter_mask
from memkern.retrieval.search import search as hybrid_search

#: Turns shown per slot value (its latest statements): "I live in Lisbon" said twenty times is one fact.
SOURCES_PER_VALUE = 2


def search(ctx: OpContext, query: str, top_k: int = 5, *, filters: Filters | None = None,
           config: SearchConfig | str | None = None) -> list[Hit]:
    """Hybrid retrieval (``memkern.retrieval``); a recall of every hit returned (reinforcement)."""
    hits = find(ctx, query, top_k, filters=filters, config=config)
    ctx.kernel.access.note(ctx.cube.id, [hit.id for hit in hits])  # buffered (memkern.lifecycle.access)
    return hits


def find(ctx: OpContext, query: str, top_k: int, *, filters: Filters | None = None,
         config: SearchConfig | str | None = None) -> list[Hit]:
    """The same ranking without counting a recall: for operations looking for related memories."""
    kernel, cube = ctx.kernel, ctx.cube
    kernel.check_embedder(cube)
    index = kernel.indexes.get(cube.id, cube.dim)
    filters = filters or Filters()
    search_config = resolve_config(config)
    if search_config.deep and needs_deep(query):
        hits = _deep_search(kernel, cube.id, index, query, top_k, filters, search_config)
    else:
        hits = hybrid_search(kernel.store, index, kernel.embedder, cube.id, query, top_k=top_k,
                             filters=filters, config=search_config)
    hits = _current_first(kernel, cube.id, index, query, hits, filters, top_k)
    if not ctx.may(Permission.ADMIN):
        hits = [hit for hit in hits if hit.memory.state is not LifecycleState.QUARANTINED]
    return hits


def _deep_search(kernel: Kernel, cube_id: str, index: CubeIndex, query: str, top_k: int, filters: Filters,
                 config: SearchConfig) -> list[Hit]:
    """The deep path (``memkern.organize.deep``): a larger hybrid pool, lifted by the cube's timeline."""
    ranked = deep_rank(kernel.store, index, cube_id, query, lambda text: kernel.embedder.embed([text])[0], filters,
                       config, top_k, lambda: kernel.timelines.get(cube_id, index))
    memories = kernel.store.get_memories(cube_id, [index.ids[row] for row, _, _ in ranked])
    return [Hit(memory=memories[index.ids[row]], score=score, parts=parts)
            for row, score, parts in ranked if index.ids[row] in memories]


def _current_first(kernel: Kernel, cube_id: str, index: CubeIndex, query: str, hits: list[Hit],
                   filters: Filters, top_k: int) -> list[Hit]:
    """Put the turns stating the asked slot's values first: current values, then superseded ones (marked)."""
    slot = asked_slot(query)
    if slot is None or not hits:
        return hits
    profile = profile_of(kernel, cube_id, index)
    subjects = _subjects_asked(query, profile.subjects())
    values = [value for subject in subjects for value in profile.history(subject, slot)]
    if not values:
        return hits
    # Current values first, then the older ones newest first.
    values.sort(key=lambda v: (not v.current, -(v.since.timestamp() if v.since else 0.0)))
    allowed = filter_mask(index, filters)
    # Only the first ``top_k`` can be shown: a slot said hundreds of times (a million-turn cube) would
    # otherwise read and lift every one of its turns (0.27 s for one question).
    noted: dict[str, SlotValue] = {}
    for value in values:
        for memory_id in value.sources[-SOURCES_PER_VALUE:]:
            row = index.row_of.get(memory_id)
            if row is not None and allowed[row] and len(noted) < top_k:
                noted.setdefault(memory_id, value)
    if not noted:
        return hits
    by_id = {hit.id: hit for hit in hits}
    missing = [memory_id for memory_id in noted if memory_id not in by_id]
    fetched = kernel.store.get_memories(cube_id, missing) if missing else {}
    top = hits[0].score
    lifted: list[Hit] = []
    for position, (memory_id, value) in enumerate(noted.items()):
        memory = by_id[memory_id].memory if memory_id in by_id else fetched.get(memory_id)
        if memory is None:
            continue
        old = by_id.get(memory_id)
        parts = old.parts.model_copy() if old is not None else ScoreParts()
        score = top + (len(noted) - position) * 1e-3
        parts.profile = score - (old.score if old is not None else 0.0)
        lifted.append(Hit(memory=memory, score=score, parts=parts, slot=SlotNote(
            subject=value.subject, slot=value.slot, value=value.value, current=value.current, since=value.since,
            until=value.until, superseded_by=value.superseded_by)))
    rest = [hit for hit in hits if hit.id not in noted]
    return (lifted + rest)[:top_k]


def _subjects_asked(query: str, subjects: set[str]) -> list[str]:
    """The profile subjects a query names ("Alice"), or the user's own when it says "I"/"my"."""
    named = [s for s in subjects if re.search(rf"\b{re.escape(s)}\b", query, re.IGNORECASE)]
    if named:
        return named
    if first_person(query) and not _ABOUT_SOMEONE_ELSE.search(query):
        return [s for s in subjects if s.lower() == "user"] or (sorted(subjects) if len(subjects) == 1 else [])
    return []


#: "Where does my sister live?" asks about the sister, not about the user.
_ABOUT_SOMEONE_ELSE = re.compile(
    r"my (?:sister|brother|mom|mum|mother|father|dad|parents?|friend|son|daughter|cousin|aunt|uncle|niece|"
    r"nephew|grand\w+|colleague|co-?worker|boss|neighbou?r|roommate|kids?|children|child)\b", re.IGNORECASE)
