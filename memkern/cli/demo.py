"""``memkern demo``: a first look, offline.

A short conversation that ships with the package (``memkern/data/demo_conversation.json``:
Alice and her assistant over five sessions, March to May 2024) is stored in a cube, then
a few questions are answered by retrieval alone: for each, the best memories with their
source message, session, time, score and the parts of that score. One of Alice's facts
changes over time (she moves from Paris to Lisbon, and changes jobs); both statements
come back, each with its time, so that the newest can be told from the old.
"""

from __future__ import annotations

import json
import tempfile
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import typer
from rich.padding import Padding
from rich.text import Text

from memkern.cli import render
from memkern.errors import NotFoundError
from memkern.models import Hit

#: Widest the demo prints, so that it reads the same in any terminal of at least this width.
DEMO_WIDTH = 100
SHOWN = 3
#: Searched deeper than shown, to tell where the statements of a changing fact landed.
SEARCHED = 10


def load_conversation() -> dict[str, Any]:
    """The bundled demo conversation."""
    with resources.files("memkern").joinpath("data/demo_conversation.json").open("r", encoding="utf-8") as fh:
        return json.load(fh)


def _message_id(hit: Hit) -> str | None:
    ids = hit.memory.provenance.message_ids
    return ids[0] if ids else None


def run_demo(db: Path | None, cube_name: str = "demo", *, as_json: bool = False) -> dict[str, Any]:
    """Ingest the demo conversation into ``cube_name`` (in ``db``, or a temporary store) and
    answer its questions; prints them, and returns what it printed as a dict."""
    if db is not None:
        return _run(db, cube_name, as_json, temporary=False)
    with tempfile.TemporaryDirectory(prefix="memkern-demo-") as tmp:
        return _run(Path(tmp) / "demo.db", cube_name, as_json, temporary=True)


def _run(db: Path, cube_name: str, as_json: bool, temporary: bool) -> dict[str, Any]:
    from memkern.mos import MemOS

    conversation = load_conversation()
    sessions = conversation["sessions"]
    out = render.make_console(width=DEMO_WIDTH)
    with MemOS(db) as mos:
        try:
            cube = mos.get_cube(cube_name)
        except NotFoundError:
            cube = mos.create_cube(cube_name, owner=conversation.get("user", "demo"),
                                   description=conversation.get("title", "memkern demo"))
        added = duplicates = 0
        for session in sessions:
            result = cube.add(messages=session["messages"], session_id=session["id"])
            added += len(result.added)
            duplicates += len(result.duplicates)
        answers = []
        for question in conversation["questions"]:
            hits = cube.search(question["question"], top_k=SEARCHED)
            answers.append((question, hits))
        embedder = f"{mos.embedder.name} ({mos.embedder.dim} dimensions)"

    turns = sum(len(s["messages"]) for s in sessions)
    report: dict[str, Any] = {
        "cube": cube_name,
        "store": None if temporary else str(db),
        "embedder": embedder,
        "sessions": len(sessions),
        "turns": turns,
        "added": added,
        "already_stored": duplicates,
        "questions": [_answer_json(q, hits) for q, hits in answers],
    }
    if as_json:
        typer.echo(render.to_json(report))
        return report

    first, last = sessions[0]["date"], sessions[-1]["date"]
    out.rule(f"memkern demo: {conversation.get('title', '')}", align="left")
    where = "a temporary store" if temporary else str(db)
    stored = f"{added} new turn memories" + (f" ({duplicates} already there)" if duplicates else "")
    out.print(Text(f"Stored {stored} from {len(sessions)} sessions ({first} to {last}) in cube {cube_name!r} "
                   f"in {where}.\nEmbedder {embedder}; no LLM, no server, no network. Times are UTC."))
    for number, (question, hits) in enumerate(answers, 1):
        _print_answer(out, number, question, hits)
    out.print()
    out.rule(style="dim")
    hint = ("Keep the cube and explore it: memkern --db demo.db demo, then\n"
            "  memkern --db demo.db search demo \"Where does Alice live?\"\n"
            "  memkern --db demo.db list demo --session s4\n"
            "  memkern --db demo.db profile demo")
    if not temporary:
        hint = (f"The cube is kept in {db}. Explore it:\n"
                f"  memkern --db {db} search {cube_name} \"Where does Alice live?\"\n"
                f"  memkern --db {db} list {cube_name} --session s4\n"
                f"  memkern --db {db} profile {cube_name}")
    out.print(Text(hint, style="dim"))
    return report


