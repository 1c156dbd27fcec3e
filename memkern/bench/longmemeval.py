"""The LongMemEval retrieval benchmark: ``memkern bench longmemeval --data PATH [--k 1,3,5,10] [--json OUT]``.

LongMemEval (Wu et al., ICLR 2025) asks one question over its own haystack of about fifty
timestamped chat sessions. Each question gets a fresh cube: every session is added with its
date, then the question is searched and the ranked hits are scored against the evidence:

* ``session_any@k`` / ``session_all@k``: any / every evidence session (``answer_session_ids``)
  among the first ``k`` distinct sessions of the hits (the paper's recall_any / recall_all);
* ``turn_any@k``: a turn labelled ``has_answer`` among the first ``k`` distinct turns;
* ``session_ndcg@10`` and ``turn_ndcg@10``: binary-relevance NDCG over distinct sessions / turns;
* ``context_tokens@10``: whitespace tokens of the hits consumed to reach 10 distinct turns.

Empty turns (a few in the data) are skipped; turn ids keep their position in the file.

Scores are averaged per question type and overall. Abstention questions (``_abs`` ids) have no
evidence to find: they are counted (``n_abstention``) and left out of the averages, as in the
paper. memkern and a plain BM25 over turns run in the same process on the same data, with the
same metrics and timing. The result is a JSON-ready dict shaped like ``bench locomo``'s
(``system``, ``baseline``, ``timing``, ``config``, ``ratios``), plus ``questions``: for each question,
where each system ranked its evidence sessions and its first evidence turn.

The question is asked at its ``question_date``: memkern searches the memories up to the end of
that day (``filters.until``; in the data, sessions of the question's own day may be timed after
it) and counts relative periods in the question ("a week ago") back from it.

Each question is turned into a :class:`memkern.bench.locomo_data.Conversation` (sessions of turns
with dates; turn ids ``"<session id>#<position>"``), so the BM25 baseline of ``bench locomo`` runs
unchanged; memkern runs through :class:`FreshStoreAdapter`.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from datetime import time as dt_time
from pathlib import Path
from typing import Any

import numpy as np

from memkern.bench.bm25 import BM25Adapter
from memkern.bench.conditions import conditions_report
from memkern.bench.locomo import (
    RetrievalAdapter,
    SearchConfigLike,
    _git_commit,
    _memkern_version,
    _sha256,
    deep_path_share,
    describe_search_config,
)
from memkern.bench.locomo_data import Conversation, Session, Turn
from memkern.bench.metrics import RankedHit, percentile_ms
from memkern.errors import InvalidInputError
from memkern.ops.chat import model_name

__all__ = ["DEFAULT_KS", "LmeQuestion", "evaluate", "format_report", "load_longmemeval", "question_scores",
           "run_longmemeval"]

DEFAULT_KS = (1, 3, 5, 10)
OVERALL = "overall"
#: Rank depth of the NDCG metrics and of the context-token count.
DEPTH = 10
_DATE_FORMATS = ("%Y/%m/%d (%a) %H:%M", "%Y/%m/%d %H:%M", "%Y/%m/%d")
_REQUIRED = ("question_id", "question_type", "question", "haystack_sessions", "haystack_session_ids",
             "haystack_dates", "answer_session_ids")

#: ``progress(label, done, total)``: one unit per question ingested and searched.
ProgressCallback = Callable[[str, int, int], None]


@dataclass(frozen=True)
class LmeQuestion:
    """One LongMemEval question with its haystack, as a conversation the adapters can ingest."""

    id: str
    type: str
    text: str
    answer: str
    date: datetime | None
    conversation: Conversation
    answer_sessions: frozenset[str]
    answer_turns: frozenset[str]

    @property
    def abstention(self) -> bool:
        return self.id.endswith("_abs")


def parse_date(raw: str) -> datetime:
    """``"2023/05/20 (Sat) 02:21"`` -> ``datetime(2023, 5, 20, 2, 21)``."""
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(raw.strip(), fmt)
        except ValueError:
            continue
    raise InvalidInputError(f"date {raw!r} is not in the LongMemEval format like '2023/05/20 (Sat) 02:21'")


def session_of(turn_id: str) -> str:
    """The session of a turn id: ``"answer_1a2b#3"`` -> ``"answer_1a2b"``."""
    return turn_id.rsplit("#", 1)[0]


def load_longmemeval(path: str | Path) -> list[LmeQuestion]:
    """Read a LongMemEval JSON file (a list of questions). Raises InvalidInputError when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"LongMemEval data file {str(path)!r} does not exist or is not a file")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"{str(path)!r} is not a JSON file: {exc}") from exc
    if not isinstance(raw, list) or not raw:
        raise InvalidInputError(f"{str(path)!r} is not LongMemEval data: expected a non-empty JSON list")
    return [_parse_question(item, i, str(path)) for i, item in enumerate(raw)]


