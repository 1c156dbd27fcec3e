"""The built-in job types. Each handler is idempotent: run twice (a worker died after the
effect but before recording completion), it has its effect once.

=========  ===================================================================================
extract    LLM extraction over the cube's stored turns not yet extracted (or the turns named
           in ``payload["memory_ids"]``); turns are marked ``extracted`` after their facts are
           applied. The extraction calls share one deadline (``MEMKERN_LLM_DEADLINE_S``);
           past it the job applies nothing and is retried. A re-run after a crash re-reads
           the unmarked turns; the update decisions turn facts already written into NOOPs
           (same text), so nothing is stored twice.
organize   fuse near-duplicate facts (``memkern.ops.compose.fuse_duplicates``: archived ones are
           not seen again), summarize sessions without an LLM (top keywords and key lines;
           the summary names its session and turn count and links its turns, and is only
           rewritten when the session grew).
promote    hot plaintext memories (accessed often and lately, or requested) to activation
           memory through the registered ``promote`` hooks, then marked ``activated``
           (a marked memory is not promoted again). No hook: a no-op whose result says why.
distil     the same for parametric memory (``distil`` hooks, marker ``distilled``).
demote     the forgetting curve (``memkern.lifecycle.forgetting``): active memories whose
           retention fell below the threshold are archived with the curve's numbers as the
           reason. Archived memories are not considered again.
rebuild    stale caches: every registered ``rebuild`` hook (or ``payload["caches"]``);
           built in: ``search_index`` (drop this process's in-memory index of the cube).
=========  ===================================================================================

Every handler works through ``job.op``, the operation context the dispatcher opened for the
user who queued the job, so a job can do no more than that user could.
``register_builtins(registry)`` puts them, and the activation and parametric hooks, into the
kernel's registry.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from memkern.errors import InvalidInputError, NotFoundError
from memkern.jobs import JobRegistry
from memkern.lifecycle.forgetting import CurveParams, memory_retention, plan_demotions
from memkern.llm import deadline
from memkern.memory import activation, parametric
from memkern.models import Filters, LifecycleState, MemoryItem, MemoryKind, utcnow
from memkern.ops import lifecycle, memories, versions
from memkern.ops.compose import fuse_duplicates
from memkern.ops.facts import FACT_KINDS, apply_facts
from memkern.reader.llm_reader import extract_facts

if TYPE_CHECKING:
    from memkern.ops.context import OpContext
    from memkern.scheduler.context import JobContext

EXTRACTED = "extracted"
_WORD = re.compile(r"[^\W\d_]{3,}", re.UNICODE)
_STOP = frozenset("""the and for that this with you your are was were have has had not but what when where who
why how all any can could would should will just about from they them their there then than into out our ours
she her his him its it's i'm you're yeah yes okay well really also like get got one some more very much been
being did does doing dont don't didn't going want know think thing things make made said say see let lets
because which while over under again still even too here only other such own same these those each both few
most off once being after before between through during above below down further any nor now""".split())


def _flush_access(ctx: JobContext) -> None:
    ctx.op.kernel.access.flush()


# -- extract ---------------------------------------------------------------------------------------
def extract(ctx: JobContext) -> dict[str, Any]:
    from memkern.scheduler.context import JobFailed

    llm = ctx.op.kernel.llm
    if llm is None:
        raise JobFailed("no LLM configured for this worker (give MemOS(llm=...) or set MEMKERN_LLM); "
                        "retry the job once one is")
    cube = ctx.cube
    store = ctx.op.kernel.store
    wanted = ctx.payload.get("memory_ids")
    if wanted:
        found = store.get_memories(cube.id, [str(i) for i in wanted])
        turns = [found[i] for i in wanted if i in found]
    else:
        turns = store.list_memories(cube.id, Filters(kind=MemoryKind.TURN, state=LifecycleState.ACTIVE))
    turns = [t for t in turns if t.kind is MemoryKind.TURN and t.state is LifecycleState.ACTIVE]
    done = ctx.queue.marked(cube.id, EXTRACTED, [t.id for t in turns])
    todo = [t for t in turns if t.id not in done]
    if not todo:
        ctx.note("no turns left to extract")
        return {"turns": 0}
    ctx.check()
    with deadline.llm_deadline():  # one deadline for the extraction calls, as in a foreground add
        # Windows are read in order until the deadline: those read count, the rest are left for later.
        facts, report = extract_facts(llm, todo, stop=deadline.passed)
    read, unread = todo[:report.turns], todo[report.turns:]
    if not read:
        # Not even one window within the deadline: apply nothing, leave the turns unmarked, and let the queue retry.
        raise RuntimeError(f"{deadline.timed_out_reason()}; the {len(todo)} turns stay stored and unmarked, "
                           f"and the job is retried")
    ctx.check()
    result = apply_facts(ctx.op, facts, llm=llm, actor=f"llm:{getattr(llm, 'name', 'llm')}")
    if report.status == "fallback" and report.error and not facts:
        # Nothing usable came back (the model was unreachable): leave the turns unmarked and retry.
        raise RuntimeError(f"extraction fell back: {report.error}")
    ctx.queue.mark(cube.id, EXTRACTED, [t.id for t in read], ctx.job.id)
    outcome = {"turns": len(read), "extraction": report.model_dump(mode="json", exclude={"batches"}),
                   "added": [m.id for m in result.added], "updated": [m.id for m in result.updated],
                   "decisions": Counter(d.action for d in result.decisions)}
    if unread:
        # A backlog longer than one deadline still advances: what was read is kept, and a new job takes the rest.
        rest = ctx.op.kernel.jobs.enqueue("extract", cube.id, {**ctx.payload, "memory_ids": [t.id for t in unread]})
        ctx.note(f"{deadline.timed_out_reason()} after {len(read)} of {len(todo)} turns; job {rest.id} "
                 f"extracts the other {len(unread)}")
        outcome.update(unread=len(unread), continued_in=rest.id)
    return outcome


# -- organize --------------------------------------------------------------------------------------
def organize(ctx: JobContext) -> dict[str, Any]:
    cube = ctx.cube
    policy = ctx.policy
    fused = fuse_duplicates(ctx.op, [cube.id], cosine=policy.dedup_cosine, actor=ctx.actor,
                            reason="organize: near-duplicate")
    ctx.check()
    summaries = summarize_sessions(ctx)
    return {"fused_groups": len(fused.groups), "archived_duplicates": fused.archived, **summaries}


def _words(text: str) -> list[str]:
    return [w for w in (m.group(0).lower() for m in _WORD.finditer(text)) if w not in _STOP]


def summarize(turns: list[MemoryItem], doc_freq: Counter[str], n_sessions: int, keywords: int,
              lines: int) -> tuple[str, list[str]]:
    """A zero-LLM summary: the session's top keywords by tf-idf, and its key lines."""
    tf = Counter(w for t in turns for w in _words(t.text))
    weight = {w: c * math.log((1 + n_sessions) / (1 + doc_freq[w])) + c * 1e-6 for w, c in tf.items()}
    top = [w for w, _ in sorted(weight.items(), key=lambda kv: (-kv[1], kv[0]))[:keywords]]
    top_set = set(top)
    scored = []
    for position, turn in enumerate(turns):
        words = _words(turn.text)
        score = sum(weight.get(w, 0.0) for w in set(words) & top_set) / math.sqrt(1 + len(words))
        scored.append((score, position))
    chosen = sorted(p for _, p in sorted(scored, key=lambda sp: (-sp[0], sp[1]))[:lines])
    key_lines = []
    for p in chosen:
        turn = turns[p]
        who = f"{turn.provenance.speaker}: " if turn.provenance.speaker else ""
        text = " ".join(turn.text.split())
        key_lines.append(who + (text if len(text) <= 200 else text[:197] + "..."))
    return "; ".join(top), key_lines


