"""The LoCoMo retrieval benchmark: ``memkern bench locomo --data PATH [--k 1,3,5,10,25] [--json OUT]``.

Every conversation is ingested into a fresh store, then each of its questions is searched and the
ranked hits are scored against the annotated evidence turns (see :mod:`memkern.bench.metrics`).
The system under test and a plain BM25 baseline run in the same process on the same data with the
same metrics and timing, so that the ratio between them is meaningful on any machine.

Systems are plugged in through :class:`RetrievalAdapter` (``ingest(conversation)``,
``search(question, top_k) -> list[RankedHit]``); :class:`MemkernAdapter` drives memkern's public
API and :class:`memkern.bench.bm25.BM25Adapter` is the baseline. Other retrieval configurations can
be compared by passing another adapter as ``system=``.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from memkern.bench.bm25 import BM25Adapter
from memkern.bench.conditions import conditions_report, parse_conditions
from memkern.bench.extraction_quality import load_observations, score_conversation
from memkern.bench.extraction_quality import summarise as summarise_extraction
from memkern.bench.locomo_data import Conversation, LocomoData, Question, load_locomo
from memkern.bench.metrics import (
    ALL_BUT_ADVERSARIAL,
    METRIC_NAMES,
    MetricAccumulator,
    RankedHit,
    distinct_turns,
    metric_keys,
    percentile_ms,
)
from memkern.bench.qa import JUDGE_PROMPT_SHA256, AnswerRecorder
from memkern.errors import InvalidInputError
from memkern.ops.chat import model_name
from memkern.organize.deep import needs_deep

__all__ = ["DEFAULT_KS", "BM25Adapter", "MemkernAdapter", "RankedHit", "RetrievalAdapter", "evaluate",
           "format_report", "run_locomo"]

DEFAULT_KS = (1, 3, 5, 10, 25)
#: Memories handed to the answer model per question.
DEFAULT_ANSWER_TOP_K = 10
#: The hits an agent asks for before its next turn: each question is also searched for this many,
#: timed apart from the metric searches (which ask for 2 x max(k) hits and may ask again).
AGENT_TOP_K = 10

#: ``progress(label, done, total)``: label is "system" or "baseline"; one unit per turn ingested
#: and per question searched, so ``total`` = turns + questions of the data.
ProgressCallback = Callable[[str, int, int], None]

#: What ``search_config`` may be: None (memkern's default), a recipe name ("hybrid", "lexical", ...),
#: a ``memkern.SearchConfig`` or a dict of its fields. It is passed as ``cube.search(..., config=)``.
SearchConfigLike = Any

CATEGORY_NAMES = {"1": "multi-hop", "2": "temporal", "3": "open-domain", "4": "single-hop", "5": "adversarial",
                  ALL_BUT_ADVERSARIAL: "categories 1-4"}


@runtime_checkable
class RetrievalAdapter(Protocol):
    """What the benchmark needs from a retrieval system. One conversation is live at a time."""

    name: str

    def ingest(self, conversation: Conversation) -> None:
        """Make ``conversation`` the searchable memory (a fresh one: nothing of earlier conversations)."""

    def search(self, question: str, top_k: int) -> list[RankedHit]:
        """At most ``top_k`` hits for ``question``, best first."""

    def describe(self) -> dict[str, Any]:
        """What to record in the run's config; ``embedder`` and ``dim`` keys when there is a model."""

    def close(self) -> None:
        """Release everything (files, models)."""


