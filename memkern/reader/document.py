"""Zero-LLM reader: a plain document becomes chunk memories.

Chunks follow paragraph and sentence boundaries and stay under a word budget, so that
a hit returns a passage a person can read and a model can use without the whole file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from uuid import uuid4

from memkern.models import MemoryItem, MemoryKind, Provenance
from memkern.reader.entities import find_entities

_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def split_into_chunks(text: str, max_words: int = 120) -> list[str]:
    """Paragraphs, split at sentence ends when longer than ``max_words``, packed greedily."""
    pieces: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = " ".join(paragraph.split())
        if not paragraph:
            continue
        if len(paragraph.split()) <= max_words:
            pieces.append(paragraph)
            continue
        for sentence in _SENTENCE.split(paragraph):
            words = sentence.split()
            pieces.extend(" ".join(words[i:i + max_words]) for i in range(0, len(words), max_words))
    chunks: list[str] = []
    for piece in pieces:
        if chunks and len(chunks[-1].split()) + len(piece.split()) <= max_words:
            chunks[-1] = f"{chunks[-1]} {piece}"
        else:
            chunks.append(piece)
    return chunks


def read_document(text: str, *, cube_id: str, owner: str, path: str | None, time: datetime | None,
                  tags: Sequence[str] = (), max_words: int = 120) -> list[MemoryItem]:
    """One document-chunk memory per chunk, with the document path and chunk position."""
    return [
        MemoryItem(
            id=uuid4().hex,
            cube_id=cube_id,
            owner=owner,
            kind=MemoryKind.DOCUMENT,
            text=chunk,
            tags=list(tags),
            provenance=Provenance(document_path=path, session_id=path, position=position),
            entities=find_entities(chunk),
            event_time=time,
            valid_from=time,
        )
        for position, chunk in enumerate(split_into_chunks(text, max_words))
    ]
