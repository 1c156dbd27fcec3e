"""What the answer model is shown, per benchmark condition, so that conditions are compared in one run.

* ``organised``: what chat shows: memkern's default search (deep path on where the query needs it;
  the profile's current values first), the turns around the five best hits (their conversation
  links), in chat's organised context (``memkern.prompts.organised_context``: current facts, then
  memories grouped by day and conversation, repeats dropped);
* ``unlinked``: the same without the conversation links (chat's context before 2026-12-07);
* ``plain``: plain top-k, the usual retrieval-augmented baseline: the same search with the deep path
  off (``SearchConfig(deep=False)``), the hits in rank order with their dates, no profile marks,
  no grouping, no deduplication;
* ``full``: the whole history (every turn of every session, dated) in the prompt, no retrieval, when
  it fits the model's context window; when it does not, no call is made and :class:`DoesNotFit` says
  how many tokens it would have needed.

The same model, the same number of hits (``top_k``) and the same answer length cap in every condition.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from memkern.bench.locomo_data import Conversation
from memkern.errors import InvalidInputError
from memkern.models import ChatAnswer
from memkern.ops.chat import CONVERSATION, answer_from_hits, answer_from_messages, with_conversation_links
from memkern.prompts import DEFAULT_MAX_TOKENS, PLAIN_PROMPT
from memkern.retrieval.config import resolve_config

__all__ = ["CONDITIONS", "DoesNotFit", "answer_in_condition", "conditions_report", "full_history_messages",
           "parse_conditions"]

CONDITIONS = ("organised", "unlinked", "plain", "full")
#: Tokens kept free beside the history for the instructions, the question and the answer.
_ROOM = DEFAULT_MAX_TOKENS + 400
#: Characters per token below which no tokenizer is needed to know a history is too long (English text
#: runs at about 4 characters per token; 6 is a safe upper bound).
_MAX_CHARS_PER_TOKEN = 6


class DoesNotFit(Exception):  # noqa: N818 - a condition outcome, not an error of the program
    """The full history is longer than the model's context window: the condition is not run for this question."""

    def __init__(self, tokens: int, window: int, estimated: bool):
        self.tokens, self.window, self.estimated = tokens, window, estimated
        super().__init__(f"the full history needs {'about ' if estimated else ''}{tokens} tokens; "
                         f"the model's context holds {window}")


def parse_conditions(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"organised,plain,full"`` -> the conditions, checked, in the order given, without repeats."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    unknown = [n for n in names if n not in CONDITIONS]
    if unknown or not names:
        raise InvalidInputError(f"conditions must be among {', '.join(CONDITIONS)}; got {text!r}")
    return tuple(dict.fromkeys(names))


def full_history_messages(query: str, conversation: Conversation) -> list[dict[str, str]]:
    """Every turn of ``conversation``, session by session with its date, then the question."""
    lines: list[str] = []
    for session in conversation.sessions:
        if not session.turns:
            continue
        when = f"{session.time.day} {session.time:%B %Y}, {session.time:%A}" if session.time else "undated"
        lines.append(f"{when} (conversation {session.id}):")
        lines += [f"{turn.speaker}: {' '.join(turn.text.split())}" for turn in session.turns]
        lines.append("")
    system = PLAIN_PROMPT.replace("Memories are listed by relevance to the question, most relevant first.",
                                  "The conversations are listed oldest first; when they disagree, the newest "
                                  "says how things are now.")
    user = "Conversations:\n" + "\n".join(lines) + f"\nQuestion: {query}\nAnswer:"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _check_fits(llm: Any, messages: list[dict[str, str]]) -> None:
    window = getattr(llm, "n_ctx", None)
    if not isinstance(window, int):  # a server whose window is unknown: let it answer or fail
        return
    text = "\n".join(m["content"] for m in messages)
    tokenize = getattr(llm, "tokenize", None)
    if len(text) > _MAX_CHARS_PER_TOKEN * window or not callable(tokenize):
        tokens, estimated = len(text) // 4, True
    else:
        tokens, estimated = len(tokenize(text)), False
    if tokens + _ROOM > window:
        raise DoesNotFit(tokens, window, estimated)


def answer_in_condition(condition: str, llm: Any, query: str, cube: Any, conversation: Conversation, *,
                        top_k: int, config: Any = None, filters: Any = None) -> ChatAnswer:
    """Answer ``query`` from ``cube`` (or ``conversation``, for ``full``) in ``condition``.

    ``config``: the organised condition's search config (None: memkern's default); the plain condition
    takes it with the deep path off. Raises :class:`DoesNotFit` (full only) and ``LLMError``."""
    if condition == "full":
        messages = full_history_messages(query, conversation)
        _check_fits(llm, messages)
        return answer_from_messages(llm, query, messages, [])
    resolved = resolve_config(config)
    if condition == "plain":
        resolved = resolved.model_copy(update={"deep": False})
    elif condition not in ("organised", "unlinked"):
        raise InvalidInputError(f"unknown condition {condition!r}; expected one of {', '.join(CONDITIONS)}")
    hits = cube.search(query, top_k=top_k, config=resolved, filters=filters)
    if condition == "organised":
        hits = with_conversation_links(hits, lambda memory: cube.links(memory.id, CONVERSATION))
    return answer_from_hits(llm, query, hits, context="plain" if condition == "plain" else "organised")


def conditions_report(summaries: dict[str, dict[str, Any]] | None, *, score: str, key: str, groups: str,
                      correct: str | None = None) -> list[str]:
    """Report lines comparing conditions: per condition the questions answered, the ``score`` of group
    ``key`` (with the count of correct answers when ``correct`` names it), tokens per question, and how
    many questions' full history did not fit."""
    if not summaries:
        return []
    lines = ["", f"conditions (same model, same questions): {score} of {key}; small samples, low confidence"]
    header = ["condition", "answered", score, "tokens/question", "did not fit"]
    rows = []
    for name, summary in summaries.items():
        entry = summary.get(groups, {}).get(key, {})
        value = entry.get(score)
        shown = "-" if value is None else f"{value:.3f}"
        if correct and entry.get(correct) is not None:
            shown += f" ({entry[correct]}/{entry.get('n')})"
        unfit = summary.get("did_not_fit")
        rows.append([name, str(summary.get("questions_answered", 0)), shown,
                     str(summary.get("llm", {}).get("tokens_per_question") or "-"),
                     (f"{unfit['n']} (median {unfit['history_tokens_median']} tokens > window "
                      f"{unfit['context_window']})" if unfit else "0")])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    return lines
