"""How the CLI shows things to people: rich tables, times, score breakdowns.

Everything a memory holds is user text, so it is always wrapped in ``rich.text.Text``
(never interpreted as markup: a turn like ``[image: ...]`` must print as written).
Machine-readable output does not come through here; see ``to_json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from pydantic_core import to_jsonable_python
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from memkern.models import CubeInfo, Hit, MemoryItem, MemoryLink, Operation, ScoreParts, TimelineNode

#: Widest the CLI draws, even on a wider terminal: tables of long texts read badly beyond it.
MAX_WIDTH = 120

#: Short labels for the score parts, in the order they are shown.
_PART_LABELS = {
    "lexical": "lexical", "dense": "dense", "session": "session", "neighbour": "neighbour",
    "speaker": "speaker", "date": "date", "recency": "recency",
}
_RAW_PARTS = ("cosine", "bm25")


def make_console(stderr: bool = False, width: int | None = None) -> Console:
    """A console that never guesses markup or highlights numbers in user text."""
    console = Console(stderr=stderr, highlight=False, emoji=False)
    limit = width or MAX_WIDTH
    if console.width > limit:
        console = Console(stderr=stderr, highlight=False, emoji=False, width=limit)
    return console


def to_json(value: Any) -> str:
    """One JSON document: Pydantic models as their own JSON, lists and dicts of them too."""
    return json.dumps(to_jsonable_python(value), indent=2, ensure_ascii=False)


def fmt_time(value: datetime | None, seconds: bool = False) -> str:
    """Times are stored in UTC and shown in UTC, without the offset (the headers say so)."""
    if value is None:
        return "-"
    return value.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def truncate(text: str, limit: int) -> str:
    """``text`` on one line, cut at a word boundary near ``limit`` characters with an ellipsis."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1]
    space = cut.rfind(" ")
    if space > limit * 0.6:
        cut = cut[:space]
    return cut.rstrip(" ,;:.") + "…"


def fmt_score(value: float) -> str:
    return f"{value:.4f}"


def score_parts(parts: ScoreParts) -> list[tuple[str, float]]:
    """The signals that contributed to a score (non-zero ones), in display order."""
    values = parts.model_dump()
    shown = [(label, float(values[name])) for name, label in _PART_LABELS.items()
             if isinstance(values.get(name), (int, float)) and values[name]]
    # Parts added to ScoreParts later still show up, after the known ones.
    for name, value in values.items():
        if name not in _PART_LABELS and name not in _RAW_PARTS and isinstance(value, (int, float)) and value:
            shown.append((name, float(value)))
    return shown


def raw_similarities(parts: ScoreParts) -> str:
    """``cos 0.51  bm25 2.51`` (whichever of them the hit has)."""
    out = []
    if parts.cosine is not None:
        out.append(f"cos {parts.cosine:.2f}")
    if parts.bm25 is not None:
        out.append(f"bm25 {parts.bm25:.2f}")
    return "  ".join(out)


def parts_cell(parts: ScoreParts) -> Text:
    """The score breakdown as a narrow multi-line cell."""
    lines = [f"{label:<9} {value:.4f}" for label, value in score_parts(parts)]
    cell = Text("\n".join(lines) if lines else "-")
    raw = raw_similarities(parts)
    if raw:
        cell.append("\n" + raw.replace("  ", "\n"), style="dim")
    return cell


def _short(value: float, digits: int) -> str:
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("0.") else text


def parts_line(parts: ScoreParts, digits: int = 4) -> str:
    """The score breakdown on one line: ``= lexical .0909 + dense .0467 ... (cos .51, bm25 2.51)``."""
    text = " + ".join(f"{label} {_short(value, digits)}" for label, value in score_parts(parts)) or "no signal"
    raw = []
    if parts.cosine is not None:
        raw.append(f"cos {_short(parts.cosine, 2)}")
    if parts.bm25 is not None:
        raw.append(f"bm25 {_short(parts.bm25, 2)}")
    return f"= {text}" + (f" ({', '.join(raw)})" if raw else "")


