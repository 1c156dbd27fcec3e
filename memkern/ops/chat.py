"""Answer a question from a cube's memories with an LLM.

One call: the query is searched in the cube, the short turns said just before and after each of
the five best hits join them (their ``follows`` and ``followed_by`` links, ``memkern.organize.links``:
"Yes, twice!" read with the question it answers), and all are listed in the prompt
(``memkern.prompts.organised_context``: current slot values and the latest value of each quantity
said again later first, ``memkern.organize.restated``; then grouped by conversation and day, the
group of the best-ranked hit first, each in the order said, repeats dropped, a long memory cut to the
sentences the question names); the
model is told to answer from them only, or to say the information is not available. With no hit
at all no model is asked: the answer is ``NOT_AVAILABLE``.

The context is measured (``memkern bench locomo|longmemeval --answer --conditions
organised,unlinked,plain``, same model and questions; ``docs/llm.md``): LoCoMo F1 0.280 with the
links, 0.266 without, 0.208 for plain top-k; on LongMemEval's 98 questions 24 correct against
plain's 24, F1 0.221 against 0.169, with 27 % fewer tokens.

With ``write_back`` the question and the answer are stored as two turns (``user`` and
``assistant``) in the given session, never mined for facts: the model's own answer is not evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from memkern.errors import LLMNotConfiguredError
from memkern.llm import NO_LLM_MESSAGE
from memkern.llm.deadline import llm_deadline
from memkern.memory import activation
from memkern.models import (
    ChatAnswer,
    ChatUsage,
    Filters,
    Hit,
    LinkKind,
    MemoryItem,
    MemoryKind,
    MemoryLink,
    Message,
    ScoreParts,
    utcnow,
)
from memkern.ops import links, memories
from memkern.ops.context import OpContext
from memkern.ops.search import search
from memkern.organize.restated import restatements
from memkern.prompts import (
    DEFAULT_MAX_TOKENS,
    NOT_AVAILABLE,
    ORGANISED_PROMPT_SHA256,
    PLAIN_PROMPT_SHA256,
    organised_messages,
    plain_messages,
)
from memkern.retrieval.config import SearchConfig


def model_name(llm: Any) -> str:
    return str(getattr(llm, "name", None) or getattr(llm, "model", None) or type(llm).__name__)


def _organised(query: str, hits: Sequence[Hit]) -> list[dict[str, str]]:
    return organised_messages(query, hits, restatements([hit.memory for hit in hits]))


#: How the hits are shown to the model: ``organised`` (chat's: current values and the latest of each
#: restated quantity first, grouped by conversation and day, deduplicated) or ``plain`` (rank order, no
#: marks: the top-k baseline of the benchmarks).
CONTEXTS = {"organised": (_organised, ORGANISED_PROMPT_SHA256), "plain": (plain_messages, PLAIN_PROMPT_SHA256)}


def answer_from_hits(llm: Any, query: str, hits: Sequence[Hit], *, max_tokens: int = DEFAULT_MAX_TOKENS,
                     context: str = "organised") -> ChatAnswer:
    """Ask ``llm`` to answer ``query`` from ``hits`` (already retrieved), shown as ``context`` (see
    :data:`CONTEXTS`). Raises ``LLMError`` when the model cannot answer. No hits: ``NOT_AVAILABLE``,
    without a call."""
    messages_of, prompt_sha256 = CONTEXTS[context]
    hits = list(hits)
    if not hits:
        return ChatAnswer(query=query, answer=NOT_AVAILABLE, hits=[], model=model_name(llm),
                          usage=ChatUsage(), prompt_sha256=prompt_sha256)
    return answer_from_messages(llm, query, messages_of(query, hits), hits, prompt_sha256, max_tokens=max_tokens)


def answer_from_messages(llm: Any, query: str, messages: list[dict[str, str]], hits: Sequence[Hit],
                         prompt_sha256: str | None = None, *, max_tokens: int = DEFAULT_MAX_TOKENS) -> ChatAnswer:
    """One chat call with ``messages`` already rendered, as a ``ChatAnswer`` (an empty reply is
    ``NOT_AVAILABLE``). Raises ``LLMError`` when the model cannot answer."""
    response = llm.complete(messages, max_tokens=max_tokens, temperature=0.0, operation="chat")
    text = response.text.strip() or NOT_AVAILABLE
    usage = ChatUsage(calls=1, prompt_tokens=response.prompt_tokens, completion_tokens=response.completion_tokens,
                      cached=bool(response.cached))
    return ChatAnswer(query=query, answer=text, hits=list(hits), model=response.model or model_name(llm),
                      usage=usage, prompt_sha256=prompt_sha256)


#: Hits whose conversation neighbours join the context (``with_conversation_links``).
LINKED_HITS = 5
#: The links that bring a hit's neighbours: the turns said just before and after it.
CONVERSATION = (LinkKind.FOLLOWS, LinkKind.FOLLOWED_BY)
#: Longest neighbour shown, in characters. The short turns are the ones that need their neighbours
#: ("Yes, twice!"); LongMemEval's assistant answers of thousands of characters took a small model's
#: prompt past its 4,096-token window on 7 of 20 questions when every neighbour was shown.
NEIGHBOUR_CHARS = 500


def with_conversation_links(hits: Sequence[Hit], links_of: Callable[[MemoryItem], Sequence[MemoryLink]],
                            around: int = LINKED_HITS) -> list[Hit]:
    """``hits`` and, after them, the turns said just before and after each of the first ``around`` turns
    among them (``links``: follows, followed_by) that are at most :data:`NEIGHBOUR_CHARS` long, each once:
    "Yes, twice!" read with the question it answers."""
    shown = {hit.id for hit in hits}
    added: list[Hit] = []
    for hit in hits[:around]:
        if hit.memory.kind is not MemoryKind.TURN:
            continue
        for link in links_of(hit.memory):
            if link.memory.id not in shown and len(link.memory.text) <= NEIGHBOUR_CHARS:
                shown.add(link.memory.id)
                added.append(Hit(memory=link.memory, score=0.0, parts=ScoreParts()))
    return list(hits) + added


def default_session_id(now: datetime | None = None) -> str:
    """The session a write-back goes to when none is given: one per UTC day, ``chat-2025-01-31``."""
    return f"chat-{(now or utcnow()):%Y-%m-%d}"


def chat(ctx: OpContext, query: str, *, top_k: int = 8, write_back: bool = False, session_id: str | None = None,
         filters: Filters | None = None, config: SearchConfig | str | None = None,
         use_activation: bool | None = None) -> ChatAnswer:
    """Answer ``query`` from the cube's memories with the kernel's LLM: the ``top_k`` hits and the turns
    around the best of them (``ChatAnswer.hits``: the search's hits, then those turns with score 0).

    ``use_activation``: answer with the cube's activation memory (its memory block's KV cache
    restored into the local model; ``memkern.memory.activation``). ``None`` uses it when the
    LLM is the local model and a fresh one exists; ``True`` requires it; ``False`` never uses
    it. A stale activation is never used. ``LLMNotConfiguredError`` without an LLM, ``LLMError``
    when the model fails (nothing is written then).
    """
    llm = ctx.kernel.llm
    if llm is None:
        raise LLMNotConfiguredError(NO_LLM_MESSAGE)
    asked_at = utcnow()
    found = search(ctx, query, top_k, filters=filters, config=config)
    hits = with_conversation_links(found, lambda memory: links.links_of(ctx, memory, CONVERSATION))
    result = None
    with llm_deadline():  # one deadline for the whole answer (memkern.llm.deadline)
        if use_activation is not False:
            result = activation.answer_with_activation(ctx, llm, query, hits, max_tokens=DEFAULT_MAX_TOKENS,
                                                       required=use_activation is True)
        if result is None:
            result = answer_from_hits(llm, query, hits)
    if write_back:
        session = session_id or default_session_id(asked_at)
        answered_at = max(utcnow(), asked_at)
        said = [Message(role="user", content=query, time=asked_at),
                Message(role="assistant", content=result.answer, time=answered_at)]
        added = memories.add(ctx, said, session_id=session, infer=False)
        result.session_id = session
        result.stored = list(added.added)
    return result
