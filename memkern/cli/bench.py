"""``memkern bench ...``: the benchmarks, each printing its numbers against a baseline of the same run.

Each command is one self-contained function on ``bench_app``: it takes its options, runs
its benchmark (``memkern.bench.*``, imported when the command runs), and hands the result
to ``print_report`` (its text report, or JSON with the root ``--json``; ``--json OUT``
also writes it to a file). To add a benchmark, add one such function here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress

from memkern.cli.ingest import progress_bar
from memkern.cli.inputs import parse_ks
from memkern.cli.state import emit_json, state_of, write_json
from memkern.errors import LLMNotConfiguredError

bench_app = typer.Typer(help="Benchmarks: LoCoMo retrieval quality, ingest and search speed at scale, load, "
                             "activation and parametric memory, the poisoning guard.", no_args_is_help=True)

#: ``--json OUT``: the benchmarks' own option to keep the result in a file (the root ``--json`` prints it).
OutOption = Annotated[Path | None, typer.Option("--json", metavar="OUT", dir_okay=False,
                                                help="Also write the result as JSON here.")]
ConditionsOption = Annotated[str | None, typer.Option(metavar="C,C,...", help=(
    "With --answer: answer in each condition, same model, same questions: organised (what chat shows: default "
    "search, the turns around the best hits, organised context), unlinked (the same without those turns), plain "
    "(top-k without the deep path, plain list), full (the whole history, where it fits)."))]
RecipeOption = Annotated[str | None, typer.Option(metavar="NAME", help="Search recipe: hybrid (default), lexical, "
                                                                       "dense or recent.")]


def print_report(ctx: typer.Context, result: dict[str, Any], out: Path | None,
                 format_report: Callable[[dict[str, Any]], str]) -> None:
    """A benchmark's result: JSON on stdout with --json, else its text report; also to ``out``."""
    if out is not None:
        write_json(out, result)
    if state_of(ctx).json:
        emit_json(result)
        return
    typer.echo(format_report(result))
    if out is not None:
        typer.echo(f"\nwrote {out}")


def labelled_tasks(progress: Progress) -> Callable[[str, int, int], None]:
    """A ``progress(label, done, total)`` callback for the benchmarks: one bar per label."""
    tasks: dict[str, Any] = {}

    def on_progress(label: str, done: int, total: int) -> None:
        if label not in tasks:
            tasks[label] = progress.add_task(label, total=total)
        progress.update(tasks[label], completed=done, total=total)

    return on_progress


def existing_file(path: Path | None, option: str) -> None:
    """A usage error (exit 2) when a data file option names no file."""
    if path is not None and not path.is_file():
        raise typer.BadParameter(f"no such file: {str(path)!r}", param_hint=option)


def checked_recipe(recipe: str | None) -> str | None:
    from memkern.retrieval.config import RECIPES

    if recipe is not None and recipe not in RECIPES:
        raise typer.BadParameter(f"unknown recipe {recipe!r}; known: {', '.join(sorted(RECIPES))}",
                                 param_hint="--recipe")
    return recipe