def source(memory: MemoryItem) -> str:
    """Who said it and which message it came from, or which document."""
    prov = memory.provenance
    bits = []
    if prov.speaker:
        bits.append(prov.speaker)
    if prov.message_ids:
        bits.append("msg " + ", ".join(prov.message_ids))
    if prov.document_path:
        bits.append(prov.document_path + (f" #{prov.position}" if prov.position is not None else ""))
    return "\n".join(bits) if bits else "-"


def memory_cell(memory: MemoryItem, limit: int, show_id: bool = True) -> Text:
    cell = Text(truncate(memory.text, limit))
    if show_id:
        cell.append(f"\n{memory.id}", style="dim")
    return cell


def _table(*columns: tuple[str, dict[str, Any]], title: str | None = None) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", pad_edge=False, expand=False)
    for header, options in columns:
        table.add_column(header, **options)
    return table


def where_cell(memory: MemoryItem) -> Text:
    """Time, session and source of a memory, one per line (a narrow column)."""
    lines = [fmt_time(memory.event_time), f"session {memory.provenance.session_id or '-'}", source(memory)]
    return Text("\n".join(line for line in lines if line and line != "-"))


def hits_table(hits: Sequence[Hit], text_limit: int = 240, title: str | None = None) -> Table:
    table = _table(
        ("#", {"justify": "right", "no_wrap": True}),
        ("score", {"justify": "right", "no_wrap": True}),
        ("score parts", {"no_wrap": True}),
        ("time (UTC) / session / source", {"overflow": "fold", "max_width": 18}),
        ("memory / id", {"ratio": 1, "min_width": 24, "overflow": "fold"}),
        title=title,
    )
    for rank, hit in enumerate(hits, 1):
        table.add_row(str(rank), fmt_score(hit.score), parts_cell(hit.parts), where_cell(hit.memory),
                      memory_cell(hit.memory, text_limit))
    return table


def memories_table(items: Iterable[MemoryItem], text_limit: int = 160, title: str | None = None) -> Table:
    table = _table(
        ("kind", {"no_wrap": True}),
        ("time (UTC) / session / source", {"overflow": "fold", "max_width": 18}),
        ("text / id", {"ratio": 1, "min_width": 24, "overflow": "fold"}),
        title=title,
    )
    for item in items:
        table.add_row(item.kind.value, where_cell(item), memory_cell(item, text_limit))
    return table


def links_table(links: Iterable[MemoryLink], text_limit: int = 160, title: str | None = None) -> Table:
    table = _table(
        ("link", {"no_wrap": True}),
        ("via", {"overflow": "fold", "max_width": 24}),
        ("time (UTC) / session / source", {"overflow": "fold", "max_width": 18}),
        ("text / id", {"ratio": 1, "min_width": 24, "overflow": "fold"}),
        title=title,
    )
    for link in links:
        table.add_row(link.kind.value, Text(link.via or ""), where_cell(link.memory),
                      memory_cell(link.memory, text_limit))
    return table


def timeline_table(nodes: Iterable[TimelineNode], text_limit: int = 200, title: str | None = None) -> Table:
    table = _table(
        ("period", {"no_wrap": True}),
        ("sessions / memories", {"overflow": "fold", "max_width": 18}),
        ("names", {"overflow": "fold", "max_width": 24}),
        ("summary, else what it is mostly about", {"ratio": 1, "min_width": 24, "overflow": "fold"}),
        title=title,
    )
    for node in nodes:
        about = Text(node.summary) if node.summary else Text("\n".join(truncate(item.text, text_limit)
                                                                     for item in node.representatives), style="dim")
        table.add_row(Text(node.key), Text(f"{', '.join(node.sessions)}\n{node.memories} memories"),
                      Text(", ".join(node.entities)), about)
    return table


