"""Answer a question from a cube's memories with an LLM (``MemCube.chat``, ``memkern chat``).

One call: the query is searched in the cube, the hits are listed in the prompt (newest first,
each with its date, the dates its relative expressions resolve to, its kind and its speaker) and
the model is told to answer from them only, briefly, and to say the information is not available
when they do not hold it. With no hit at all no model is asked: the answer is
:data:`NOT_AVAILABLE`. With ``write_back`` the question and the answer are stored as two turns
(roles ``user`` and ``assistant``) in the given session, so that later searches see the exchange;
they are stored with ``infer=False``: the model's own answer is not mined for new facts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from memkern.errors import InvalidInputError
from memkern.models import ChatAnswer, ChatUsage, Filters, Hit, MemoryItem, MemoryKind, utcnow

if TYPE_CHECKING:
    from memkern.cube.cube import MemCube
    from memkern.llm.base import LLM

__all__ = ["ANSWER_PROMPT", "ANSWER_PROMPT_SHA256", "NOT_AVAILABLE", "NO_LLM_MESSAGE", "answer", "answer_from_hits",
           "answer_messages", "render_memory"]

#: The answer when the memories do not hold it (also what the model is told to say).
NOT_AVAILABLE = "The information is not available in memory."

NO_LLM_MESSAGE = ("chat needs an LLM: set MEMKERN_LLM=openai with MEMKERN_LLM_BASE_URL and MEMKERN_LLM_MODEL, "
                  "or MEMKERN_LLM=local")

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


def _newest_first(hits: Sequence[Hit]) -> list[Hit]:
    """Newest first (undated last), ties in rank order.

    Small models lean on what they read first; putting the current state of things first means
    a fact that changed is answered with its new value, not the one said weeks before."""
    order = {id(hit): rank for rank, hit in enumerate(hits)}

    def key(hit: Hit) -> tuple[int, float, int]:
        when = hit.memory.event_time or hit.memory.valid_from
        return (when is None, -when.timestamp() if when else 0.0, order[id(hit)])

    return sorted(hits, key=key)


def answer_messages(query: str, hits: Sequence[Hit]) -> list[dict[str, str]]:
    """The chat messages sent to the model for ``query`` over ``hits``."""
    lines = [render_memory(n, hit.memory) for n, hit in enumerate(_newest_first(hits), start=1)]
    user = "Memories (newest first):\n" + "\n".join(lines) + f"\n\nQuestion: {query}\nAnswer:"
    return [{"role": "system", "content": ANSWER_PROMPT}, {"role": "user", "content": user}]


def _model_name(llm: Any) -> str:
    return str(getattr(llm, "name", None) or getattr(llm, "model", None) or type(llm).__name__)


def answer_from_hits(llm: LLM, query: str, hits: Sequence[Hit], *,
                     max_tokens: int = DEFAULT_MAX_TOKENS) -> ChatAnswer:
    """Ask ``llm`` to answer ``query`` from ``hits`` (already retrieved). Raises ``LLMError`` when the
    model cannot answer. No hits: :data:`NOT_AVAILABLE`, without a call."""
    if llm is None:
        raise InvalidInputError(NO_LLM_MESSAGE)
    hits = list(hits)
    if not hits:
        return ChatAnswer(query=query, answer=NOT_AVAILABLE, hits=[], model=_model_name(llm),
                          usage=ChatUsage(), prompt_sha256=ANSWER_PROMPT_SHA256)
    response = llm.complete(answer_messages(query, hits), max_tokens=max_tokens, temperature=0.0,
                            operation="chat")
    text = response.text.strip() or NOT_AVAILABLE
    usage = ChatUsage(calls=1, prompt_tokens=response.prompt_tokens, completion_tokens=response.completion_tokens,
                      cached=bool(response.cached))
    return ChatAnswer(query=query, answer=text, hits=hits, model=response.model or _model_name(llm), usage=usage,
                      prompt_sha256=ANSWER_PROMPT_SHA256)


def default_session_id(now: datetime | None = None) -> str:
    """The session a write-back goes to when none is given: one per UTC day, ``chat-2025-01-31``."""
    return f"chat-{(now or utcnow()):%Y-%m-%d}"


def answer(cube: MemCube, llm: LLM | None, query: str, *, top_k: int = 8, write_back: bool = False,
           session_id: str | None = None, filters: Filters | Mapping[str, Any] | None = None,
           config: Any = None, max_tokens: int = DEFAULT_MAX_TOKENS,
           use_activation: bool | None = None) -> ChatAnswer:
    """Answer ``query`` from ``cube``'s memories with ``llm`` (the cube's MemOS LLM when None).

    ``top_k`` memories are retrieved with ``cube.search(query, top_k, filters=, config=)``. With
    ``write_back``, the query and the answer are stored as two turns in ``session_id`` (default
    :func:`default_session_id`). ``use_activation``: answer with the cube's activation memory (its
    memory block's KV cache restored into the local model, the prompt starting with that exact block;
    ``memkern.memory.activation``). ``None`` (default) uses it when the LLM is the local model and a
    fresh one exists; ``True`` requires it (``InvalidInputError`` if stale or missing); ``False``
    never uses it. A stale activation is never used. Raises ``InvalidInputError`` for bad input or when there is no LLM,
    ``LLMError`` when the model fails (nothing is written then).
    """
    from memkern.cube.cube import check_name, check_text

    query = check_text(query, "query")
    if not isinstance(write_back, bool):
        raise InvalidInputError(f"write_back must be True or False, not {write_back!r}")
    if session_id is not None:
        check_name(session_id, "session_id")
    if llm is None:
        llm = getattr(getattr(cube, "_mos", None), "llm", None)
    if llm is None:
        raise InvalidInputError(NO_LLM_MESSAGE)
    asked_at = utcnow()
    if use_activation is not None and not isinstance(use_activation, bool):
        raise InvalidInputError(f"use_activation must be True, False or None, not {use_activation!r}")
    hits = cube.search(query, top_k=top_k, filters=filters, config=config)
    result = None
    if use_activation is not False:
        from memkern.memory.activation import answer_with_activation

        result = answer_with_activation(cube, llm, query, hits, max_tokens=max_tokens,
                                        required=use_activation is True)
    if result is None:
        result = answer_from_hits(llm, query, hits, max_tokens=max_tokens)
    if write_back:
        session = session_id or default_session_id(asked_at)
        answered_at = max(utcnow(), asked_at)
        messages = [{"role": "user", "content": query, "time": asked_at},
                    {"role": "assistant", "content": result.answer, "time": answered_at}]
        # The model's own words are stored as said, never mined for facts.
        added = cube.add(messages=messages, session_id=session, infer=False)
        result.session_id = session
        result.stored = list(added.added)
    return result
