"""``memkern bench parametric``: what a LoRA adapter distilled from a cube remembers, closed-book.

A temporary cube gets synthetic facts about a fictional person (``FACTS``: nothing a pretrained
model could know), ``distil`` trains an adapter on them, and the base model answers, without any
retrieval, with and without the adapter:

* held-in: the questions the adapter was trained on (its templated QA pairs, cloze pairs excluded);
* paraphrased: the same facts asked in words never seen in training (``FACTS`` gives one per fact).

An answer counts as correct when the expected answer appears in it (case- and punctuation-
insensitive substring match); token F1 is reported too. Training time, adapter size and the base
model load time are reported as measured.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

#: (fact as stored, expected short answer, paraphrased question never used in training).
FACTS: tuple[tuple[str, str, str], ...] = (
    ("Ilse Marwood lives in Tromsø.", "Tromsø", "In which town is Ilse Marwood's home?"),
    ("Ilse Marwood works as a glassblower.", "glassblower", "What is Ilse Marwood's profession?"),
    ("Ilse Marwood's cat is named Pimento.", "Pimento", "What name did Ilse Marwood give her cat?"),
    ("Ilse Marwood's favourite colour is ochre.", "ochre", "Which colour does Ilse Marwood like best?"),
    ("Ilse Marwood's sister is Hedda Marwood.", "Hedda", "What is the name of Ilse Marwood's sister?"),
    ("Ilse Marwood's car is a green Lada.", "Lada", "What does Ilse Marwood drive?"),
    ("Ilse Marwood's favourite food is beetroot soup.", "beetroot soup", "What does Ilse Marwood like to eat most?"),
    ("Ilse Marwood's birthday is on 14 November.", "14 November", "When was Ilse Marwood born, day and month?"),
    ("Ilse Marwood was born in Gdańsk.", "Gdańsk", "What is Ilse Marwood's city of birth?"),
    ("Ilse Marwood's dentist is Dr Okafor.", "Okafor", "Who does Ilse Marwood see about her teeth?"),
    ("Ilse Marwood's bicycle is a red tandem.", "tandem", "What kind of bike does Ilse Marwood ride?"),
    ("Ilse Marwood's favourite book is The Salt Road.", "Salt Road", "Which book does Ilse Marwood love most?"),
    ("Ilse Marwood's daughter is named Wren.", "Wren", "What is the name of Ilse Marwood's daughter?"),
    ("Ilse Marwood is allergic to hazelnuts.", "hazelnuts", "Which food must Ilse Marwood avoid because of an allergy?"),
    ("Ilse Marwood plays the bassoon.", "bassoon", "Which instrument does Ilse Marwood play?"),
    ("Ilse Marwood's boat is called the Kittiwake.", "Kittiwake", "What is the name of Ilse Marwood's boat?"),
    ("Ilse Marwood's favourite drink is rooibos tea.", "rooibos", "What does Ilse Marwood like to drink?"),
    ("Ilse Marwood works at Norrglass.", "Norrglass", "Which company employs Ilse Marwood?"),
    ("Ilse Marwood's neighbour is Mr Quist.", "Quist", "Who lives next door to Ilse Marwood?"),
    ("Ilse Marwood's dog is named Biscuit.", "Biscuit", "What is Ilse Marwood's dog's name?"),
    ("Ilse Marwood's lucky number is 47.", "47", "Which number does Ilse Marwood consider lucky?"),
    ("Ilse Marwood's shoe size is 39.", "39", "What size shoes does Ilse Marwood wear?"),
    ("Ilse Marwood's piano teacher is Agnes Lund.", "Agnes Lund", "Who teaches Ilse Marwood the piano?"),
    ("Ilse Marwood speaks Faroese.", "Faroese", "Which unusual language does Ilse Marwood know?"),
    ("Ilse Marwood collects brass keys.", "brass keys", "What does Ilse Marwood have a collection of?"),
    ("Ilse Marwood's best friend is Tove Brekke.", "Tove", "Who is Ilse Marwood closest to among her friends?"),
    ("Ilse Marwood's favourite film is Stalker.", "Stalker", "Which film does Ilse Marwood like best?"),
    ("Ilse Marwood grows chilli peppers.", "chilli", "What does Ilse Marwood grow?"),
    ("Ilse Marwood's street is Storgata.", "Storgata", "On which street does Ilse Marwood live?"),
    ("Ilse Marwood's mother is Greta Marwood.", "Greta", "What is the name of Ilse Marwood's mother?"),
)


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", text.lower())).strip()


def token_f1(prediction: str, gold: str) -> float:
    pred, ref = normalise(prediction).split(), normalise(gold).split()
    if not pred or not ref:
        return 0.0
    common = sum(min(pred.count(t), ref.count(t)) for t in set(ref))
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def score(predictions: Sequence[str], golds: Sequence[str]) -> dict[str, Any]:
    hits = [normalise(g) in normalise(p) for p, g in zip(predictions, golds)]
    f1 = [token_f1(p, g) for p, g in zip(predictions, golds)]
    n = max(1, len(golds))
    return {"n": len(golds), "correct": sum(hits), "accuracy": round(sum(hits) / n, 3),
            "token_f1": round(sum(f1) / n, 3)}


def run_parametric(*, facts: int = 30, epochs: int = 8, rank: int = 8, learning_rate: float = 2e-3,
                   seed: int = 0, progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Distil ``facts`` synthetic facts in a temporary store and measure closed-book answers."""
    from memkern import MemOS
    from memkern.memory.parametric import AdapterSession, distil
    from memkern.ops.context import OpContext

    chosen = FACTS[:max(1, min(facts, len(FACTS)))]
    with tempfile.TemporaryDirectory(prefix="memkern-bench-parametric-") as tmp, \
            MemOS(Path(tmp) / "bench.db", llm=None) as mos:
        cube = mos.create_cube("parametric-bench")
        for text, _, _ in chosen:
            cube.add(text=text, infer=False)
        ctx = OpContext(mos.kernel, None, cube.info)
        info = distil(ctx, max_facts=len(chosen), epochs=epochs, rank=rank, learning_rate=learning_rate,
                      seed=seed, out_dir=Path(tmp) / "adapters", progress=progress)
        gold_by_text = {t: a for t, a, _ in chosen}
        by_source = {m.version_id: m.text for m in cube.get_all()}
        held_in = [(qa["question"], gold_by_text[by_source[qa["source"]]]) for qa in info.qa
                   if qa["template"] != "cloze"]
        paraphrased = [(q, a) for _, a, q in chosen]
        result: dict[str, Any] = {
            "facts": len(chosen), "epochs": epochs, "rank": rank, "learning_rate": learning_rate, "seed": seed,
            "examples": info.metrics["examples"], "held_in_questions": len(held_in),
            "train_seconds": info.metrics["train_seconds"], "base_load_seconds": info.metrics["base_load_seconds"],
            "epoch_loss": info.metrics["epoch_loss"], "adapter_bytes": info.adapter_size,
            "trainable_parameters": info.metrics["trainable_parameters"], "samples": [],
        }
        for label, use in (("base", False), ("adapter", True)):
            start = time.perf_counter()
            with AdapterSession(ctx, use_adapter=use) as session:
                for split, items in (("held_in", held_in), ("paraphrased", paraphrased)):
                    answers = session.ask([q for q, _ in items], max_new_tokens=24)
                    result[f"{label}_{split}"] = score(answers, [a for _, a in items])
                    result["samples"].extend({"model": label, "split": split, "question": q, "expected": a,
                                              "answer": ans} for (q, a), ans in list(zip(items, answers))[:4])
                    if progress:
                        progress(f"{label} {split}", len(items), len(items))
            result[f"{label}_answer_seconds"] = round(time.perf_counter() - start, 1)
    return result


