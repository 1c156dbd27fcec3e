"""Loader for the LoCoMo benchmark (Maharana et al., ACL 2024) in its original ``locomo10.json`` format.

The file is a list of conversations, each with ``sample_id``, ``conversation`` (``speaker_a``,
``speaker_b``, ``session_N_date_time`` and ``session_N`` lists of turns) and ``qa``. The raw data
has quirks that this loader irons out so that the benchmark never trips on them:

* category-5 (adversarial) questions carry ``adversarial_answer`` and usually no ``answer``;
* some answers are integers (``2022``), they are turned into strings;
* a few questions have empty evidence (kept, the metrics exclude and count them);
* malformed evidence strings: ``"D8:6; D9:17"`` is two ids, ``"D:11:26"`` is ``"D11:26"``,
  ``"D30:05"`` is ``"D30:5"``; ids that name no turn of the conversation (or do not parse at
  all, such as ``"D"``) are dropped and counted in :attr:`LocomoData.dropped_evidence`;
* there can be more ``session_N_date_time`` keys than sessions: sessions are the ``session_N`` lists.

A file that is not LoCoMo-shaped raises :class:`memkern.errors.InvalidInputError`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from memkern.errors import InvalidInputError

_SESSION_KEY = re.compile(r"session_(\d+)")
_TURN_ID = re.compile(r"D\s*:?\s*(\d+)\s*:\s*(\d+)")
_SPLIT = re.compile(r"[;,\s]+")
_TIME_FORMATS = ("%I:%M %p on %d %B, %Y", "%I:%M %p on %d %b, %Y", "%I:%M %p on %d %B %Y", "%I:%M %p on %d %b %Y")


@dataclass(frozen=True)
class Turn:
    dia_id: str                      # "D3:7": turn 7 of session 3
    speaker: str
    text: str
    image_caption: str | None = None

    def render(self) -> str:
        """The turn as one text: ``"speaker: text"`` plus ``" " + caption`` for an image turn."""
        text = f"{self.speaker}: {self.text}"
        return f"{text} {self.image_caption}" if self.image_caption else text


@dataclass(frozen=True)
class Session:
    id: str                          # "session_3"
    index: int                       # 3
    time: datetime | None            # parsed from "1:56 pm on 8 May, 2023"; None when the file has no date
    turns: list[Turn] = field(default_factory=list)


@dataclass(frozen=True)
class Question:
    text: str
    answer: str                      # "" for a category-5 item without ``answer``
    evidence: list[str]              # normalised dia ids that exist in the conversation
    category: int                    # 1 multi-hop, 2 temporal, 3 open-domain, 4 single-hop, 5 adversarial
    adversarial_answer: str | None = None
    raw_evidence: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Conversation:
    sample_id: str
    speakers: list[str]
    sessions: list[Session]
    questions: list[Question]

    @property
    def turns(self) -> list[Turn]:
        return [turn for session in self.sessions for turn in session.turns]

    def session_of(self, dia_id: str) -> int | None:
        """The session index of a turn id ("D3:7" -> 3), or None when it does not parse."""
        return session_of(dia_id)


@dataclass(frozen=True)
class LocomoData:
    conversations: list[Conversation]
    #: Evidence ids dropped because they did not parse or named no turn of their conversation.
    dropped_evidence: int = 0
    #: (sample_id, raw evidence string) of every dropped id, for the curious.
    dropped_details: list[tuple[str, str]] = field(default_factory=list)

    @property
    def questions(self) -> list[Question]:
        return [q for c in self.conversations for q in c.questions]

    @property
    def n_turns(self) -> int:
        return sum(len(c.turns) for c in self.conversations)


def normalise_turn_id(raw: str) -> str | None:
    """``"D:11:26"`` -> ``"D11:26"``, ``"D30:05"`` -> ``"D30:5"``; None when it is not a turn id."""
    match = _TURN_ID.fullmatch(raw.strip())
    if not match:
        return None
    return f"D{int(match.group(1))}:{int(match.group(2))}"


def session_of(dia_id: str) -> int | None:
    """The session index of a turn id: ``"D3:7"`` -> 3."""
    normalised = normalise_turn_id(dia_id)
    return int(normalised[1:].split(":", 1)[0]) if normalised else None


def split_evidence(raw: str) -> list[str]:
    """The pieces of one evidence string: ``"D8:6; D9:17"`` -> ``["D8:6", "D9:17"]``."""
    return [piece for piece in _SPLIT.split(raw.strip()) if piece]


def parse_session_time(raw: str) -> datetime:
    """``"1:56 pm on 8 May, 2023"`` -> ``datetime(2023, 5, 8, 13, 56)``."""
    text = " ".join(raw.split())
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise InvalidInputError(f"session date {raw!r} is not in the LoCoMo format like '1:56 pm on 8 May, 2023'")


def load_locomo(path: str | Path) -> LocomoData:
    """Read a LoCoMo JSON file. Raises InvalidInputError when it is missing or not LoCoMo-shaped."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"LoCoMo data file {str(path)!r} does not exist or is not a file")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"{str(path)!r} is not a JSON file: {exc}") from exc
    return parse_locomo(raw, source=str(path))


