"""The memory block: which memories the model pre-reads, and the exact text it reads.

Candidates are ranked (preferred ids, then the profile, then the hottest memories) and the
longest run that fits the token budget is taken; the text itself lists them in an order that
does not depend on the ranking, so that the same memories always give the same prefix (and KV
state).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime

from memkern.errors import InvalidInputError
from memkern.memory.activation.engine import KVEngine
from memkern.models import LifecycleState, MemoryItem, MemoryKind, utcnow
from memkern.prompts import ANSWER_PROMPT, render_memory

DEFAULT_BLOCK_TOKENS = 1024
#: Most memories considered for a block (the hottest, after the profile).
MAX_CANDIDATES = 2_000
_HOT_HALF_LIFE_DAYS = 30.0
_PROFILE_KINDS = (MemoryKind.FACT, MemoryKind.PREFERENCE, MemoryKind.SUMMARY)


def hotness(item: MemoryItem, now: datetime | None = None) -> float:
    """How much a memory deserves a place in the block: use, importance and recency."""
    now = now or utcnow()
    last = item.last_accessed_at or item.event_time or item.recorded_at
    age_days = max((now - last).total_seconds(), 0.0) / 86_400 if last else 365.0
    recency = 0.5 ** (age_days / _HOT_HALF_LIFE_DAYS)
    return math.log1p(max(item.access_count, 0)) + float(item.importance) + recency


def select_memories(items: Iterable[MemoryItem], now: datetime | None = None,
                    prefer: Iterable[str] = ()) -> list[MemoryItem]:
    """Candidates in priority order: ``prefer``-red ids, then the profile, then the hottest memories."""
    wanted = set(prefer)
    pool = [i for i in items if i.state is LifecycleState.ACTIVE]
    return sorted(pool, key=lambda i: (i.id not in wanted, i.kind not in _PROFILE_KINDS, -hotness(i, now),
                                       i.recorded_at, i.id))


def _when(item: MemoryItem) -> str:
    when = item.said_at
    return when.isoformat() if when else "~"


def render_prefix(owner: str, items: Sequence[MemoryItem]) -> str:
    """The exact prefix: the system message (answer rules + the memory block) in the ChatML template.

    It ends with ``<|im_end|>\\n`` so that whatever follows starts at a special token: the prefix
    tokenizes the same alone and inside any longer prompt."""
    lines = [render_memory(n, item) for n, item in enumerate(block_order(items), start=1)]
    block = (f"\n\nWhat you already know about {owner}: their profile, then the memories they use most "
             f"(oldest first). These are memories too; the question may also list more.\n" + "\n".join(lines))
    return f"<|im_start|>system\n{ANSWER_PROMPT}{block}<|im_end|>\n"


def block_order(items: Sequence[MemoryItem]) -> list[MemoryItem]:
    """Profile first, then the rest, each oldest first: an order that does not depend on how hot
    the memories are, so that the same memories always make the same text (and KV state)."""
    def key(item: MemoryItem) -> tuple[str, str]:
        return (_when(item), item.id)

    profile = sorted((i for i in items if i.kind in _PROFILE_KINDS), key=key)
    rest = sorted((i for i in items if i.kind not in _PROFILE_KINDS), key=key)
    return [*profile, *rest]


def fit_block(engine: KVEngine, owner: str, candidates: Sequence[MemoryItem],
              max_tokens: int) -> tuple[list[MemoryItem], str, list[int]]:
    """The longest priority-ordered run of ``candidates`` whose prefix fits ``max_tokens`` tokens."""
    base = len(engine.tokenize(render_prefix(owner, [])))
    if base >= max_tokens:
        raise InvalidInputError(f"max_tokens={max_tokens} leaves no room for memories (the instructions take {base})")
    chosen: list[MemoryItem] = []
    used = base
    for item in candidates[:MAX_CANDIDATES]:
        cost = len(engine.tokenize(render_memory(len(chosen) + 1, item) + "\n"))
        if used + cost > max_tokens:
            if used + 8 > max_tokens:
                break
            continue
        chosen.append(item)
        used += cost
    while True:  # per-line counts are estimates: settle on the exact count
        prefix = render_prefix(owner, block_order(chosen))
        tokens = engine.tokenize(prefix)
        if len(tokens) <= max_tokens or not chosen:
            return block_order(chosen), prefix, tokens
        chosen.pop()
