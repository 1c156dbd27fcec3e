"""The texts of index rows kept between searches (``memkern.retrieval.row_texts``)."""

from __future__ import annotations

from memkern.models import LifecycleState
from memkern.retrieval.row_texts import RowTexts
from memkern.store.base import MemoryText


def _text(memory_id: str, words: str) -> MemoryText:
    return MemoryText(id=memory_id, text=words, speaker=None, role=None, said_at=None, state=LifecycleState.ACTIVE)


def test_kept_texts_are_found_and_the_oldest_go_past_the_limit():
    texts = RowTexts(limit=3)
    texts.keep({row: _text(f"m{row}", f"text {row}") for row in range(5)})
    assert sorted(texts.found(range(10))) == [2, 3, 4]
    assert texts.found([4])[4].text == "text 4"


def test_a_tombstoned_row_is_dropped_and_never_kept_again():
    live = {1: True, 2: True}
    texts = RowTexts(live.__getitem__)
    texts.keep({1: _text("a", "one"), 2: _text("b", "two")})
    live[1] = False  # the writer marks the row dead, then forgets it
    texts.forget([1])
    texts.keep({1: _text("a", "one, read by a search that started before the delete")})
    assert list(texts.found([1, 2])) == [2]


def test_searches_keep_what_they_read_of_turns_and_a_deleted_or_updated_memory_s_row_lets_go(mos):
    cube = mos.create_cube("notes", owner="alice")
    added = cube.add(messages=[{"role": "user", "content": f"I adopted a cat named Whisker number {i}."}
                               for i in range(4)] + [{"role": "user", "content": "Do you like cats?"}],
                     infer=False).added
    ids = [memory.id for memory in added]  # turns: the memories whose texts ranking reads
    assert cube.search("What is the name of my cat?", top_k=5)
    index = mos.kernel.indexes.get(cube.info.id, cube.info.dim)
    kept = index.texts.found(range(len(index)))
    assert {index.ids[row] for row in kept} == set(ids)
    assert [kept[index.row_of[ids[4]]].asks, kept[index.row_of[ids[0]]].asks] == [True, False]
    assert not any(isinstance(value, str) or hasattr(value, "text") for value in kept.values())  # no text kept

    cube.delete(ids[0])
    cube.update(ids[1], "user: My cat is now called Tiger, is that a good name?")
    hits = cube.search("What is the name of my cat?", top_k=5)
    index = mos.kernel.indexes.get(cube.info.id, cube.info.dim)
    kept = index.texts.found(range(len(index)))
    assert all(index.live[row] for row in kept)
    assert ids[0] not in {index.ids[row] for row in kept}
    assert all(turn.asks for row, turn in kept.items() if index.ids[row] == ids[1])  # the new version's
    assert ids[0] not in {hit.id for hit in hits}