def parse_locomo(raw: Any, *, source: str = "<data>") -> LocomoData:
    """Parse already-decoded LoCoMo JSON (a list of conversation objects)."""
    if not isinstance(raw, list) or not raw:
        raise InvalidInputError(f"{source!r} is not LoCoMo data: expected a non-empty JSON list of conversations, "
                                f"got {type(raw).__name__}")
    conversations: list[Conversation] = []
    dropped: list[tuple[str, str]] = []
    seen_ids: set[str] = set()
    for position, item in enumerate(raw):
        conversation = _parse_conversation(item, position, source, dropped)
        if conversation.sample_id in seen_ids:
            raise InvalidInputError(f"{source!r}: sample_id {conversation.sample_id!r} appears twice")
        seen_ids.add(conversation.sample_id)
        conversations.append(conversation)
    return LocomoData(conversations=conversations, dropped_evidence=len(dropped), dropped_details=dropped)


def _parse_conversation(item: Any, position: int, source: str, dropped: list[tuple[str, str]]) -> Conversation:
    where = f"{source!r}, conversation #{position}"
    if not isinstance(item, dict):
        raise InvalidInputError(f"{where}: expected an object, got {type(item).__name__}")
    missing = [key for key in ("sample_id", "conversation", "qa") if key not in item]
    if missing:
        raise InvalidInputError(f"{where} is not LoCoMo-shaped: missing key(s) {', '.join(missing)}")
    sample_id = str(item["sample_id"])
    where = f"{source!r}, conversation {sample_id!r}"
    body, qa = item["conversation"], item["qa"]
    if not isinstance(body, dict):
        raise InvalidInputError(f"{where}: 'conversation' must be an object, got {type(body).__name__}")
    if not isinstance(qa, list):
        raise InvalidInputError(f"{where}: 'qa' must be a list, got {type(qa).__name__}")

    speakers = [str(body[key]) for key in ("speaker_a", "speaker_b") if body.get(key)]
    sessions: list[Session] = []
    for key, value in body.items():
        match = _SESSION_KEY.fullmatch(key)
        if not match:
            continue
        if not isinstance(value, list):
            raise InvalidInputError(f"{where}: {key!r} must be a list of turns, got {type(value).__name__}")
        index = int(match.group(1))
        date = body.get(f"{key}_date_time")
        time = parse_session_time(date) if isinstance(date, str) and date.strip() else None
        turns = [_parse_turn(turn, f"{where}, {key}") for turn in value]
        sessions.append(Session(id=key, index=index, time=time, turns=turns))
    if not sessions:
        raise InvalidInputError(f"{where} is not LoCoMo-shaped: no 'session_N' list of turns")
    sessions.sort(key=lambda s: s.index)

    known = {turn.dia_id for session in sessions for turn in session.turns}
    questions = [_parse_question(q, f"{where}, qa #{i}", known, sample_id, dropped) for i, q in enumerate(qa)]
    return Conversation(sample_id=sample_id, speakers=speakers, sessions=sessions, questions=questions)


def _parse_turn(turn: Any, where: str) -> Turn:
    if not isinstance(turn, dict) or "dia_id" not in turn or "speaker" not in turn:
        raise InvalidInputError(f"{where}: a turn must be an object with 'dia_id', 'speaker' and 'text', "
                                f"got {turn!r:.120}")
    raw_id = str(turn["dia_id"])
    caption = turn.get("blip_caption")
    return Turn(
        dia_id=normalise_turn_id(raw_id) or raw_id,
        speaker=str(turn["speaker"]),
        text=str(turn.get("text") or ""),
        image_caption=str(caption).strip() if caption else None,
    )


def _parse_question(q: Any, where: str, known: set[str], sample_id: str,
                    dropped: list[tuple[str, str]]) -> Question:
    if not isinstance(q, dict) or "question" not in q or "category" not in q:
        raise InvalidInputError(f"{where}: a qa item must be an object with 'question' and 'category', got {q!r:.120}")
    try:
        category = int(q["category"])
    except (TypeError, ValueError):
        raise InvalidInputError(f"{where}: category {q['category']!r} is not an integer") from None
    raw_evidence = q.get("evidence") or []
    if isinstance(raw_evidence, str):
        raw_evidence = [raw_evidence]
    if not isinstance(raw_evidence, list):
        raise InvalidInputError(f"{where}: evidence must be a list of dia ids, got {raw_evidence!r:.120}")
    evidence: list[str] = []
    for entry in raw_evidence:
        for piece in split_evidence(str(entry)):
            normalised = normalise_turn_id(piece)
            if normalised is None or normalised not in known:
                dropped.append((sample_id, piece))
            elif normalised not in evidence:
                evidence.append(normalised)
    answer = q.get("answer")
    adversarial = q.get("adversarial_answer")
    return Question(
        text=str(q["question"]),
        answer="" if answer is None else str(answer),
        evidence=evidence,
        category=category,
        adversarial_answer=None if adversarial is None else str(adversarial),
        raw_evidence=[str(e) for e in raw_evidence],
    )