def _parse_question(item: Any, position: int, source: str) -> LmeQuestion:
    where = f"{source!r}, question #{position}"
    if not isinstance(item, dict):
        raise InvalidInputError(f"{where}: expected an object, got {type(item).__name__}")
    missing = [key for key in _REQUIRED if key not in item]
    if missing:
        raise InvalidInputError(f"{where} is not LongMemEval-shaped: missing key(s) {', '.join(missing)}")
    sessions_raw, ids, dates = item["haystack_sessions"], item["haystack_session_ids"], item["haystack_dates"]
    if not (isinstance(sessions_raw, list) and isinstance(ids, list) and isinstance(dates, list)
            and len(sessions_raw) == len(ids) == len(dates)):
        raise InvalidInputError(f"{where}: haystack_sessions, haystack_session_ids and haystack_dates must be "
                                "lists of the same length")
    sessions: list[Session] = []
    answer_turns: set[str] = set()
    seen: set[str] = set()
    for index, (session_id, date, turns) in enumerate(zip(ids, dates, sessions_raw), start=1):
        session_id = str(session_id)
        if session_id in seen:  # a repeated session would share turn ids: keep the first
            continue
        seen.add(session_id)
        if not isinstance(turns, list):
            raise InvalidInputError(f"{where}: session {session_id!r} must be a list of turns")
        parsed: list[Turn] = []
        for number, turn in enumerate(turns):
            if not isinstance(turn, dict) or "content" not in turn:
                raise InvalidInputError(f"{where}, session {session_id!r}: a turn must be an object with "
                                        f"'role' and 'content', got {turn!r:.120}")
            turn_id = f"{session_id}#{number}"
            if not str(turn["content"] or "").strip():  # nothing to store or find; ids keep the file's positions
                continue
            parsed.append(Turn(dia_id=turn_id, speaker=str(turn.get("role") or "user"),
                               text=str(turn["content"] or "")))
            if turn.get("has_answer"):
                answer_turns.add(turn_id)
        sessions.append(Session(id=session_id, index=index, time=parse_date(str(date)), turns=parsed))
    question_id = str(item["question_id"])
    question_date = item.get("question_date")
    return LmeQuestion(
        id=question_id, type=str(item["question_type"]), text=str(item["question"]),
        answer=str(item.get("answer", "")),
        date=parse_date(str(question_date)) if question_date else None,
        conversation=Conversation(sample_id=question_id, speakers=["user", "assistant"], sessions=sessions,
                                  questions=[]),
        answer_sessions=frozenset(str(s) for s in item["answer_session_ids"] or ()),
        answer_turns=frozenset(answer_turns),
    )


def metric_keys(ks: Sequence[int]) -> list[str]:
    keys = [f"{name}@{k}" for k in ks for name in ("session_any", "session_all", "turn_any")]
    return keys + [f"session_ndcg@{DEPTH}", f"turn_ndcg@{DEPTH}", f"context_tokens@{DEPTH}"]


def _ndcg(ranked: Sequence[str], relevant: frozenset[str], depth: int) -> float:
    gains = sum(1.0 / math.log2(i + 2) for i, item in enumerate(ranked[:depth]) if item in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), depth)))
    return gains / ideal if ideal else 0.0


