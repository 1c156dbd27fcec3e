"""Keeping derived memories consistent: ADD, UPDATE (supersede), INVALIDATE or NOOP.

Each new fact is compared with the most similar fact/event/preference memories of the
cube. With an LLM, the model decides, seeing the candidates only under short integer
handles (so it cannot invent an id: a handle that does not exist becomes an ADD, and
the decision records it). Without one, or when the model fails, a deterministic rule set
decides:

- same normalised text, or a near-identical vector (cosine >= ``DUPLICATE_COSINE``) with
  no changed slot value -> NOOP, and the existing memory is reinforced (access counted);
- same subject and same slot ("lives in", "works as", "favourite colour", ...) with a
  different value and a time that is not older -> UPDATE: the existing memory gets a new
  version, the old one keeps its text with ``valid_to`` set;
- anything else -> ADD.

Nothing is destroyed: UPDATE and INVALIDATE write new versions, history keeps the chain
with who decided (``changed_by``) and why (``change_reason``), and the operation log
records each write.

One message that would supersede or invalidate ``CONTRADICTION_LIMIT`` or more existing
memories at once ("forget what I told you: I live in X, work at Y, my sister is Z") is how
a poisoned input rewrites a memory wholesale. When the cube's guard is on, such facts are
not applied: they are stored quarantined (``metadata["would_supersede"]`` names the
memories they contradict) for a cube admin to release or delete, and the memories they
contradict stay as they are.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import uuid4

from pydantic import BaseModel, ConfigDict, field_validator

from memkern.errors import MemkernError
from memkern.llm.deadline import llm_deadline
from memkern.models import (
    AddResult,
    CubePolicy,
    Filters,
    Hit,
    LifecycleState,
    MemoryItem,
    MemoryKind,
    UpdateDecision,
    utcnow,
)
from memkern.ops import versions
from memkern.ops.context import OpContext
from memkern.ops.search import find
from memkern.ops.writes import write_items
from memkern.reader.llm_reader import NewFact, ask_json, parse_items
from memkern.retrieval.text import query_terms

#: Kinds that take part in update decisions.
FACT_KINDS = (MemoryKind.FACT, MemoryKind.EVENT, MemoryKind.PREFERENCE)
DUPLICATE_COSINE = 0.92
#: A hit is shown to the LLM only if it shares a content word with the fact or is this close.
CANDIDATE_COSINE = 0.5
CANDIDATES = 5
#: New facts decided per LLM call.
DECIDE_GROUP = 8
#: Supersessions one message may cause before its facts are quarantined instead (guard on).
CONTRADICTION_LIMIT = 3
#: What was decided for one new fact: (fact, action, target, reason, decided by, note).
Plan = tuple[NewFact, str, Hit | None, str, str, str | None]

# -- deterministic rules --------------------------------------------------------------------------------
_PUNCT = re.compile(r"[^\w\s]")

#: (slot, pattern). The text before the match is the subject, the text after it the value.
_SLOTS: list[tuple[str, re.Pattern[str]]] = [
    ("residence", re.compile(
        r"\b(?:lives?|living|resides?|residing|is based|settled) (?:in|at)\b|\b(?:moved|moving|relocated|relocating)"
        r" (?:back )?to\b|\bhome is (?:in|at)\b", re.IGNORECASE)),
    ("job", re.compile(
        r"\b(?:works?|working|is employed|employed) (?:as|at|for)\b|\b(?:job|position|role) is\b|"
        r"\b(?:was |got |has been )?(?:hired|promoted) (?:as|to|at|by)\b|\bis an? (?=\w+ (?:at|for)\b)", re.IGNORECASE)),
    ("relationship", re.compile(
        r"\b(?:is|got|became|has been) (?=(?:single|married|engaged|divorced|separated|widowed|dating)\b)|"
        r"\bbroke up with\b|\bis in a relationship with\b|\brelationship status is\b", re.IGNORECASE)),
    ("pet", re.compile(
        r"\b(?:dog|cat|pet|puppy|kitten)(?:'s name)? (?:is )?(?:named|called|is)\b", re.IGNORECASE)),
    ("age", re.compile(r"\b(?:is|turned|turns) (?=\d{1,3} (?:years? old|yo)\b)|\bage is\b|\baged (?=\d)", re.IGNORECASE)),
]
_FAVOURITE = re.compile(r"\b(?:favou?rite|preferred) ([a-z]+(?: [a-z]+)?) is\b", re.IGNORECASE)


def normalise(text: str) -> str:
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


@dataclass(frozen=True)
class Slot:
    name: str
    subject: str
    value: str


def slot_of(text: str, subject: str | None = None) -> Slot | None:
    """The slot a statement fills ("Alice lives in Lisbon" -> residence, Alice, Lisbon)."""
    found: tuple[str, re.Match[str]] | None = None
    favourite = _FAVOURITE.search(text)
    if favourite:
        found = ("favourite " + normalise(favourite.group(1)), favourite)
    else:
        for name, pattern in _SLOTS:
            match = pattern.search(text)
            if match:
                found = (name, match)
                break
    if found is None:
        return None
    name, match = found
    before = normalise(text[:match.start()])
    before = re.sub(r"\b(?:s|is|has|now|currently|recently|just|also|still)$", "", before).strip()
    before = re.sub(r"^(?:the )", "", before)
    # "The user" and "user" are one subject, whether it came from the model or from the text.
    who = re.sub(r"^(?:the )", "", normalise(subject)) if subject else before
    return Slot(name, who, normalise(text[match.end():]))


def _subject(item: MemoryItem) -> str | None:
    value = item.metadata.get("subject")
    return value if isinstance(value, str) and value.strip() else None


def _time_of(item: MemoryItem) -> datetime | None:
    return item.valid_from or item.event_time


def rule_decision(fact: NewFact, hits: Sequence[Hit]) -> tuple[str, Hit | None, str]:
    """``(action, target, reason)`` by the deterministic rules (see the module docstring)."""
    text = normalise(fact.text)
    for hit in hits:
        if normalise(hit.memory.text) == text:
            return "noop", hit, "same text as an existing memory"
    new_slot = slot_of(fact.text, fact.subject)
    for hit in hits:
        if new_slot is None:
            break
        old_slot = slot_of(hit.memory.text, _subject(hit.memory))
        if old_slot is None or old_slot.name != new_slot.name or not new_slot.subject \
                or old_slot.subject != new_slot.subject:
            continue
        if old_slot.value == new_slot.value or (new_slot.value and new_slot.value in old_slot.value):
            return "noop", hit, f"same {new_slot.name} as an existing memory"
        old_time = _time_of(hit.memory)
        if fact.time is not None and old_time is not None and fact.time < old_time:
            continue  # older news about the slot: kept as its own memory, not a replacement
        return "update", hit, f"{new_slot.name} of {new_slot.subject} changed"
    for hit in hits:
        if hit.parts.cosine is not None and hit.parts.cosine >= DUPLICATE_COSINE:
            return "noop", hit, f"near-duplicate of an existing memory (cosine {hit.parts.cosine:.2f})"
    return "add", None, "no existing memory says this"


# -- LLM decisions -----------------------------------------------------------------------------------
class DecisionAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    fact: int = 1
    decision: Literal["add", "update", "invalidate", "noop"]
    target: int | None = None
    reason: str = ""

    @field_validator("decision", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            return {"delete": "invalidate", "none": "noop", "skip": "noop", "supersede": "update"}.get(value, value)
        return value

    @field_validator("target", "fact", mode="before")
    @classmethod
    def _handle(cls, value: Any) -> Any:
        if isinstance(value, str):
            digits = re.findall(r"\d+", value)
            if not digits:
                return None if value.strip().lower() in ("", "null", "none") else value
            return int(digits[0])
        return value

    @field_validator("reason", mode="before")
    @classmethod
    def _reason(cls, value: Any) -> Any:
        return "" if value is None else value


DECIDE_SCHEMA: dict[str, Any] = {
    "title": "update_decisions",
    "type": "object",
    "properties": {
        "decisions": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "fact": {"type": "integer"},
                    "decision": {"type": "string", "enum": ["ADD", "UPDATE", "INVALIDATE", "NOOP"]},
                    "target": {"type": ["integer", "null"]},
                    "reason": {"type": "string"},
                },
                "required": ["fact", "decision", "target", "reason"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["decisions"],
    "additionalProperties": False,
}

_DECIDE_SYSTEM = """You keep a memory store consistent. For each new fact, compare it with the existing memories shown and decide:
- ADD: it is new information (target null);
- UPDATE: it replaces an existing memory about the same thing whose value changed (moved, new job, new favourite...); target = that memory;
- INVALIDATE: it says an existing memory is no longer true, without a replacement; target = that memory;
- NOOP: an existing memory already says the same; target = that memory.
Use only the memory numbers shown in brackets. Answer with one JSON object and nothing else:
{"decisions": [{"fact": <fact number>, "decision": "ADD|UPDATE|INVALIDATE|NOOP", "target": <memory number or null>, "reason": "<short reason>"}]}
with one entry per new fact."""


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d") if value else "no date"


def decide_messages(group: Sequence[tuple[NewFact, list[Hit]]]) -> tuple[list[dict[str, str]], dict[int, Hit]]:
    """The prompt for one group of facts, and the memory behind each handle shown."""
    handles: dict[int, Hit] = {}
    handle_of: dict[str, int] = {}
    for _, hits in group:
        for hit in hits:
            if hit.id not in handle_of:
                handle_of[hit.id] = len(handles) + 1
                handles[handle_of[hit.id]] = hit
    lines = ["Existing memories:"]
    lines += [f"[{h}] ({_when(_time_of(hit.memory))}) {' '.join(hit.text.split())[:500]}" for h, hit in handles.items()]
    lines += ["", "New facts:"]
    for number, (fact, hits) in enumerate(group, start=1):
        related = ", ".join(f"[{handle_of[hit.id]}]" for hit in hits)
        lines.append(f"Fact {number} ({_when(fact.time)}): {fact.text} -- most similar: {related}")
    return [{"role": "system", "content": _DECIDE_SYSTEM}, {"role": "user", "content": "\n".join(lines)}], handles


def _parse_decisions(text: str) -> tuple[list[DecisionAnswer], bool]:
    answers, repaired, _ = parse_items(text, "decisions", DecisionAnswer)
    return answers, repaired


# -- applying decisions ------------------------------------------------------------------------------
def candidates(ctx: OpContext, fact: NewFact, top_k: int = CANDIDATES) -> list[Hit]:
    """The cube's facts most like ``fact`` (looking for them is not a recall)."""
    return find(ctx, fact.text, top_k, filters=Filters(kind=list(FACT_KINDS)))


