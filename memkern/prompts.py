"""How memories are shown to a language model: the answer prompt and one line per memory.

One module, so that chat, activation memory (whose KV cache must hold exactly the text
chat would send) and the benchmarks render memories the same way, byte for byte.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from memkern.models import Hit, MemoryItem, MemoryKind, Restatement
from memkern.retrieval.text import STOPWORDS, singular

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


#: Longest memory the organised context shows whole; a longer one is shown as an excerpt (:func:`excerpt`).
EXCERPT_CHARS = 600
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
#: Words whose full stop does not end a sentence ("Dr. Arati Prabhakar").
_ABBREVIATIONS = frozenset("dr mr mrs ms prof st sr jr vs etc e.g i.e no approx".split())


_WORD = re.compile(r"[a-z0-9]+")


def _sentences(text: str) -> list[str]:
    """``text`` split after each full stop, question or exclamation mark, except an abbreviation's."""
    pieces: list[str] = []
    for piece in _SENTENCE_END.split(text):
        last = pieces[-1].rsplit(None, 1)[-1].rstrip(".").lower() if pieces else ""
        if pieces and pieces[-1].endswith(".") and last in _ABBREVIATIONS:
            pieces[-1] += " " + piece
        else:
            pieces.append(piece)
    return pieces


def question_words(query: str) -> frozenset[str]:
    """The content words of a question (lower case, crudely singular), that an excerpt looks for."""
    return frozenset(singular(w) for w in _WORD.findall(query.lower()) if len(w) > 2 and w not in STOPWORDS)


def excerpt(text: str, words: frozenset[str], limit: int = EXCERPT_CHARS) -> str:
    """``text`` cut to about ``limit`` characters for a question about ``words``: its first sentence (what the
    turn is about: usually the question asked), then the sentences naming the most of ``words``, in the
    order said, ``[...]`` where sentences were left out. A text within ``limit`` is returned as it is.

    Why: LongMemEval's assistant answers run to thousands of characters and the one sentence a question
    needs ("the President's Chief Advisor for Science and Technology is Dr. Arati Prabhakar") is rarely in
    the first few hundred; a small model reading the whole answer loses it among the rest."""
    if len(text) <= limit:
        return text
    sentences = _sentences(text)
    scores = [len(words & {singular(w) for w in _WORD.findall(sentence.lower())}) for sentence in sentences]
    kept, used = {0}, len(sentences[0])
    for index in sorted(range(1, len(sentences)), key=lambda i: (-scores[i], i)):
        if scores[index] == 0 or used >= limit:
            break
        if used + len(sentences[index]) <= limit + limit // 2:
            kept.add(index)
            used += len(sentences[index])
    shown, previous = [], -1
    for index in sorted(kept):
        if index != previous + 1:
            shown.append("[...]")
        shown.append(sentences[index][:limit])
        previous = index
    if previous != len(sentences) - 1:
        shown.append("[...]")
    return " ".join(shown)


def _body(item: MemoryItem, words: frozenset[str] | None = None) -> str:
    """The memory's text, cut at :data:`MAX_MEMORY_CHARS` (or, given a question's ``words``, its :func:`excerpt`),
    with the dates its relative expressions resolve to."""
    text = " ".join(item.text.split())
    if words is not None:
        text = excerpt(text, words)
    elif len(text) > MAX_MEMORY_CHARS:
        text = text[:MAX_MEMORY_CHARS] + " [...]"
    dates = item.metadata.get("dates") if isinstance(item.metadata, Mapping) else None
    if isinstance(dates, list):
        resolved = [r for r in (_resolved(d) for d in dates if isinstance(d, Mapping)) if r]
        if resolved:
            text += f" [{'; '.join(resolved)}]"
    return text


def render_memory(number: int, item: MemoryItem) -> str:
    """``[n] (8 May 2023, Monday; turn; said by Caroline) Caroline: ... [yesterday = 7 May 2023]``."""
    when = item.said_at
    details = [f"{_day(when)}, {when:%A}" if when else "undated"]
    kind = item.kind.value if isinstance(item.kind, MemoryKind) else str(item.kind)
    details.append(kind)
    speaker = item.provenance.speaker
    if speaker:
        details.append(f"said by {speaker}" if item.kind is MemoryKind.TURN else f"from {speaker}")
    return f"[{number}] ({'; '.join(details)}) {_body(item)}"


def newest_first(hits: Sequence[Hit]) -> list[Hit]:
    """Newest first (undated last), ties in rank order.

    Small models lean on what they read first; putting the current state of things first means
    a fact that changed is answered with its new value, not the one said weeks before."""
    order = {id(hit): rank for rank, hit in enumerate(hits)}

    def key(hit: Hit) -> tuple[int, float, int]:
        when = hit.memory.said_at
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