def summarize_sessions(ctx: JobContext) -> dict[str, Any]:
    policy = ctx.policy
    cube = ctx.cube
    store = ctx.op.kernel.store
    turns = store.list_memories(cube.id, Filters(kind=MemoryKind.TURN, state=LifecycleState.ACTIVE))
    sessions: dict[str, list[MemoryItem]] = {}
    for turn in turns:
        if turn.provenance.session_id is not None:
            sessions.setdefault(turn.provenance.session_id, []).append(turn)
    doc_freq: Counter[str] = Counter()
    for session_turns in sessions.values():
        doc_freq.update({w for t in session_turns for w in _words(t.text)})
    existing: dict[str, MemoryItem] = {}
    for item in store.list_memories(cube.id, Filters(kind=MemoryKind.SUMMARY, state=None)):
        if item.metadata.get("generated_by") == "scheduler:organize" and item.provenance.session_id:
            existing[item.provenance.session_id] = item
    written, refreshed, unchanged = 0, 0, 0
    for session_id, session_turns in sessions.items():
        if len(session_turns) < policy.summarize_min_turns:
            continue
        session_turns.sort(key=lambda t: (t.provenance.position if t.provenance.position is not None else 0))
        old = existing.get(session_id)
        if old is not None and old.metadata.get("turn_count") == len(session_turns):
            unchanged += 1
            continue
        ctx.check()
        keywords, lines = summarize(session_turns, doc_freq, len(sessions), policy.summary_keywords,
                                    policy.summary_lines)
        text = f"Summary of session {session_id} ({len(session_turns)} turns). Keywords: {keywords}."
        if lines:
            text += " Key lines: " + " | ".join(lines)
        times = [t.event_time for t in session_turns if t.event_time]
        metadata = {"generated_by": "scheduler:organize", "turn_count": len(session_turns),
                    "turn_ids": [t.id for t in session_turns], "keywords": keywords.split("; "),
                    "summary_method": "tfidf-keywords+key-lines"}
        if old is None:
            memories.add(ctx.op, text=text, kind=MemoryKind.SUMMARY, session_id=session_id, metadata=metadata,
                         time=max(times) if times else None, actor=ctx.actor, infer=False)
            written += 1
        else:
            versions.update(ctx.op, old.id, text=text, metadata=metadata, reason="organize: session grew",
                            actor=ctx.actor)
            refreshed += 1
    return {"summaries_written": written, "summaries_refreshed": refreshed, "summaries_unchanged": unchanged}


