"""LoCoMo answer quality: the original token F1 per category, and an optional LLM judge (J).

**F1** follows the scorer of the LoCoMo paper (``task_eval/evaluation.py`` of snap-research/locomo):

* normalisation: remove commas; lowercase; strip ASCII punctuation; drop the words a/an/the/and;
  collapse whitespace; Porter-stem every token (snowballstemmer's ``porter`` algorithm, the original
  Porter stemmer); F1 of the multiset overlap of prediction and gold tokens;
* category 1 (multi-hop): the gold is split on commas and the score is the mean, over the gold
  parts, of the best F1 of that part against any comma-separated part of the prediction (the
  prediction is split *before* normalisation removes its commas);
* category 3 (open-domain): the gold is cut at its first ``;``;
* categories 2 and 4: plain F1;
* category 5 (adversarial, unanswerable): 1 when the answer says the information is not available
  (:func:`says_not_available`), else 0. The original accepts only "no information available" and
  "not mentioned"; this accepts the wider list in ``NOT_AVAILABLE_PHRASES``, so that the score does
  not depend on which refusal wording a model happens to use.

**J** asks a judge model whether the answer is CORRECT or WRONG against the gold answer, with the
stored prompt :data:`JUDGE_PROMPT` (its sha256, :data:`JUDGE_PROMPT_SHA256`, goes into the run's
config), and expects ``{"verdict": "CORRECT"|"WRONG"}``. It is asked for categories 1-4 only:
category 5 has no gold answer to judge against and is scored by the rule above.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import snowballstemmer

from memkern.bench.conditions import DoesNotFit
from memkern.errors import LLMError

__all__ = [
    "JUDGE_PROMPT",
    "JUDGE_PROMPT_SHA256",
    "JUDGE_SCHEMA",
    "NOT_AVAILABLE_PHRASES",
    "AnswerRecorder",
    "Verdict",
    "answer_tokens",
    "did_not_fit_summary",
    "gold_answer",
    "judge_answer",
    "judge_messages",
    "make_judge",
    "multi_part_f1",
    "normalize_answer",
    "says_not_available",
    "score_answer",
    "token_f1",
]

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the|and)\b")
_STEMMER = snowballstemmer.stemmer("porter")

#: Phrases that mean "the memories do not say" (matched lower-cased, anywhere in the answer).
NOT_AVAILABLE_PHRASES = (
    "not available", "no information", "not mentioned", "unknown", "cannot be determined",
    "can't be determined", "cannot determine", "can't determine", "not specified", "not stated",
    "not provided", "no mention", "not enough information", "insufficient information", "no record",
    "does not say", "doesn't say", "do not say", "don't say", "don't know", "do not know", "not in memory",
    "not in the memories", "no memories", "not known", "no data", "unanswerable", "not answerable",
    "cannot answer", "can't answer", "unable to answer", "unable to determine", "not clear from",
)


def normalize_answer(text: str) -> str:
    """LoCoMo's ``normalize_answer``: commas removed, lower case, punctuation stripped, a/an/the/and
    dropped, whitespace collapsed."""
    text = str(text).replace(",", "").lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def answer_tokens(text: str) -> list[str]:
    """The Porter-stemmed tokens of the normalised text."""
    return _STEMMER.stemWords(normalize_answer(text).split())


def token_f1(prediction: str, gold: str) -> float:
    """F1 of the multiset overlap of stemmed, normalised tokens (0 when either side is empty)."""
    predicted, expected = answer_tokens(prediction), answer_tokens(gold)
    common = Counter(predicted) & Counter(expected)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(predicted)
    recall = same / len(expected)
    return 2 * precision * recall / (precision + recall)


def multi_part_f1(prediction: str, gold: str) -> float:
    """Category 1: mean over comma-separated gold parts of the best F1 against any predicted part."""
    predictions = [p.strip() for p in str(prediction).split(",")]
    golds = [g.strip() for g in str(gold).split(",")]
    return sum(max(token_f1(p, g) for p in predictions) for g in golds) / len(golds)


def says_not_available(answer: str) -> bool:
    """True when the answer says the information is not available (see ``NOT_AVAILABLE_PHRASES``)."""
    text = " ".join(str(answer).lower().replace("’", "'").split())
    return any(phrase in text for phrase in NOT_AVAILABLE_PHRASES)


def gold_answer(answer: str, category: int) -> str:
    """The gold answer as scored: category 3 keeps the part before the first ``;``."""
    answer = str(answer)
    return answer.split(";")[0].strip() if category == 3 else answer


def score_answer(prediction: str, gold: str, category: int) -> float:
    """The LoCoMo F1 of one answer, by category (see the module docstring)."""
    if category == 5:
        return 1.0 if says_not_available(prediction) else 0.0
    gold = gold_answer(gold, category)
    if category == 1:
        return multi_part_f1(prediction, gold)
    return token_f1(prediction, gold)


# ------------------------------------------------------------------------------------------ judge

JUDGE_PROMPT = """You grade answers to questions about a long conversation between two people.
You are given the question, the gold (correct) answer and a generated answer. Decide whether the generated answer is CORRECT or WRONG.