def versions_table(items: Iterable[MemoryItem], title: str | None = None) -> Table:
    table = _table(
        ("v", {"justify": "right", "no_wrap": True}),
        ("recorded (UTC)", {"min_width": 10, "max_width": 10}),
        ("expired (UTC)", {"min_width": 10, "max_width": 10}),
        ("valid from", {"min_width": 10, "max_width": 10}),
        ("by / reason", {"overflow": "fold", "max_width": 20}),
        ("text", {"ratio": 1, "min_width": 24, "overflow": "fold"}),
        title=title,
    )
    for item in items:
        why = " / ".join(x for x in (item.changed_by, item.change_reason) if x) or "-"
        table.add_row(str(item.version), fmt_time(item.recorded_at), fmt_time(item.expired_at),
                      fmt_time(item.valid_from), Text(why), Text(truncate(item.text, 400)))
    return table


def operations_table(ops: Iterable[Operation], title: str | None = None) -> Table:
    table = _table(
        ("seq", {"justify": "right", "no_wrap": True}),
        ("at (UTC)", {"no_wrap": True}),
        ("op", {"no_wrap": True}),
        ("memory", {"no_wrap": True, "style": "dim"}),
        ("v", {"justify": "right", "no_wrap": True}),
        ("actor", {"overflow": "fold", "max_width": 14}),
        ("reason", {"ratio": 1, "overflow": "fold"}),
        title=title,
    )
    for op in ops:
        table.add_row(str(op.seq), fmt_time(op.at, seconds=True), Text(op.op), Text(op.memory_id or "-"),
                      str(op.version) if op.version is not None else "-", Text(op.actor or "-"),
                      Text(op.reason or "-"))
    return table


def cubes_table(cubes: Iterable[CubeInfo]) -> Table:
    table = _table(
        ("name / owner / id", {"overflow": "fold", "min_width": 32}),
        ("created (UTC)", {"min_width": 10, "max_width": 10}),
        ("embedder", {"overflow": "fold", "max_width": 20}),
        ("description", {"ratio": 1, "min_width": 12, "overflow": "fold"}),
    )
    for info in cubes:
        name = Text(info.name, style="bold")
        name.append(f"\nowner {info.owner}", style="")
        name.append(f"\n{info.id}", style="dim")
        table.add_row(name, fmt_time(info.created_at), Text(f"{info.embedder} ({info.dim} dims)"),
                      Text(info.description or ""))
    return table


def memory_detail(item: MemoryItem) -> Table:
    """Every field of one memory, as a two-column key/value table."""
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    prov = item.provenance
    rows: list[tuple[str, str]] = [
        ("id", item.id),
        ("kind", item.kind.value),
        ("state", item.state.value),
        ("version", str(item.version) + (f" (supersedes {item.supersedes})" if item.supersedes else "")),
        ("time", fmt_time(item.event_time, seconds=True) + " UTC" if item.event_time else "-"),
        ("valid", f"{fmt_time(item.valid_from)} → {fmt_time(item.valid_to)}"),
        ("recorded", fmt_time(item.recorded_at, seconds=True) + " UTC"),
        ("session", prov.session_id or "-"),
        ("speaker", prov.speaker or "-"),
        ("message ids", ", ".join(prov.message_ids) or "-"),
    ]
    if prov.document_path:
        rows.append(("document", f"{prov.document_path} #{prov.position}"))
    elif prov.position is not None:
        rows.append(("position", str(prov.position)))
    if item.tags:
        rows.append(("tags", ", ".join(item.tags)))
    if item.entities:
        rows.append(("entities", ", ".join(item.entities)))
    if item.metadata:
        rows.append(("metadata", json.dumps(to_jsonable_python(item.metadata), ensure_ascii=False)))
    if item.changed_by or item.change_reason:
        rows.append(("changed", " / ".join(x for x in (item.changed_by, item.change_reason) if x)))
    rows.append(("text", item.text))
    for key, value in rows:
        table.add_row(key, Text(value))
    return table
