"""Question-answer pairs made from memories with fixed templates (no LLM), and the prompt they are asked in.

No LLM writes the training set, so that the same memories always give the same pairs: a
distillation can be repeated and its questions are listed in the adapter's manifest.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from memkern.models import Filters, LifecycleState, MemoryItem, MemoryKind
from memkern.ops.context import OpContext

#: The kinds of memory distilled (a cube's turns only when it has none of these).
FACT_KINDS = (MemoryKind.FACT, MemoryKind.EVENT, MemoryKind.PREFERENCE)
#: The system prompt used in training and at answer time (closed-book: no memories in the prompt).
SYSTEM_PROMPT = "Answer the question about the user from what you remember, in a few words."


@dataclass(frozen=True)
class QAPair:
    question: str
    answer: str
    #: The version id of the memory it was made from.
    source: str
    template: str


_PEOPLE = {"sister", "brother", "mother", "father", "mum", "dad", "partner", "wife", "husband", "son",
           "daughter", "friend", "best friend", "boss", "manager", "dentist", "doctor", "teacher",
           "neighbour", "neighbor", "colleague", "landlord", "cousin", "aunt", "uncle", "grandmother",
           "grandfather", "coach", "piano teacher", "flatmate", "roommate"}
_SUBJ = r"(?P<s>[A-Z][\w\-]*(?: [A-Z][\w\-]*)*|I)"
_RULES: tuple[tuple[str, re.Pattern[str], Callable[[re.Match[str]], tuple[str, str]]], ...] = (
    ("named", re.compile(_SUBJ + r"'s (?P<a>[\w \-]+?) (?:is|was) (?:named|called) (?P<o>.+)$"),
     lambda m: (f"What is {m['s']}'s {m['a']} called?", m["o"])),
    ("possessive", re.compile(_SUBJ + r"'s (?P<a>[\w \-]+?) (?P<v>is|are|was|were) (?P<o>.+)$"),
     lambda m: (f"{'Who' if m['a'].lower() in _PEOPLE else 'What'} {m['v']} {m['s']}'s {m['a']}?",
                re.sub(r"^on ", "", m["o"]))),
    ("born", re.compile(_SUBJ + r" (?:was|were) born in (?P<o>.+)$"),
     lambda m: (f"Where was {m['s']} born?", m["o"])),
    ("lives", re.compile(_SUBJ + r" (?:lives|lived|live|now lives) in (?P<o>.+)$"),
     lambda m: (f"Where does {m['s']} live?", m["o"])),
    ("works-as", re.compile(_SUBJ + r" (?:works|work|worked) as (?P<o>.+)$"),
     lambda m: (f"What does {m['s']} work as?", m["o"])),
    ("works-at", re.compile(_SUBJ + r" (?:works|work|worked) (?:at|for) (?P<o>.+)$"),
     lambda m: (f"Where does {m['s']} work?", m["o"])),
    ("allergic", re.compile(_SUBJ + r" (?:is|am) allergic to (?P<o>.+)$"),
     lambda m: (f"What is {m['s']} allergic to?", m["o"])),
    ("verb", re.compile(_SUBJ + r" (?P<v>likes|loves|prefers|enjoys|hates|plays|drives|speaks|owns|collects|"
                        r"drinks|eats|reads|studies|grows) (?P<o>.+)$"),
     lambda m: (f"What does {m['s']} {m['v'][:-1] if m['v'] != 'studies' else 'study'}?", m["o"])),
)


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().rstrip(".!").strip()


def make_qa(item: MemoryItem) -> list[QAPair]:
    """Templated question-answer pairs for one memory (no LLM).

    A sentence that fits one of a few patterns ("X's A is B", "X lives in B", "X works as B",
    "X likes B", ...) gives a question and its short answer; every memory also gives a cloze pair
    (its first words as the question, the rest as the answer), so that text fitting no pattern
    still trains something."""
    pairs: list[QAPair] = []
    text = _clean(item.text)
    if not text:
        return pairs
    first = re.split(r"(?<=[.!?])\s+", text, maxsplit=1)[0].rstrip(".!?")
    for name, pattern, build in _RULES:
        m = pattern.match(first)
        if m:
            question, answer = build(m)
            answer = _clean(answer)
            if answer:
                pairs.append(QAPair(question, answer, item.version_id, name))
            break
    words = text.split()
    if len(words) >= 3:
        cut = max(1, (len(words) * 2) // 3) if len(words) < 9 else 6
        head, tail = " ".join(words[:cut]), " ".join(words[cut:cut + 24])
        pairs.append(QAPair(f'Complete what you remember: "{head} ..."', tail, item.version_id, "cloze"))
    return pairs


def select_memories(ctx: OpContext, max_facts: int) -> list[MemoryItem]:
    """The cube's current, active facts, events and preferences (most important first, at most
    ``max_facts``); its turns when it has none of those."""
    store, cube_id = ctx.kernel.store, ctx.cube.id
    facts = store.list_memories(cube_id, Filters(kind=list(FACT_KINDS), state=LifecycleState.ACTIVE))
    if not facts:
        facts = store.list_memories(cube_id, Filters(kind=MemoryKind.TURN, state=LifecycleState.ACTIVE))
    facts.sort(key=lambda m: (-m.importance, m.recorded_at, m.id))
    return facts[:max_facts]


def prompt_ids(tokenizer: Any, question: str) -> list[int]:
    """The token ids of a question in the model's chat template, the same in training and at answer time."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return list(ids)
