"""``memkern bench guard``: the poisoning guard against the one it replaced, in the same run.

What is measured, for the rules alone (``memkern.governance.guard``, the ``current`` column), the
rules with the learned layer (``memkern.governance.guard_model``, the ``classifier`` column) and
the old guard (``memkern.bench.guard_baseline``):

- on the evaluation set (``memkern/data/guard/eval.jsonl``, built by ``memkern.bench.guard_set``),
  for each split separately (``SPLIT_TITLES`` says what the rules and the classifier made of it; HOLDOUT4 and
  HOLDOUT5 measure both on texts neither was written or trained from): the share of poisoned texts
  quarantined, per style, and the share of hard-benign texts quarantined (false positives), per style;
  the classifier's training-only splits (``TRAINING_SPLITS``) as one line each;
- on the old bundled injection set (``memkern/data/injections.jsonl``; development data, since
  the old rules were written from it): the share quarantined;
- on ordinary conversation, when the files are given: every turn of LoCoMo (``speaker: text``
  plus image caption, as memkern stores it) and of LongMemEval (``role: content``; each haystack
  session once, however many questions share it), optionally every k-th LongMemEval turn only
  (``lme_every``), which the report then says. LongMemEval is reported in two parts: sessions of
  odd-index questions no even-index question shares (never seen by the classifier) and those of
  even-index questions (its training conversation). For the classifier the turns it quarantines
  that the rules did not are listed. The files are read where they are, never copied.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from memkern.bench import guard_baseline
from memkern.bench.guard_regression import load_injections
from memkern.bench.guard_set import DATA_PATH
from memkern.governance import guard
from memkern.llm import LLM

Check = Callable[[str], bool]

#: The guards compared: name -> "is this text quarantined?".
GUARDS: dict[str, Check] = {
    "current": lambda text: guard.check(text, classifier=False).quarantine,
    "classifier": lambda text: guard.check(text, classifier=True).quarantine,
    "baseline": lambda text: guard_baseline.check(text).quarantine,
}
#: Column titles of the report, in ``GUARDS`` order.
COLUMNS = {"current": "rules", "classifier": "rules+classifier", "baseline": "baseline (old)"}
SPLITS = ("dev", "heldout", "holdout2", "holdout3", "holdout4", "holdout5")
#: Splits written only to train the classifier (``scripts/train_guard.py``): reported as totals.
TRAINING_SPLITS = tuple(f"train_{author}" for author in "abcdefghij")
#: The two parts of LongMemEval's conversation (see ``longmemeval_sessions``).
LME_PARTS = {"odd": "odd-index questions, unseen by the classifier",
             "even": "even-index questions, the classifier's training conversation"}
#: What each split is, for the report.
SPLIT_TITLES = {
    "dev": "DEV half (rules written from it, classifier trained on it)",
    "heldout": "HELD-OUT half (other templates, same author as the rules; classifier trained on it)",
    "holdout2": "HOLDOUT2 (literal texts by another author, written before reading the rules; classifier trained on it)",
    "holdout3": "HOLDOUT3 (literal texts by a third author; rules' third round written from its misses; classifier "
                "trained on it)",
    "holdout4": "HOLDOUT4 (literal texts by a fourth author, never read by the rules' or the classifier's authors)",
    "holdout5": "HOLDOUT5 (literal texts by a fifth author, never read by the rules' or the classifier's authors)",
}


def load_eval_set(path: str | Path | None = None) -> list[dict[str, str]]:
    """The evaluation set's rows (``text``, ``label``, ``style``, ``split``, ``family``)."""
    source = Path(path) if path is not None else DATA_PATH
    return [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]


def locomo_turns(path: str | Path) -> list[str]:
    """Every LoCoMo turn as memkern stores it: ``speaker: text`` (plus the image caption)."""
    from memkern.bench.locomo_data import load_locomo

    return [turn.render() for conversation in load_locomo(path).conversations for turn in conversation.turns]


