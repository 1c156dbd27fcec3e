"""LLM reader: facts, events and preferences extracted from a batch of stored turns.

The turns are stored first (zero-LLM, durable); this reader only derives from them. One
LLM call covers a window of up to ``MAX_WINDOW`` turns, never one call per turn. The
prompt names the turns by short integer handles ([1], [2], ...) with speaker and date, so
the model can cite its sources without ever seeing (or inventing) a memory id; a fact
that cites no shown handle is rejected.

Structured output from small models breaks, so every answer goes through the same
ladder (``ask_json``): validate -> repair (strip code fences, take the first JSON
object, drop invalid items) -> retry once with the validation error -> fall back. A
fallback loses nothing: the turns are already stored, and the report says what happened.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date as date_type
from datetime import datetime, time, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from memkern.errors import LLMError, LLMOutputError, LLMUnavailableError
from memkern.models import (
    ExtractionBatch,
    ExtractionReport,
    MemoryItem,
    MemoryKind,
    Provenance,
)
from memkern.reader.entities import find_entities
from memkern.reader.temporal import mentioned_periods, resolve_dates
from memkern.retrieval.text import query_terms

#: Most turns sent to the model in one call.
MAX_WINDOW = 20
#: Characters of one turn shown to the model (a pasted document is cut, not sent whole).
MAX_TURN_CHARS = 2_000
#: Answer budget per turn of the window (plus a fixed allowance): a model that starts repeating
#: itself is cut off sooner, and the items before the cut are kept (``salvage_list``).
TOKENS_PER_TURN = 64
#: A cited turn is replaced by another turn of the window when the fact's content words
#: overlap the other one at least this much and clearly more (small models mis-cite).
RECITE_OVERLAP = 0.5
#: Characters of a bad answer echoed back in the retry prompt.
MAX_ECHO_CHARS = 4_000
MAX_FACT_CHARS = 2_000
_STATUS_RANK = {"ok": 0, "repaired": 1, "retried": 2, "fallback": 3}


# -- validated output --------------------------------------------------------------------------------
class ExtractedFact(BaseModel):
    """One fact as the model proposes it. Harmless format slips are normalised here;
    anything else fails validation and the item is dropped (or the answer retried)."""

    model_config = ConfigDict(extra="ignore")

    text: str = Field(min_length=1, max_length=MAX_FACT_CHARS)
    kind: Literal["fact", "event", "preference"] = "fact"
    subject: str | None = None
    time_expression: str | None = None
    date: date_type | None = None
    confidence: float = Field(default=0.7, ge=0.0, le=1.0)
    source_turns: list[int] = Field(default_factory=list)

    @field_validator("text", mode="before")
    @classmethod
    def _strip_text(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @field_validator("kind", mode="before")
    @classmethod
    def _lower_kind(cls, value: Any) -> Any:
        if value is None:
            return "fact"
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("subject", "time_expression", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            return value if value and value.lower() not in ("null", "none", "n/a") else None
        return value

    @field_validator("date", mode="before")
    @classmethod
    def _iso_date_or_none(cls, value: Any) -> Any:
        # A date the model could not resolve is left to ``time_expression``, not fatal.
        if isinstance(value, str):
            match = re.match(r"\s*(\d{4}-\d{2}-\d{2})", value)
            if not match:
                return None
            try:
                return date_type.fromisoformat(match.group(1))
            except ValueError:
                return None
        return value

    @field_validator("confidence", mode="before")
    @classmethod
    def _clamp_confidence(cls, value: Any) -> Any:
        if value is None:
            return 0.7
        try:
            number = float(value)
        except (TypeError, ValueError):
            return value
        if math.isnan(number):
            return 0.7
        return min(1.0, max(0.0, number / 100 if 1.0 < number <= 100.0 else number))

    @field_validator("source_turns", mode="before")
    @classmethod
    def _handles(cls, value: Any) -> Any:
        # "[3]", "3", 3 and [3, "[4]"] all name handles; anything else names none.
        if value is None:
            return []
        items = value if isinstance(value, list) else [value]
        out: list[int] = []
        for item in items:
            if isinstance(item, bool):
                continue
            if isinstance(item, int):
                out.append(item)
            elif isinstance(item, float) and item.is_integer():
                out.append(int(item))
            elif isinstance(item, str):
                out.extend(int(n) for n in re.findall(r"\d+", item))
        return out


#: The JSON schema sent with the request (flat, no ``$ref``, so that every back end takes it).
EXTRACTION_SCHEMA: dict[str, Any] = {
    "title": "extracted_facts",
    "type": "object",
    "properties": {
        "facts": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "subject": {"type": ["string", "null"]},
                    "text": {"type": "string"},
                    "kind": {"type": "string", "enum": ["fact", "event", "preference"]},
                    "time_expression": {"type": ["string", "null"]},
                    "date": {"type": ["string", "null"], "description": "YYYY-MM-DD"},
                    "confidence": {"type": "number", "description": "from 0 to 1"},
                    "source_turns": {"type": "array", "items": {"type": "integer"}},
                },
                "required": ["text", "kind", "subject", "time_expression", "date", "confidence",
                             "source_turns"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["facts"],
    "additionalProperties": False,
}


# -- JSON repair and the validate / repair / retry / fallback ladder ---------------------------------
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


def load_json(text: str) -> tuple[Any, bool]:
    """The JSON value in ``text`` and whether it had to be dug out (code fences, prose around it).

    ``ValueError`` when there is no JSON object or array in the text at all.
    """
    try:
        return json.loads(text), False
    except (TypeError, ValueError):
        pass
    fenced = _FENCE.search(text)
    if fenced:
        try:
            return json.loads(fenced.group(1)), True
        except ValueError:
            pass
    decoder = json.JSONDecoder()
    for match in re.finditer(r"[{\[]", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(value, (dict, list)):
            return value, True
    raise ValueError("the answer holds no JSON object")


def salvage_list(text: str, key: str) -> list[Any] | None:
    """The complete items of the list under ``key`` in an answer cut off mid-list, or None.

    Small models that start repeating themselves run into ``max_tokens`` and leave
    ``{"facts": [{...}, {...}, {"te`` behind; the items before the cut are whole and usable.
    """
    match = re.search('"' + re.escape(key) + r'"\s*:\s*\[', text)
    if match is None:
        return None
    decoder, items, position = json.JSONDecoder(), [], match.end()
    while True:
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
        try:
            item, position = decoder.raw_decode(text, position)
        except ValueError:
            break
        items.append(item)
    return items or None


def describe_validation(error: ValidationError, limit: int = 3) -> str:
    parts = []
    for issue in error.errors()[:limit]:
        where = ".".join(str(p) for p in issue["loc"]) or "answer"
        parts.append(f"{where}: {issue['msg']}")
    return "; ".join(parts)


def parse_items(text: str, key: str, model: type[BaseModel]) -> tuple[list[Any], bool, list[str]]:
    """Items of the list under ``key`` in the JSON answer ``text``, validated by ``model``.

    Returns ``(items, repaired, dropped)``: ``repaired`` when the answer needed digging
    out or had invalid items dropped; ``dropped`` says why each dropped item failed.
    ``ValueError`` when nothing usable is left (no JSON, no list, or every item invalid).
    """
    try:
        data, repaired = load_json(text)
    except ValueError:
        data, repaired = None, True
    if not isinstance(data, list) and not (isinstance(data, dict) and key in data):
        # Cut off mid-list: what load_json dug out is at best one inner item, not the answer.
        salvaged = salvage_list(text, key)
        if salvaged is not None:
            data, repaired = {key: salvaged}, True
        elif data is None:
            raise ValueError("the answer holds no JSON object")
    if isinstance(data, list):
        data, repaired = {key: data}, True
    if not isinstance(data, dict):
        raise ValueError(f'expected a JSON object with a "{key}" list')  # noqa: TRY004 - parse errors are ValueError by contract
    if key not in data:
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise ValueError(f'expected a JSON object with a "{key}" list, got keys {sorted(data)[:5]}')
        data, repaired = {key: lists[0]}, True
    raw_items = data[key]
    if not isinstance(raw_items, list):
        raise ValueError(f'"{key}" must be a list, not {type(raw_items).__name__}')  # noqa: TRY004
    items: list[Any] = []
    dropped: list[str] = []
    for position, raw in enumerate(raw_items):
        try:
            items.append(model.model_validate(raw))
        except ValidationError as exc:
            dropped.append(f"{key}[{position}]: {describe_validation(exc)}")
    if raw_items and not items:
        raise ValueError("no valid item: " + "; ".join(dropped[:3]))
    return items, repaired or bool(dropped), dropped


@dataclass
class JsonAnswer:
    """The outcome of ``ask_json``: the parsed value (``None`` on fallback) and how it went."""

    value: Any
    status: str
    calls: int
    error: str | None = None
    #: True when the model could not be reached at all (as opposed to answering badly).
    unreachable: bool = False


class _BadAnswer(Exception):
    def __init__(self, message: str, text: str | None) -> None:
        super().__init__(message)
        self.text = text


def ask_json(llm: Any, messages: list[dict[str, str]], *, schema: Mapping[str, Any],
             parse: Callable[[str], tuple[Any, bool]], operation: str, max_tokens: int) -> JsonAnswer:
    """Ask for JSON, validate it, repair it, retry once with the error, or give up cleanly.

    ``parse(text)`` returns ``(value, repaired)`` or raises ``ValueError``. Never raises:
    a failed or unusable call is reported as status ``fallback`` with the error text.
    A back end that refuses non-JSON content itself (``LLMOutputError``) counts as a bad
    answer: its ``content`` is repaired if it carries one, else the call is retried.
    """
    calls = 0

    def call(prompt: list[dict[str, str]]) -> str:
        nonlocal calls
        calls += 1
        try:
            return llm.complete(prompt, json_schema=schema, max_tokens=max_tokens, temperature=0.0,
                                operation=operation).text
        except LLMOutputError as exc:
            raise _BadAnswer(_short(exc), exc.content) from exc

    def unusable(exc: Exception) -> bool:
        return isinstance(exc, LLMUnavailableError)

    text: str | None
    try:
        text = call(messages)
        first_error = None
    except _BadAnswer as exc:
        text, first_error = exc.text, str(exc)
    except LLMError as exc:  # the model failed: fall back (the turns are stored); a bug in memkern propagates
        return JsonAnswer(None, "fallback", calls, f"LLM call failed: {_short(exc)}", unreachable=unusable(exc))
    if text is not None:
        try:
            value, repaired = parse(text)
            return JsonAnswer(value, "repaired" if repaired or first_error else "ok", calls)
        except ValueError as exc:
            first_error = _short(exc)
    retry = list(messages)
    if text is not None:
        retry.append({"role": "assistant", "content": text[:MAX_ECHO_CHARS]})
    retry.append({"role": "user", "content": (
        f"That answer was not valid: {first_error}. Answer again with only the JSON object "
        "the schema describes: no prose, no code fences.")})
    try:
        text = call(retry)
        value, _ = parse(text)
        return JsonAnswer(value, "retried", calls)
    except (_BadAnswer, ValueError) as exc:
        return JsonAnswer(None, "fallback", calls, f"invalid answer twice: {first_error}; then: {_short(exc)}")
    except LLMError as exc:
        return JsonAnswer(None, "fallback", calls, f"invalid answer ({first_error}); retry failed: {_short(exc)}",
                          unreachable=unusable(exc))


def _short(exc: BaseException, limit: int = 500) -> str:
    text = str(exc) or type(exc).__name__
    if not isinstance(exc, (LLMError, ValueError, _BadAnswer)):
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[:limit] + "..."


# -- facts ready to be decided on ---------------------------------------------------------------------
@dataclass
class NewFact:
    """A fact about to be decided on (ADD / UPDATE / INVALIDATE / NOOP) and written."""

    text: str
    kind: MemoryKind = MemoryKind.FACT
    subject: str | None = None
    #: When it became true or happened: the resolved date, else the source turn's time.
    time: datetime | None = None
    provenance: Provenance = field(default_factory=Provenance)
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_item(self, cube_id: str, owner: str, memory_id: str) -> MemoryItem:
        return MemoryItem(
            id=memory_id, cube_id=cube_id, owner=owner, kind=self.kind, text=self.text, tags=list(self.tags),
            metadata=dict(self.metadata), provenance=self.provenance.model_copy(),
            entities=find_entities(self.text, self.provenance.speaker), event_time=self.time,
            valid_from=self.time,
        )


def _windows(turns: Sequence[MemoryItem], size: int) -> list[list[MemoryItem]]:
    """Even windows of at most ``size`` turns (30 turns -> 15 + 15, not 20 + 10)."""
    if not turns:
        return []
    count = math.ceil(len(turns) / size)
    step = math.ceil(len(turns) / count)
    return [list(turns[i:i + step]) for i in range(0, len(turns), step)]


_SYSTEM = """You extract long-term memories from a conversation.
Each turn is shown as: [number] date speaker: words. List what is worth remembering about the people in it:
- "fact": a lasting truth (where someone lives, their job, family, pets, age, plans);
- "event": something that happened or will happen, with its date;
- "preference": what someone likes, dislikes or prefers.
Rules:
- Each item is ONE short statement about ONE thing, in the third person, starting with the name of the person it is about (the speaker name shown before the colon). Replace "I", "my", "me" with that name. Never write "I", "my", "we" or "you", and never copy a whole turn.
- "subject": the person or thing the statement is about.
- "source_turns": the numbers of the turns that state it, exactly as shown in brackets. Cite only shown numbers.
- "time_expression": the words that date it ("last Saturday", "in May 2022"), or null.
- "date": that date as YYYY-MM-DD, worked out from the date of the source turn, or null if it is not dated.
- "confidence": from 0 to 1, how clearly the turns state it.
- Skip greetings, small talk, questions and anything the turns do not state.
Answer with one JSON object and nothing else: {"facts": [...]}. If nothing is worth remembering, answer {"facts": []}."""


def _render_turn(handle: int, turn: MemoryItem) -> str:
    when = turn.event_time.strftime("%Y-%m-%d (%A)") if turn.event_time else "(no date)"
    text = " ".join(turn.text.split())
    if len(text) > MAX_TURN_CHARS:
        text = text[:MAX_TURN_CHARS] + " [...]"
    return f"[{handle}] {when} {text}"


def extraction_messages(turns: Sequence[MemoryItem]) -> list[dict[str, str]]:
    """The prompt for one window: turns under handles 1..n, with date and speaker."""
    session = turns[0].provenance.session_id if turns else None
    header = f"Conversation (session {session}):" if session else "Conversation:"
    lines = [header] + [_render_turn(handle, turn) for handle, turn in enumerate(turns, start=1)]
    # A small model follows the instruction nearest the answer best: restate the key rule last.
    lines += ["", "List the memories: one short third-person statement per item, each naming the person "
                  "(never \"I\"), each citing its turn numbers."]
    return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": "\n".join(lines)}]


def _parse_extraction(text: str) -> tuple[tuple[list[ExtractedFact], list[str]], bool]:
    facts, repaired, dropped = parse_items(text, "facts", ExtractedFact)
    return (facts, dropped), repaired


def _as_datetime(day: date_type, anchor: datetime | None) -> datetime:
    if anchor is not None and anchor.date() == day:
        return anchor
    return datetime.combine(day, time.min, timezone.utc)


def resolve_fact_time(fact: ExtractedFact, anchor: datetime | None) -> tuple[datetime | None, str | None]:
    """When the fact became true or happened, and how that was found.

    The model's absolute date first; else its time expression resolved against the source
    turn's time by ``memkern.reader.temporal`` (relative or absolute); else the turn's time.
    """
    if fact.date is not None:
        return _as_datetime(fact.date, anchor), "model"
    if fact.time_expression:
        resolved = resolve_dates(fact.time_expression, anchor)
        if resolved:
            return _as_datetime(resolved[0].date, anchor), "temporal"
        periods = mentioned_periods(fact.time_expression)
        if periods:
            return _as_datetime(periods[0][0], anchor), "temporal"
    return anchor, "turn" if anchor is not None else None


_FIRST_PERSON = re.compile(r"^(?:(?i:yes|no|oh|well|so|wow|hi|hey)\b[,!.]?\s*)?(I'm|I am|I've|I have|I|My|Me)\b\s*")


def third_person(text: str, speaker: str | None) -> str:
    """``"I moved to Lisbon."`` said by ``user`` -> ``"user moved to Lisbon."``.

    Small models often copy the speaker's words although the prompt asks for the third person;
    a memory that opens with "I" loses who it is about. Only the opening words are rewritten,
    and only when the source turns have a single speaker."""
    if not speaker:
        return text
    match = _FIRST_PERSON.match(text)
    if match is None:
        return text
    word = match.group(1)
    lead = {"I'm": f"{speaker} is", "I am": f"{speaker} is", "I've": f"{speaker} has", "I have": f"{speaker} has",
            "My": f"{speaker}'s", "Me": speaker}.get(word, speaker)
    return f"{lead} {text[match.end():]}".strip()


def grounded_time(fact: ExtractedFact, sources: Sequence[MemoryItem], anchor: datetime | None) -> ExtractedFact:
    """The fact without a time expression its source turns do not contain (nor the date
    worked out from it, unless that is the turns' own day).

    Small models copy the prompt's examples ("last Saturday") into facts that never said
    them, and a date resolved from words nobody said is worse than the turn's date."""
    if not fact.time_expression:
        return fact
    said = " ".join(" ".join(t.text.split()).lower() for t in sources)
    if " ".join(fact.time_expression.lower().split()) in said:
        return fact
    keep_date = fact.date is not None and anchor is not None and fact.date == anchor.date()
    return fact.model_copy(update={"time_expression": None, "date": fact.date if keep_date else None})


def _to_new_fact(fact: ExtractedFact, sources: list[MemoryItem], model: str) -> NewFact:
    anchor = max((t.event_time for t in sources if t.event_time), default=None)
    fact = grounded_time(fact, sources, anchor)
    when, how = resolve_fact_time(fact, anchor)
    message_ids = list(dict.fromkeys(m for t in sources for m in t.provenance.message_ids))
    speakers = {t.provenance.speaker for t in sources}
    session_ids = {t.provenance.session_id for t in sources}
    metadata: dict[str, Any] = {
        "subject": fact.subject,
        "confidence": fact.confidence,
        "extracted_by": model,
        "source_memory_ids": [t.id for t in sources],
    }
    if fact.time_expression:
        metadata["time_expression"] = fact.time_expression
    if how:
        metadata["time_source"] = how
    tags = list(dict.fromkeys(tag for t in sources for tag in t.tags))
    speaker = speakers.pop() if len(speakers) == 1 else None
    return NewFact(
        text=third_person(fact.text, speaker), kind=MemoryKind(fact.kind), subject=fact.subject, time=when,
        provenance=Provenance(
            message_ids=message_ids,
            session_id=session_ids.pop() if len(session_ids) == 1 else None,
            speaker=speaker,
        ),
        tags=tags, metadata=metadata,
    )


def merge_report(into: ExtractionReport, other: ExtractionReport) -> None:
    """Add ``other`` (a later ``add``'s report) to ``into``: totals summed, batches and rejections
    kept (rejections capped as in one report), the worst status and the first error."""
    for batch in other.batches:
        _merge(into, batch)
    into.rejections = (into.rejections + other.rejections)[:50]


def _merge(report: ExtractionReport, batch: ExtractionBatch) -> None:
    report.batches.append(batch)
    report.turns += batch.turns
    report.llm_calls += batch.llm_calls
    report.facts_proposed += batch.facts_proposed
    report.facts_accepted += batch.facts_accepted
    report.facts_rejected += batch.facts_rejected
    if _STATUS_RANK[batch.status] > _STATUS_RANK[report.status]:
        report.status = batch.status
    if batch.error and report.error is None:
        report.error = batch.error


def checked_handles(fact: ExtractedFact, turn_words: Sequence[set[str]]) -> tuple[list[int], bool]:
    """The fact's valid handles, re-pointed at the turn that says it when the cited ones clearly
    do not (returns ``(handles, recited)``); empty when it cites no shown turn. ``turn_words``:
    the content words of each turn of the window, in handle order.

    Small models often cite a neighbouring turn, which would pin the fact on the wrong speaker.
    The check is lexical: a paraphrase that shares few words with any turn keeps its citation."""
    handles = [h for h in dict.fromkeys(fact.source_turns) if 1 <= h <= len(turn_words)]
    if not handles:
        return [], False
    words = set(query_terms(fact.text, limit=512))
    overlap = [len(words & turn) / len(words) if words else 0.0 for turn in turn_words]
    cited = max(overlap[h - 1] for h in handles)
    best_overlap, best = max((share, h) for h, share in enumerate(overlap, start=1))
    if best not in handles and best_overlap >= RECITE_OVERLAP and best_overlap >= cited + 0.25:
        return [best], True
    return handles, False


def extract_facts(llm: Any, turns: Sequence[MemoryItem], *, window: int = MAX_WINDOW,
                  max_tokens: int = 2048, stop: Callable[[], bool] | None = None
                  ) -> tuple[list[NewFact], ExtractionReport]:
    """Facts derived from stored ``turns`` (one call per window), and a report of how it went.

    Never raises for anything the model does: bad answers are repaired, retried once,
    then given up on for that window. If the model cannot be reached at all, the
    remaining windows are skipped rather than each waiting for the same failure.

    ``stop`` (the extract job passes its deadline's ``passed``) is asked before each window and
    when its answer is back: once it says True, that window and the rest are left unread. They
    are not in the report, so ``report.turns`` counts the leading turns read, and no fact comes
    from a window the model may have been cut off in.
    """
    model = str(getattr(llm, "name", "llm"))
    report = ExtractionReport(model=model)
    facts: list[NewFact] = []
    unreachable: str | None = None
    for turns_window in _windows(turns, max(1, window)):
        if stop is not None and stop():
            break
        batch = ExtractionBatch(turns=len(turns_window))
        if unreachable is not None:
            batch.status, batch.error = "fallback", f"skipped: {unreachable}"
            _merge(report, batch)
            continue
        budget = min(max_tokens, 256 + TOKENS_PER_TURN * len(turns_window))
        answer = ask_json(llm, extraction_messages(turns_window), schema=EXTRACTION_SCHEMA,
                          parse=_parse_extraction, operation="extract", max_tokens=budget)
        if stop is not None and stop():
            break
        batch.llm_calls, batch.status, batch.error = answer.calls, answer.status, answer.error
        if answer.unreachable:
            unreachable = answer.error
        if answer.value is not None:
            proposed, dropped = answer.value
            batch.facts_proposed = len(proposed) + len(dropped)
            batch.facts_rejected = len(dropped)
            report.rejections.extend(f"invalid item: {why}" for why in dropped)
            seen: set[str] = set()
            turn_words = [set(query_terms(turn.text, limit=512)) for turn in turns_window]
            for fact in proposed:
                key = " ".join(fact.text.lower().split())
                if key in seen:
                    batch.facts_rejected += 1
                    report.rejections.append(f"repeated item: {fact.text[:120]}")
                    continue
                seen.add(key)
                if fact.text.rstrip().endswith("?"):
                    batch.facts_rejected += 1
                    report.rejections.append(f"a question, not a fact: {fact.text[:120]}")
                    continue
                handles, recited = checked_handles(fact, turn_words)
                if not handles:
                    batch.facts_rejected += 1
                    cited = ", ".join(f"[{h}]" for h in fact.source_turns) or "none"
                    report.rejections.append(
                        f"no valid source turn (cited {cited} of [1]..[{len(turns_window)}]): {fact.text[:120]}")
                    continue
                batch.facts_accepted += 1
                new_fact = _to_new_fact(fact, [turns_window[h - 1] for h in handles], model)
                if recited:
                    new_fact.metadata["cited_turns"] = fact.source_turns  # what the model said, for the record
                facts.append(new_fact)
        _merge(report, batch)
    del report.rejections[50:]
    return facts, report
