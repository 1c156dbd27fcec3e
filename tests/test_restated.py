"""Quantities said again later with another value (``memkern.organize.restated``), and how chat's
organised context shows them: the earlier line says what was said later, and the latest value leads."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fake_openai import FakeOpenAI

from memkern import MemOS
from memkern.llm.http import OpenAICompatibleLLM
from memkern.models import Hit, MemoryItem, ScoreParts
from memkern.organize.restated import quantities, restatements
from memkern.prompts import organised_context


def _memory(memory_id: str, text: str, day: int, month: int = 8, speaker: str = "user") -> MemoryItem:
    return MemoryItem.model_validate({"id": memory_id, "cube_id": "c", "owner": "u", "text": text,
                                      "provenance": {"speaker": speaker, "session_id": f"s{month}-{day}"},
                                      "valid_from": datetime(2023, month, day, 10, tzinfo=timezone.utc)})


def test_a_quantity_said_again_later_with_another_value_is_paired_with_the_latest() -> None:
    august = _memory("a", "I'm buying a $325,000 house, and I got pre-approved for $350,000 from Wells Fargo.", 11)
    november = _memory("b", "Remember when I got pre-approved for $400,000 from Wells Fargo?", 30, month=11)
    found = restatements([august, november])
    assert [(r.earlier_id, r.earlier_value, r.later_id, r.later_value) for r in found] == [
        ("a", "$350,000", "b", "$400,000")]  # the house price shares fewer words: not paired
    assert found[0].phrase == "Remember when I got pre-approved for $400,000 from Wells Fargo"  # its sentence
    assert found[0].later_said.date().isoformat() == "2023-11-30"
    assert restatements([november, august]) == found          # order of the hits does not matter


def test_number_words_pair_with_digits_and_the_same_value_or_day_is_no_restatement() -> None:
    three = _memory("a", "I've tried three Korean restaurants in my city so far.", 1)
    four = _memory("b", "I have tried four Korean restaurants in my city now!", 9)
    assert [(r.earlier_value, r.later_value) for r in restatements([three, four])] == [("three", "four")]
    same_value = _memory("c", "I have tried 3 Korean restaurants in my city.", 20)
    assert [r.later_id for r in restatements([three, same_value])] == []
    same_day = _memory("d", "Make that four Korean restaurants tried in my city.", 1)
    assert restatements([three, same_day]) == []


def test_what_is_not_a_restated_quantity() -> None:
    # another speaker; an assistant's arithmetic; money against hours; years, dates, names and relative dates.
    user = _memory("a", "I spent $70 on groceries at Walmart last week.", 1)
    assert restatements([user, _memory("b", "Bob spent $90 on groceries at Walmart.", 5, speaker="Bob")]) == []
    assert restatements([user, _memory("c", "You spent $90 on groceries at Walmart.", 5, speaker="assistant")]) == []
    assert restatements([user, _memory("d", "I spent 20 hours at Walmart groceries aisle.", 5)]) == []
    assert [q.value for q in quantities("In 2019 I met her on May 5, got my Fitbit Charge 3 and ran 5 miles.")] == ["5"]
    assert quantities("I visited my family three weeks ago.") == []
    assert quantities("one of my friends") == []


def test_the_organised_context_says_what_was_said_later_and_leads_with_the_latest() -> None:
    august = _memory("a", "I got pre-approved for $350,000 from Wells Fargo.", 11)
    november = _memory("b", "Remember when I got pre-approved for $400,000 from Wells Fargo?", 30, month=11)
    hits = [Hit(memory=m, score=1.0, parts=ScoreParts()) for m in (august, november)]
    context = organised_context(hits, restatements([august, november]))
    lines = context.splitlines()
    assert lines[:2] == ["Current facts:", '- latest, said on 30 November 2023: "Remember when I got pre-approved '
                                           'for $400,000 from Wells Fargo" (earlier: $350,000)']
    assert "$350,000 from Wells Fargo. [said later, on 30 November 2023: $400,000]" in context
    assert organised_context(hits).splitlines()[0] != "Current facts:"  # nothing restated: no such section
    assert "said later" not in organised_context(hits[:1], restatements([august, november]))  # the later one not shown


def test_chat_shows_the_latest_value_first(tmp_path: Path, embedder: Any) -> None:
    """Through chat, over a real store and the loopback OpenAI server: the prompt leads with the latest value."""
    with FakeOpenAI(handler=lambda request: "$400,000") as server, \
            MemOS(tmp_path / "m.db", embedder=embedder, llm=OpenAICompatibleLLM(server.base_url, "fake")) as mos:
        cube = mos.create_cube("home")
        cube.add(messages=[{"role": "user", "content": "I got pre-approved for $350,000 from Wells Fargo.",
                            "time": "2023-08-11T10:00"}], session_id="s1", infer=False)
        cube.add(messages=[{"role": "user", "content": "Remember when I got pre-approved for $400,000 from Wells Fargo?",
                            "time": "2023-11-30T10:00"}], session_id="s2", infer=False)
        answer = cube.chat("How much was I pre-approved for by Wells Fargo?")
        prompt = server.requests[-1]["messages"][-1]["content"]
    assert answer.answer == "$400,000"
    assert prompt.startswith("Memories:\nCurrent facts:\n- latest, said on 30 November 2023:")
    assert "[said later, on 30 November 2023: $400,000]" in prompt


def test_values_keep_their_unit_and_range_and_a_long_sentence_is_cut_to_the_words_around_them() -> None:
    assert [q.value for q in quantities("I got a new 70-200mm zoom lens, a 40L bag and 3,000 prints for $5.25 each.")] \
        == ["70-200mm", "40L", "3,000", "$5.25"]
    long = "I finally did it " + "and it was long " * 20 + "after I read 220 pages of A Short History of Nearly Everything"
    (pages,) = quantities(long)
    assert pages.phrase == "was long after I read 220 pages of A Short History" and pages.words >= {"read", "page", "short"}


def test_a_long_memory_is_shown_as_its_first_sentence_and_the_sentences_the_question_names() -> None:
    from memkern.prompts import EXCERPT_CHARS, excerpt, question_words

    filler = " ".join(f"Point {n} is about something else entirely." for n in range(40))
    answer = ("Here is what I found. " + filler + " The President's Chief Advisor for Science and Technology is "
              "Dr. Arati Prabhakar. " + filler)
    words = question_words("Who is the President's Chief Advisor for Science and Technology?")
    shown = excerpt(answer, words)
    assert shown.startswith("Here is what I found. [...] The President's Chief Advisor for Science and Technology is "
                            "Dr. Arati Prabhakar.") and shown.endswith("[...]") and len(shown) < EXCERPT_CHARS * 2
    assert excerpt("Short enough.", words) == "Short enough."
    assert excerpt(answer, frozenset()) == "Here is what I found. [...]"   # nothing named: the opening only
    hit = Hit(memory=_memory("a", answer, 3, speaker="assistant"), score=1.0, parts=ScoreParts())
    context = organised_context([hit], query="Who is the President's Chief Advisor for Science and Technology?")
    assert "Dr. Arati Prabhakar" in context and "Point 39" not in context