def question_scores(hits: Sequence[RankedHit], question: LmeQuestion, ks: Sequence[int]) -> dict[str, float | None]:
    """The metrics of one question (see the module docstring). Turn metrics are None when no turn is labelled."""
    turns: dict[str, None] = {}
    sessions: dict[str, None] = {}
    tokens_at_depth: int | None = None
    consumed = 0
    for hit in hits:
        consumed += len(hit.text.split())
        for turn_id in hit.turn_ids:
            if turn_id in turns:
                continue
            turns[turn_id] = None
            if len(turns) == DEPTH:
                tokens_at_depth = consumed
            sessions.setdefault(session_of(turn_id), None)
    wanted_sessions, wanted_turns = question.answer_sessions, question.answer_turns
    ranked_sessions, ranked_turns = list(sessions), list(turns)
    scores: dict[str, float | None] = {}
    for k in ks:
        top_sessions, top_turns = set(ranked_sessions[:k]), set(ranked_turns[:k])
        scores[f"session_any@{k}"] = float(bool(top_sessions & wanted_sessions))
        scores[f"session_all@{k}"] = float(wanted_sessions <= top_sessions)
        scores[f"turn_any@{k}"] = float(bool(top_turns & wanted_turns)) if wanted_turns else None
    scores[f"session_ndcg@{DEPTH}"] = _ndcg(ranked_sessions, wanted_sessions, DEPTH)
    scores[f"turn_ndcg@{DEPTH}"] = _ndcg(ranked_turns, wanted_turns, DEPTH) if wanted_turns else None
    scores[f"context_tokens@{DEPTH}"] = float(tokens_at_depth if tokens_at_depth is not None else consumed)
    return scores


class FreshStoreAdapter:
    """memkern's public API with a fresh SQLite store per question: one cube, one ``add`` per session.

    A store of its own per question keeps each question's numbers independent of the others (the
    lexical index's statistics are the question's haystack only), as a user's cube would be.
    """

    name = "memkern"

    def __init__(self, search_config: SearchConfigLike = None):
        self.search_config = search_config
        self._dir = Path(tempfile.mkdtemp(prefix="memkern-lme-"))
        self._mos: Any = None
        self._cube: Any = None
        self._conversation: Conversation | None = None
        self._count = 0
        self._asked_at: datetime | None = None
        self._info: dict[str, Any] = {}

    def ingest(self, conversation: Conversation) -> None:
        from memkern import MemOS

        self._close_store()
        self._count += 1
        self._mos = MemOS(path=self._dir / f"q{self._count}.db", llm=None)
        self._cube = self._mos.create_cube("lme", owner="bench")
        self._conversation = conversation
        for session in conversation.sessions:
            if session.turns:
                self._cube.add(messages=[{"role": turn.speaker, "content": turn.text, "time": session.time,
                                          "id": turn.dia_id} for turn in session.turns],
                               session_id=session.id, infer=False)
        # A long-lived process has the cube's search index in memory: load it now, as part of ingesting,
        # so that search timing is that of a warm cube (each question has a single search).
        self._cube.search(conversation.turns[0].text if conversation.turns else "memory", top_k=1)
        if not self._info:
            info = self._cube.info
            self._info = {"embedder": info.embedder, "dim": info.dim}

    def search(self, question: str, top_k: int) -> list[RankedHit]:
        if self._cube is None:
            raise RuntimeError("FreshStoreAdapter.search called before ingest")
        # Up to the end of the question's day: in the data, sessions of that day may be timed after the question.
        filters = {"until": datetime.combine(self._asked_at.date(), dt_time.max)} if self._asked_at else None
        hits = self._cube.search(question, top_k=top_k, config=self.search_config, filters=filters)
        return [RankedHit(turn_ids=tuple(hit.memory.provenance.message_ids or ()), text=hit.memory.text,
                          score=float(hit.score)) for hit in hits]

    def answer(self, question: str, llm: Any, top_k: int, condition: str = "organised") -> Any:
        """Answer ``question`` in ``condition`` (:mod:`memkern.bench.conditions`) from this question's cube,
        searched up to the question's day as :meth:`search` is."""
        if self._cube is None or self._conversation is None:
            raise RuntimeError("FreshStoreAdapter.answer called before ingest")
        from memkern.bench.conditions import answer_in_condition

        filters = {"until": datetime.combine(self._asked_at.date(), dt_time.max)} if self._asked_at else None
        return answer_in_condition(condition, llm, question, self._cube, self._conversation, top_k=top_k,
                                   config=self.search_config, filters=filters)

    def set_question_date(self, asked_at: datetime | None) -> None:
        """The question is asked then: memories up to that time are searched, and "a week ago" counts from it."""
        self._asked_at = asked_at

    def describe(self) -> dict[str, Any]:
        from memkern.retrieval.config import resolve_config

        config = self.search_config if isinstance(self.search_config, dict) else resolve_config(self.search_config)
        return {"name": self.name, "store": "sqlite, one per question", **self._info,
                "search_config": describe_search_config(config)}

    def _close_store(self) -> None:
        if self._mos is not None:
            self._mos.close()
            self._mos = None
            self._cube = None
            for path in self._dir.glob(f"q{self._count}.db*"):
                path.unlink()

    def close(self) -> None:
        self._close_store()
        shutil.rmtree(self._dir, ignore_errors=True)