def _answer_json(question: dict[str, Any], hits: list[Hit]) -> dict[str, Any]:
    expected = question.get("expect", [])
    ranks = {mid: rank for rank, hit in enumerate(hits, 1) if (mid := _message_id(hit)) is not None}
    return {
        "question": question["question"],
        "expected_message_ids": expected,
        "expected_ranks": {mid: ranks.get(mid) for mid in expected},
        "changing": bool(question.get("changing")),
        "hits": hits[:SHOWN],
    }


def _pad(renderable: Any, left: int) -> Padding:
    return Padding(renderable, (0, 0, 0, left), expand=False)


def _print_answer(out: Any, number: int, question: dict[str, Any], hits: list[Hit]) -> None:
    out.print()
    out.print(Text(f"Q{number}  {question['question']}", style="bold"))
    if not hits:
        out.print(_pad(Text("(nothing found)"), 4))
        return
    for rank, hit in enumerate(hits[:SHOWN], 1):
        memory = hit.memory
        prov = memory.provenance
        head = Text(f"{rank}. ", style="bold")
        head.append(f"score {hit.score:.4f}", style="cyan")
        head.append(f"   msg {_message_id(hit) or '-'}   session {prov.session_id or '-'}   "
                    f"{render.fmt_time(memory.event_time)}")
        out.print(_pad(head, 2))
        out.print(_pad(Text(render.truncate(memory.text, 300)), 5))
        dates = memory.metadata.get("dates") or [] if question.get("show_dates") else []
        for found in dates:
            out.print(_pad(Text(f"'{found['text']}' said on {render.fmt_time(memory.event_time)[:10]} "
                                   f"= {found['date']} ({found['granularity']}), resolved when stored",
                                   style="green"), 5))
        if hit.slot is not None:  # what the profile knows of the slot the question asks about
            note = (f"current {hit.slot.slot}: {hit.slot.value}" if hit.slot.current else
                    f"no longer true: {hit.slot.slot} {hit.slot.value}, then {hit.slot.superseded_by}")
            out.print(_pad(Text(note, style="green" if hit.slot.current else "yellow"), 5))
        out.print(_pad(Text(render.parts_line(hit.parts, digits=3), style="dim"), 5))
    if question.get("changing"):
        _print_timeline(out, question, hits)
    elif question.get("note"):
        out.print(_pad(Text(question["note"], style="italic"), 2))


def _print_timeline(out: Any, question: dict[str, Any], hits: list[Hit]) -> None:
    """Where the statements of a fact that changed came back, oldest first, the newest marked."""
    expected = set(question.get("expect", []))
    found = [(rank, hit) for rank, hit in enumerate(hits, 1) if _message_id(hit) in expected]
    if not found:
        return
    found.sort(key=lambda pair: pair[1].memory.event_time or datetime.min)
    note = question.get("note") or "This fact changed over time."
    out.print(_pad(Text(f"{note} Both statements came back, oldest first:", style="italic"), 2))
    quotes = question.get("quotes", {})
    for position, (rank, hit) in enumerate(found):
        message_id = _message_id(hit) or "-"
        line = Text(f"{render.fmt_time(hit.memory.event_time)}  msg {message_id}  rank {rank}  ")
        quote = quotes.get(message_id)
        # The quote is a phrase of the stored memory itself, checked here, never a paraphrase.
        line.append(f'"{quote}"' if quote and quote in hit.memory.text else render.truncate(hit.memory.text, 50))
        if position == len(found) - 1 and len(found) > 1:
            line.append("  <- newest", style="bold green")
        out.print(_pad(line, 5))
    missing = expected - {_message_id(hit) for _, hit in found}
    if missing:
        out.print(_pad(Text(f"(not in the top {SEARCHED}: {', '.join(sorted(missing))})", style="dim"), 5))