# ------------------------------------------------------------------- organised and plain contexts

_RULES = f"""Rules:
- Answer only from the memories. Do not use outside knowledge about these people, and do not guess. You may combine several memories and draw simple, direct inferences from them.
- {{order}}
- Answer briefly: a short phrase or one sentence, with no explanation and no memory numbers.
- For a question about when something happened, give the date or period worked out from the memory dates (for example "7 May 2023" or "the week before 9 June 2023").
- If the memories do not contain the answer, reply exactly: {NOT_AVAILABLE}"""

ORGANISED_PROMPT = """You answer questions from memory. The memories below were recorded from past conversations and documents; they are the only thing you know about the people and events involved.
They are grouped by conversation, the most relevant conversation first; each group is headed by its day, and within a group memories are in the order things were said. Relative dates ("yesterday", "last week") are relative to their day; where known, the date they resolve to is given in square brackets.

""" + _RULES.format(order="\"Current facts\", when present, gives the value things have now (where someone lives, works...); it wins over older memories. Otherwise, when memories disagree, the one with the latest date says how things are now.")

PLAIN_PROMPT = """You answer questions from memory. The memories below were recorded from past conversations and documents; they are the only thing you know about the people and events involved.
Each memory is numbered and shows, in parentheses, the date it was said or happened, what kind of memory it is and who said it. Relative dates in a memory are relative to that memory's date.

""" + _RULES.format(order="Memories are listed by relevance to the question, most relevant first.")

ORGANISED_PROMPT_SHA256 = hashlib.sha256(ORGANISED_PROMPT.encode("utf-8")).hexdigest()
PLAIN_PROMPT_SHA256 = hashlib.sha256(PLAIN_PROMPT.encode("utf-8")).hexdigest()


def _dedup_key(item: MemoryItem) -> str:
    return " ".join("".join(ch for ch in item.text.lower() if ch.isalnum() or ch.isspace()).split())


def _said_order(hit: Hit) -> tuple[bool, float]:
    when = hit.memory.said_at
    return (when is None, when.timestamp() if when else 0.0)


def deduplicated(hits: Sequence[Hit]) -> list[Hit]:
    """The hits without repeats: a memory whose text (lower case, letters and digits) an earlier hit
    already said is dropped, in rank order, so "I live in Lisbon" said ten times costs one line."""
    seen: set[str] = set()
    kept = []
    for hit in hits:
        key = _dedup_key(hit.memory)
        if key and key in seen:
            continue
        seen.add(key)
        kept.append(hit)
    return kept


#: A question about time ("When...", "How long ago...", "Which came first..."): its context dates every line.
ASKS_ABOUT_TIME = re.compile(
    r"\b(?:when|date|dates|days?|weeks?|months?|years?|ago|first|last|before|after|since|until|how long|"
    r"order|earliest|latest|recent|recently|yesterday|today|tomorrow|tonight|morning|evening|weekend)\b",
    re.IGNORECASE)


def _organised_line(number: int, item: MemoryItem, words: frozenset[str], dated: bool) -> str:
    """``[n] (8 May 2023) Alice: ... ["yesterday" = 7 May 2023]``: the kind is shown for what is not a turn,
    the speaker when the text does not start with it. For a question about time (``dated``) the date stays on
    the line although the day heads its group: a small model answering "when" copies the date next to the
    fact, or the heading if nothing else. For any other question it is left to the heading: asked "How much
    did I spend on a designer handbag?" beside a line starting "(23 May 2023)", the bundled model answered
    "23 May 2023"."""
    when, body, speaker = item.said_at, _body(item, words), item.provenance.speaker
    shown = [_day(when.date()) if when else "undated"] if dated else []
    if item.kind is not MemoryKind.TURN:
        shown.append(item.kind.value if isinstance(item.kind, MemoryKind) else str(item.kind))
    if speaker and not body.startswith(f"{speaker}:"):
        shown.append(f"said by {speaker}" if item.kind is MemoryKind.TURN else f"from {speaker}")
    return f"[{number}] ({'; '.join(shown)}) {body}" if shown else f"[{number}] {body}"