def format_report(result: dict[str, Any]) -> str:
    lines = [
        f"parametric memory: {result['facts']} synthetic facts -> {result['examples']} templated QA pairs, "
        f"LoRA rank {result['rank']} on q/k/v/o, {result['epochs']} epochs, lr {result['learning_rate']}",
        f"training {result['train_seconds']} s on the CPU (base model load {result['base_load_seconds']} s); "
        f"adapter {result['adapter_bytes'] / 1e6:.1f} MB, {result['trainable_parameters']:,} parameters; "
        f"loss per epoch {result['epoch_loss']}",
        "",
        f"{'closed-book (no retrieval)':<34}{'base model':>18}{'base + adapter':>18}",
    ]
    for split, label in (("held_in", "trained questions"), ("paraphrased", "paraphrased (unseen wording)")):
        cells = []
        for model in ("base", "adapter"):
            s = result[f"{model}_{split}"]
            cells.append(f"{s['correct']}/{s['n']} ({s['accuracy']:.0%}) F1 {s['token_f1']:.2f}")
        lines.append(f"{label:<34}{cells[0]:>18}{cells[1]:>18}")
    lines.append("")
    lines.append("accuracy: the expected answer appears in the model's answer (case/punctuation-insensitive)")
    return "\n".join(lines)
