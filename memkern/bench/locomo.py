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
from memkern.bench.locomo_data import Conversation, LocomoData, load_locomo
from memkern.bench.metrics import (
    ALL_BUT_ADVERSARIAL,
    METRIC_NAMES,
    MetricAccumulator,
    RankedHit,
    distinct_turns,
    metric_keys,
    percentile_ms,
)
from memkern.errors import InvalidInputError

__all__ = ["DEFAULT_KS", "BM25Adapter", "MemkernAdapter", "RankedHit", "RetrievalAdapter", "evaluate",
           "format_report", "run_locomo"]

DEFAULT_KS = (1, 3, 5, 10, 25)

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
    """memkern's public API: one MemOS store per run, one cube per conversation, one ``add`` per session."""

    name = "memkern"

    def __init__(self, workdir: str | Path | None = None, search_config: SearchConfigLike = None):
        self.search_config = search_config
        self._config: Any = None
        self._own_dir = workdir is None
        self._dir = Path(tempfile.mkdtemp(prefix="memkern-bench-")) if workdir is None else Path(workdir)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._mos: Any = None
        self._cube: Any = None
        self._info: dict[str, Any] = {}

    def _open(self) -> Any:
        if self._mos is None:
            from memkern import MemOS

            self._mos = MemOS(path=self._dir / "bench.db")
            self._config = _resolve_search_config(self.search_config)
        return self._mos

    def ingest(self, conversation: Conversation) -> None:
        mos = self._open()
        cube = mos.create_cube(f"locomo-{conversation.sample_id}", owner="bench")
        for session in conversation.sessions:
            if not session.turns:
                continue
            cube.add(messages=[{"role": "user", "name": turn.speaker, "content": turn.text, "time": session.time,
                                "id": turn.dia_id, "image_caption": turn.image_caption}
                               for turn in session.turns], session_id=session.id)
        self._cube = cube
        if not self._info:
            info = getattr(cube, "info", None)
            self._info = {"embedder": getattr(info, "embedder", None), "dim": getattr(info, "dim", None)}

    def search(self, question: str, top_k: int) -> list[RankedHit]:
        if self._cube is None:
            raise RuntimeError("MemkernAdapter.search called before ingest")
        hits = self._cube.search(question, top_k=top_k, config=self._config)
        return [RankedHit(turn_ids=tuple(hit.memory.provenance.message_ids or ()), text=hit.memory.text,
                          score=float(hit.score)) for hit in hits]

    def describe(self) -> dict[str, Any]:
        config = self._config if self._config is not None else self.search_config
        # Record the effective configuration, defaults included; as given if memkern cannot resolve it.
        with contextlib.suppress(ImportError, ValueError):
            from memkern.retrieval.config import resolve_config

            config = resolve_config(config)
        return {"name": self.name, "embedder": self._info.get("embedder"), "dim": self._info.get("dim"),
                "search_config": describe_search_config(config)}

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
             progress: ProgressCallback | None = None, label: str = "system") -> tuple[dict[str, Any], dict[str, Any]]:
    """Run one adapter over the data: (metrics per category, timing)."""
    accumulator = MetricAccumulator(ks)
    max_k = max(ks)
    total = data.n_turns + len(data.questions)
    done = 0
    ingest_seconds = 0.0
    n_turns = 0
    search_seconds: list[float] = []
    if progress:
        progress(label, 0, total)
    for conversation in data.conversations:
        started = time.perf_counter()
        adapter.ingest(conversation)
        ingest_seconds += time.perf_counter() - started
        turns = len(conversation.turns)
        n_turns += turns
        done += turns
        if progress:
            progress(label, done, total)
        for question in conversation.questions:
            started = time.perf_counter()
            hits = search_enough(adapter, question.text, max_k)
            search_seconds.append(time.perf_counter() - started)
            accumulator.add(question.category, hits, question.evidence)
            done += 1
            if progress:
                progress(label, done, total)
    timing = {
        "ingest_turns_per_s": round(n_turns / ingest_seconds, 1) if ingest_seconds > 0 else None,
        "search_ms_p50": percentile_ms(search_seconds, 50),
        "search_ms_p95": percentile_ms(search_seconds, 95),
    }
    return accumulator.summary(), timing


def run_locomo(data_path: str | Path, ks: Sequence[int] = DEFAULT_KS, progress: ProgressCallback | None = None,
               search_config: SearchConfigLike = None, *, system: RetrievalAdapter | None = None,
               baseline: RetrievalAdapter | None = None, sample_ids: Sequence[str] | None = None,
               workdir: str | Path | None = None) -> dict[str, Any]:
    """Benchmark retrieval on a LoCoMo file: the system (memkern unless ``system`` is given, searched with
    ``cube.search(q, top_k=..., config=search_config)``) and the BM25 baseline, in the same run.

    Returns a JSON-ready dict ``{"system", "baseline", "timing", "config", "ratios"}`` (see the docs of
    :func:`format_report`). ``sample_ids`` restricts the run to some conversations; ``workdir`` keeps the
    memkern store there instead of a temporary directory. Adapters passed in are closed too.
    """
    ks = _check_ks(ks)
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
    system = system if system is not None else MemkernAdapter(workdir=workdir, search_config=search_config)
    baseline = baseline if baseline is not None else BM25Adapter()
    try:
        system_metrics, system_timing = evaluate(system, data, ks, progress, "system")
        system_info = system.describe()
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
        "dropped_evidence_ids": data.dropped_evidence,
        "search_config": describe_search_config(search_config),
    }
    return {
        "system": system_metrics,
        "baseline": baseline_metrics,
        "timing": {**system_timing, "baseline": baseline_timing},
        "config": config,
        "ratios": _ratios(system_metrics[ALL_BUT_ADVERSARIAL], baseline_metrics[ALL_BUT_ADVERSARIAL], ks),
    }


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
                               ("search ms p95", "search_ms_p95"))]
    lines += ["", *_table(["timing", "system", "baseline", "ratio"], rows)]
    return "\n".join(lines)