def organised_context(hits: Sequence[Hit], restated: Sequence[Restatement] = (), query: str = "") -> str:
    """The compact organised context of ``hits``: current slot values and the latest of each restated quantity
    first, then the memories grouped by conversation and day, the group of the best-ranked hit first, each group
    in the order said; repeats dropped.

    Small and dated on purpose: a small model sees what holds now before the turns that said how
    things were, and each hit beside the turns said around it. ``restated``
    (``memkern.organize.restated``): quantities said again later with another value; the earlier
    line says what was said later ("pre-approved for $350,000" [said later, on 30 November 2023: $400,000]).
    A memory longer than :data:`EXCERPT_CHARS` is shown as its :func:`excerpt` for ``query``."""
    words = question_words(query)
    dated = not query or ASKS_ABOUT_TIME.search(query) is not None
    hits = deduplicated(hits)
    shown_ids = {hit.id for hit in hits}
    restated = [r for r in restated if r.earlier_id in shown_ids and r.later_id in shown_ids]
    current = [hit for hit in hits if hit.slot is not None and hit.slot.current]
    lines: list[str] = []
    if current or restated:
        lines.append("Current facts:")
        shown: set[tuple[str, str, str]] = set()
        for hit in current:
            note = hit.slot
            assert note is not None
            key = (note.subject, note.slot, note.value)
            if key in shown:
                continue
            shown.add(key)
            since = f" (since {_day(note.since.date())})" if note.since else ""
            lines.append(f"- {note.slot} of {note.subject}: {note.value}{since}")
        latest: dict[tuple[str, str], list[Restatement]] = {}
        for again in restated:
            latest.setdefault((again.later_id, again.later_value), []).append(again)
        for pairs in latest.values():
            earlier = sorted({r.earlier_value for r in pairs})
            lines.append(f"- latest, said on {_day(pairs[0].later_said.date())}: \"{pairs[0].phrase}\" "
                         f"(earlier: {', '.join(earlier)})")
        lines.append("")
    later: dict[str, list[str]] = {}
    for again in restated:
        later.setdefault(again.earlier_id, []).append(
            f" [said later, on {_day(again.later_said.date())}: {again.later_value}]")
    # One group per conversation on a day, in the order of its best-ranked hit: a small model leans on
    # what it reads first, and a hit's neighbours read better beside it than scattered by rank.
    groups: dict[tuple[date | None, str], list[Hit]] = {}
    for hit in hits:
        when = hit.memory.said_at
        groups.setdefault((when.date() if when else None, hit.memory.provenance.session_id or ""), []).append(hit)
    number = 0
    for (day, session), group in groups.items():
        heading = f"{_day(day)}, {day:%A}" if day else "undated"
        lines.append(f"{heading}" + (f" (conversation {session})" if session else "") + ":")
        group.sort(key=_said_order)
        for hit in group:
            number += 1
            marks = slot_note(hit) if hit.slot is not None and not hit.slot.current else ""
            marks += "".join(dict.fromkeys(later.get(hit.id, [])))
            lines.append(_organised_line(number, hit.memory, words, dated) + marks)
    return "\n".join(lines)


def organised_messages(query: str, hits: Sequence[Hit], restated: Sequence[Restatement] = ()) -> list[dict[str, str]]:
    """The chat messages for ``query`` over ``hits`` in the organised context (:func:`organised_context`)."""
    user = "Memories:\n" + organised_context(hits, restated, query) + f"\n\nQuestion: {query}\nAnswer:"
    return [{"role": "system", "content": ORGANISED_PROMPT}, {"role": "user", "content": user}]


def plain_messages(query: str, hits: Sequence[Hit]) -> list[dict[str, str]]:
    """The plain top-k baseline: the hits in rank order, each dated, no grouping, no profile marks."""
    lines = [render_memory(n, hit.memory) for n, hit in enumerate(hits, start=1)]
    user = "Memories (most relevant first):\n" + "\n".join(lines) + f"\n\nQuestion: {query}\nAnswer:"
    return [{"role": "system", "content": PLAIN_PROMPT}, {"role": "user", "content": user}]


# ------------------------------------------------------------------- timeline summaries

SUMMARY_PROMPT = """You summarise part of a memory of past conversations, so that it can be recalled later.
Write at most three sentences: who took part, what happened or was discussed, and any facts, plans, dates or decisions stated. Use only what is given; do not add anything. Reply with the summary only."""
#: Longest answer asked for one summary.
SUMMARY_MAX_TOKENS = 160


def summary_messages(heading: str, lines: Sequence[str]) -> list[dict[str, str]]:
    """The chat messages asking for a summary of ``lines`` (a session's memories, or the summaries of a
    period's parts) under ``heading`` ("Conversation s4 on 2 May 2024", "The days of 2024-W18")."""
    return [{"role": "system", "content": SUMMARY_PROMPT},
            {"role": "user", "content": heading + ":\n" + "\n".join(lines) + "\n\nSummary:"}]