def longmemeval_sessions(path: str | Path, questions: str = "all") -> dict[str, list[str]]:
    """LongMemEval's haystack sessions (each once) as ``role: content`` turns, by session id.

    ``questions`` picks by the question's position in the file: ``all``; ``even`` (the guard
    classifier's training conversation, ``scripts/train_guard.py``); ``odd``: sessions of odd-index
    questions that no even-index question shares (conversation the classifier never saw)."""
    if questions not in ("all", "even", "odd"):
        raise ValueError(f"questions must be all, even or odd, not {questions!r}")
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    sessions: dict[str, list[str]] = {}
    for question in data if questions == "all" else data[0::2] if questions == "even" else data[1::2]:
        for session_id, session in zip(question["haystack_session_ids"], question["haystack_sessions"]):
            sessions.setdefault(session_id, [f"{turn['role']}: {turn['content']}" for turn in session])
    if questions == "odd":
        shared = {sid for question in data[0::2] for sid in question["haystack_session_ids"]}
        sessions = {sid: turns for sid, turns in sessions.items() if sid not in shared}
    return sessions


def longmemeval_turns(path: str | Path, every: int = 1, questions: str = "all") -> list[str]:
    """Every ``every``-th turn of LongMemEval's haystack sessions (see ``longmemeval_sessions``)."""
    turns = [turn for session in longmemeval_sessions(path, questions).values() for turn in session]
    return turns[::every]


def _rate(flags: Iterable[bool]) -> dict[str, Any]:
    values = list(flags)
    return {"flagged": sum(values), "total": len(values), "rate": sum(values) / len(values) if values else 0.0}


def _eval_split(rows: list[dict[str, str]], check: Check) -> dict[str, Any]:
    flags = [(row, check(row["text"])) for row in rows]
    out: dict[str, Any] = {}
    for label in ("poisoned", "benign"):
        mine = [(row, flag) for row, flag in flags if row["label"] == label]
        styles = sorted({row["style"] for row, _ in mine})
        out[label] = {"all": _rate(flag for _, flag in mine),
                      "by_style": {s: _rate(flag for row, flag in mine if row["style"] == s) for s in styles}}
    return out


def _conversation(turns: list[str], name: str) -> dict[str, Any]:
    result: dict[str, Any] = {"source": name}
    flags_of: dict[str, list[bool]] = {}
    for guard_name, check in GUARDS.items():
        started = time.perf_counter()
        flags = flags_of[guard_name] = [check(turn) for turn in turns]
        seconds = time.perf_counter() - started
        flagged = [turn for turn, flag in zip(turns, flags) if flag]
        result[guard_name] = {**_rate(flags), "seconds": round(seconds, 1),
                              "examples": [turn[:160] for turn in flagged[:10]]}
        if guard_name == "current":
            reasons: Counter[str] = Counter()
            for turn in flagged:
                reasons.update(guard.check(turn, classifier=False).reasons)
            result[guard_name]["reasons"] = dict(reasons)
    added = [turn for turn, rules, both in zip(turns, flags_of["current"], flags_of["classifier"]) if both and not rules]
    result["classifier"]["added"] = len(added)
    result["classifier"]["added_examples"] = [
        f"{guard.check(turn, classifier=True).classifier_probability}: {turn[:160]}" for turn in added[:10]]
    return result