def _relevant(fact: NewFact, hits: Sequence[Hit]) -> list[Hit]:
    """Hits worth showing the LLM: sharing a content word with the fact (the subject's name
    counts, unlike in search, which drops speaker names from the lexical query), or close."""
    words = set(query_terms(fact.text, limit=64))
    return [h for h in hits
            if words & set(query_terms(h.memory.text, limit=256)) or (h.parts.cosine or 0.0) >= CANDIDATE_COSINE]


def apply_facts(ctx: OpContext, facts: Sequence[NewFact], *, llm: Any = None, actor: str | None = None,
                result: AddResult | None = None) -> AddResult:
    """Decide on each fact and write the outcome; returns (or extends) an ``AddResult``.

    Facts are handled in groups, one LLM call per group, and each group sees what the
    previous groups wrote. An exact duplicate or a fact with no similar memory needs no
    LLM call. A write that fails is recorded as a decision with action ``failed``. All the
    LLM calls share one deadline (``memkern.llm.deadline``); past it, the rules decide.
    """
    with llm_deadline():
        return _apply_facts(ctx, facts, llm=llm, actor=actor, result=result)


def _apply_facts(ctx: OpContext, facts: Sequence[NewFact], *, llm: Any, actor: str | None,
                 result: AddResult | None) -> AddResult:
    result = result if result is not None else AddResult()
    llm_actor = f"llm:{getattr(llm, 'name', 'llm')}" if llm is not None else None
    guarded = CubePolicy.of(ctx.cube.metadata).guard
    # Supersessions per source message over the whole call, grown by each group's final decisions;
    # when the facts span several groups, seeded by the rules first, so that a message whose
    # facts fall in different groups is caught before its first group is applied.
    contradicted: dict[str, set[str]] = {}
    if guarded and len(facts) > DECIDE_GROUP:  # one group counts its own decisions below
        for fact in facts:
            action, target, _ = rule_decision(fact, candidates(ctx, fact))
            _count_contradiction(contradicted, fact, action, target)
    for start in range(0, len(facts), DECIDE_GROUP):
        group = list(facts[start:start + DECIDE_GROUP])
        plans: list[Plan] = []
        ask: list[tuple[NewFact, list[Hit]]] = []
        slot_updates: list[tuple[str, Hit | None, str]] = []
        for fact in group:
            hits = candidates(ctx, fact)
            action, target, reason = rule_decision(fact, hits)
            relevant = _relevant(fact, hits)
            if llm is None or (action == "noop" and reason.startswith("same text")) or not relevant:
                plans.append((fact, action, target, reason, "rules", None))
            else:
                ask.append((fact, relevant))
                plans.append((fact, "", None, "", "", None))  # filled in below
                slot_updates.append((action, target, reason))
        if ask:
            answered = _decide_with_llm(llm, ask, llm_actor or "llm")
            # A changed slot ("lives in" X, then "moved to" Y, same subject) found by the rules is
            # precise: an answer that neither updates nor invalidates that memory (small models
            # echo the prompt or shift the fact numbers) does not override it.
            for i, ((action, target, reason), plan) in enumerate(zip(slot_updates, answered)):
                if action == "update" and target is not None and not (
                        plan[1] in ("update", "invalidate") and plan[2] is not None and plan[2].id == target.id):
                    answered[i] = (plan[0], action, target, reason, "rules",
                                   f"LLM decided {plan[1]} ({plan[3][:200]}); overridden by the slot rule")
            it = iter(answered)
            plans = [next(it) if not p[1] else p for p in plans]
        if guarded:
            plans = _quarantine_mass_contradictions(plans, contradicted)
        for fact, action, target, reason, decided_by, note in plans:
            result.decisions.append(
                _apply(ctx, fact, action, target, reason, decided_by, note, actor, result))
    return result