class MemkernAdapter:
    """memkern's public API: one MemOS store per run, one cube per conversation, one ``add`` per session.

    ``llm``: the model the MemOS ingests with (fact extraction and update decisions); None (the
    default) ingests turns only, whatever ``MEMKERN_LLM`` says. Its calls and tokens during ``ingest``
    are counted in :attr:`ingest_usage`.
    """

    name = "memkern"

    def __init__(self, workdir: str | Path | None = None, search_config: SearchConfigLike = None, *,
                 llm: Any = None):
        self.search_config = search_config
        self.llm = llm
        #: LLM calls and tokens spent while ingesting, per operation, and the turns ingested.
        self.ingest_usage: dict[str, dict[str, int]] = {}
        self.ingested_turns = 0
        self._config: Any = None
        self._own_dir = workdir is None
        self._dir = Path(tempfile.mkdtemp(prefix="memkern-bench-")) if workdir is None else Path(workdir)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._mos: Any = None
        self._cube: Any = None
        self._conversation: Conversation | None = None
        self._info: dict[str, Any] = {}

    def _open(self) -> Any:
        if self._mos is None:
            from memkern import MemOS

            self._mos = MemOS(path=self._dir / "bench.db", llm=self.llm)
            self._config = _resolve_search_config(self.search_config)
        return self._mos

    def ingest(self, conversation: Conversation) -> None:
        mos = self._open()
        before = _usage_snapshot(getattr(mos, "llm", None))
        cube = mos.create_cube(f"locomo-{conversation.sample_id}", owner="bench")
        for session in conversation.sessions:
            if not session.turns:
                continue
            cube.add(messages=[{"role": "user", "name": turn.speaker, "content": turn.text, "time": session.time,
                                "id": turn.dia_id, "image_caption": turn.image_caption}
                               for turn in session.turns], session_id=session.id)
        self.ingested_turns += len(conversation.turns)
        _add_usage(self.ingest_usage, _usage_delta(before, _usage_snapshot(getattr(mos, "llm", None))))
        self._cube = cube
        self._conversation = conversation
        if not self._info:
            info = getattr(cube, "info", None)
            self._info = {"embedder": getattr(info, "embedder", None), "dim": getattr(info, "dim", None)}

    def search(self, question: str, top_k: int) -> list[RankedHit]:
        if self._cube is None:
            raise RuntimeError("MemkernAdapter.search called before ingest")
        hits = self._cube.search(question, top_k=top_k, config=self._config)
        return [RankedHit(turn_ids=tuple(hit.memory.provenance.message_ids or ()), text=hit.memory.text,
                          score=float(hit.score)) for hit in hits]

    def answer(self, question: str, llm: Any, top_k: int, condition: str = "organised") -> Any:
        """Answer ``question`` in ``condition`` (:mod:`memkern.bench.conditions`): by default chat's
        organised context over this cube's ``top_k`` best memories (same search config as the retrieval run)."""
        if self._cube is None or self._conversation is None:
            raise RuntimeError("MemkernAdapter.answer called before ingest")
        from memkern.bench.conditions import answer_in_condition

        return answer_in_condition(condition, llm, question, self._cube, self._conversation, top_k=top_k,
                                   config=self._config)

    def extracted_facts(self) -> list[Any]:
        """The current cube's memories of kind fact, event or preference (archived ones included)."""
        if self._cube is None:
            return []
        return self._cube.get_all({"kind": ["fact", "event", "preference"], "state": None})

    def embed(self, texts: Sequence[str]) -> Any:
        return self._open().embedder.embed(list(texts))

    def describe(self) -> dict[str, Any]:
        config = self._config if self._config is not None else self.search_config
        # Record the effective configuration, defaults included; as given if memkern cannot resolve it.
        with contextlib.suppress(ImportError, ValueError):
            from memkern.retrieval.config import resolve_config

            config = resolve_config(config)
        described = {"name": self.name, "embedder": self._info.get("embedder"), "dim": self._info.get("dim"),
                     "search_config": describe_search_config(config)}
        if self.llm is not None:
            described["ingest_llm"] = model_name(self.llm)
        return described

    def close(self) -> None:
        if self._mos is not None:
            self._mos.close()
            self._mos = None
        self._cube = None
        if self._own_dir:
            shutil.rmtree(self._dir, ignore_errors=True)


def _resolve_search_config(config: SearchConfigLike) -> Any:
    """None (memkern's default recipe), a recipe name, a ``SearchConfig``, or a dict of its fields."""
    if isinstance(config, dict):
        from memkern import SearchConfig

        try:
            return SearchConfig(**config)
        except ValueError as exc:
            raise InvalidInputError(f"invalid search config {config!r}: {exc}") from None
    return config


def deep_path_share(questions: Sequence[str]) -> float | None:
    """Share of ``questions`` that search sends to its deep path (``memkern.organize.deep.needs_deep``)."""
    return round(sum(needs_deep(text) for text in questions) / len(questions), 4) if questions else None


def describe_search_config(config: SearchConfigLike) -> Any:
    """A JSON-ready form of a search config: None, a recipe name, or a dict of fields."""
    if config is None or isinstance(config, (str, dict)):
        return config
    dump = getattr(config, "model_dump", None)
    return dump(mode="json") if callable(dump) else repr(config)