Be generous about form: the generated answer may be longer or shorter than the gold answer, use other words, or add detail; it is CORRECT as long as it gives the same fact, person, thing or time as the gold answer.
For dates and times, another format or a relative expression that names the same date or period (for example "the Sunday before 25 May 2023" for "21 May 2023") is CORRECT; a different date or period is WRONG.
When the gold answer lists several items, the generated answer must give the main ones; an answer missing most of them, or one that says the information is not available, is WRONG.
An answer that contradicts the gold answer is WRONG.

Reply with one JSON object and nothing else: {"verdict": "CORRECT"} or {"verdict": "WRONG"}."""

JUDGE_PROMPT_SHA256 = hashlib.sha256(JUDGE_PROMPT.encode("utf-8")).hexdigest()

JUDGE_SCHEMA: dict[str, Any] = {
    "title": "judge_verdict",
    "type": "object",
    "properties": {"verdict": {"type": "string", "enum": ["CORRECT", "WRONG"]}},
    "required": ["verdict"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class Verdict:
    """One judgement: ``correct`` is None when the judge failed (no usable answer)."""

    correct: bool | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None


def judge_messages(question: str, gold: str, answer: str) -> list[dict[str, str]]:
    user = f"Question: {question}\nGold answer: {gold}\nGenerated answer: {answer}"
    return [{"role": "system", "content": JUDGE_PROMPT}, {"role": "user", "content": user}]


_VERDICT = re.compile(r"\b(CORRECT|WRONG)\b")


def _parse_verdict(text: str) -> bool | None:
    stripped = text.strip()
    try:
        value = json.loads(stripped)
    except ValueError:
        value = None
    if isinstance(value, dict) and isinstance(value.get("verdict"), str):
        verdict = value["verdict"].strip().upper()
        if verdict in ("CORRECT", "WRONG"):
            return verdict == "CORRECT"
    # A judge that ignored the format: take the verdict word when exactly one kind appears.
    found = set(_VERDICT.findall(stripped.upper()))
    return found == {"CORRECT"} if len(found) == 1 else None


def judge_answer(llm: Any, question: str, gold: str, answer: str, *, max_tokens: int = 64) -> Verdict:
    """Ask ``llm`` whether ``answer`` matches ``gold``; never raises for a judge failure."""
    try:
        response = llm.complete(judge_messages(question, gold, answer), json_schema=JUDGE_SCHEMA,
                                max_tokens=max_tokens, temperature=0.0, operation="judge")
    except LLMError as exc:
        return Verdict(None, error=str(exc))
    correct = _parse_verdict(response.text)
    return Verdict(correct, response.prompt_tokens, response.completion_tokens,
                   None if correct is not None else f"unparseable verdict: {response.text[:200]!r}")


def mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


# ------------------------------------------------------------------------------------ the QA run

_CATEGORY_GROUPS = (("1-4", (1, 2, 3, 4)), ("all", (1, 2, 3, 4, 5)))


@dataclass
class _Record:
    sample_id: str
    question: str
    category: int
    gold: str
    answer: str
    f1: float
    j: bool | None
    latency_s: float
    calls: int
    prompt_tokens: int
    completion_tokens: int
    error: str | None = None


class AnswerRecorder:
    """Answers questions through an adapter's ``answer(question, llm, top_k)``, scores them (F1, and J
    with a judge) and summarises per category, with the answer model's usage and latency.

    ``limit`` caps the questions answered (the first ones in data order); None answers all.
    ``condition`` (``memkern.bench.conditions``) is passed to the adapter's ``answer`` when given; a
    question whose full history does not fit the model is counted in ``did_not_fit``, not scored."""

    def __init__(self, answer_llm: Any, judge_llm: Any = None, *, top_k: int = 10, limit: int | None = None,
                 condition: str | None = None):
        self.answer_llm = answer_llm
        self.judge_llm = judge_llm
        self.top_k = top_k
        self.limit = limit
        self.condition = condition
        self.records: list[_Record] = []
        #: Context tokens of the questions whose full history did not fit (not answered, not scored).
        self.did_not_fit: list[int] = []
        self.judge_calls = 0
        self.judge_failures = 0
        self.judge_prompt_tokens = 0
        self.judge_completion_tokens = 0

    def wants_more(self) -> bool:
        return self.limit is None or len(self.records) + len(self.did_not_fit) < self.limit

    def answer(self, adapter: Any, sample_id: str, question: Any) -> None:
        """Answer and score one ``memkern.bench.locomo_data.Question``."""
        if not self.wants_more():
            return
        category = int(question.category)
        gold = question.answer if category != 5 else ""
        started = time.perf_counter()
        error: str | None = None
        try:
            if self.condition is None:
                result = adapter.answer(question.text, self.answer_llm, self.top_k)
            else:
                result = adapter.answer(question.text, self.answer_llm, self.top_k, condition=self.condition)
            text = str(result.answer)
            usage = result.usage
            calls, prompt_tokens, completion_tokens = usage.calls, usage.prompt_tokens, usage.completion_tokens
        except LLMError as exc:
            text, calls, prompt_tokens, completion_tokens, error = "", 0, 0, 0, str(exc)
        except DoesNotFit as exc:
            self.did_not_fit.append(exc.tokens)
            return
        latency = time.perf_counter() - started
        f1 = score_answer(text, gold, category)
        verdict: bool | None = None
        if self.judge_llm is not None and category != 5 and gold:
            judged = judge_answer(self.judge_llm, question.text, gold_answer(gold, category), text)
            self.judge_calls += 1
            self.judge_failures += int(judged.correct is None)
            self.judge_prompt_tokens += judged.prompt_tokens
            self.judge_completion_tokens += judged.completion_tokens
            verdict = judged.correct
        self.records.append(_Record(sample_id, question.text, category, gold or (question.adversarial_answer or ""),
                                    text, f1, verdict, latency, calls, prompt_tokens, completion_tokens, error))

    def summary(self) -> dict[str, Any]:
        from memkern.bench.metrics import percentile_ms

        by_category: dict[str, dict[str, Any]] = {}
        present = sorted({r.category for r in self.records} | {1, 2, 3, 4, 5})
        groups = [(str(c), (c,)) for c in present] + list(_CATEGORY_GROUPS)
        for name, categories in groups:
            rows = [r for r in self.records if r.category in categories]
            judged = [r.j for r in rows if r.j is not None]
            entry: dict[str, Any] = {"n": len(rows), "f1": mean([r.f1 for r in rows]),
                                     "n_failed": sum(1 for r in rows if r.error)}
            if self.judge_llm is not None:
                entry["j"] = mean([float(v) for v in judged])
                entry["n_judged"] = len(judged)
            by_category[name] = entry
        n = len(self.records)
        calls = sum(r.calls for r in self.records)
        prompt = sum(r.prompt_tokens for r in self.records)
        completion = sum(r.completion_tokens for r in self.records)

        def per_q(value: int) -> float | None:
            return round(value / n, 2) if n else None

        out: dict[str, Any] = {
            "categories": by_category,
            "questions_answered": n,
            "llm": {"model": _name(self.answer_llm), "calls": calls, "prompt_tokens": prompt,
                    "completion_tokens": completion, "failures": sum(1 for r in self.records if r.error),
                    "calls_per_question": per_q(calls), "tokens_per_question": per_q(prompt + completion),
                    "prompt_tokens_per_question": per_q(prompt),
                    "completion_tokens_per_question": per_q(completion)},
            "latency_ms_p50": percentile_ms([r.latency_s for r in self.records], 50),
            "latency_ms_p95": percentile_ms([r.latency_s for r in self.records], 95),
            "answers": [{"sample_id": r.sample_id, "category": r.category, "question": r.question, "gold": r.gold,
                         "answer": r.answer, "f1": round(r.f1, 4), "j": r.j,
                         "latency_ms": round(r.latency_s * 1000, 1), **({"error": r.error} if r.error else {})}
                        for r in self.records],
        }
        if self.condition is not None:
            out["condition"] = self.condition
        if self.did_not_fit:
            out["did_not_fit"] = did_not_fit_summary(self.did_not_fit, self.answer_llm)
        if self.judge_llm is not None:
            out["judge"] = {"model": _name(self.judge_llm), "calls": self.judge_calls,
                            "failures": self.judge_failures, "prompt_tokens": self.judge_prompt_tokens,
                            "completion_tokens": self.judge_completion_tokens}
        return out


def did_not_fit_summary(tokens: Sequence[int], llm: Any) -> dict[str, Any]:
    """How many questions' full history did not fit the model's window, and how long they were."""
    ordered = sorted(tokens)
    return {"n": len(ordered), "context_window": getattr(llm, "n_ctx", None),
            "history_tokens_min": ordered[0], "history_tokens_median": ordered[len(ordered) // 2],
            "history_tokens_max": ordered[-1]}


def _name(llm: Any) -> str | None:
    if llm is None:
        return None
    return str(getattr(llm, "name", None) or getattr(llm, "model", None) or type(llm).__name__)


def make_judge(model: str | None, base_url: str | None) -> Any:
    """The judge for ``--judge-model M --judge-base-url U``: an OpenAI-compatible endpoint (``base_url``
    defaults to ``MEMKERN_LLM_BASE_URL``; key from ``MEMKERN_LLM_API_KEY`` or ``OPENAI_API_KEY``; calls
    cached in ``MEMKERN_LLM_CACHE`` when set). None when neither option is given."""
    import os

    from memkern.errors import InvalidInputError

    if model is None and base_url is None:
        return None
    env = {name: (os.environ.get(name) or "").strip() or None
           for name in ("MEMKERN_LLM_BASE_URL", "MEMKERN_LLM_API_KEY", "OPENAI_API_KEY", "MEMKERN_LLM_CACHE")}
    base_url = base_url or env["MEMKERN_LLM_BASE_URL"]
    if not model or not model.strip():
        raise InvalidInputError("the judge needs --judge-model (and --judge-base-url or MEMKERN_LLM_BASE_URL)")
    if not base_url:
        raise InvalidInputError("the judge needs --judge-base-url (or MEMKERN_LLM_BASE_URL), e.g. "
                                "http://localhost:11434/v1")
    from memkern.llm.http import OpenAICompatibleLLM

    cache = None
    if env["MEMKERN_LLM_CACHE"]:
        from memkern.llm.cache import CallCache

        cache = CallCache(env["MEMKERN_LLM_CACHE"])
    return OpenAICompatibleLLM(base_url, model.strip(), api_key=env["MEMKERN_LLM_API_KEY"] or env["OPENAI_API_KEY"],
                               cache=cache)