def _count_contradiction(targets: dict[str, set[str]], fact: NewFact, action: str, target: Hit | None) -> None:
    if action in ("update", "invalidate") and target is not None:
        for message in fact.provenance.message_ids or ["(no message)"]:
            targets.setdefault(message, set()).add(target.id)


def _quarantine_mass_contradictions(plans: list[Plan],
                                    targets: dict[str, set[str]]
                                    ) -> list[Plan]:
    """Turn the supersessions of a message that contradicts too many memories at once into
    quarantines; ``targets`` (message id -> memory ids it would supersede) is updated in place."""
    for fact, action, target, *_ in plans:
        _count_contradiction(targets, fact, action, target)
    suspects = {m for m, ids in targets.items() if len(ids) >= CONTRADICTION_LIMIT}
    if not suspects:
        return plans
    out: list[Plan] = []
    for fact, action, target, reason, decided_by, note in plans:
        messages = set(fact.provenance.message_ids or ["(no message)"])
        if action in ("update", "invalidate") and target is not None and messages & suspects:
            count = max(len(targets[m]) for m in messages & suspects)
            note = f"{action} of {target.id} held back: its message contradicts {count} memories at once"
            out.append((fact, "quarantine", target, reason, decided_by, note))
        else:
            out.append((fact, action, target, reason, decided_by, note))
    return out


