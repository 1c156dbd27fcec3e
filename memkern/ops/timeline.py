"""The cube's timeline as an operation: sessions under days, weeks and months, each node with what it
holds and is about (``memkern.organize.digest``) and, with an LLM, a written summary.

Summaries are hierarchical, as in MemForest: a session's is written from its memories, a day's
from its sessions' summaries, a week's from its days', a month's from its weeks'. A period with
one part takes that part's summary as its own, without a call. Each summary is kept
(``Kernel.summaries``) with a fingerprint of its exact prompt, so asking again costs no call,
and after a write only the session written to and the day, week and month above it are
summarised again. All the calls of one request share one deadline (``memkern.llm.deadline``);
the summaries written before it passed are kept, so asking again continues where it stopped.
"""

from __future__ import annotations

import hashlib
from contextlib import nullcontext
from datetime import date

import numpy as np

from memkern.errors import LLMError, LLMNotConfiguredError
from memkern.llm import NO_LLM_MESSAGE
from memkern.llm.deadline import llm_deadline
from memkern.models import TimelineNode
from memkern.ops.chat import model_name
from memkern.ops.context import OpContext
from memkern.organize import digest
from memkern.organize.timeline import Timeline
from memkern.prompts import SUMMARY_MAX_TOKENS, summary_messages
from memkern.retrieval.index import CubeIndex

#: Characters of one memory shown to the model when summarising its session, and of the whole session.
MEMORY_CHARS = 400
SESSION_CHARS = 6_000


def timeline(ctx: OpContext, level: str = "month", since: date | None = None, until: date | None = None,
             summarize: bool = False, limit: int = 100) -> list[TimelineNode]:
    """The first ``limit`` nodes of ``level`` (``session``, ``day``, ``week`` or ``month``) whose sessions
    started between ``since`` and ``until``, oldest first, each with its sessions, memory count, most named
    entities and representative memories; with ``summarize``, the LLM's summary too
    (``LLMNotConfiguredError`` without an LLM)."""
    kernel, cube = ctx.kernel, ctx.cube
    if summarize and kernel.llm is None:
        raise LLMNotConfiguredError("summarize=True needs an LLM: " + NO_LLM_MESSAGE)
    index = kernel.indexes.get(cube.id, cube.dim)
    tree = kernel.timelines.get(cube.id, index)
    chosen = digest.nodes(tree, index, level, since, until, limit)
    shown = {node.key: digest.representatives(node, tree, index) for node in chosen}
    items = kernel.store.get_memories(cube.id, [index.ids[row] for rows in shown.values() for row in rows])
    writer = _Summariser(ctx, tree, index) if summarize else None
    found = []
    with llm_deadline() if writer is not None else nullcontext():
        for node in chosen:
            start, end = node.when()
            summary, model = writer.summary(node.level, node.key, node.sessions) if writer is not None else (None, None)
            found.append(TimelineNode(
                level=node.level, key=node.key, start=start, end=end, memories=node.size,
                sessions=[digest.session_name(index, code) for code in node.sessions],
                entities=digest.entities_of(node, tree, index, kernel.store, cube.id),
                representatives=[items[index.ids[row]] for row in shown[node.key] if index.ids[row] in items],
                summary=summary, summarized_by=model))
    return found


class _Summariser:
    """Writes (or finds kept) the summary of a node from those of its parts, down to its sessions."""

    def __init__(self, ctx: OpContext, tree: Timeline, index: CubeIndex) -> None:
        self.kernel, self.cube_id, self.tree, self.index = ctx.kernel, ctx.cube.id, tree, index

    def summary(self, level: str, key: str, sessions: list[int]) -> tuple[str, str]:
        """(summary, model) of the node ``key`` of ``level`` holding ``sessions`` (codes, oldest first)."""
        if level == "session":
            heading, lines = self._session_prompt(key, sessions[0])
        else:
            below = digest.LEVELS[digest.LEVELS.index(level) - 1]
            parts: dict[str, list[int]] = {}
            for code in sessions:
                part = digest.node_key(below, self.tree.sessions[code].day, digest.session_name(self.index, code))
                parts.setdefault(part, []).append(code)
            written = [(part, self.summary(below, part, codes)) for part, codes in parts.items()]
            if len(written) == 1:
                return written[0][1]
            heading = f"The {below}s of {key}, in order"
            lines = [f"- {part}: {text}" for part, (text, _) in written]
        messages = summary_messages(heading, lines)
        fingerprint = hashlib.sha256(repr(messages).encode("utf-8")).hexdigest()
        kept = self.kernel.summaries.get(self.cube_id, level, key, fingerprint)
        if kept is not None:
            return kept
        llm = self.kernel.llm
        assert llm is not None  # timeline() refused summarize=True without one
        response = llm.complete(messages, max_tokens=SUMMARY_MAX_TOKENS, temperature=0.0, operation="summarize")
        text = " ".join(response.text.split())
        if not text:
            raise LLMError(f"the model wrote an empty summary of {level} {key!r}")
        model = response.model or model_name(llm)
        self.kernel.summaries.put(self.cube_id, level, key, fingerprint, text, model)
        return text, model

    def _session_prompt(self, key: str, code: int) -> tuple[str, list[str]]:
        """A session's memories in the order written, each cut to :data:`MEMORY_CHARS`; a session longer
        than :data:`SESSION_CHARS` shows memories evenly spread over it and says how many it left out."""
        rows = digest.session_rows(self.tree, self.index, code)
        texts = self.kernel.store.get_texts(self.cube_id, [self.index.ids[row] for row in rows])
        lines = [_cut(texts[self.index.ids[row]].text) for row in rows if self.index.ids[row] in texts]
        total = sum(len(line) + 1 for line in lines)
        if total > SESSION_CHARS:
            keep = max(1, len(lines) * SESSION_CHARS // total)
            picked = np.linspace(0, len(lines) - 1, keep).astype(int)
            lines = [lines[i] for i in dict.fromkeys(picked.tolist())] + [f"({len(lines) - keep} more not shown)"]
        day = self.tree.sessions[code].day
        return f"Conversation {key}" + (f" on {day:%d %B %Y}" if day else ""), lines


def _cut(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MEMORY_CHARS else text[:MEMORY_CHARS - 1] + "…"