def search_enough(adapter: RetrievalAdapter, question: str, max_k: int, *, max_factor: int = 8) -> list[RankedHit]:
    """Ask for ``2 * max_k`` hits, and twice as many again while they cover fewer than ``max_k``
    distinct turns and the system may have more (it returned as many as asked), up to ``max_factor * max_k``."""
    top_k = 2 * max_k
    while True:
        hits = adapter.search(question, top_k)
        if len(hits) < top_k or len(distinct_turns(hits)) >= max_k or top_k >= max_factor * max_k:
            return hits
        top_k *= 2


def evaluate(adapter: RetrievalAdapter, data: LocomoData, ks: Sequence[int],
             progress: ProgressCallback | None = None, label: str = "system", *,
             on_ingested: Callable[[Conversation], None] | None = None,
             on_question: Callable[[Conversation, Question], None] | None = None,
             ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run one adapter over the data: (metrics per category, timing).

    ``on_ingested(conversation)`` runs after each conversation is ingested and ``on_question(conversation,
    question)`` after each question is searched (answering, extraction quality); neither is timed."""
    accumulator = MetricAccumulator(ks)
    max_k = max(ks)
    total = data.n_turns + len(data.questions)
    done = 0
    ingest_seconds = 0.0
    n_turns = 0
    search_seconds: list[float] = []
    agent_seconds: list[float] = []
    if progress:
        progress(label, 0, total)
    for conversation in data.conversations:
        started = time.perf_counter()
        adapter.ingest(conversation)
        ingest_seconds += time.perf_counter() - started
        turns = len(conversation.turns)
        n_turns += turns
        done += turns
        if on_ingested:
            on_ingested(conversation)
        if progress:
            progress(label, done, total)
        for question in conversation.questions:
            started = time.perf_counter()
            hits = search_enough(adapter, question.text, max_k)
            search_seconds.append(time.perf_counter() - started)
            started = time.perf_counter()
            adapter.search(question.text, AGENT_TOP_K)
            agent_seconds.append(time.perf_counter() - started)
            accumulator.add(question.category, hits, question.evidence)
            if on_question:
                on_question(conversation, question)
            done += 1
            if progress:
                progress(label, done, total)
    timing = {
        "ingest_turns_per_s": round(n_turns / ingest_seconds, 1) if ingest_seconds > 0 else None,
        "search_ms_p50": percentile_ms(search_seconds, 50),
        "search_ms_p95": percentile_ms(search_seconds, 95),
        "search_top10_ms_p50": percentile_ms(agent_seconds, 50),
        "search_top10_ms_p95": percentile_ms(agent_seconds, 95),
    }
    return accumulator.summary(), timing


def run_locomo(data_path: str | Path, ks: Sequence[int] = DEFAULT_KS, progress: ProgressCallback | None = None,
               search_config: SearchConfigLike = None, *, system: RetrievalAdapter | None = None,
               baseline: RetrievalAdapter | None = None, sample_ids: Sequence[str] | None = None,
               workdir: str | Path | None = None, answer_llm: Any = None, judge_llm: Any = None,
               limit_questions: int | None = None, ingest_llm: Any = None,
               answer_top_k: int = DEFAULT_ANSWER_TOP_K,
               answer_conditions: Sequence[str] | None = None) -> dict[str, Any]:
    """Benchmark retrieval on a LoCoMo file: the system (memkern unless ``system`` is given, searched with
    ``cube.search(q, top_k=..., config=search_config)``) and the BM25 baseline, in the same run.

    Returns a JSON-ready dict ``{"system", "baseline", "timing", "config", "ratios"}`` (see the docs of
    :func:`format_report`). ``sample_ids`` restricts the run to some conversations; ``workdir`` keeps the
    memkern store there instead of a temporary directory. Adapters passed in are closed too.

    Answering (``answer_llm``): each question (the first ``limit_questions`` in data order, when given)
    is also answered by the system adapter's ``answer(question, llm, top_k)`` (for memkern,
    :func:`memkern.ops.chat.answer_from_hits` over ``answer_top_k`` memories) and scored with LoCoMo's F1 per
    category, and by ``judge_llm`` (J) when given; the result then has a ``"qa"`` key (see
    :class:`memkern.bench.qa.AnswerRecorder`). Ingestion with an LLM (``ingest_llm``, memkern's fact
    extraction) adds ``"ingest_llm"`` (calls and tokens per ingested turn) and ``"extraction_quality"``
    (see :mod:`memkern.bench.extraction_quality`).
    """
    ks = _check_ks(ks)
    if limit_questions is not None and (isinstance(limit_questions, bool) or not isinstance(limit_questions, int)
                                        or limit_questions < 1):
        raise InvalidInputError(f"limit_questions must be a positive integer, got {limit_questions!r}")
    if isinstance(answer_top_k, bool) or not isinstance(answer_top_k, int) or answer_top_k < 1:
        raise InvalidInputError(f"answer_top_k must be a positive integer, got {answer_top_k!r}")
    if judge_llm is not None and answer_llm is None:
        raise InvalidInputError("a judge needs answers: give answer_llm too")
    path = Path(data_path)
    data = load_locomo(path)
    if sample_ids is not None:
        wanted = set(sample_ids)
        unknown = wanted - {c.sample_id for c in data.conversations}
        if unknown:
            raise InvalidInputError(f"sample id(s) {', '.join(sorted(unknown))} are not in {str(path)!r}")
        data = LocomoData(conversations=[c for c in data.conversations if c.sample_id in wanted],
                          dropped_evidence=sum(1 for s, _ in data.dropped_details if s in wanted),
                          dropped_details=[d for d in data.dropped_details if d[0] in wanted])
    if system is None:
        system = MemkernAdapter(workdir=workdir, search_config=search_config, llm=ingest_llm)
    elif ingest_llm is not None:
        raise InvalidInputError("ingest_llm applies to the memkern system; give the LLM to your own adapter instead")
    baseline = baseline if baseline is not None else BM25Adapter()
    if answer_llm is not None and not callable(getattr(system, "answer", None)):
        raise InvalidInputError(f"system {getattr(system, 'name', '?')!r} cannot answer questions "
                                "(it has no answer(question, llm, top_k) method)")
    conditions = parse_conditions(answer_conditions) if answer_conditions is not None else None
    recorders = ([AnswerRecorder(answer_llm, judge_llm, top_k=answer_top_k, limit=limit_questions, condition=c)
                  for c in (conditions or (None,))] if answer_llm is not None else [])
    recorder = recorders[0] if recorders else None
    extracting = getattr(system, "llm", None) is not None and callable(getattr(system, "extracted_facts", None))
    observations = load_observations(path) if extracting else {}
    qualities: list[Any] = []

    def on_ingested(conversation: Conversation) -> None:
        if extracting:
            turn_texts = {turn.dia_id: turn.render() for turn in conversation.turns}
            extractor: Any = system  # a MemkernAdapter: it has extracted_facts and embed (checked above)
            qualities.append(score_conversation(conversation.sample_id, extractor.extracted_facts(),
                                                observations.get(conversation.sample_id, []), turn_texts,
                                                extractor.embed))

    def on_question(conversation: Conversation, question: Question) -> None:
        for each in recorders:  # every condition on the same question, one after the other
            each.answer(system, conversation.sample_id, question)

    try:
        system_metrics, system_timing = evaluate(system, data, ks, progress, "system", on_ingested=on_ingested,
                                                 on_question=on_question)
        system_info = system.describe()
        ingest_usage = dict(getattr(system, "ingest_usage", None) or {})
        ingested_turns = int(getattr(system, "ingested_turns", 0) or 0)
    finally:
        system.close()
    try:
        baseline_metrics, baseline_timing = evaluate(baseline, data, ks, progress, "baseline")
        baseline_info = baseline.describe()
    finally:
        baseline.close()

    categories = Counter(q.category for q in data.questions)
    questions: dict[str, int] = {str(c): categories.get(c, 0) for c in sorted(set(categories) | {1, 2, 3, 4, 5})}
    questions["total"] = len(data.questions)
    questions["no_evidence"] = sum(1 for q in data.questions if not q.evidence)
    config = {
        "models": {"embedder": system_info.get("embedder"), "dim": system_info.get("dim")},
        "system": system_info,
        "baseline": baseline_info,
        "memkern_version": _memkern_version(),
        "git_commit": _git_commit(),
        "data_path": str(path.resolve()),
        "data_sha256": _sha256(path),
        "ks": list(ks),
        "conversations": [c.sample_id for c in data.conversations],
        "turns": data.n_turns,
        "questions": questions,
        # Share of categories 1-4 that the cheap classifier sends to the deep path (memkern.organize.deep).
        "deep_path_share": deep_path_share([q.text for q in data.questions if q.category != 5]),
        "dropped_evidence_ids": data.dropped_evidence,
        "search_config": describe_search_config(search_config),
    }
    result: dict[str, Any] = {
        "system": system_metrics,
        "baseline": baseline_metrics,
        "timing": {**system_timing, "baseline": baseline_timing},
        "config": config,
        "ratios": _ratios(system_metrics[ALL_BUT_ADVERSARIAL], baseline_metrics[ALL_BUT_ADVERSARIAL], ks),
    }
    ingest_model = getattr(system, "llm", None)
    if ingest_model is not None:
        config["models"]["ingest_llm"] = model_name(ingest_model)
        config["prompts"] = {**config.get("prompts", {}), **_ingest_prompt_hashes()}
        result["ingest_llm"] = _ingest_report(model_name(ingest_model), ingest_usage, ingested_turns)
        if extracting:
            result["extraction_quality"] = summarise_extraction(qualities)
    if recorder is not None:
        from memkern.prompts import ORGANISED_PROMPT_SHA256, PLAIN_PROMPT_SHA256

        config["models"]["answer_llm"] = model_name(answer_llm)
        if judge_llm is not None:
            config["models"]["judge_llm"] = model_name(judge_llm)
        prompts = {"answer": ORGANISED_PROMPT_SHA256, "answer_plain": PLAIN_PROMPT_SHA256}
        if judge_llm is not None:
            prompts["judge"] = JUDGE_PROMPT_SHA256
        config["prompts"] = {**config.get("prompts", {}), **prompts}
        config["answer"] = {
            "top_k": answer_top_k,
            "limit_questions": limit_questions,
            "search_config": system_info.get("search_config", describe_search_config(search_config)),
            "f1": ("LoCoMo token F1: commas removed, lower case, ASCII punctuation stripped, a/an/the/and dropped, "
                   "Porter-stemmed; category 1 split on commas, category 3 gold cut at ';', category 5 scores 1 "
                   "when the answer says the information is not available"),
            "j": "judge asked for categories 1-4 only" if judge_llm is not None else None,
        }
        config["answer"]["conditions"] = list(conditions) if conditions else None
        result["qa"] = recorder.summary()
        if conditions:
            result["qa_conditions"] = {c: r.summary() for c, r in zip(conditions, recorders)}
    return result


def _usage_snapshot(llm: Any) -> dict[str, dict[str, int]]:
    usage = getattr(llm, "usage", None)
    as_dict = getattr(usage, "as_dict", None)
    return as_dict() if callable(as_dict) else {}


def _usage_delta(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    delta: dict[str, dict[str, int]] = {}
    for operation, counts in after.items():
        old = before.get(operation, {})
        changed = {key: int(value) - int(old.get(key, 0)) for key, value in counts.items()}
        if any(changed.values()):
            delta[operation] = changed
    return delta


def _add_usage(total: dict[str, dict[str, int]], delta: dict[str, dict[str, int]]) -> None:
    for operation, counts in delta.items():
        into = total.setdefault(operation, {})
        for key, value in counts.items():
            into[key] = into.get(key, 0) + value


def _ingest_report(model: str, usage: dict[str, dict[str, int]], turns: int) -> dict[str, Any]:
    def total(key: str) -> int:
        return sum(counts.get(key, 0) for counts in usage.values())

    calls, prompt, completion = total("calls"), total("prompt_tokens"), total("completion_tokens")

    def per_turn(value: int) -> float | None:
        return round(value / turns, 3) if turns else None

    return {"model": model, "turns": turns, "calls": calls, "cached_calls": total("cached_calls"),
            "failures": total("failures"), "prompt_tokens": prompt, "completion_tokens": completion,
            "calls_per_turn": per_turn(calls), "tokens_per_turn": per_turn(prompt + completion),
            "by_operation": usage}


def _ingest_prompt_hashes() -> dict[str, str]:
    """sha256 of memkern's extraction and update-decision prompts, when those modules are present."""
    hashes: dict[str, str] = {}
    for label, module, attribute in (("extract", "memkern.reader.llm_reader", "_SYSTEM"),
                                     ("decide", "memkern.memory.updates", "_DECIDE_SYSTEM")):
        try:
            prompt = getattr(__import__(module, fromlist=[attribute]), attribute)
        except (ImportError, AttributeError):
            continue
        if isinstance(prompt, str):
            hashes[label] = hashlib.sha256(prompt.encode("utf-8")).hexdigest()
    return hashes


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    try:
        values = sorted({int(k) for k in ks})
    except (TypeError, ValueError):
        raise InvalidInputError(f"ks must be positive integers, got {list(ks)!r}") from None
    if not values or values[0] < 1:
        raise InvalidInputError(f"ks must be positive integers, got {list(ks)!r}")
    return tuple(values)