def _shares_content(fact: NewFact, target: Hit) -> bool:
    """Whether the fact and the memory it would replace have a content word in common
    (speaker names aside) or fill the same slot."""
    new_words, old_words = query_terms(fact.text), query_terms(target.memory.text)
    # Who it is about (speaker, subject, the opening word) is shared by every memory of that
    # person: not a shared content word.
    names = set(query_terms(" ".join(filter(None, (fact.provenance.speaker, fact.subject,
                                                   target.memory.provenance.speaker, _subject(target.memory))))))
    names.update(new_words[:1] + old_words[:1])
    if (set(new_words) - names) & (set(old_words) - names):
        return True
    new, old = slot_of(fact.text, fact.subject), slot_of(target.memory.text, _subject(target.memory))
    return new is not None and old is not None and new.name == old.name


def _decide_with_llm(llm: Any, ask: list[tuple[NewFact, list[Hit]]], llm_actor: str
                     ) -> list[Plan]:
    messages, handles = decide_messages(ask)
    answer = ask_json(llm, messages, schema=DECIDE_SCHEMA, parse=_parse_decisions, operation="decide",
                      max_tokens=200 + 120 * len(ask))
    by_fact: dict[int, DecisionAnswer] = {}
    for decision in answer.value or []:
        by_fact.setdefault(decision.fact, decision)
    if len(ask) == 1 and not by_fact and answer.value:
        by_fact[1] = answer.value[0]
    out: list[Plan] = []
    for number, (fact, hits) in enumerate(ask, start=1):
        decision = by_fact.get(number)
        if decision is None:
            action, target, reason = rule_decision(fact, hits)
            why = answer.error if answer.value is None else f"no decision for fact {number} in the answer"
            out.append((fact, action, target, reason, "rules", f"LLM decision unavailable ({why}); decided by rules"))
            continue
        note = None if answer.status == "ok" else f"LLM answer {answer.status}"
        if decision.decision == "add":
            out.append((fact, "add", None, decision.reason, llm_actor, note))
            continue
        target = handles.get(decision.target) if decision.target is not None else None
        if target is None:
            shown = f"[{decision.target}]" if decision.target is not None else "no target"
            out.append((fact, "add", None, decision.reason, llm_actor,
                        f"{decision.decision.upper()} named {shown}, which is not a memory shown; added instead"))
            continue
        if decision.decision in ("update", "invalidate") and not _shares_content(fact, target):
            # A small model names a target that has nothing to do with the fact ("Congratulations!"
            # replacing "works as a nurse", "Glad the cat made the trip" invalidating "lives in
            # Lisbon"): superseding would hide a good memory. Added instead.
            out.append((fact, "add", None, decision.reason, llm_actor,
                        f"{decision.decision.upper()} of [{decision.target}] shares no content word with the "
                        "fact; added instead"))
            continue
        out.append((fact, decision.decision, target, decision.reason, llm_actor, note))
    return out


