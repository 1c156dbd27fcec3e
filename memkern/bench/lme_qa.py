"""LongMemEval answer quality: the paper's judge prompts per question type, or a rule when there is no judge.

**Judge** (a model given with ``--judge-model``): the prompts of LongMemEval's evaluation script
(``src/evaluation/evaluate_qa.py``, ``get_anscheck_prompt``), one per question type and one for
abstention questions, asked at temperature 0 with 10 tokens; the answer is correct when the judge's
reply contains "yes" (the script's rule). The paper's judge is GPT-4o.

**Without a judge** (stated in the result's ``config.answer.scoring``): an abstention question
(``_abs`` id) is correct when the answer says the information is not available
(``memkern.bench.qa.says_not_available``); any other is correct when the normalised gold answer
(LoCoMo's normalisation: lower case, punctuation, commas and a/an/the/and removed) appears, as whole
words, in the normalised answer ("exact containment"), and its token F1 is reported beside it. The
rule is stricter than a judge (a correct answer in other words is counted wrong) and cannot score
``single-session-preference`` (its gold is a rubric, not an answer): read those as a floor.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from memkern.bench.conditions import DoesNotFit
from memkern.bench.qa import did_not_fit_summary, mean, normalize_answer, says_not_available, token_f1
from memkern.errors import LLMError

__all__ = ["JUDGE_TEMPLATES", "LmeAnswerRecorder", "judge_prompt", "judge_prompts_sha256", "rule_correct",
           "stratified_subset"]

_INTRO = "I will give you a question, a correct answer, and a response from a model. "
_CONTAINS = ("Please answer yes if the response contains the correct answer. Otherwise, answer no. If the response "
             "is equivalent to the correct answer or contains all the intermediate steps to get the correct answer, "
             "you should also answer yes. If the response only contains a subset of the information required by "
             "the answer, answer no. ")
_TAIL = "\n\nQuestion: {}\n\nCorrect Answer: {}\n\nModel Response: {}\n\nIs the model response correct? Answer yes or no only."

#: LongMemEval's judge prompts (``get_anscheck_prompt``), by question type; ``"abstention"`` for ``_abs`` ids.
JUDGE_TEMPLATES: dict[str, str] = {
    "single-session-user": _INTRO + _CONTAINS + _TAIL,
    "single-session-assistant": _INTRO + _CONTAINS + _TAIL,
    "multi-session": _INTRO + _CONTAINS + _TAIL,
    "temporal-reasoning": _INTRO + _CONTAINS + (
        "In addition, do not penalize off-by-one errors for the number of days. If the question asks for the number "
        "of days/weeks/months, etc., and the model makes off-by-one errors (e.g., predicting 19 days when the answer "
        "is 18), the model's response is still correct. ") + _TAIL,
    "knowledge-update": _INTRO + (
        "Please answer yes if the response contains the correct answer. Otherwise, answer no. If the response "
        "contains some previous information along with an updated answer, the response should be considered as "
        "correct as long as the updated answer is the required answer.") + _TAIL,
    "single-session-preference": (
        "I will give you a question, a rubric for desired personalized response, and a response from a model. "
        "Please answer yes if the response satisfies the desired response. Otherwise, answer no. The model does not "
        "need to reflect all the points in the rubric. The response is correct as long as it recalls and utilizes "
        "the user's personal information correctly.\n\nQuestion: {}\n\nRubric: {}\n\nModel Response: {}\n\n"
        "Is the model response correct? Answer yes or no only."),
    "abstention": (
        "I will give you an unanswerable question, an explanation, and a response from a model. Please answer yes "
        "if the model correctly identifies the question as unanswerable. The model could say that the information "
        "is incomplete, or some other information is given but the asked information is not.\n\nQuestion: {}\n\n"
        "Explanation: {}\n\nModel Response: {}\n\nDoes the model correctly identify the question as unanswerable? "
        "Answer yes or no only."),
}


def judge_prompts_sha256() -> str:
    """One sha256 over every judge template, in name order (recorded with a judged run)."""
    joined = "\n\0".join(f"{name}\n{JUDGE_TEMPLATES[name]}" for name in sorted(JUDGE_TEMPLATES))
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()


def judge_prompt(question_type: str, question: str, gold: str, response: str, abstention: bool) -> str:
    """The judge's prompt for one answer (unknown types take the plain template, as multi-session)."""
    template = JUDGE_TEMPLATES["abstention" if abstention else question_type] if (
        abstention or question_type in JUDGE_TEMPLATES) else JUDGE_TEMPLATES["multi-session"]
    return template.format(question, gold, response)


def rule_correct(answer: str, gold: str, abstention: bool) -> bool:
    """The scoring without a judge (module docstring): refusal for abstention, else whole-word containment."""
    if abstention:
        return says_not_available(answer)
    expected, said = normalize_answer(gold), normalize_answer(answer)
    return bool(expected) and f" {expected} " in f" {said} "