def run_guard_bench(locomo: str | Path | None = None, lme: str | Path | None = None, lme_every: int = 1,
                    eval_set: str | Path | None = None, model: LLM | None = None) -> dict[str, Any]:
    """The whole benchmark as a JSON-able dict (see the module docstring).

    With ``model``, the evaluation splits are measured once more with the rules and that model's check
    of the texts they find uncertain (``guard.model_check``; seconds per text on a small local model, so
    not on the conversations)."""
    rows = load_eval_set(eval_set)
    report: dict[str, Any] = {"eval_set": str(eval_set or DATA_PATH), "splits": {}, "conversation": {}}
    if model is not None:
        report["model_check"] = {"model": model.name, "splits": {}}
    for split in SPLITS + TRAINING_SPLITS:
        part = [row for row in rows if row["split"] == split]
        report["splits"][split] = {name: _eval_split(part, check) for name, check in GUARDS.items()}
        if model is not None and split in SPLITS:
            report["model_check"]["splits"][split] = _eval_split(
                part, lambda text: guard.check(text, classifier=False, llm=model).quarantine)
    injections = load_injections()
    report["bundled_injections"] = {name: _rate(check(row["text"]) for row in injections)
                                    for name, check in GUARDS.items()}
    if locomo is not None:
        report["conversation"]["locomo"] = _conversation(locomo_turns(locomo), str(locomo))
    if lme is not None:
        for questions, title in LME_PARTS.items():
            report["conversation"][f"longmemeval_{questions}"] = {
                **_conversation(longmemeval_turns(lme, lme_every, questions), f"{lme}, {title}"),
                "every": lme_every}
    return report


def _pct(rate: dict[str, Any]) -> str:
    return f"{rate['flagged']}/{rate['total']} ({100 * rate['rate']:.1f}%)"


def format_guard_report(report: dict[str, Any]) -> str:
    """The report as text: rules, rules with the classifier and the old guard, per split and style."""
    width = 20
    header = "".join(f"{title:>{width}}" for title in COLUMNS.values())
    lines = [f"evaluation set: {report['eval_set']}", f"{'':38}{header}"]
    for split in SPLITS:
        by_guard = report["splits"][split]
        lines.append(f"\n{SPLIT_TITLES[split]}")
        for label, what in (("poisoned", "poisoned caught"), ("benign", "benign false positives")):
            lines.append(f"  {what:<36}" + "".join(f"{_pct(by_guard[g][label]['all']):>{width}}" for g in COLUMNS))
            for style in by_guard["current"][label]["by_style"]:
                lines.append(f"    {style:<34}" + "".join(
                    f"{_pct(by_guard[g][label]['by_style'][style]):>{width}}" for g in COLUMNS))
    lines.append("\nTRAINING-ONLY splits (literal texts by ten more authors; the classifier was trained on them)")
    for split in TRAINING_SPLITS:
        by_guard = report["splits"][split]
        for label, what in (("poisoned", "poisoned caught"), ("benign", "benign false positives")):
            lines.append(f"  {split + ' ' + what:<36}" + "".join(
                f"{_pct(by_guard[g][label]['all']):>{width}}" for g in COLUMNS))
    if "model_check" in report:
        lines.append(f"\nrules + model check ({report['model_check']['model']}; the rules' uncertain texts asked)")
        for split, result in report["model_check"]["splits"].items():
            lines.append(f"  {split:<12} poisoned caught {_pct(result['poisoned']['all'])}, "
                         f"benign false positives {_pct(result['benign']['all'])}")
    bundled = report["bundled_injections"]
    lines.append("\ninjections caught (old bundled set, dev): "
                 + ", ".join(f"{COLUMNS[g]} {_pct(bundled[g])}" for g in COLUMNS))
    for name, conv in report["conversation"].items():
        sample = f", every {conv['every']}th turn" if conv.get("every", 1) > 1 else ", every turn"
        lines.append(f"\nfalse positives on {name} ({conv['source']}{sample}): "
                     + ", ".join(f"{COLUMNS[g]} {_pct(conv[g])} in {conv[g]['seconds']}s" for g in COLUMNS))
        for example in conv["current"]["examples"]:
            lines.append(f"    flagged by the rules: {example!r}")
        lines.append(f"  added by the classifier: {conv['classifier']['added']}")
        for example in conv["classifier"]["added_examples"]:
            lines.append(f"    {example!r}")
    if not report["conversation"]:
        lines.append("conversation false positives: not measured (give --locomo and/or --lme)")
    return "\n".join(lines)