def _ratios(system: dict[str, Any], baseline: dict[str, Any], ks: Sequence[int]) -> dict[str, float | None]:
    ratios: dict[str, float | None] = {}
    for key in metric_keys(ks):
        s, b = system.get(key), baseline.get(key)
        ratios[key] = round(s / b, 4) if s is not None and b else None
    return ratios


def _memkern_version() -> str | None:
    try:
        import memkern

        version = getattr(memkern, "__version__", None)
        if version:
            return str(version)
    except ImportError:
        pass
    try:
        from importlib.metadata import version as dist_version

        return dist_version("memkern")
    except (ImportError, ValueError, LookupError):
        return None


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], check=False, cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------- report


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _ratio(system: Any, baseline: Any) -> str:
    return f"{system / baseline:.2f}x" if system is not None and baseline else "-"


def _table(header: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return [line(header), "  ".join("-" * w for w in widths), *(line(row) for row in rows)]


def format_report(result: dict[str, Any]) -> str:
    """A plain-text report of a :func:`run_locomo` result: categories x main metrics (system, baseline,
    ratio), every metric at every k for categories 1-4, and timing."""
    config = result.get("config", {})
    ks = list(config.get("ks") or DEFAULT_KS)
    turn_k = 10 if 10 in ks else max(ks)
    session_k = 5 if 5 in ks else min(ks)
    system, baseline = result["system"], result["baseline"]
    sys_info, base_info = config.get("system", {}), config.get("baseline", {})
    questions = config.get("questions", {})

    model = config.get("models", {})
    model_text = f"embedder {model.get('embedder')}, dim {model.get('dim')}" if model.get("embedder") else "no embedder"
    lines = [
        (f"LoCoMo retrieval: system {sys_info.get('name', '?')} ({model_text}) vs baseline "
         f"{base_info.get('name', '?')} (stemmer {base_info.get('stemmer', '?')})"),
        (f"data {config.get('data_path')}: {len(config.get('conversations', []))} conversations, "
         f"{config.get('turns')} turns, {questions.get('total')} questions ({questions.get('no_evidence')} "
         f"without evidence, {config.get('dropped_evidence_ids')} evidence ids dropped)"),
        f"memkern {config.get('memkern_version')}, commit {(config.get('git_commit') or '-')[:12]}",
        "",
    ]

    main = [f"turn_any@{turn_k}", f"turn_all@{turn_k}", f"session_any@{session_k}", f"context_tokens@{turn_k}"]
    header = ["category", "n"] + [who for _ in main for who in ("system", "base", "ratio")]
    rows = []
    for key in [k for k in system if k != ALL_BUT_ADVERSARIAL] + [ALL_BUT_ADVERSARIAL]:
        s, b = system.get(key, {}), baseline.get(key, {})
        row = [f"{key} {CATEGORY_NAMES.get(key, '')}".strip(), str(s.get("n", 0))]
        for metric in main:
            digits = 1 if metric.startswith("context_tokens") else 3
            row += [_fmt(s.get(metric), digits), _fmt(b.get(metric), digits), _ratio(s.get(metric), b.get(metric))]
        rows.append(row)
    table = _table(header, rows, left=1)
    # A group line above the header: each metric's name centred over its three columns.
    widths = [len(cell) for cell in table[1].split("  ")]
    group = " " * (sum(widths[:2]) + 2)
    for i, metric in enumerate(main):
        span = sum(widths[2 + 3 * i: 5 + 3 * i]) + 4
        group += "  " + metric.center(span)
    lines += [group.rstrip(), *table]

    lines += ["", f"categories 1-4 at every k (n = {system[ALL_BUT_ADVERSARIAL].get('n')})"]
    rows = []
    for name in METRIC_NAMES:
        for k in ks:
            metric = f"{name}@{k}"
            s, b = system[ALL_BUT_ADVERSARIAL].get(metric), baseline[ALL_BUT_ADVERSARIAL].get(metric)
            digits = 1 if name == "context_tokens" else 3
            rows.append([metric, _fmt(s, digits), _fmt(b, digits), _ratio(s, b)])
    lines += _table(["metric", "system", "baseline", "ratio"], rows)

    timing = result.get("timing", {})
    base_timing = timing.get("baseline", {})
    rows = [[label, _fmt(timing.get(key), 1), _fmt(base_timing.get(key), 1),
             _ratio(timing.get(key), base_timing.get(key))]
            for label, key in (("ingest turns/s", "ingest_turns_per_s"), ("search ms p50", "search_ms_p50"),
                               ("search ms p95", "search_ms_p95"), ("top-10 search ms p50", "search_top10_ms_p50"),
                               ("top-10 search ms p95", "search_top10_ms_p95"))]
    lines += ["", *_table(["timing", "system", "baseline", "ratio"], rows)]
    lines += [f"search ms: the searches the metrics read ({2 * max(ks)} hits asked for, more if needed); "
              f"top-10: one search of {AGENT_TOP_K} hits per question, as an agent asks."]
    lines += _qa_report(result)
    return "\n".join(lines)


def _qa_report(result: dict[str, Any]) -> list[str]:
    """The answer-quality, ingestion-cost and extraction-quality sections, when the run has them."""
    lines: list[str] = []
    qa = result.get("qa")
    if qa:
        models = result.get("config", {}).get("models", {})
        judged = "judge" in qa
        lines += ["", f"answers: model {models.get('answer_llm')}"
                  + (f", judge {models.get('judge_llm')}" if judged else "")
                  + f", {qa.get('questions_answered')} questions answered"]
        header = ["category", "n", "F1"] + (["J", "judged"] if judged else []) + ["failed"]
        rows = []
        for key, entry in qa.get("categories", {}).items():
            row = [f"{key} {CATEGORY_NAMES.get(key, '')}".strip(), str(entry.get("n", 0)), _fmt(entry.get("f1"))]
            if judged:
                row += [_fmt(entry.get("j")), str(entry.get("n_judged", 0))]
            rows.append(row + [str(entry.get("n_failed", 0))])
        lines += _table(header, rows)
        llm = qa.get("llm", {})
        lines.append(f"answer LLM: {llm.get('calls')} calls, {_fmt(llm.get('tokens_per_question'), 1)} tokens/question; "
                     f"latency p50 {_fmt(qa.get('latency_ms_p50'), 1)} ms, p95 {_fmt(qa.get('latency_ms_p95'), 1)} ms")
        if judged:
            judge = qa["judge"]
            lines.append(f"judge: {judge.get('calls')} calls, {judge.get('failures')} failed")
    lines += conditions_report(result.get("qa_conditions"), score="f1", key=ALL_BUT_ADVERSARIAL,
                               groups="categories")
    ingest = result.get("ingest_llm")
    if ingest:
        lines += ["", (f"ingestion LLM {ingest.get('model')}: {ingest.get('calls')} calls, "
                      f"{ingest.get('prompt_tokens')}+{ingest.get('completion_tokens')} tokens for "
                      f"{ingest.get('turns')} turns ({_fmt(ingest.get('calls_per_turn'))} calls/turn, "
                      f"{_fmt(ingest.get('tokens_per_turn'), 1)} tokens/turn)")]
    quality = result.get("extraction_quality")
    if quality:
        method = quality.get("method", {})
        lines += [(f"extraction: {quality.get('facts')} facts; observation recall {_fmt(quality.get('recall'))} "
                  f"({quality.get('observations_recalled')}/{quality.get('observations')}, cosine >= "
                  f"{method.get('recall_cosine_threshold')}); support {_fmt(quality.get('support'))} "
                  f"({quality.get('facts_supported')}/{quality.get('facts')}, cosine >= "
                  f"{method.get('support_cosine_threshold')} with the cited turns or >= "
                  f"{_fmt(method.get('support_word_fraction'), 2)} of content words in them)")]
    return lines
