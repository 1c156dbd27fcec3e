"""``memkern add CUBE --messages FILE``: a message file added in chunks, with a progress bar.

One ``add`` takes at most ``MAX_MESSAGES_PER_ADD`` messages and a file may hold several
sessions, so the file is split (``inputs.batches``: file order kept, one session per chunk)
and each chunk is one ``add`` call through the dispatcher, with the command's other
arguments. The chunks' results are folded into one ``AddResult``, so the output is the same
whatever the file's size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from memkern.cli import render
from memkern.cli.inputs import BATCH, batches, parse_messages, read_source
from memkern.models import AddResult, ExtractionReport
from memkern.reader.llm_reader import merge_report


def progress_bar(transient: bool = False) -> Progress:
    """A progress bar on standard error (standard output stays the command's result)."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        console=render.make_console(stderr=True), transient=transient,
    )


def combine(into: AddResult, result: AddResult) -> None:
    """Fold one chunk's ``AddResult`` into the total: writes, duplicates, decisions, jobs and the
    extraction report (calls and facts summed, batches and rejections kept, the worst status)."""
    into.added.extend(result.added)
    into.duplicates.extend(result.duplicates)
    into.updated.extend(result.updated)
    into.decisions.extend(result.decisions)
    into.jobs.extend(result.jobs)
    if result.extraction is None:
        return
    if into.extraction is None:
        into.extraction = ExtractionReport(model=result.extraction.model)
    merge_report(into.extraction, result.extraction)


def add_messages(add: Callable[[dict[str, Any]], AddResult], args: dict[str, Any],
                 read_ahead: Callable[[list[dict[str, Any]]], None] | None = None) -> AddResult:
    """Add the messages of the file ``args["messages"]`` names, in chunks; ``add(args)`` runs one call.
    ``read_ahead(messages)``, when given, is told the current and the next chunk before the current
    one is added (``memkern.ops.writes.read_turns_ahead``: the guard reads the next meanwhile)."""
    raw, source_name = read_source(args["messages"], "messages file", "--messages")
    messages = parse_messages(raw, source_name)
    chunks = list(batches(messages, args.get("session_id")))  # every chunk checked before the first is added
    combined = AddResult()

    def add_all(advance: Callable[[int], None]) -> None:
        for index, (session_id, chunk) in enumerate(chunks):
            if read_ahead is not None:  # this chunk (if not read ahead yet) and the next
                for _, coming in chunks[index:index + 2]:
                    read_ahead(coming)
            combine(combined, add({**args, "messages": chunk, "session_id": session_id}))
            advance(len(chunk))

    if len(messages) <= BATCH:
        add_all(lambda _: None)
        return combined
    with progress_bar() as progress:
        task = progress.add_task(f"adding to {args['cube']}", total=len(messages))
        add_all(lambda done: progress.advance(task, done))
    return combined
