"""The poisoning guard on the old bundled injection set: a regression check, not a measure of generalisation.

The old rules were written from this set, and the current ones were checked against it while
being written, so it is development data. ``memkern bench guard`` (``memkern.bench.guard``) is
the real measure: a held-out half written with other templates, per style, against the old
guard in the same run.

- Catch rate: the share of ``memkern/data/injections.jsonl`` (hand-written injections of
  many kinds: instruction overrides, persona hijacks, system-prompt probes, chat-template
  role markers, tool/function-call payloads, exfiltration requests, directives to the
  model, hidden text, base64 blobs, obfuscated spellings, indirect injections in
  documents) that ``guard.check`` quarantines, overall and per category.
- False-positive rate: the share of LoCoMo turns (as memkern stores them: ``speaker: text
  [image: caption]``) that it quarantines. The data is read from the given file, never copied.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from memkern.governance.guard import check

INJECTIONS = "injections.jsonl"


def load_injections(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The injection set: one JSON object per line with ``id``, ``category`` and ``text``."""
    source = Path(path) if path is not None else Path(__file__).resolve().parent.parent / "data" / INJECTIONS
    return [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]


def _turn_texts(locomo_path: str | Path) -> list[str]:
    from memkern.bench.locomo_data import load_locomo
    from memkern.models import Message
    from memkern.reader.chat import render_turn

    data = load_locomo(locomo_path)
    return [render_turn(Message(role="user", name=t.speaker, content=t.text, image_caption=t.image_caption))
            for c in data.conversations for t in c.turns]


def evaluate(locomo_path: str | Path | None = None, injections_path: str | Path | None = None) -> dict[str, Any]:
    injections = load_injections(injections_path)
    per_category: dict[str, list[int]] = {}
    missed = []
    for row in injections:
        caught = check(row["text"]).quarantine
        per_category.setdefault(row["category"], [0, 0])
        per_category[row["category"]][0] += int(caught)
        per_category[row["category"]][1] += 1
        if not caught:
            missed.append(row["id"])
    caught_total = sum(c for c, _ in per_category.values())
    report: dict[str, Any] = {
        "injections": len(injections),
        "caught": caught_total,
        "catch_rate": caught_total / len(injections) if injections else 0.0,
        "per_category": {k: {"caught": c, "total": n} for k, (c, n) in sorted(per_category.items())},
        "missed": missed,
    }
    if locomo_path is not None:
        texts = _turn_texts(locomo_path)
        flagged = []
        reasons: Counter[str] = Counter()
        for position, text in enumerate(texts):
            verdict = check(text)
            if verdict.quarantine:
                flagged.append(position)
                reasons.update(verdict.reasons)
        report.update({
            "benign_turns": len(texts),
            "false_positives": len(flagged),
            "false_positive_rate": len(flagged) / len(texts) if texts else 0.0,
            "false_positive_positions": flagged[:50],
            "false_positive_reasons": dict(reasons),
        })
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [f"injections caught: {report['caught']}/{report['injections']} "
             f"({100 * report['catch_rate']:.1f}%)"]
    for category, counts in report["per_category"].items():
        lines.append(f"  {category:<14} {counts['caught']}/{counts['total']}")
    if report["missed"]:
        lines.append("  missed: " + ", ".join(report["missed"]))
    if "benign_turns" in report:
        lines.append(f"false positives on benign turns: {report['false_positives']}/{report['benign_turns']} "
                     f"({100 * report['false_positive_rate']:.2f}%)")
        if report["false_positive_reasons"]:
            lines.append("  reasons: " + ", ".join(f"{k}={v}" for k, v in report["false_positive_reasons"].items()))
    return "\n".join(lines)