def _apply(ctx: OpContext, fact: NewFact, action: str, target: Hit | None, reason: str, decided_by: str,
           note: str | None, actor: str | None, result: AddResult) -> UpdateDecision:
    decision = UpdateDecision(action=action, fact=fact.text, target_id=target.id if target else None,
                              reason=reason, decided_by=decided_by, note=note)
    reason_text = f"{action} ({decided_by}): {reason}" if reason else f"{action} ({decided_by})"
    try:
        if action == "noop" and target is not None:
            ctx.kernel.store.record_access(ctx.cube.id, [target.id], utcnow())
            decision.memory_id = target.id
            result.duplicates.append(target.id)
        elif action == "update" and target is not None:
            current = versions.current(ctx, target.id)
            metadata = {**current.metadata, **fact.metadata}
            # The world changed when the new fact became true; a "change" dated before the
            # old version began is a correction of it (same validity start, no valid_to).
            since = fact.time or utcnow()
            if current.valid_from is not None and since < current.valid_from:
                since = current.valid_from
            updated = versions.update(ctx, target.id, text=fact.text, metadata=metadata, valid_from=since,
                                  event_time=fact.time, provenance=fact.provenance, reason=reason_text[:10_000],
                                  actor=decided_by)
            decision.memory_id = updated.id
            result.updated.append(updated)
        elif action == "invalidate" and target is not None:
            evidence = {"fact": fact.text, "message_ids": fact.provenance.message_ids,
                        "source_memory_ids": fact.metadata.get("source_memory_ids", [])}
            current = versions.current(ctx, target.id)
            at = fact.time
            if at is not None and current.valid_from is not None and at < current.valid_from:
                at = None  # dated before the memory began: it stops being true now
            invalidated = versions.invalidate(ctx, target.id, at=at, reason=reason_text[:10_000], actor=decided_by,
                                          metadata={"invalidated_by": evidence})
            decision.memory_id = invalidated.id
            result.updated.append(invalidated)
        elif action == "quarantine" and target is not None:
            held = NewFact(text=fact.text, kind=fact.kind, subject=fact.subject, time=fact.time,
                           provenance=fact.provenance, tags=fact.tags,
                           metadata={**fact.metadata, "would_supersede": target.id,
                                     "quarantine_reasons": ["contradicts_many"]})
            _add(ctx, held, actor, decision, result, state=LifecycleState.QUARANTINED)
        else:
            decision.action = "add"
            _add(ctx, fact, actor, decision, result)
    except MemkernError as exc:
        if decision.action == "add":
            decision.action, decision.note = "failed", f"write failed: {exc}"
            return decision
        # Superseding failed (a concurrent update, a duplicate text): keep the fact as its own memory.
        decision.note = f"{action} of {target.id if target else None} failed ({exc}); added instead"
        decision.action = "add"
        try:
            _add(ctx, fact, actor, decision, result)
        except MemkernError as again:
            decision.action, decision.note = "failed", f"{decision.note}; add failed too: {again}"
    return decision


def _add(ctx: OpContext, fact: NewFact, actor: str | None, decision: UpdateDecision, result: AddResult,
         state: LifecycleState = LifecycleState.ACTIVE) -> None:
    item = fact.to_item(ctx.cube.id, ctx.cube.owner, uuid4().hex)
    if state is not LifecycleState.ACTIVE:
        item = item.model_copy(update={"state": state})
    written = write_items(ctx.kernel, ctx.cube, [item], actor)
    if written.added:
        decision.memory_id = written.added[0].id
        result.added.extend(written.added)
    else:
        decision.action = "noop"
        decision.memory_id = written.duplicates[0] if written.duplicates else None
        decision.note = ((decision.note + "; ") if decision.note else "") + "already stored"
        result.duplicates.extend(written.duplicates)
