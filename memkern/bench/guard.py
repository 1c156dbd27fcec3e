"""``memkern bench guard``: the poisoning guard against the one it replaced, in the same run.

What is measured, for the current guard (``memkern.governance.guard``) and the old one
(``memkern.bench.guard_baseline``):

- on the evaluation set (``memkern/data/guard/eval.jsonl``, built by ``memkern.bench.guard_set``),
  for the DEV half (the rules were written from it), the HELD-OUT half (other templates,
  never used to write rules) and HOLDOUT2 (literal texts by another author) separately: the share of poisoned texts quarantined, per style,
  and the share of hard-benign texts quarantined (false positives), per style;
- on the old bundled injection set (``memkern/data/injections.jsonl``; development data, since
  the old rules were written from it): the share quarantined;
- on ordinary conversation, when the files are given: every turn of LoCoMo (``speaker: text``
  plus image caption, as memkern stores it) and of LongMemEval (``role: content``; each haystack
  session once, however many questions share it), optionally every k-th LongMemEval turn only
  (``lme_every``), which the report then says. The files are read where they are, never copied.
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

Check = Callable[[str], bool]

#: The guards compared: name -> "is this text quarantined?".
GUARDS: dict[str, Check] = {
    "current": lambda text: guard.check(text).quarantine,
    "baseline": lambda text: guard_baseline.check(text).quarantine,
}
SPLITS = ("dev", "heldout", "holdout2")
#: What each split is, for the report.
SPLIT_TITLES = {
    "dev": "DEV half (rules written from it)",
    "heldout": "HELD-OUT half (other templates, same author as the rules)",
    "holdout2": "HOLDOUT2 (literal texts by another author, written before reading the rules)",
}


def load_eval_set(path: str | Path | None = None) -> list[dict[str, str]]:
    """The evaluation set's rows (``text``, ``label``, ``style``, ``split``, ``family``)."""
    source = Path(path) if path is not None else DATA_PATH
    return [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]


def locomo_turns(path: str | Path) -> list[str]:
    """Every LoCoMo turn as memkern stores it: ``speaker: text`` (plus the image caption)."""
    from memkern.bench.locomo_data import load_locomo

    return [turn.render() for conversation in load_locomo(path).conversations for turn in conversation.turns]


def longmemeval_turns(path: str | Path, every: int = 1) -> list[str]:
    """Every ``every``-th turn of LongMemEval's haystack sessions (each session once): ``role: content``."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    sessions: dict[str, list[dict[str, Any]]] = {}
    for question in data:
        for session_id, session in zip(question["haystack_session_ids"], question["haystack_sessions"]):
            sessions.setdefault(session_id, session)
    turns = [f"{turn['role']}: {turn['content']}" for session in sessions.values() for turn in session]
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
    for guard_name, check in GUARDS.items():
        started = time.perf_counter()
        flags = [check(turn) for turn in turns]
        seconds = time.perf_counter() - started
        flagged = [turn for turn, flag in zip(turns, flags) if flag]
        result[guard_name] = {**_rate(flags), "seconds": round(seconds, 1),
                              "examples": [turn[:160] for turn in flagged[:10]]}
        if guard_name == "current":
            reasons: Counter[str] = Counter()
            for turn in flagged:
                reasons.update(guard.check(turn).reasons)
            result[guard_name]["reasons"] = dict(reasons)
    return result


def run_guard_bench(locomo: str | Path | None = None, lme: str | Path | None = None, lme_every: int = 1,
                    eval_set: str | Path | None = None) -> dict[str, Any]:
    """The whole benchmark as a JSON-able dict (see the module docstring)."""
    rows = load_eval_set(eval_set)
    report: dict[str, Any] = {"eval_set": str(eval_set or DATA_PATH), "splits": {}, "conversation": {}}
    for split in SPLITS:
        part = [row for row in rows if row["split"] == split]
        report["splits"][split] = {name: _eval_split(part, check) for name, check in GUARDS.items()}
    injections = load_injections()
    report["bundled_injections"] = {name: _rate(check(row["text"]) for row in injections)
                                    for name, check in GUARDS.items()}
    if locomo is not None:
        report["conversation"]["locomo"] = _conversation(locomo_turns(locomo), str(locomo))
    if lme is not None:
        report["conversation"]["longmemeval"] = {**_conversation(longmemeval_turns(lme, lme_every), str(lme)),
                                                 "every": lme_every}
    return report


def _pct(rate: dict[str, Any]) -> str:
    return f"{rate['flagged']}/{rate['total']} ({100 * rate['rate']:.1f}%)"


def format_guard_report(report: dict[str, Any]) -> str:
    """The report as text: current guard first, the old one as baseline, per split and style."""
    lines = [f"evaluation set: {report['eval_set']}", f"{'':38}{'current':>20}{'baseline (old)':>20}"]
    for split in SPLITS:
        by_guard = report["splits"][split]
        lines.append(f"\n{SPLIT_TITLES[split]}")
        for label, what in (("poisoned", "poisoned caught"), ("benign", "benign false positives")):
            cur, old = by_guard["current"][label], by_guard["baseline"][label]
            lines.append(f"  {what:<36}{_pct(cur['all']):>20}{_pct(old['all']):>20}")
            for style in cur["by_style"]:
                lines.append(f"    {style:<34}{_pct(cur['by_style'][style]):>20}"
                             f"{_pct(old['by_style'][style]):>20}")
    bundled = report["bundled_injections"]
    lines.append(f"\ninjections caught (old bundled set, dev): {_pct(bundled['current'])}"
                 f"   baseline: {_pct(bundled['baseline'])}")
    for name, conv in report["conversation"].items():
        sample = f", every {conv['every']}th turn" if conv.get("every", 1) > 1 else ", every turn"
        lines.append(f"false positives on {name} ({conv['source']}{sample}): "
                     f"current {_pct(conv['current'])} in {conv['current']['seconds']}s, "
                     f"baseline {_pct(conv['baseline'])} in {conv['baseline']['seconds']}s")
        for example in conv["current"]["examples"]:
            lines.append(f"    flagged: {example!r}")
    if not report["conversation"]:
        lines.append("conversation false positives: not measured (give --locomo and/or --lme)")
    return "\n".join(lines)
