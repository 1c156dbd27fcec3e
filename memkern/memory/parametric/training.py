"""Distilling a cube's memories into a LoRA adapter: PEFT on the CPU with torch, answer tokens only.

Rank 8 by default, on the attention projections; the shared base model is left as it was (the
LoRA layers are removed again) whether training succeeds or not.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

from memkern.errors import InvalidInputError
from memkern.memory.parametric.base_model import TARGET_MODULES, base_model_ref, load_base_model, training_libraries
from memkern.memory.parametric.manifest import FORMAT_NAME, AdapterInfo
from memkern.memory.parametric.qa import SYSTEM_PROMPT, QAPair, make_qa, prompt_ids, select_memories
from memkern.memory.parametric.storage import attach_adapter, parametric_home, write_adapter
from memkern.models import utcnow
from memkern.ops.context import OpContext


def _encode(tokenizer: Any, pair: QAPair) -> tuple[list[int], int]:
    prompt = prompt_ids(tokenizer, pair.question)
    answer = tokenizer.encode(pair.answer + "<|im_end|>", add_special_tokens=False)
    return prompt + answer, len(prompt)


def _answer_loss(torch: Any, model: Any, batch: list[tuple[list[int], int]], pad_id: int) -> Any:
    """Mean cross-entropy of the answer tokens; the vocabulary projection runs on those positions only."""
    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    rows, cols, targets = [], [], []
    for r, (ids, start) in enumerate(batch):
        input_ids[r, :len(ids)] = torch.tensor(ids)
        mask[r, :len(ids)] = 1
        for c in range(start - 1, len(ids) - 1):
            rows.append(r)
            cols.append(c)
            targets.append(ids[c + 1])
    inner = model.get_base_model()
    hidden = inner.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
    logits = inner.lm_head(hidden[torch.tensor(rows), torch.tensor(cols)])
    return torch.nn.functional.cross_entropy(logits.float(), torch.tensor(targets))


def distil(ctx: OpContext, *, max_facts: int = 64, epochs: int = 8, rank: int = 8, alpha: int | None = None,
           learning_rate: float = 2e-3, batch_size: int = 8, seed: int = 0, threads: int | None = None,
           models_dir: Path | None = None, out_dir: Path | None = None,
           progress: Callable[[str, int, int], None] | None = None) -> AdapterInfo:
    """Distil the cube's stable memories into a LoRA adapter, save it and reference it from the cube."""
    for value, what in ((max_facts, "max_facts"), (epochs, "epochs"), (rank, "rank"), (batch_size, "batch_size")):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidInputError(f"{what} must be a positive integer, not {value!r}")
    if rank > 64:
        raise InvalidInputError(f"rank must be at most 64, not {rank}")
    alpha = int(alpha) if alpha is not None else 2 * rank
    cube = ctx.cube
    memories = select_memories(ctx, max_facts)
    pairs = [p for m in memories for p in make_qa(m)]
    if not pairs:
        raise InvalidInputError(f"cube {cube.name!r} has no memories to distil")
    torch, _, peft = training_libraries()
    model, tokenizer, load_seconds = load_base_model(models_dir, threads=threads)

    torch.manual_seed(seed)
    config = peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=list(TARGET_MODULES),
                             bias="none", task_type="CAUSAL_LM")
    lora = peft.get_peft_model(model, config)
    try:
        encoded = [_encode(tokenizer, p) for p in pairs]
        params = [p for p in lora.parameters() if p.requires_grad]
        optimiser = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)
        steps_per_epoch = (len(encoded) + batch_size - 1) // batch_size
        total = steps_per_epoch * epochs
        schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: max(0.05, 1 - s / max(1, total)))
        generator = torch.Generator().manual_seed(seed)
        losses: list[float] = []
        lora.train()
        start = time.perf_counter()
        step = 0
        for _epoch in range(epochs):
            order = torch.randperm(len(encoded), generator=generator).tolist()
            epoch_loss = 0.0
            for b in range(steps_per_epoch):
                batch = [encoded[i] for i in order[b * batch_size:(b + 1) * batch_size]]
                loss = _answer_loss(torch, lora, batch, tokenizer.pad_token_id or 0)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
                epoch_loss += float(loss.detach()) * len(batch)
                step += 1
                if progress:
                    progress("training", step, total)
            losses.append(round(epoch_loss / len(encoded), 4))
        train_seconds = time.perf_counter() - start
        lora.eval()
        from peft import get_peft_model_state_dict

        state = {k: v.detach().to(torch.float32).contiguous() for k, v in get_peft_model_state_dict(lora).items()}
    finally:
        # Leave the shared base model as it was: remove the LoRA layers again.
        lora.unload()
    from safetensors.torch import save as save_tensors

    tensors = save_tensors(state, metadata={"format": FORMAT_NAME})
    adapter_id = uuid4().hex
    directory = (Path(out_dir) if out_dir is not None else parametric_home() / cube.id) / adapter_id
    info = AdapterInfo(
        adapter_id=adapter_id, cube_id=cube.id, path=str(directory), created_at=utcnow().isoformat(),
        base_model=base_model_ref(), rank=rank, alpha=alpha, target_modules=list(TARGET_MODULES),
        training={"epochs": epochs, "learning_rate": learning_rate, "batch_size": batch_size, "seed": seed,
                  "optimizer": "AdamW", "schedule": "linear decay", "dtype": "float32", "qa": "templated",
                  "system_prompt": SYSTEM_PROMPT, "torch": torch.__version__, "peft": peft.__version__,
                  "threads": torch.get_num_threads()},
        sources=[m.version_id for m in memories],
        qa=[{"question": p.question, "answer": p.answer, "source": p.source, "template": p.template}
            for p in pairs],
        metrics={"examples": len(encoded), "steps": total, "epoch_loss": losses,
                 "train_seconds": round(train_seconds, 1), "base_load_seconds": round(load_seconds, 1),
                 "trainable_parameters": sum(int(t.numel()) for t in state.values())},
        adapter_sha256=hashlib.sha256(tensors).hexdigest(), adapter_size=len(tensors),
    )
    write_adapter(directory, tensors, info)
    attach_adapter(ctx, info)
    return info
