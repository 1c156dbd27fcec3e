"""What the zero-LLM profile rules read from real conversations, for a person to check.

    python scripts/measure_profile.py ../shared/data/locomo/locomo-dev.json ../shared/data/longmemeval/lme-dev.json

Runs ``memkern.organize.profile.statements`` over every distinct user turn of the given LoCoMo
and LongMemEval files, prints how many slot values each file yields per slot, then a fixed
random sample (``--sample``, seed ``--seed``) of values beside the words around them, so their
precision can be read and counted. The data are read from where they are; nothing is copied.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from memkern.organize.profile import statements


def user_turns(path: Path) -> Iterator[str]:
    """Every turn of a LoCoMo file (all speakers are people), or every user turn of a LongMemEval file."""
    data = json.loads(path.read_text(encoding="utf-8"))
    for record in data:
        if "conversation" in record:  # LoCoMo
            for key, session in record["conversation"].items():
                if key.startswith("session_") and isinstance(session, list):
                    yield from (turn["text"] for turn in session)
        else:  # LongMemEval
            for session in record["haystack_sessions"]:
                yield from (turn["content"] for turn in session if turn["role"] == "user")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--sample", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    found: list[tuple[str, str, str, str]] = []
    for path in args.files:
        for text in dict.fromkeys(user_turns(path)):  # each distinct turn once
            found += [(path.name, s.slot, s.value, text) for s in statements(text)]
    print(f"{len(found)} slot values")
    for (name, slot), n in sorted(Counter((f[0], f[1]) for f in found).items()):
        print(f"  {name:24} {slot:10} {n}")
    random.seed(args.seed)
    print(f"\nsample of {min(args.sample, len(found))} (seed {args.seed}): file, slot, value | the words around it")
    for name, slot, value, text in random.sample(found, min(args.sample, len(found))):
        at = max(0, text.lower().find(value.lower()))
        print(f"{name} {slot} {value!r} | {' '.join(text[max(0, at - 80):at + 60].split())}")


if __name__ == "__main__":
    main()
