"""Zero-LLM reader: chat messages become turn memories.

One memory per message, carrying who said it, when, in which session and at which
position, so that every later answer can point at the exact turn. Relative dates are
resolved against the message time and names are pulled out for the lexical index;
both are derived fields, the text itself is kept as said.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import uuid4

from memkern.models import MemoryItem, MemoryKind, Message, Provenance
from memkern.reader.entities import find_entities
from memkern.reader.temporal import resolve_dates


def render_turn(message: Message) -> str:
    """The text a turn is stored and searched as: speaker, words, and any image caption."""
    speaker = message.name or message.role
    text = f"{speaker}: {message.content.strip()}"
    if message.image_caption:
        text += f" [image: {message.image_caption.strip()}]"
    return text


def read_messages(messages: Sequence[Message], *, cube_id: str, owner: str, session_id: str | None,
                  tags: Sequence[str] = ()) -> list[MemoryItem]:
    """One turn memory per message, in order; the store numbers their positions in the session."""
    items = []
    for message in messages:
        speaker = message.name or message.role
        dates = resolve_dates(message.content, message.time)
        metadata: dict[str, object] = {"role": message.role}
        if dates:
            metadata["dates"] = [d.as_dict() for d in dates]
        if message.image_caption:
            metadata["image_caption"] = message.image_caption
        items.append(MemoryItem(
            id=uuid4().hex,
            cube_id=cube_id,
            owner=owner,
            kind=MemoryKind.TURN,
            text=render_turn(message),
            tags=list(tags),
            metadata=metadata,
            provenance=Provenance(
                message_ids=[message.id] if message.id else [],
                session_id=session_id,
                speaker=speaker,
            ),
            entities=find_entities(message.content, speaker) + [d.label() for d in dates],
            event_time=message.time,
            valid_from=message.time,
        ))
    return items
