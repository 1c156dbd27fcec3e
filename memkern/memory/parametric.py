"""Parametric memory: a cube's stable memories distilled into a LoRA adapter (extra ``memkern[lora]``).

``distil(cube)`` takes the cube's current facts, events and preferences (its turns when it has none),
turns each into question-answer pairs with fixed templates (no LLM, so the training set is
reproducible), and fine-tunes a small LoRA adapter (PEFT, rank 8, on the attention projections
``q_proj k_proj v_proj o_proj``) on top of the local model, on the CPU with torch. The base model
is the same verified GGUF file that ``memkern.llm.local`` assembles (Qwen2.5-Coder-0.5B-Instruct,
Q4_K_M); transformers reads it, tokenizer included, with the ``gguf`` package and dequantizes it
to float32. Nothing comes from a model hub.

The adapter is written to ``$MEMKERN_HOME/parametric/<cube id>/<adapter id>/`` as
``adapter_model.safetensors`` (float32 LoRA tensors, PEFT names) and ``adapter.json`` (format
``memkern-lora``: base model name, size and SHA-256, rank, alpha, target modules, training
settings, the version ids of the memories it was distilled from, the training questions, metrics
and the SHA-256 of the tensors). The cube's metadata key ``"parametric"`` points at it.

Using it: the in-process chat model is llama.cpp (xllamacpp) on the *quantized* GGUF; it can
load GGUF LoRA adapters, but converting the PEFT tensors to that format is not done here (the
adapter was trained against the dequantized weights, and a converter would have to be kept in
step with llama.cpp's tensor naming). ``chat_with_adapter(cube, query)`` answers closed-book --
no retrieval, the question alone -- with transformers and the adapter instead.

What it achieves is measured by ``memkern bench parametric`` (trained questions vs paraphrases
never seen in training, with and without the adapter). A LoRA adapter is a lossy, slow-to-update copy of the plaintext memories, not a replacement for
retrieval: the plaintext cube stays the source of truth, and an adapter is stale as soon as a
memory it was distilled from changes (``adapter_status`` tells).

Cube files: ``MemCube.dump`` writes the adapter into the file (``memory.parametric`` entries of
the manifest, every member checksummed) and ``MemOS.load_cube`` verifies it (the base model must
be this memkern's, the tensors must match the manifest, names and shapes must fit the base model)
before installing it beside the new cube. This module imports torch only when it trains or answers.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from memkern.errors import CubeFileError, InvalidInputError, LLMError, NotFoundError
from memkern.files import atomic_file, memkern_home, sha256_file
from memkern.models import (
    AdapterReport,
    Filters,
    LifecycleState,
    MemoryItem,
    MemoryKind,
    ParametricAnswer,
    parse_version_id,
    utcnow,
)
from memkern.ops.context import OpContext

if TYPE_CHECKING:
    from memkern.models import CubeInfo
    from memkern.store.base import Store

__all__ = ["AdapterInfo", "ParametricAnswer", "QAPair", "adapter_status", "chat_with_adapter", "distil",
           "forget_adapter", "load_base_model", "make_qa", "select_memories"]

FORMAT_NAME = "memkern-lora"
FORMAT_VERSION = 1
ADAPTER_FILE = "adapter_model.safetensors"
MANIFEST_FILE = "adapter.json"
METADATA_KEY = "parametric"
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
INSTALL_HINT = "pip install 'memkern[lora]'"
#: The system prompt used in training and at answer time (closed-book: no memories in the prompt).
SYSTEM_PROMPT = "Answer the question about the user from what you remember, in a few words."
#: Largest adapter accepted from a cube file (rank 64 on every attention projection is ~35 MB).
MAX_ADAPTER_BYTES = 64 * 1024**2
FACT_KINDS = (MemoryKind.FACT, MemoryKind.EVENT, MemoryKind.PREFERENCE)

# Shapes of the base model's attention projections (Qwen2.5-0.5B): (in_features, out_features).
_LAYERS = 24
_PROJ_SHAPES = {"q_proj": (896, 896), "k_proj": (896, 128), "v_proj": (896, 128), "o_proj": (896, 896)}
_TENSOR_RE = re.compile(r"^base_model\.model\.model\.layers\.(\d+)\.self_attn\.(q_proj|k_proj|v_proj|o_proj)"
                        r"\.lora_(A|B)\.weight$")
_ID_RE = re.compile(r"^[0-9a-f]{32}$")


def _base_model() -> dict[str, Any]:
    from memkern.llm import local

    return {"name": local.MODEL_NAME, "file": local.MODEL_FILENAME, "sha256": local.MODEL_SHA256,
            "size": local.MODEL_SIZE}


def parametric_home() -> Path:
    """``$MEMKERN_HOME/parametric``, or ``~/.memkern/parametric``."""
    return memkern_home() / "parametric"


# -- question-answer pairs --------------------------------------------------------------------------
@dataclass(frozen=True)
class QAPair:
    question: str
    answer: str
    #: The version id of the memory it was made from.
    source: str
    template: str


_PEOPLE = {"sister", "brother", "mother", "father", "mum", "dad", "partner", "wife", "husband", "son",
           "daughter", "friend", "best friend", "boss", "manager", "dentist", "doctor", "teacher",
           "neighbour", "neighbor", "colleague", "landlord", "cousin", "aunt", "uncle", "grandmother",
           "grandfather", "coach", "piano teacher", "flatmate", "roommate"}
_SUBJ = r"(?P<s>[A-Z][\w\-]*(?: [A-Z][\w\-]*)*|I)"
_RULES: tuple[tuple[str, re.Pattern[str], Callable[[re.Match[str]], tuple[str, str]]], ...] = (
    ("named", re.compile(_SUBJ + r"'s (?P<a>[\w \-]+?) (?:is|was) (?:named|called) (?P<o>.+)$"),
     lambda m: (f"What is {m['s']}'s {m['a']} called?", m["o"])),
    ("possessive", re.compile(_SUBJ + r"'s (?P<a>[\w \-]+?) (?P<v>is|are|was|were) (?P<o>.+)$"),
     lambda m: (f"{'Who' if m['a'].lower() in _PEOPLE else 'What'} {m['v']} {m['s']}'s {m['a']}?",
                re.sub(r"^on ", "", m["o"]))),
    ("born", re.compile(_SUBJ + r" (?:was|were) born in (?P<o>.+)$"),
     lambda m: (f"Where was {m['s']} born?", m["o"])),
    ("lives", re.compile(_SUBJ + r" (?:lives|lived|live|now lives) in (?P<o>.+)$"),
     lambda m: (f"Where does {m['s']} live?", m["o"])),
    ("works-as", re.compile(_SUBJ + r" (?:works|work|worked) as (?P<o>.+)$"),
     lambda m: (f"What does {m['s']} work as?", m["o"])),
    ("works-at", re.compile(_SUBJ + r" (?:works|work|worked) (?:at|for) (?P<o>.+)$"),
     lambda m: (f"Where does {m['s']} work?", m["o"])),
    ("allergic", re.compile(_SUBJ + r" (?:is|am) allergic to (?P<o>.+)$"),
     lambda m: (f"What is {m['s']} allergic to?", m["o"])),
    ("verb", re.compile(_SUBJ + r" (?P<v>likes|loves|prefers|enjoys|hates|plays|drives|speaks|owns|collects|"
                        r"drinks|eats|reads|studies|grows) (?P<o>.+)$"),
     lambda m: (f"What does {m['s']} {m['v'][:-1] if m['v'] != 'studies' else 'study'}?", m["o"])),
)


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().rstrip(".!").strip()


def make_qa(item: MemoryItem) -> list[QAPair]:
    """Templated question-answer pairs for one memory (no LLM).

    A sentence that fits one of a few patterns ("X's A is B", "X lives in B", "X works as B",
    "X likes B", ...) gives a question and its short answer; every memory also gives a cloze pair
    (its first words as the question, the rest as the answer), so that text fitting no pattern
    still trains something."""
    pairs: list[QAPair] = []
    text = _clean(item.text)
    if not text:
        return pairs
    first = re.split(r"(?<=[.!?])\s+", text, maxsplit=1)[0].rstrip(".!?")
    for name, pattern, build in _RULES:
        m = pattern.match(first)
        if m:
            question, answer = build(m)
            answer = _clean(answer)
            if answer:
                pairs.append(QAPair(question, answer, item.version_id, name))
            break
    words = text.split()
    if len(words) >= 3:
        cut = max(1, (len(words) * 2) // 3) if len(words) < 9 else 6
        head, tail = " ".join(words[:cut]), " ".join(words[cut:cut + 24])
        pairs.append(QAPair(f'Complete what you remember: "{head} ..."', tail, item.version_id, "cloze"))
    return pairs


def select_memories(ctx: OpContext, max_facts: int) -> list[MemoryItem]:
    """The cube's current, active facts, events and preferences (most important first, at most
    ``max_facts``); its turns when it has none of those."""
    store, cube_id = ctx.kernel.store, ctx.cube.id
    facts = store.list_memories(cube_id, Filters(kind=list(FACT_KINDS), state=LifecycleState.ACTIVE))
    if not facts:
        facts = store.list_memories(cube_id, Filters(kind=MemoryKind.TURN, state=LifecycleState.ACTIVE))
    facts.sort(key=lambda m: (-m.importance, m.recorded_at, m.id))
    return facts[:max_facts]


# -- the base model ---------------------------------------------------------------------------------
def _import_training() -> tuple[Any, Any, Any]:
    try:
        import peft
        import torch
        import transformers
    except ImportError as exc:
        raise LLMError(f"parametric memory needs torch, transformers, peft and gguf ({exc}); run {INSTALL_HINT}") \
            from None
    return torch, transformers, peft


def _hf_cache_dir(models_dir: Path | None) -> Path:
    from memkern.llm import local

    base = Path(models_dir) if models_dir is not None else local.default_models_dir()
    return base / (local.MODEL_NAME + "-hf-f32")


_BASE_CACHE: dict[str, tuple[Any, Any, float]] = {}


def load_base_model(models_dir: Path | None = None, *, threads: int | None = None,
                    disk_cache: bool = True) -> tuple[Any, Any, float]:
    """``(model, tokenizer, seconds)``: the verified local GGUF read by transformers, dequantized to float32.

    Reading the GGUF takes about 100 s (tokenizer conversion and dequantization), so the first load
    also saves the result (about 2 GB) beside the GGUF with a stamp of the GGUF's SHA-256 and of every
    saved file (unless ``disk_cache`` is false); later loads verify the stamp and read that in a few
    seconds. Kept per process and ``models_dir``."""
    torch, transformers, _ = _import_training()
    from memkern.llm import local

    torch.set_num_threads(threads or min(4, os.cpu_count() or 1))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    key = str(models_dir)
    if key in _BASE_CACHE:
        return _BASE_CACHE[key]
    start = time.perf_counter()
    cache = _hf_cache_dir(models_dir)
    stamp_path = cache / "memkern-stamp.json"
    model = tokenizer = None
    if stamp_path.is_file():
        try:
            stamp = json.loads(stamp_path.read_text(encoding="utf-8"))
            ok = stamp.get("gguf_sha256") == local.MODEL_SHA256 and all(
                sha256_file(cache / name) == digest for name, digest in stamp["files"].items())
        except (OSError, ValueError, KeyError, TypeError):
            ok = False
        if ok:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(cache), local_files_only=True)
            model = transformers.AutoModelForCausalLM.from_pretrained(str(cache), dtype=torch.float32,
                                                                      local_files_only=True)
    if model is None:
        gguf = local.assemble_model(models_dir)  # verifies size and SHA-256
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = transformers.AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                                      dtype=torch.float32)
        except ImportError as exc:
            raise LLMError(f"transformers cannot read the GGUF model ({exc}); run {INSTALL_HINT}") from None
        if disk_cache:
            _save_hf_cache(model, tokenizer, cache)
    model.eval()
    result = (model, tokenizer, time.perf_counter() - start)
    _BASE_CACHE[key] = result
    return result


def _save_hf_cache(model: Any, tokenizer: Any, cache: Path) -> None:
    from safetensors.torch import save_model

    from memkern.llm import local

    tmp = cache.with_name(cache.name + f".{uuid4().hex[:8]}.tmp")
    try:
        # save_pretrained refuses a model read from a GGUF (it counts as quantized, though the weights are
        # float32 now): write the weights (tied ones once), the config without its GGUF marks, the tokenizer.
        tmp.mkdir(parents=True)
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        config["torch_dtype"] = config["dtype"] = "float32"
        (tmp / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
        model.generation_config.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / "memkern-stamp.json").write_text(json.dumps({"gguf_sha256": local.MODEL_SHA256, "files": files},
                                                           indent=1), encoding="utf-8")
        shutil.rmtree(cache, ignore_errors=True)
        os.replace(tmp, cache)
    except Exception:  # noqa: BLE001 - a cache is an optimisation: without it the next load reads the GGUF
        pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- training ---------------------------------------------------------------------------------------
@dataclass
class AdapterInfo:
    """One distilled adapter (the content of its ``adapter.json``, plus where it is)."""

    adapter_id: str
    cube_id: str
    path: str
    created_at: str
    base_model: dict[str, Any]
    rank: int
    alpha: int
    target_modules: list[str]
    training: dict[str, Any]
    sources: list[str]
    qa: list[dict[str, str]]
    metrics: dict[str, Any]
    adapter_sha256: str = ""
    adapter_size: int = 0
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION

    def manifest(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("path")
        return doc


def _prompt_ids(tokenizer: Any, question: str) -> list[int]:
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return list(ids)


def _encode(tokenizer: Any, pair: QAPair) -> tuple[list[int], int]:
    prompt = _prompt_ids(tokenizer, pair.question)
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
    torch, _, peft = _import_training()
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
        base_model=_base_model(), rank=rank, alpha=alpha, target_modules=list(TARGET_MODULES),
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
    _write_adapter(directory, tensors, info)
    _attach(ctx, info)
    return info


def _manifest_bytes(info: AdapterInfo) -> bytes:
    return json.dumps(info.manifest(), indent=1, ensure_ascii=False).encode("utf-8")


def _write_adapter(directory: Path, tensors: bytes, info: AdapterInfo) -> None:
    for name, data in ((ADAPTER_FILE, tensors), (MANIFEST_FILE, _manifest_bytes(info))):
        with atomic_file(directory / name) as handle:
            handle.write(data)


def _reference(info: AdapterInfo, manifest_sha256: str) -> dict[str, Any]:
    return {"adapter_id": info.adapter_id, "path": info.path, "manifest_sha256": manifest_sha256,
            "adapter_sha256": info.adapter_sha256, "base_model_sha256": info.base_model["sha256"],
            "rank": info.rank, "created_at": info.created_at, "sources": len(info.sources)}


def _attach(ctx: OpContext, info: AdapterInfo) -> None:
    store, cube_id = ctx.kernel.store, ctx.cube.id
    current = store.get_cube(cube_id)
    metadata = dict(current.metadata)
    old = metadata.get(METADATA_KEY)
    metadata[METADATA_KEY] = _reference(info, hashlib.sha256(_manifest_bytes(info)).hexdigest())
    store.set_cube_metadata(cube_id, metadata)
    if isinstance(old, dict) and isinstance(old.get("path"), str) and old.get("adapter_id") != info.adapter_id:
        old_dir = Path(old["path"])
        if old_dir.parent == parametric_home() / cube_id and _ID_RE.match(old_dir.name):
            shutil.rmtree(old_dir, ignore_errors=True)


# -- reading and verifying --------------------------------------------------------------------------
def check_adapter(manifest_bytes: bytes, tensor_bytes: bytes, where: str) -> AdapterInfo:
    """Verify an adapter's two files; ``CubeFileError`` naming the first problem.

    The manifest must be a ``memkern-lora`` document for this memkern's base model, the tensors must
    have the SHA-256 and size it records, and every tensor must be a finite float32 LoRA matrix of a
    listed target module with the recorded rank and the base model's shapes. No pickle is read."""
    try:
        doc = json.loads(manifest_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CubeFileError(f"{where}: {MANIFEST_FILE} is not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise CubeFileError(f"{where}: {MANIFEST_FILE} is not a {FORMAT_NAME} manifest")
    if doc.get("format_version") != FORMAT_VERSION:
        raise CubeFileError(f"{where}: adapter format version {doc.get('format_version')!r} is not supported "
                            f"(this memkern reads {FORMAT_VERSION})")
    try:
        info = AdapterInfo(path="", **doc)
    except TypeError as exc:
        raise CubeFileError(f"{where}: {MANIFEST_FILE} is invalid ({exc})") from exc
    base = _base_model()
    theirs = info.base_model if isinstance(info.base_model, dict) else {}
    if theirs.get("sha256") != base["sha256"]:
        raise CubeFileError(
            f"{where}: the adapter was trained on base model {theirs.get('name')!r} (sha256 {theirs.get('sha256')}), "
            f"not on this memkern's {base['name']!r} (sha256 {base['sha256']}); a LoRA adapter only works on the "
            "exact model it was trained on")
    if not (isinstance(info.rank, int) and 1 <= info.rank <= 64) or not isinstance(info.alpha, (int, float)):
        raise CubeFileError(f"{where}: rank {info.rank!r} or alpha {info.alpha!r} is invalid")
    if not info.target_modules or not set(info.target_modules) <= set(TARGET_MODULES):
        raise CubeFileError(f"{where}: target modules {info.target_modules!r} are not among {list(TARGET_MODULES)}")
    if not _ID_RE.match(str(info.adapter_id)):
        raise CubeFileError(f"{where}: adapter id {info.adapter_id!r} is invalid")
    if len(tensor_bytes) != info.adapter_size or hashlib.sha256(tensor_bytes).hexdigest() != info.adapter_sha256:
        raise CubeFileError(f"{where}: {ADAPTER_FILE} does not match the size and sha256 its manifest records: "
                            "the adapter was modified or is corrupt")
    _check_tensors(tensor_bytes, info, where)
    return info


def _check_tensors(data: bytes, info: AdapterInfo, where: str) -> None:
    import numpy as np
    from safetensors.numpy import load as load_tensors

    try:
        tensors = load_tensors(data)
    except Exception as exc:  # noqa: BLE001 - any parse failure means a bad file
        raise CubeFileError(f"{where}: {ADAPTER_FILE} is not a valid float32 safetensors file ({exc})") from exc
    expected = {f"base_model.model.model.layers.{i}.self_attn.{m}.lora_{ab}.weight"
                for i in range(_LAYERS) for m in info.target_modules for ab in "AB"}
    if set(tensors) != expected:
        odd = sorted(set(tensors) ^ expected)[0]
        raise CubeFileError(f"{where}: {ADAPTER_FILE} does not hold exactly the LoRA tensors of "
                            f"{info.target_modules} on {_LAYERS} layers (first difference: {odd!r})")
    for name, array in tensors.items():
        m = _TENSOR_RE.match(name)
        assert m is not None
        fan_in, fan_out = _PROJ_SHAPES[m[2]]
        shape = (info.rank, fan_in) if m[3] == "A" else (fan_out, info.rank)
        if array.dtype != np.float32 or array.shape != shape:
            raise CubeFileError(f"{where}: tensor {name} is {array.dtype} {array.shape}, expected float32 {shape}")
        if not np.isfinite(array).all():
            raise CubeFileError(f"{where}: tensor {name} holds NaN or infinite values")


def _reference_of(cube_info: CubeInfo) -> dict[str, Any] | None:
    ref = cube_info.metadata.get(METADATA_KEY)
    return ref if isinstance(ref, dict) and isinstance(ref.get("path"), str) else None


def read_adapter(cube_info: CubeInfo) -> tuple[AdapterInfo, bytes]:
    """The cube's adapter and its tensor bytes, verified against the cube's reference and its manifest.

    ``NotFoundError`` when the cube has none; ``CubeFileError`` when the files are missing or altered."""
    ref = _reference_of(cube_info)
    if ref is None:
        raise NotFoundError(f"cube {cube_info.name!r} has no parametric memory; run distil first")
    directory = Path(ref["path"])
    try:
        manifest_bytes = (directory / MANIFEST_FILE).read_bytes()
        tensor_bytes = (directory / ADAPTER_FILE).read_bytes()
    except OSError as exc:
        raise CubeFileError(f"the adapter of cube {cube_info.name!r} cannot be read from {directory}: {exc}") from exc
    if hashlib.sha256(manifest_bytes).hexdigest() != ref.get("manifest_sha256"):
        raise CubeFileError(f"{directory / MANIFEST_FILE} does not match the sha256 the cube records: "
                            "the adapter was modified")
    info = check_adapter(manifest_bytes, tensor_bytes, str(directory))
    info.path = str(directory)
    return info, tensor_bytes


def adapter_status(ctx: OpContext) -> AdapterReport:
    """Whether the cube has an adapter, and whether the memories it was distilled from are still current."""
    info = ctx.kernel.store.get_cube(ctx.cube.id)
    if _reference_of(info) is None:
        return AdapterReport()
    adapter, _ = read_adapter(info)
    changed = changed_sources(ctx, adapter.sources)
    return AdapterReport(adapter=adapter.adapter_id, path=adapter.path, created_at=adapter.created_at,
                         rank=adapter.rank, sources=len(adapter.sources), stale=bool(changed), changed=changed,
                         metrics=adapter.metrics)


def changed_sources(ctx: OpContext, sources: Sequence[str]) -> list[str]:
    """The source versions (``id@vN``) whose memory is gone, no longer active, or now says something
    else. A new version with the same text (a lifecycle marker, metadata) does not count: the adapter
    learnt the text."""
    store, cube_id = ctx.kernel.store, ctx.cube.id
    wanted = dict(parse_version_id(v) for v in sources)
    current = store.get_memories(cube_id, list(wanted))
    changed = []
    for memory_id, number in wanted.items():
        now = current.get(memory_id)
        if now is None or now.state is not LifecycleState.ACTIVE:
            changed.append(f"{memory_id}@v{number}")
        elif now.version != number:
            learnt = next((v for v in store.history(cube_id, memory_id) if v.version == number), None)
            if learnt is None or learnt.text != now.text:
                changed.append(f"{memory_id}@v{number}")
    return sorted(changed)


def forget_adapter(ctx: OpContext) -> bool:
    """Remove the cube's adapter (files and reference). ``True`` if there was one."""
    store = ctx.kernel.store
    found = _reference_of(store.get_cube(ctx.cube.id)) is not None
    forget_files(store, ctx.cube.id)
    return found


def forget_files(store: Store, cube_id: str, *, if_built_from: Iterable[str] | None = None) -> bool:
    """Remove a cube's adapters (files, and the reference when the cube still exists) -- only if
    the current one was distilled from one of the memory ids ``if_built_from`` when given.

    An adapter memorises the facts it was trained on and its manifest lists the training
    questions, so deleting one of those memories deletes the adapter too. False if nothing
    was removed."""
    info = _cube_or_none(store, cube_id)
    ref = _reference_of(info) if info is not None else None
    if if_built_from is not None:
        if ref is None:
            return False
        wanted = set(if_built_from)
        try:
            sources = json.loads((Path(ref["path"]) / MANIFEST_FILE).read_bytes()).get("sources", [])
            ids = {parse_version_id(str(v))[0] for v in sources}
        except (OSError, ValueError, AttributeError):
            ids = None  # unreadable: it may hold anything, so it goes
        if ids is not None and not ids & wanted:
            return False
    removed = False
    if info is not None and ref is not None:
        store.set_cube_metadata(cube_id, {k: v for k, v in info.metadata.items() if k != METADATA_KEY})
        removed = True
        elsewhere = Path(ref["path"])  # distil(out_dir=...) may have put it outside the home
        if _ID_RE.match(elsewhere.name) and (elsewhere / MANIFEST_FILE).exists():
            shutil.rmtree(elsewhere, ignore_errors=True)
    directory = parametric_home() / cube_id
    if directory.exists():
        shutil.rmtree(directory, ignore_errors=True)
        removed = True
    return removed


def _cube_or_none(store: Store, cube_id: str) -> CubeInfo | None:
    try:
        return store.get_cube(cube_id)
    except NotFoundError:
        return None


# -- answering --------------------------------------------------------------------------------------
def _peft_from_bytes(model: Any, info: AdapterInfo, tensor_bytes: bytes) -> Any:
    torch, _, peft = _import_training()
    from peft import set_peft_model_state_dict
    from safetensors.torch import load as load_tensors

    config = peft.LoraConfig(r=info.rank, lora_alpha=info.alpha, lora_dropout=0.0,
                             target_modules=list(info.target_modules), bias="none", task_type="CAUSAL_LM")
    lora = peft.get_peft_model(model, config)
    result = set_peft_model_state_dict(lora, load_tensors(tensor_bytes))
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        lora.unload()
        raise CubeFileError(f"the adapter holds tensors the model does not have: {unexpected[:3]}")
    lora.eval()
    return lora


def generate_answers(model: Any, tokenizer: Any, questions: Sequence[str], *, max_new_tokens: int = 32) -> list[str]:
    """Greedy closed-book answers (system prompt + question only), one per question."""
    torch, _, _ = _import_training()
    answers = []
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    with torch.inference_mode():
        for question in questions:
            ids = torch.tensor([_prompt_ids(tokenizer, question)])
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                 do_sample=False, eos_token_id=end, pad_token_id=tokenizer.pad_token_id or end)
            answers.append(tokenizer.decode(out[0][ids.shape[1]:], skip_special_tokens=True).strip())
    return answers


class AdapterSession:
    """The base model with (or, ``use_adapter=False``, without) a cube's adapter applied; a context manager."""

    def __init__(self, ctx: OpContext | None, *, use_adapter: bool = True, models_dir: Path | None = None,
                 threads: int | None = None) -> None:
        self.adapter: AdapterInfo | None = None
        tensor_bytes = b""
        if use_adapter:
            if ctx is None:
                raise InvalidInputError("use_adapter needs a cube")
            self.adapter, tensor_bytes = read_adapter(ctx.kernel.store.get_cube(ctx.cube.id))
        self.base, self.tokenizer, _ = load_base_model(models_dir, threads=threads)
        self.model = _peft_from_bytes(self.base, self.adapter, tensor_bytes) if self.adapter else self.base

    def ask(self, questions: Sequence[str], *, max_new_tokens: int = 32) -> list[str]:
        return generate_answers(self.model, self.tokenizer, questions, max_new_tokens=max_new_tokens)

    def close(self) -> None:
        if self.model is not self.base:
            self.model.unload()
            self.model = self.base

    def __enter__(self) -> AdapterSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def chat_with_adapter(ctx: OpContext, query: str, *, max_new_tokens: int = 48, use_adapter: bool = True,
                      models_dir: Path | None = None) -> ParametricAnswer:
    """Answer ``query`` closed-book (no retrieval) with the base model and the cube's adapter."""
    if not isinstance(query, str) or not query.strip():
        raise InvalidInputError("query must be a non-empty string")
    start = time.perf_counter()
    with AdapterSession(ctx, use_adapter=use_adapter, models_dir=models_dir) as session:
        text = session.ask([query.strip()], max_new_tokens=max_new_tokens)[0]
        adapter_id = session.adapter.adapter_id if session.adapter else None
    return ParametricAnswer(answer=text, adapter_id=adapter_id, seconds=round(time.perf_counter() - start, 2),
                            model=_base_model()["name"])


# -- cube files -------------------------------------------------------------------------------------
def dump_members(cube_info: CubeInfo) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    """The ``memory.parametric`` manifest entries and member files of a cube file (none without an adapter)."""
    if _reference_of(cube_info) is None:
        return [], {}
    try:
        info, tensor_bytes = read_adapter(cube_info)
    except CubeFileError as exc:
        raise CubeFileError(f"cannot dump cube {cube_info.name!r}: its parametric memory is broken ({exc}); "
                            "distil it again or remove it (memkern parametric forget)") from exc
    prefix = f"parametric/{info.adapter_id}/"
    members = {prefix + MANIFEST_FILE: Path(info.path, MANIFEST_FILE).read_bytes(), prefix + ADAPTER_FILE: tensor_bytes}
    entry = {"kind": "lora", "adapter_id": info.adapter_id, "manifest": prefix + MANIFEST_FILE,
             "tensors": prefix + ADAPTER_FILE, "base_model_sha256": info.base_model["sha256"], "rank": info.rank,
             "target_modules": info.target_modules, "sources": len(info.sources)}
    return [entry], members


def entry_members(entries: Sequence[dict[str, Any]]) -> set[str]:
    """The member names the ``memory.parametric`` entries use (``CubeFileError`` for a malformed entry)."""
    names: set[str] = set()
    if len(entries) > 1:
        raise CubeFileError("manifest.json: a cube holds at most one parametric adapter")
    for entry in entries:
        if entry.get("kind") != "lora" or not isinstance(entry.get("manifest"), str) \
                or not isinstance(entry.get("tensors"), str):
            raise CubeFileError(f"manifest.json: parametric entry {entry!r} is not a LoRA entry this memkern reads")
        names |= {entry["manifest"], entry["tensors"]}
    return names


def verify_entries(entries: Sequence[dict[str, Any]], data: dict[str, bytes]) -> list[tuple[AdapterInfo, bytes, bytes]]:
    """Verify every parametric entry of a cube file; ``(info, manifest bytes, tensor bytes)`` each."""
    verified = []
    for entry in entries:
        info = check_adapter(data[entry["manifest"]], data[entry["tensors"]], entry["tensors"])
        if entry.get("base_model_sha256") != info.base_model["sha256"] or entry.get("adapter_id") != info.adapter_id:
            raise CubeFileError(f"manifest.json: parametric entry for {entry.get('adapter_id')!r} does not match "
                                f"its adapter manifest")
        if entry.get("rank") != info.rank:
            raise CubeFileError("manifest.json: parametric entry rank does not match its adapter manifest")
        verified.append((info, data[entry["manifest"]], data[entry["tensors"]]))
    return verified


def install_adapters(verified: Sequence[tuple[AdapterInfo, bytes, bytes]], cube_id: str,
                     metadata: dict[str, Any]) -> list[Path]:
    """Write verified adapters beside a newly loaded cube and point ``metadata`` at them (in place).

    The manifest keeps the original cube id and paths of the cube it was distilled in: it is written
    byte for byte, so that its checksum still holds. Returns the directories written (for clean-up)."""
    metadata.pop(METADATA_KEY, None)
    written = []
    for info, manifest_bytes, tensor_bytes in verified:
        directory = parametric_home() / cube_id / info.adapter_id
        directory.mkdir(parents=True, exist_ok=True)
        for name, payload in ((MANIFEST_FILE, manifest_bytes), (ADAPTER_FILE, tensor_bytes)):
            (directory / name).write_bytes(payload)
            os.chmod(directory / name, 0o600)
        written.append(directory)
        info.path = str(directory)
        metadata[METADATA_KEY] = _reference(info, hashlib.sha256(manifest_bytes).hexdigest())
    return written


# -- the scheduler ---------------------------------------------------------------------------------
def distil_hook(ctx: OpContext, memories: list[MemoryItem]) -> list[str]:
    """Scheduler ``distil``: train an adapter on the cube's facts (the requested ones included);
    returns the ids it was distilled from (none without the ``lora`` extra)."""
    try:
        _import_training()
    except LLMError:
        return []
    info = distil(ctx, max_facts=max(64, len(memories)))
    taken = {parse_version_id(source)[0] for source in info.sources}
    return [m.id for m in memories if m.id in taken]


class CubeFileSection:
    """The ``memory.parametric`` section of a cube file, for ``memkern.cubefile.read_cube_file``."""

    def members(self, entries: list[dict[str, Any]]) -> list[str]:
        return sorted(entry_members(entries))

    def verify(self, entries: list[dict[str, Any]], data: dict[str, bytes], versions: list[MemoryItem],
               cube_id: str) -> list[tuple[AdapterInfo, bytes, bytes]]:
        return verify_entries(entries, data)