@bench_app.command("locomo")
def bench_locomo(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option(metavar="PATH", help="The LoCoMo JSON file (locomo10.json).", dir_okay=False)],
    k: Annotated[str, typer.Option("--k", metavar="K,K,...", help="Cut-offs, comma-separated.")] = "1,3,5,10,25",
    out: OutOption = None,
    recipe: RecipeOption = None,
    answer: Annotated[bool, typer.Option("--answer", help="Also answer each question with the MEMKERN_LLM model "
                                                          "and score it (LoCoMo F1).")] = False,
    judge_model: Annotated[str | None, typer.Option(metavar="M", help="Judge model for J (with --answer).")] = None,
    judge_base_url: Annotated[str | None, typer.Option(
        metavar="U", help="Judge endpoint, OpenAI-compatible (default: MEMKERN_LLM_BASE_URL).")] = None,
    limit_questions: Annotated[int | None, typer.Option(metavar="N", min=1,
                                                        help="Answer only the first N questions.")] = None,
    extract: Annotated[bool, typer.Option("--extract", help="Ingest with the MEMKERN_LLM model (fact extraction); "
                                                            "reports its cost and extraction quality.")] = False,
    conditions: ConditionsOption = None,
) -> None:
    """Retrieval quality on LoCoMo: memkern vs a BM25 baseline, same data, same metrics."""
    from memkern.bench.locomo import format_report, run_locomo
    from memkern.bench.qa import make_judge
    from memkern.llm import NO_LLM_MESSAGE, llm_from_env

    ks = parse_ks(k)
    existing_file(data, "--data")
    if not answer and (judge_model or judge_base_url or limit_questions or conditions):
        raise typer.BadParameter("--judge-model, --judge-base-url, --limit-questions and --conditions apply to "
                                 "--answer", param_hint="--answer")
    llm = None
    if answer or extract:
        llm = llm_from_env()
        if llm is None:
            raise LLMNotConfiguredError(f"--answer and --extract: {NO_LLM_MESSAGE}")
    judge = make_judge(judge_model, judge_base_url) if answer else None
    with progress_bar() as progress:
        result = run_locomo(data, ks=ks, progress=labelled_tasks(progress), search_config=checked_recipe(recipe),
                            answer_llm=llm if answer else None, judge_llm=judge, limit_questions=limit_questions,
                            ingest_llm=llm if extract else None,
                            answer_conditions=conditions.split(",") if conditions else None)
    print_report(ctx, result, out, format_report)


@bench_app.command("longmemeval")
def bench_longmemeval(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option(metavar="PATH", help="A LongMemEval JSON file (e.g. longmemeval_s).",
                                       dir_okay=False)],
    k: Annotated[str, typer.Option("--k", metavar="K,K,...", help="Cut-offs, comma-separated.")] = "1,3,5,10",
    out: OutOption = None,
    recipe: RecipeOption = None,
    limit_questions: Annotated[int | None, typer.Option(metavar="N", min=1,
                                                        help="Only the first N questions.")] = None,
    limit: Annotated[int | None, typer.Option(metavar="N", min=1, help=(
        "Only N questions spread over question types and abstention (a fixed subset; its ids are printed)."))] = None,
    answer: Annotated[bool, typer.Option("--answer", help="Also answer each question with the MEMKERN_LLM model "
                                                          "and score it.")] = False,
    judge_model: Annotated[str | None, typer.Option(metavar="M", help=(
        "Judge model (with --answer): LongMemEval's judge prompts; without one, exact containment / F1."))] = None,
    judge_base_url: Annotated[str | None, typer.Option(
        metavar="U", help="Judge endpoint, OpenAI-compatible (default: MEMKERN_LLM_BASE_URL).")] = None,
    conditions: ConditionsOption = None,
) -> None:
    """Retrieval quality on LongMemEval (one fresh cube per question): memkern vs BM25 over turns."""
    from memkern.bench.longmemeval import format_report, run_longmemeval
    from memkern.bench.qa import make_judge
    from memkern.llm import NO_LLM_MESSAGE, llm_from_env

    existing_file(data, "--data")
    if not answer and (judge_model or judge_base_url or conditions):
        raise typer.BadParameter("--judge-model, --judge-base-url and --conditions apply to --answer",
                                 param_hint="--answer")
    llm = None
    if answer:
        llm = llm_from_env()
        if llm is None:
            raise LLMNotConfiguredError(f"--answer: {NO_LLM_MESSAGE}")
    judge = make_judge(judge_model, judge_base_url) if answer else None
    with progress_bar() as progress:
        result = run_longmemeval(data, ks=parse_ks(k), progress=labelled_tasks(progress),
                                 search_config=checked_recipe(recipe), limit_questions=limit_questions,
                                 stratified=limit, answer_llm=llm, judge_llm=judge,
                                 answer_conditions=conditions.split(",") if conditions else ("organised",))
    if limit is not None and not state_of(ctx).json:
        typer.echo(f"questions ({len(result['config']['question_ids'])}): "
                   + ", ".join(result["config"]["question_ids"]), err=True)
    print_report(ctx, result, out, format_report)


