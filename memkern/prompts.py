"""How memories are shown to a language model: the answer prompt and one line per memory.

One module, so that chat, activation memory (whose KV cache must hold exactly the text
chat would send) and the benchmarks render memories the same way, byte for byte.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from memkern.models import Hit, MemoryItem, MemoryKind

#: The answer when the memories do not hold it (also what the model is told to say).
NOT_AVAILABLE = "The information is not available in memory."

ANSWER_PROMPT = f"""You answer questions from memory. The memories below were recorded from past conversations and documents; they are the only thing you know about the people and events involved.
Each memory is numbered and shows, in parentheses, the date it was said or happened, what kind of memory it is and who said it. Relative dates in a memory ("yesterday", "last week") are relative to that memory's date; where known, the date they resolve to is given in square brackets.

Rules:
- Answer only from the memories. Do not use outside knowledge about these people, and do not guess. You may combine several memories and draw simple, direct inferences from them.
- Memories are listed newest first. When they disagree (someone moved, changed jobs, changed their mind), the newest one says how things are now; older ones only say how things were before.
- Answer briefly: a short phrase or one sentence, with no explanation and no memory numbers.
- For a question about when something happened, give the date or period worked out from the memory dates (for example "7 May 2023" or "the week before 9 June 2023").
- If the memories do not contain the answer, reply exactly: {NOT_AVAILABLE}"""

#: sha256 of :data:`ANSWER_PROMPT` (the instructions; the memories and question vary per call).
ANSWER_PROMPT_SHA256 = hashlib.sha256(ANSWER_PROMPT.encode("utf-8")).hexdigest()

#: Characters of one memory shown to the model (a long document chunk is cut, not sent whole).
MAX_MEMORY_CHARS = 2_000
DEFAULT_MAX_TOKENS = 256


def _day(value: date) -> str:
    return f"{value.day} {value:%B %Y}"


def _resolved(found: Mapping[str, Any]) -> str | None:
    """One entry of ``metadata["dates"]`` ({"text", "date", "granularity"}) as ``"text" = period``."""
    text, raw = found.get("text"), found.get("date")
    if not isinstance(text, str) or not isinstance(raw, str):
        return None
    try:
        day = date.fromisoformat(raw[:10])
    except ValueError:
        return None
    granularity = found.get("granularity")
    if granularity == "year":
        period = str(day.year)
    elif granularity == "month":
        period = f"{day:%B %Y}"
    elif granularity == "week":
        period = f"the week of {_day(day)}"
    else:
        period = _day(day)
    return f'"{text}" = {period}'


def render_memory(number: int, item: MemoryItem) -> str:
    """``[n] (8 May 2023, Monday; turn; said by Caroline) Caroline: ... [yesterday = 7 May 2023]``."""
    when: datetime | None = item.event_time or item.valid_from
    details = [f"{_day(when)}, {when:%A}" if when else "undated"]
    kind = item.kind.value if isinstance(item.kind, MemoryKind) else str(item.kind)
    details.append(kind)
    speaker = item.provenance.speaker
    if speaker:
        details.append(f"said by {speaker}" if item.kind is MemoryKind.TURN else f"from {speaker}")
    text = " ".join(item.text.split())
    if len(text) > MAX_MEMORY_CHARS:
        text = text[:MAX_MEMORY_CHARS] + " [...]"
    line = f"[{number}] ({'; '.join(details)}) {text}"
    dates = item.metadata.get("dates") if isinstance(item.metadata, Mapping) else None
    if isinstance(dates, list):
        resolved = [r for r in (_resolved(d) for d in dates if isinstance(d, Mapping)) if r]
        if resolved:
            line += f" [{'; '.join(resolved)}]"
    return line


def newest_first(hits: Sequence[Hit]) -> list[Hit]:
    """Newest first (undated last), ties in rank order.

    Small models lean on what they read first; putting the current state of things first means
    a fact that changed is answered with its new value, not the one said weeks before."""
    order = {id(hit): rank for rank, hit in enumerate(hits)}

    def key(hit: Hit) -> tuple[int, float, int]:
        when = hit.memory.event_time or hit.memory.valid_from
        return (when is None, -when.timestamp() if when else 0.0, order[id(hit)])

    return sorted(hits, key=key)


def slot_note(hit: Hit) -> str:
    """`` [current residence of Alice: Alfama]`` or `` [no longer true: ... changed to ... on ...]`` when the
    hit states a value of the slot the question asks about (``memkern.organize.profile``), else ``""``."""
    note = hit.slot
    if note is None:
        return ""
    if note.current:
        return f" [current {note.slot} of {note.subject}: {note.value}]"
    since = f" on {_day(note.until.date())}" if note.until else ""
    return f" [no longer true: {note.slot} of {note.subject} changed to {note.superseded_by}{since}]"


def answer_messages(query: str, hits: Sequence[Hit]) -> list[dict[str, str]]:
    """The chat messages sent to the model for ``query`` over ``hits``."""
    lines = [render_memory(n, hit.memory) + slot_note(hit) for n, hit in enumerate(newest_first(hits), start=1)]
    user = "Memories (newest first):\n" + "\n".join(lines) + f"\n\nQuestion: {query}\nAnswer:"
    return [{"role": "system", "content": ANSWER_PROMPT}, {"role": "user", "content": user}]