# -- promote / distil ------------------------------------------------------------------------------
def _candidates(ctx: JobContext, *, min_access: int, kinds: list[MemoryKind] | tuple[MemoryKind, ...],
                request: str, done_marker: str, top_n: int, recent_days: float | None = None,
                min_age_days: float | None = None) -> list[MemoryItem]:
    _flush_access(ctx)
    now = utcnow()
    store = ctx.op.kernel.store
    items = store.list_memories(ctx.cube.id, Filters(state=LifecycleState.ACTIVE))
    wanted = {str(i) for i in ctx.payload.get("memory_ids", [])}
    requested, hot = [], []
    for item in items:
        marks = lifecycle.markers(item)
        if done_marker in marks:
            continue
        if item.id in wanted or request in marks:
            requested.append(item)
            continue
        if item.kind not in kinds or item.access_count < min_access:
            continue
        if recent_days is not None and (item.last_accessed_at is None
                                        or now - item.last_accessed_at > timedelta(days=recent_days)):
            continue
        if min_age_days is not None and now - item.recorded_at < timedelta(days=min_age_days):
            continue
        hot.append(item)
    hot.sort(key=lambda i: (-i.access_count, -(i.last_accessed_at or i.recorded_at).timestamp(), i.id))
    return requested + hot[:top_n]


def _hand_over(ctx: JobContext, kind: str, marker: str, items: list[MemoryItem]) -> dict[str, Any]:
    if not items:
        ctx.note(f"nothing to {kind}")
        return {"candidates": 0, "marked": []}
    registered = ctx.registry.hooks(kind)
    if not registered:
        ctx.note(f"no {kind} handler registered (the {'activation' if kind == 'promote' else 'parametric'} "
                 f"memory module is not loaded): {len(items)} candidate(s) left as they are")
        return {"candidates": len(items), "marked": [], "skipped": f"no {kind} handler registered"}
    taken: dict[str, str] = {}
    for name, fn in sorted(registered.items()):
        ctx.check()
        for memory_id in fn(ctx.op, list(items)) or []:
            taken.setdefault(str(memory_id), name)
    marked = []
    for item in items:
        if item.id in taken:
            try:
                lifecycle.mark(ctx.op, item.id, marker, f"{kind} job {ctx.job.id}", actor=ctx.actor,
                               detail={"handler": taken[item.id]})
                marked.append(item.id)
            except (NotFoundError, InvalidInputError) as exc:  # deleted or archived meanwhile
                ctx.note(f"could not mark {item.id}: {exc}")
    if marked and kind == "promote" and ctx.registry.hooks("rebuild"):
        # Marking writes new versions, which makes a just-built activation stale: rebuild it once
        # (the marked memories are not promoted again, so this does not loop).
        ctx.enqueue("rebuild", ctx.cube, {"reason": f"promote job {ctx.job.id} marked memories"},
                              dedup_key=f"rebuild:{ctx.cube.id}", as_user=ctx.user)
    return {"candidates": len(items), "marked": marked, "handlers": sorted(registered)}