@bench_app.command("ingest")
def bench_ingest(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option(metavar="PATH", help="A LoCoMo or LongMemEval JSON file.", dir_okay=False)],
    max_turns: Annotated[int, typer.Option(metavar="N", min=1, help="Stop after the session that reaches N turns.")]
    = 3000,
    read_ahead: Annotated[bool, typer.Option(help="Read each next session's turns ahead in the guard's helper, as "
                                             "`memkern add --messages FILE` does (off: successive adds alone).")]
    = True,
    out: OutOption = None,
) -> None:
    """Zero-LLM ingestion speed with the write policy on (PII, guard), and the share of each stage."""
    from memkern.bench.ingest import format_report, run_ingest

    existing_file(data, "--data")
    with progress_bar() as progress:
        result = run_ingest(data, max_turns=max_turns, progress=labelled_tasks(progress), read_ahead=read_ahead)
    print_report(ctx, result, out, format_report)


@bench_app.command("scale")
def bench_scale(
    ctx: typer.Context,
    items: Annotated[int, typer.Option(metavar="N", help="Conversation turns to ingest.", min=1)] = 100_000,
    queries: Annotated[int, typer.Option(metavar="N", help="Questions to time per recipe.", min=1)] = 200,
    seed: Annotated[int, typer.Option(metavar="N", help="Seed of the synthetic conversations.")] = 7,
    store_dir: Annotated[Path | None, typer.Option(
        "--store-dir", metavar="DIR", help="Keep the store in DIR; a later run with the same --items and --seed "
                                           "reuses it instead of ingesting again.")] = None,
    out: OutOption = None,
) -> None:
    """Ingest and search speed on synthetic conversations, in a temporary store (or --store-dir)."""
    from memkern.bench.scale import format_report, run_scale

    with progress_bar() as progress:
        result = run_scale(items=items, queries=queries, seed=seed, progress=labelled_tasks(progress),
                           store_dir=store_dir)
    print_report(ctx, result, out, format_report)


@bench_app.command("mixed")
def bench_mixed(
    ctx: typer.Context,
    items: Annotated[int, typer.Option(metavar="N", help="Conversation turns to ingest first.", min=2)] = 10_000,
    rounds: Annotated[int, typer.Option(metavar="N", help="Rounds of search, add, search, update, search, "
                                                          "delete, search.", min=1)] = 200,
    seed: Annotated[int, typer.Option(metavar="N", help="Seed of the synthetic conversations.")] = 7,
    out: OutOption = None,
) -> None:
    """The agent loop: searches right after an add, an update or a delete against a search alone."""
    from memkern.bench.mixed import format_report, run_mixed

    with progress_bar() as progress:
        result = run_mixed(items=items, rounds=rounds, seed=seed, progress=labelled_tasks(progress))
    print_report(ctx, result, out, format_report)


@bench_app.command("load")
def bench_load(
    ctx: typer.Context,
    store: Annotated[str | None, typer.Option(
        "--store", metavar="URL", help="Store to load: a SQLite path or postgresql://USER@HOST/DB[?schema=NAME] "
                                       "(default: $MEMKERN_STORE, else a temporary SQLite file). A fresh cube is "
                                       "created and deleted at the end.")] = None,
    clients: Annotated[int, typer.Option(metavar="N", help="Concurrent client processes.", min=1, max=64)] = 8,
    writes: Annotated[int, typer.Option(metavar="N", help="Writes per client.", min=1, max=100_000)] = 1000,
    search_every: Annotated[int, typer.Option(metavar="N", help="A search after every N writes (0: none).",
                                              min=0)] = 5,
    shared_every: Annotated[int, typer.Option(metavar="N", help="Every N-th write is one message all clients "
                                                               "send (dedup; 0: none).", min=0)] = 10,
    kill_at: Annotated[int | None, typer.Option(metavar="N", min=1, help="SIGKILL the server after N acknowledged "
                                                "writes, restart it, and check every acknowledged write.")] = None,
    nodes: Annotated[int, typer.Option(metavar="N", help="Server processes on the same store.", min=1, max=8)] = 1,
    timeout: Annotated[float, typer.Option(metavar="S", help="Stop everything after this many seconds.",
                                           min=1)] = 900.0,
    out: OutOption = None,
) -> None:
    """Concurrent clients against real `memkern serve` processes: throughput, latency, crash safety."""
    from memkern.bench.load import format_report, run_load

    state = state_of(ctx)
    url = store if store is not None else state.store
    if url is None and state.db is not None:
        url = str(state.db)
    if url is None:
        url = os.environ.get("MEMKERN_STORE") or None
    with progress_bar(transient=True) as progress:
        result = run_load(url, clients=clients, writes=writes, search_every=search_every, shared_every=shared_every,
                          kill_at=kill_at, nodes=nodes, timeout_s=timeout, progress=labelled_tasks(progress))
    print_report(ctx, result, out, format_report)
    if not result["ok"]:
        raise typer.Exit(1)


