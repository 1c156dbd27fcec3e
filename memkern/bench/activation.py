"""``memkern bench activation``: time to first token with a restored KV cache vs reading the block.

For each block size, a temporary cube is filled with real conversation text (the bundled demo
conversation, repeated over shifted dates, or LoCoMo turns with ``--data``), its activation is built
with that token budget, and the same prompt (block + retrieved memories + question) is answered
``reps`` times each way: from an empty slot (the model reads the whole prompt) and after restoring
the saved KV state (it reads only what follows the block). TTFT is the restore time plus llama.cpp's
prompt-processing time plus the first generated token; greedy outputs must be the same token ids.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import Any

DEFAULT_TOKENS = (512, 1024, 2048)
QUESTION = "Where does Alice live, and what does she do for work?"


def _demo_messages(copies: int) -> list[dict[str, Any]]:
    doc = json.loads(resources.files("memkern.data").joinpath("demo_conversation.json").read_text("utf-8"))
    messages = []
    for copy in range(copies):
        shift = timedelta(days=7 * copy)
        for session in doc["sessions"]:
            for m in session["messages"]:
                when = datetime.fromisoformat(m["time"].replace("Z", "+00:00")) + shift
                messages.append({"role": m["role"], "content": m["content"], "name": m.get("name"),
                                 "time": when, "id": f"{m['id']}-c{copy}"})
    return messages


def _locomo_messages(path: Path, limit: int) -> list[dict[str, Any]]:
    from memkern.bench import locomo_data

    messages: list[dict[str, Any]] = []
    for conv in locomo_data.load_locomo(path).conversations:
        for session in conv.sessions:
            for turn in session.turns:
                messages.append({"role": "user", "content": turn.text, "name": turn.speaker,
                                 "time": session.time, "id": f"{conv.sample_id}-{turn.dia_id}"})
                if len(messages) >= limit:
                    return messages
    return messages


def run_activation_bench(tokens: Sequence[int] = DEFAULT_TOKENS, *, reps: int = 3, max_new_tokens: int = 16,
                         data: Path | None = None, models_dir: Path | None = None, top_k: int = 2,
                         progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    from memkern.embed import default_embedder
    from memkern.llm.local import LocalLLM
    from memkern.memory import activation
    from memkern.models import parse_version_id
    from memkern.mos import MemOS
    from memkern.ops.context import OpContext

    say = progress or (lambda _msg: None)
    biggest = max(tokens)
    llm = LocalLLM(models_dir=models_dir, n_ctx=max(4096, biggest + 1024)).load()
    engine = activation.LocalKVEngine(llm)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="memkern-bench-act-") as tmp:
        mos = MemOS(Path(tmp) / "bench.db", embedder=default_embedder(), llm=None)
        try:
            cube = mos.create_cube("bench", owner="Alice")
            messages = (_locomo_messages(data, 4000) if data is not None
                        else _demo_messages(max(2, biggest // 300)))
            for start in range(0, len(messages), 500):
                cube.add(messages=messages[start:start + 500], infer=False)
            say(f"{len(messages)} turns stored")
            for size in tokens:
                say(f"{size} tokens: building the activation")
                ctx = OpContext(mos.kernel, None, cube.info)
                manifest = activation.build(ctx, engine, max_tokens=size)
                found = activation.status(ctx)
                kv_path, prefix = activation.verify_files(found.directory, manifest)  # type: ignore[arg-type]
                hits = cube.search(QUESTION, top_k=top_k)
                block_ids = {parse_version_id(v)[0] for v in manifest.versions}
                prompt = prefix + activation.question_suffix(QUESTION, hits, len(manifest.versions) + 1, block_ids)
                scratch, injected = [], []
                for rep in range(reps):
                    say(f"{size} tokens: repetition {rep + 1}/{reps}")
                    scratch.append(engine.generate(prompt, kv_file=None, max_tokens=max_new_tokens))
                    injected.append(engine.generate(prompt, kv_file=kv_path, max_tokens=max_new_tokens))
                s_ttft = statistics.median(g.ttft_s for g in scratch)
                i_ttft = statistics.median(g.ttft_s for g in injected)
                identical = all(g.token_ids == scratch[0].token_ids for g in [*scratch, *injected])
                results.append({
                    "block_tokens": manifest.n_tokens, "budget": size, "memories": len(manifest.versions),
                    "prompt_tokens": scratch[0].prompt_tokens, "kv_bytes": manifest.kv_file.size,
                    "build_s": manifest.build_seconds,
                    "ttft_scratch_s": round(s_ttft, 4), "ttft_injected_s": round(i_ttft, 4),
                    "speedup": round(s_ttft / i_ttft, 2) if i_ttft > 0 else None,
                    "restore_s_median": round(statistics.median(g.restore_s for g in injected), 4),
                    "cached_tokens_scratch": [g.cached_tokens for g in scratch],
                    "cached_tokens_injected": [g.cached_tokens for g in injected],
                    "ttft_scratch_all": [round(g.ttft_s, 4) for g in scratch],
                    "ttft_injected_all": [round(g.ttft_s, 4) for g in injected],
                    "identical_greedy_tokens": identical, "output": scratch[0].text,
                    "output_injected": injected[0].text,
                })
                say(f"{size} tokens: {s_ttft:.2f}s vs {i_ttft:.3f}s")
        finally:
            mos.close()
    return {"model": engine.model.name, "n_threads": llm.n_threads, "reps": reps, "max_new_tokens": max_new_tokens,
            "top_k": top_k,
            "data": str(data) if data else "bundled demo conversation", "question": QUESTION,
            "measured_at": datetime.now(timezone.utc).isoformat(), "results": results,
            "bar": {"min_speedup_at_2048": 10.0,
                    "met": any(r["budget"] == 2048 and (r["speedup"] or 0) >= 10 for r in results) or None}}


def format_report(result: dict[str, Any]) -> str:
    lines = [f"activation memory: TTFT with the restored KV cache vs reading the block ({result['model']}, "
             f"{result['n_threads']} threads, median of {result['reps']})",
             f"{'block':>6} {'prompt':>6} {'mems':>5} {'KV MB':>6} {'scratch s':>10} {'injected s':>11} "
             f"{'ratio':>7} {'restore ms':>10}  identical"]
    for r in result["results"]:
        lines.append(f"{r['block_tokens']:>6} {r['prompt_tokens']:>6} {r['memories']:>5} {r['kv_bytes'] / 1e6:>6.1f} "
                     f"{r['ttft_scratch_s']:>10.3f} {r['ttft_injected_s']:>11.3f} {r['speedup']:>6.1f}x "
                     f"{r['restore_s_median'] * 1000:>10.1f}  {'yes' if r['identical_greedy_tokens'] else 'NO'}")
    bar = result["bar"]
    if bar["met"] is not None:
        lines.append(f"bar (>= 10x at 2,048 tokens): {'met' if bar['met'] else 'NOT met'}")
    return "\n".join(lines)