def promote(ctx: JobContext) -> dict[str, Any]:
    p = ctx.policy
    items = _candidates(ctx, min_access=p.promote_min_access, kinds=p.promote_kinds,
                        request=lifecycle.ACTIVATION_REQUESTED, done_marker=lifecycle.ACTIVATED,
                        top_n=p.promote_top_n, recent_days=p.promote_window_days)
    return _hand_over(ctx, "promote", lifecycle.ACTIVATED, items)


def distil(ctx: JobContext) -> dict[str, Any]:
    p = ctx.policy
    items = _candidates(ctx, min_access=p.distil_min_access, kinds=FACT_KINDS,
                        request=lifecycle.DISTILLATION_REQUESTED, done_marker=lifecycle.DISTILLED,
                        top_n=p.distil_top_n, min_age_days=p.distil_min_age_days)
    return _hand_over(ctx, "distil", lifecycle.DISTILLED, items)


# -- demote ----------------------------------------------------------------------------------------
def demote(ctx: JobContext) -> dict[str, Any]:
    p = ctx.policy
    _flush_access(ctx)
    params = CurveParams(s0_days=p.forgetting_s0_days, growth=p.forgetting_growth,
                         importance_weight=p.importance_weight)
    now = utcnow()
    threshold = float(ctx.payload.get("threshold", p.demote_threshold))
    store = ctx.op.kernel.store
    items = store.list_memories(ctx.cube.id, Filters(state=LifecycleState.ACTIVE))
    plan = plan_demotions(items, now, threshold, params=params, kinds=p.demote_kinds, limit=p.demote_batch)
    archived = []
    for memory_id, _ in plan:
        ctx.check()
        current = store.get_memories(ctx.cube.id, [memory_id]).get(memory_id)
        if current is None or current.state is not LifecycleState.ACTIVE:
            continue
        found = memory_retention(current, now, params)  # re-check: it may have been read since planning
        if found.retention >= threshold:
            continue
        lifecycle.archive(ctx.op, memory_id, reason="demote: " + found.explain(threshold), actor=ctx.actor)
        archived.append({"id": memory_id, "retention": round(found.retention, 5)})
    return {"planned": len(plan), "archived": archived, "threshold": threshold}


# -- rebuild ---------------------------------------------------------------------------------------
def rebuild_search_index(op: OpContext) -> dict[str, Any]:
    """Drop this process's in-memory search index of the cube (the next search rebuilds it)."""
    op.kernel.indexes.forget(op.cube.id)
    return {"dropped": True}


def rebuild(ctx: JobContext) -> dict[str, Any]:
    registered = ctx.registry.hooks("rebuild")
    wanted = ctx.payload.get("caches")
    names = sorted(registered) if not wanted else [str(n) for n in wanted]
    results: dict[str, Any] = {}
    for name in names:
        ctx.check()
        fn = registered.get(name)
        if fn is None:
            ctx.note(f"no rebuild handler named {name!r}")
            continue
        results[name] = fn(ctx.op) or {}
    return {"rebuilt": results}


def register_builtins(registry: JobRegistry) -> None:
    """The built-in job types and hooks, registered into a worker's registry."""
    for job_type, handler in (("extract", extract), ("organize", organize), ("promote", promote),
                              ("distil", distil), ("demote", demote), ("rebuild", rebuild)):
        registry.register_job_type(job_type, handler, replace=True)
    registry.register_hook("rebuild", rebuild_search_index, name="search_index")
    registry.register_hook("promote", activation.promote_hook, name="activation")
    registry.register_hook("rebuild", activation.rebuild_hook, name="activation")
    registry.register_hook("distil", parametric.distil_hook, name="parametric")