def search_sessions(adapter: RetrievalAdapter, question: str, depth: int, *, max_factor: int = 8) -> list[RankedHit]:
    """Ask for ``2 * depth`` hits, and twice as many again while they cover fewer than ``depth`` distinct
    sessions and the system may have more, up to ``max_factor * depth``: the session metrics at ``depth``
    then see ``depth`` sessions whenever the system can give them."""
    top_k = 2 * depth
    while True:
        hits = adapter.search(question, top_k)
        sessions = {session_of(turn) for hit in hits for turn in hit.turn_ids}
        if len(hits) < top_k or len(sessions) >= depth or top_k >= max_factor * depth:
            return hits
        top_k *= 2


def evidence_ranks(hits: Sequence[RankedHit], question: LmeQuestion) -> dict[str, Any]:
    """Where the evidence came in one question's ranking (1-based over distinct sessions / turns; None: not found)."""
    turns = list(dict.fromkeys(turn for hit in hits for turn in hit.turn_ids))
    sessions = list(dict.fromkeys(session_of(turn) for turn in turns))
    return {"sessions": {s: sessions.index(s) + 1 if s in sessions else None for s in sorted(question.answer_sessions)},
            "first_turn": next((i + 1 for i, t in enumerate(turns) if t in question.answer_turns), None)}


class _Accumulator:
    """Per-question scores averaged per question type and overall (a None score is left out of its mean)."""

    def __init__(self, ks: Sequence[int]):
        self.keys = metric_keys(ks)
        self.rows: dict[str, list[dict[str, float | None]]] = {}
        self.abstention: dict[str, int] = {}

    def add(self, question: LmeQuestion, scores: dict[str, float | None] | None) -> None:
        self.rows.setdefault(question.type, [])
        self.abstention.setdefault(question.type, 0)
        if scores is None:
            self.abstention[question.type] += 1
        else:
            self.rows[question.type].append(scores)

    def summary(self) -> dict[str, dict[str, float | int | None]]:
        groups = [(name, [name]) for name in sorted(self.rows)] + [(OVERALL, sorted(self.rows))]
        out: dict[str, dict[str, float | int | None]] = {}
        for name, types in groups:
            rows = [row for t in types for row in self.rows[t]]
            entry: dict[str, float | int | None] = {"n": len(rows),
                                                    "n_abstention": sum(self.abstention[t] for t in types)}
            for key in self.keys:
                values = [value for row in rows if (value := row.get(key)) is not None]
                entry[key] = round(float(np.mean(values)), 4) if values else None
            out[name] = entry
        return out