@bench_app.command("activation")
def bench_activation(
    ctx: typer.Context,
    tokens: Annotated[str, typer.Option("--tokens", metavar="N,N,...",
                                        help="Memory block sizes in tokens.")] = "512,1024,2048",
    reps: Annotated[int, typer.Option(metavar="N", min=1, help="Repetitions each way (median reported).")] = 3,
    max_new: Annotated[int, typer.Option("--max-new-tokens", metavar="N", min=1,
                                         help="Greedy tokens generated (compared both ways).")] = 16,
    data: Annotated[Path | None, typer.Option("--data", metavar="LOCOMO.json", dir_okay=False,
                                              help="Build blocks from LoCoMo turns instead of the demo.")] = None,
    out: OutOption = None,
) -> None:
    """Activation memory: time to first token with the restored KV cache vs reading the block (local model)."""
    from memkern.bench.activation import format_report, run_activation_bench

    sizes = parse_ks(tokens)
    if any(size < 256 for size in sizes):
        raise typer.BadParameter("block sizes start at 256 tokens", param_hint="--tokens")
    existing_file(data, "--data")
    result = run_activation_bench(sizes, reps=reps, max_new_tokens=max_new, data=data,
                                  progress=lambda msg: typer.echo(msg, err=True))
    print_report(ctx, result, out, format_report)


@bench_app.command("parametric")
def bench_parametric(
    ctx: typer.Context,
    facts: Annotated[int, typer.Option(metavar="N", min=1, max=30, help="Synthetic facts to distil (at most 30).")] = 30,
    epochs: Annotated[int, typer.Option(metavar="N", min=1, help="Training epochs.")] = 8,
    rank: Annotated[int, typer.Option(metavar="N", min=1, max=64, help="LoRA rank.")] = 8,
    lr: Annotated[float, typer.Option("--lr", metavar="X", help="Learning rate.")] = 2e-3,
    seed: Annotated[int, typer.Option(metavar="N", help="Training seed.")] = 0,
    out: OutOption = None,
) -> None:
    """Parametric memory: closed-book accuracy with and without a LoRA adapter distilled from synthetic facts."""
    from memkern.bench.parametric import format_report, run_parametric

    with progress_bar() as progress:
        result = run_parametric(facts=facts, epochs=epochs, rank=rank, learning_rate=lr, seed=seed,
                                progress=labelled_tasks(progress))
    print_report(ctx, result, out, format_report)


@bench_app.command("guard")
def bench_guard(
    ctx: typer.Context,
    locomo: Annotated[Path | None, typer.Option("--locomo", "--data", metavar="LOCOMO.json", dir_okay=False,
                                                help="LoCoMo file whose turns measure false positives.")] = None,
    lme: Annotated[Path | None, typer.Option("--lme", metavar="LME.json", dir_okay=False,
                                             help="LongMemEval file whose turns measure false positives.")] = None,
    lme_every: Annotated[int, typer.Option("--lme-every", min=1,
                                           help="Measure every k-th LongMemEval turn only (faster).")] = 1,
    model_check: Annotated[bool, typer.Option(
        "--model-check", help="Also measure the rules with the MEMKERN_LLM model's check of the texts they find "
                              "uncertain, on the evaluation splits.")] = False,
    out: OutOption = None,
) -> None:
    """Poisoning guard vs the old one: detection by style and false positives, dev and held-out halves."""
    from memkern.bench.guard import format_guard_report, run_guard_bench
    from memkern.llm import NO_LLM_MESSAGE, llm_from_env

    existing_file(locomo, "--locomo")
    existing_file(lme, "--lme")
    model = llm_from_env() if model_check else None
    if model_check and model is None:
        raise LLMNotConfiguredError(f"--model-check: {NO_LLM_MESSAGE}")
    print_report(ctx, run_guard_bench(locomo, lme, lme_every, model=model), out, format_guard_report)