def stratified_subset(questions: Sequence[Any], n: int) -> list[Any]:
    """``n`` questions spread over the strata (question type, and abstention or not): one from each
    stratum in turn (strata in name order, questions in file order) until ``n``. Fixed for a file."""
    strata: dict[tuple[str, bool], list[Any]] = {}
    for question in questions:
        strata.setdefault((question.type, question.abstention), []).append(question)
    chosen: list[Any] = []
    depth = 0
    while len(chosen) < min(n, len(questions)):
        for key in sorted(strata):
            if depth < len(strata[key]) and len(chosen) < n:
                chosen.append(strata[key][depth])
        depth += 1
    keep = {id(q) for q in chosen}
    return [q for q in questions if id(q) in keep]


@dataclass
class _Answer:
    id: str
    type: str
    abstention: bool
    question: str
    gold: str
    answer: str
    correct: bool | None
    f1: float | None
    latency_s: float
    calls: int
    prompt_tokens: int
    completion_tokens: int
    error: str | None = None


class LmeAnswerRecorder:
    """Answers LongMemEval questions through an adapter's ``answer(question, llm, top_k, condition=)``
    and scores them (judge, or the rule), per question type, abstention and overall."""

    def __init__(self, answer_llm: Any, judge_llm: Any = None, *, top_k: int = 10, condition: str = "organised"):
        self.answer_llm = answer_llm
        self.judge_llm = judge_llm
        self.top_k = top_k
        self.condition = condition
        self.records: list[_Answer] = []
        self.did_not_fit: list[int] = []
        self.judge_calls = 0
        self.judge_failures = 0

    def answer(self, adapter: Any, question: Any) -> None:
        started = time.perf_counter()
        error = None
        try:
            result = adapter.answer(question.text, self.answer_llm, self.top_k, condition=self.condition)
            text, usage = str(result.answer), result.usage
            calls, prompt_tokens, completion_tokens = usage.calls, usage.prompt_tokens, usage.completion_tokens
        except DoesNotFit as exc:
            self.did_not_fit.append(exc.tokens)
            return
        except LLMError as exc:
            text, calls, prompt_tokens, completion_tokens, error = "", 0, 0, 0, str(exc)
        latency = time.perf_counter() - started
        correct = self._judge(question, text) if self.judge_llm is not None and not error else (
            rule_correct(text, question.answer, question.abstention))
        f1 = None if question.abstention else token_f1(text, question.answer)
        self.records.append(_Answer(question.id, question.type, question.abstention, question.text, question.answer,
                                    text, correct, f1, latency, calls, prompt_tokens, completion_tokens, error))

    def _judge(self, question: Any, text: str) -> bool | None:
        prompt = judge_prompt(question.type, question.text, question.answer, text, question.abstention)
        self.judge_calls += 1
        try:
            reply = self.judge_llm.complete([{"role": "user", "content": prompt}], max_tokens=10, temperature=0.0,
                                            operation="judge")
        except LLMError:
            self.judge_failures += 1
            return None
        return "yes" in reply.text.lower()

    def summary(self) -> dict[str, Any]:
        from memkern.bench.metrics import percentile_ms

        groups: list[tuple[str, list[_Answer]]] = [
            (name, [r for r in self.records if r.type == name]) for name in sorted({r.type for r in self.records})]
        groups += [("abstention", [r for r in self.records if r.abstention]), ("overall", list(self.records))]
        types: dict[str, Any] = {}
        for name, rows in groups:
            scored = [r for r in rows if r.correct is not None]
            f1s = [r.f1 for r in rows if r.f1 is not None]
            types[name] = {"n": len(rows), "n_correct": sum(1 for r in scored if r.correct),
                           "accuracy": mean([float(bool(r.correct)) for r in scored]),
                           "f1": mean(f1s), "n_failed": sum(1 for r in rows if r.error)}
        n = len(self.records)
        prompt = sum(r.prompt_tokens for r in self.records)
        completion = sum(r.completion_tokens for r in self.records)
        out: dict[str, Any] = {
            "condition": self.condition,
            "types": types,
            "questions_answered": n,
            "llm": {"calls": sum(r.calls for r in self.records), "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "tokens_per_question": round((prompt + completion) / n, 1) if n else None,
                    "prompt_tokens_per_question": round(prompt / n, 1) if n else None},
            "latency_ms_p50": percentile_ms([r.latency_s for r in self.records], 50),
            "latency_ms_p95": percentile_ms([r.latency_s for r in self.records], 95),
            "answers": [{"id": r.id, "type": r.type, "abstention": r.abstention, "question": r.question,
                         "gold": r.gold, "answer": r.answer, "correct": r.correct,
                         "f1": None if r.f1 is None else round(r.f1, 4),
                         "latency_ms": round(r.latency_s * 1000, 1), **({"error": r.error} if r.error else {})}
                        for r in self.records],
        }
        if self.did_not_fit:
            out["did_not_fit"] = did_not_fit_summary(self.did_not_fit, self.answer_llm)
        if self.judge_llm is not None:
            out["judge"] = {"calls": self.judge_calls, "failures": self.judge_failures}
        return out