def evaluate(adapter: RetrievalAdapter, questions: Sequence[LmeQuestion], ks: Sequence[int],
             progress: ProgressCallback | None = None, label: str = "system",
             on_question: Callable[[LmeQuestion, list[RankedHit]], None] | None = None,
             ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run one adapter over the questions: (metrics per question type, timing)."""
    accumulator = _Accumulator(ks)
    max_k = max(max(ks), DEPTH)
    ingest_seconds = 0.0
    n_turns = 0
    search_seconds: list[float] = []
    for done, question in enumerate(questions, start=1):
        started = time.perf_counter()
        adapter.ingest(question.conversation)
        ingest_seconds += time.perf_counter() - started
        n_turns += len(question.conversation.turns)
        set_question_date = getattr(adapter, "set_question_date", None)
        if callable(set_question_date):  # systems that can search "as of" a time
            set_question_date(question.date)
        started = time.perf_counter()
        hits = search_sessions(adapter, question.text, max_k)
        search_seconds.append(time.perf_counter() - started)
        accumulator.add(question, None if question.abstention else question_scores(hits, question, ks))
        if on_question:
            on_question(question, hits)
        if progress:
            progress(label, done, len(questions))
    timing = {
        "ingest_turns_per_s": round(n_turns / ingest_seconds, 1) if ingest_seconds > 0 else None,
        "ingest_s_per_question": round(ingest_seconds / len(questions), 3) if questions else None,
        "search_ms_p50": percentile_ms(search_seconds, 50),
        "search_ms_p95": percentile_ms(search_seconds, 95),
    }
    return accumulator.summary(), timing


def run_longmemeval(data_path: str | Path, ks: Sequence[int] = DEFAULT_KS, progress: ProgressCallback | None = None,
                    search_config: SearchConfigLike = None, *, system: RetrievalAdapter | None = None,
                    baseline: RetrievalAdapter | None = None, question_ids: Sequence[str] | None = None,
                    limit_questions: int | None = None, stratified: int | None = None, answer_llm: Any = None,
                    judge_llm: Any = None, answer_conditions: Sequence[str] = ("organised",),
                    answer_top_k: int = 10) -> dict[str, Any]:
    """Benchmark retrieval on a LongMemEval file: memkern (unless ``system`` is given) and BM25 over turns,
    in the same run. ``question_ids`` / ``limit_questions`` (the first N) / ``stratified`` (N questions spread
    over question types and abstention, :func:`memkern.bench.lme_qa.stratified_subset`) restrict the run.

    With ``answer_llm``, every question is also answered in each of ``answer_conditions``
    (:mod:`memkern.bench.conditions`) over ``answer_top_k`` memories and scored (:mod:`memkern.bench.lme_qa`:
    LongMemEval's judge prompts with ``judge_llm``, else exact containment / token F1); ``qa`` holds one
    summary per condition. Returns ``{"system", "baseline", "timing", "config", "ratios", "questions"}``
    (metrics keyed by question type and ``overall``)."""
    from memkern.bench.conditions import parse_conditions
    from memkern.bench.lme_qa import LmeAnswerRecorder, judge_prompts_sha256, stratified_subset

    ks = tuple(sorted({int(k) for k in ks}))
    if not ks or ks[0] < 1:
        raise InvalidInputError(f"ks must be positive integers, got {list(ks)!r}")
    path = Path(data_path)
    questions = load_longmemeval(path)
    if question_ids is not None:
        wanted = set(question_ids)
        unknown = wanted - {q.id for q in questions}
        if unknown:
            raise InvalidInputError(f"question id(s) {', '.join(sorted(unknown))} are not in {str(path)!r}")
        questions = [q for q in questions if q.id in wanted]
    if limit_questions is not None:
        if isinstance(limit_questions, bool) or not isinstance(limit_questions, int) or limit_questions < 1:
            raise InvalidInputError(f"limit_questions must be a positive integer, got {limit_questions!r}")
        questions = questions[:limit_questions]
    if stratified is not None:
        if isinstance(stratified, bool) or not isinstance(stratified, int) or stratified < 1:
            raise InvalidInputError(f"the stratified limit must be a positive integer, got {stratified!r}")
        questions = stratified_subset(questions, stratified)
    if judge_llm is not None and answer_llm is None:
        raise InvalidInputError("a judge needs answers: give answer_llm too")
    conditions = parse_conditions(answer_conditions)
    system = system or FreshStoreAdapter(search_config=search_config)
    if answer_llm is not None and not callable(getattr(system, "answer", None)):
        raise InvalidInputError(f"system {getattr(system, 'name', '?')!r} cannot answer questions")
    recorders = ([LmeAnswerRecorder(answer_llm, judge_llm, top_k=answer_top_k, condition=c) for c in conditions]
                 if answer_llm is not None else [])
    baseline = baseline or BM25Adapter()
    per_question: dict[str, dict[str, Any]] = {q.id: {"type": q.type} for q in questions}

    def recorder(label: str) -> Callable[[LmeQuestion, list[RankedHit]], None]:
        def record(question: LmeQuestion, hits: list[RankedHit]) -> None:
            per_question[question.id][label] = evidence_ranks(hits, question)
            if label == "system":  # the question's cube is still open: answer in every condition
                for each in recorders:
                    each.answer(system, question)
        return record

    try:
        system_metrics, system_timing = evaluate(system, questions, ks, progress, "system",
                                                 on_question=recorder("system"))
        system_info = system.describe()
    finally:
        system.close()
    try:
        baseline_metrics, baseline_timing = evaluate(baseline, questions, ks, progress, "baseline",
                                                     on_question=recorder("baseline"))
        baseline_info = baseline.describe()
    finally:
        baseline.close()

    types: dict[str, int] = {}
    for question in questions:
        types[question.type] = types.get(question.type, 0) + 1
    config = {
        "models": {"embedder": system_info.get("embedder"), "dim": system_info.get("dim")},
        "system": system_info,
        "baseline": baseline_info,
        "memkern_version": _memkern_version(),
        "git_commit": _git_commit(),
        "data_path": str(path.resolve()),
        "data_sha256": _sha256(path),
        "ks": list(ks),
        "questions": {**dict(sorted(types.items())), "total": len(questions),
                      "abstention": sum(q.abstention for q in questions)},
        "turns": sum(len(q.conversation.turns) for q in questions),
        "deep_path_share": deep_path_share([q.text for q in questions]),
        "search_config": describe_search_config(search_config),
        "question_ids": [q.id for q in questions],
    }
    overall_s, overall_b = system_metrics[OVERALL], baseline_metrics[OVERALL]
    ratios = {key: (round(overall_s[key] / overall_b[key], 4) if overall_s.get(key) is not None
                    and overall_b.get(key) else None) for key in metric_keys(ks)}
    result = {"system": system_metrics, "baseline": baseline_metrics,
              "timing": {**system_timing, "baseline": baseline_timing}, "config": config, "ratios": ratios,
              "questions": per_question}
    if recorders:
        from memkern.prompts import ORGANISED_PROMPT_SHA256, PLAIN_PROMPT_SHA256

        config["models"]["answer_llm"] = model_name(answer_llm)
        config["prompts"] = {"answer": ORGANISED_PROMPT_SHA256, "answer_plain": PLAIN_PROMPT_SHA256,
                             **({"judge": judge_prompts_sha256()} if judge_llm is not None else {})}
        config["answer"] = {
            "top_k": answer_top_k, "conditions": list(conditions),
            "scoring": (f"LongMemEval judge prompts per question type, judge {model_name(judge_llm)}: correct when "
                        "its reply contains 'yes'" if judge_llm is not None else
                        "no judge: abstention correct when the answer says the information is not available; "
                        "others correct when the normalised gold appears as whole words in the normalised answer "
                        "(exact containment); token F1 beside it"),
        }
        result["qa"] = {r.condition: r.summary() for r in recorders}
    return result


def format_report(result: dict[str, Any]) -> str:
    """A plain-text report of a :func:`run_longmemeval` result: question types x main metrics, then timing."""
    config = result.get("config", {})
    ks = list(config.get("ks") or DEFAULT_KS)
    k_turn = 10 if 10 in ks else max(ks)
    k_session = 5 if 5 in ks else max(ks)
    main = [f"session_all@{k_session}", f"session_all@{k_turn}", f"turn_any@{k_turn}", f"session_ndcg@{DEPTH}",
            f"context_tokens@{DEPTH}"]
    system, baseline = result["system"], result["baseline"]
    questions = config.get("questions", {})
    lines = [f"LongMemEval retrieval: memkern vs BM25 over turns; {questions.get('total')} questions "
             f"({questions.get('abstention')} abstention, not scored), {config.get('turns')} turns",
             f"data {config.get('data_path')}", ""]
    header = ["type", "n"] + [f"{m} sys/base" for m in main]
    rows = []
    for name in [t for t in system if t != OVERALL] + [OVERALL]:
        s, b = system.get(name, {}), baseline.get(name, {})
        row = [name, str(s.get("n"))]
        for metric in main:
            digits = 0 if metric.startswith("context") else 3
            row.append(f"{_fmt(s.get(metric), digits)} / {_fmt(b.get(metric), digits)}")
        rows.append(row)
    lines += _table(header, rows)
    lines += ["", "overall at every k"]
    rows = [[key, _fmt(system[OVERALL].get(key)), _fmt(baseline[OVERALL].get(key))] for key in metric_keys(ks)]
    lines += _table(["metric", "system", "baseline"], rows)
    timing = result.get("timing", {})
    base = timing.get("baseline", {})
    lines += conditions_report(result.get("qa"), score="accuracy", key=OVERALL, groups="types", correct="n_correct")
    lines += _qa_types(result.get("qa"))
    lines += ["", *_table(["timing", "system", "baseline"], [
        [label, _fmt(timing.get(key), 1), _fmt(base.get(key), 1)]
        for label, key in (("ingest turns/s", "ingest_turns_per_s"), ("search ms p50", "search_ms_p50"),
                           ("search ms p95", "search_ms_p95"))])]
    return "\n".join(lines)


def _qa_types(qa: dict[str, Any] | None) -> list[str]:
    """Correct answers per question type, one column per condition."""
    if not qa:
        return []
    names = list(qa)
    types = list(next(iter(qa.values()))["types"])
    rows = [[t, *(f"{qa[c]['types'].get(t, {}).get('n_correct', 0)}/{qa[c]['types'].get(t, {}).get('n', 0)}"
                  for c in names)] for t in types]
    return ["", "correct answers per type", *_table(["type", *names], rows)]


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return [line(header), "  ".join("-" * w for w in widths), *(line(row) for row in rows)]
