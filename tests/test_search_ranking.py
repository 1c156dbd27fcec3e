"""Ranking details of hybrid search: requests for advice, ties between equal lexical scores, list questions,
the turns around a candidate, short turns, turns about the person addressed, and questions about the first or
latest of something."""

from __future__ import annotations

from pathlib import Path

import memkern.retrieval.search as search_module
from memkern import MemOS
from memkern.mos import MemCube
from memkern.retrieval.config import SearchConfig
from memkern.retrieval.search import asks_for_list, asks_for_order, request_content


def _add_session(cube: MemCube, session: str, day: str, texts: list[str]) -> None:
    cube.add(messages=[{"role": "user" if i % 2 == 0 else "assistant", "content": text, "time": f"{day}T10:0{i}:00Z"}
                       for i, text in enumerate(texts)], session_id=session, infer=False)


def _add_said(cube: MemCube, session: str, day: str, said: list[tuple[str, str]]) -> None:
    """One session of ``(speaker, text)`` turns, a minute apart."""
    cube.add(messages=[{"role": "user", "name": name, "content": text, "time": f"{day}T10:0{i}:00Z"}
                       for i, (name, text) in enumerate(said)], session_id=session, infer=False)


def _add_fillers(cube: MemCube, days: str) -> None:
    """Four sessions about something else, on days ``days`` + 0..3 ("2024-03-1": the 10th to the 13th)."""
    for n in range(4):
        _add_session(cube, f"x{n}", f"{days}{n}", [f"I cooked pasta for dinner {n}.", "Yum."])


def _scores_by_text(cube: MemCube, query: str, config: SearchConfig) -> dict[str, float]:
    """Each of the 10 hits' score, by its text without the speaker's name."""
    return {hit.memory.text.split(": ", 1)[-1]: hit.score for hit in cube.search(query, top_k=10, config=config)}


def test_request_content_drops_the_frame_of_a_request_for_advice() -> None:
    assert request_content("Can you recommend some recent publications or conferences that I might find "
                           "interesting?") == "recent publications or conferences ?"
    assert request_content("I want to try a new creamer recipe. Any recommendations?") == \
        "I want to try a new creamer recipe. ?"
    assert request_content("Do you have any ideas on how I can find new inspiration?") == \
        "how I can find new inspiration?"
    # A question that is not a request, or one that is nothing but the frame, is kept whole.
    assert request_content("What did Caroline recommend to Melanie?") == "What did Caroline recommend to Melanie?"
    assert request_content("Any tips?") == "Any tips?"


def test_a_request_for_advice_finds_what_the_user_said_they_do(tmp_path: Path) -> None:
    """The evidence of a recommendation is the user's own account of their field, not their other requests."""
    with MemOS(path=tmp_path / "r.db", llm=None) as mos:
        cube = mos.create_cube("r", owner="ann")
        _add_session(cube, "field", "2024-05-01", [
            "Give me an overview of recent advances in deep learning for medical image analysis. "
            "Skip the basics, I work in the field.",
            "Sure: multimodal fusion, foundation models for segmentation, and self-supervised pretraining."])
        for n, topic in enumerate(["hiking boots", "sourdough baking", "budget travel apps", "houseplants",
                                   "running shoes", "board games"]):
            _add_session(cube, f"other{n}", f"2024-05-1{n}", [
                f"Can you recommend some {topic} that I might find interesting?",
                f"Here are some {topic} you might find interesting."])
        query = "Can you recommend some recent publications or conferences that I might find interesting?"

        def rank_of_field(config: SearchConfig) -> int:
            hits = cube.search(query, top_k=10, config=config)
            sessions = [hit.memory.provenance.session_id for hit in hits]
            return sessions.index("field") if "field" in sessions else len(sessions)

        # The other requests lose for asking too (``asking_weight``): left out, so the frame alone is measured.
        assert rank_of_field(SearchConfig(asking_weight=0.0)) == 0
        assert rank_of_field(SearchConfig(asking_weight=0.0, drop_request_frame=False)) > 0  # they match the frame


def test_equal_lexical_scores_rank_the_earlier_memory_first(tmp_path: Path) -> None:
    """Turns with the same BM25 score come back from the store in an order set by its storage layout (random
    memory ids); search breaks such ties by the order the memories were written, so repeated runs agree."""
    with MemOS(path=tmp_path / "t.db", llm=None) as mos:
        other = mos.create_cube("o", owner="ann")  # a larger cube first: the store then scopes its lexical query
        for n in range(20):
            _add_session(other, f"o{n}", "2024-05-01", [f"Something else entirely {n}.", "Fine."])
        cube = mos.create_cube("t", owner="ann")
        for n in range(8):
            _add_session(cube, f"s{n}", f"2024-06-0{n + 1}", ["I made pottery today.", "Nice."])
        hits = cube.search("pottery", top_k=8, config=SearchConfig(dense_weight=0.0, session_weight=0.0,
                                                                    neighbour_weight=0.0, speaker_weight=0.0,
                                                                    deep=False))
        assert [hit.memory.provenance.session_id for hit in hits] == [f"s{n}" for n in range(8)]


def test_a_list_question_gathers_the_best_turns_of_several_sessions(tmp_path: Path) -> None:
    """"What books ...?" is answered across sessions: the third and later turns of the session that matches best
    make way for the best turns of the others, while a question for one thing keeps that session's turns first."""
    with MemOS(path=tmp_path / "g.db", llm=None) as mos:
        cube = mos.create_cube("g", owner="ann")
        _add_session(cube, "club", "2024-04-01", [
            "My book club read a mystery novel this month.", "Which one was it?",
            "The book club picked a mystery novel by Christie.", "Did the club like the book?",
            "The club loved the mystery novel, we read a book a month."])
        _add_session(cube, "trip", "2024-04-08", ["On the train I read Dune, a science fiction book.", "Great."])
        _add_session(cube, "rain", "2024-04-15", ["I read a history book about Rome at home.", "Nice."])
        _add_fillers(cube, "2024-04-2")
        query = "What books have I read?"

        def sessions(config: SearchConfig) -> set[str]:
            return {hit.memory.provenance.session_id for hit in cube.search(query, top_k=5, config=config)}

        # The club's questions lose for asking too (``asking_weight``): left out, so the gathering alone is measured.
        assert {"club", "trip", "rain"} <= sessions(SearchConfig(deep=False, asking_weight=0.0))
        assert not {"club", "trip", "rain"} <= sessions(SearchConfig(deep=False, asking_weight=0.0, gather_weight=0.0))


def test_a_count_is_gathered_like_a_list() -> None:
    """"How many ...?" is answered by counting across sessions, on the deep path too, where the ranked query is
    only the question's content ("tournaments has Nate won?")."""
    assert asks_for_list("How many tournaments has Nate won?")
    assert asks_for_list("How often do I go running?")
    assert asks_for_list("What books have I read?")
    assert not asks_for_list("What book did I read last?")


def test_a_turn_two_after_a_matching_one_shares_its_evidence(tmp_path: Path, monkeypatch) -> None:
    """A question is often answered two turns on (a short reply first): the answer is lifted by the question
    two turns before it, at half the share of an adjacent turn."""
    with MemOS(path=tmp_path / "n.db", llm=None) as mos:
        cube = mos.create_cube("n", owner="ann")
        said = [("Ann", "How was the pottery workshop on Saturday?"), ("Bob", "Oh, where do I start!"),
                ("Bob", "I shaped a blue bowl and a tall vase."), ("Ann", "Lovely, see you soon.")]
        cube.add(messages=[
            {"role": "user", "name": name, "content": text, "time": f"2024-03-02T10:0{i}:00Z"}
            for i, (name, text) in enumerate(said)
        ], session_id="s1", infer=False)
        for n in range(5):
            _add_session(cube, f"x{n}", f"2024-03-1{n}", [f"The weather report for day {n} says rain.", "Okay."])
        query = "What happened at the pottery workshop?"

        def answer_neighbour() -> float:
            hits = cube.search(query, top_k=20, config=SearchConfig(deep=False))
            return next(hit.parts.neighbour for hit in hits if "blue bowl" in hit.memory.text)

        with_two = answer_neighbour()
        monkeypatch.setattr(search_module, "NEIGHBOUR_STEPS", ((-1, 1.0), (1, 1.0)))
        assert with_two > answer_neighbour()


def test_a_turn_of_a_few_words_makes_way_for_one_that_says_something(tmp_path: Path) -> None:
    """A short turn ranks high for being short (BM25's length normalisation): among the best candidates, a turn
    loses a little for each word it falls short of ``short_words``, so the account outranks the aside."""
    with MemOS(path=tmp_path / "s.db", llm=None) as mos:
        cube = mos.create_cube("s", owner="ann")
        _add_session(cube, "aside", "2024-03-01", ["The workshop was fun.", "Good to hear."])
        _add_session(cube, "account", "2024-03-08", [
            "Last Friday I went to a counseling workshop and it was really enlightening: they talked about "
            "different therapeutic methods and how to make a safe space for people who need support.",
            "That sounds so worthwhile."])
        _add_fillers(cube, "2024-03-1")

        def first_session(config: SearchConfig) -> str | None:
            return cube.search("What workshop did I attend?", top_k=3, config=config)[0].memory.provenance.session_id

        assert first_session(SearchConfig(deep=False, short_weight=0.0)) == "aside"
        assert first_session(SearchConfig(deep=False)) == "account"


def test_derived_memories_are_not_short_turns(tmp_path: Path) -> None:
    """Facts and summaries are short by design: only turns lose for their length."""
    with MemOS(path=tmp_path / "f.db", llm=None) as mos:
        cube = mos.create_cube("f", owner="ann")
        cube.add(text="Ann lives in Lisbon.", kind="fact", infer=False)
        _add_session(cube, "s1", "2024-03-01", ["Lisbon is lovely in spring.", "Agreed."])

        def scores(config: SearchConfig) -> dict[str, float]:
            return {hit.memory.kind.value: hit.score for hit in cube.search("Lisbon", top_k=2, config=config)}

        penalised, plain = scores(SearchConfig(deep=False)), scores(SearchConfig(deep=False, short_weight=0.0))
        assert penalised["fact"] == plain["fact"]
        assert penalised["turn"] < plain["turn"]


def test_the_reply_to_a_matching_question_shares_its_score(tmp_path: Path) -> None:
    """A question that matches the query is answered in the next turn, which may share no word with the query:
    the reply of another person gets half the question's own score, even when the text signals missed it; the
    assistant's reply to a user's question does not."""
    with MemOS(path=tmp_path / "a.db", llm=None) as mos:
        cube = mos.create_cube("a", owner="ann")
        said = [("Ann", "What did you paint at the lake last weekend?"), ("Bob", "A sunset over the water, in oils."),
                ("Ann", "Lovely.")]
        cube.add(messages=[{"role": "user", "name": name, "content": text, "time": f"2024-03-02T10:0{i}:00Z"}
                           for i, (name, text) in enumerate(said)], session_id="s1", infer=False)
        _add_session(cube, "s2", "2024-03-05", ["What did you paint at the lake?", "A sunset over the water."])
        for n in range(5):
            _add_session(cube, f"x{n}", f"2024-03-1{n}", [f"The weather report for day {n} says rain.", "Okay."])
        query = "What did Bob paint at the lake?"

        def neighbour(config: SearchConfig, session: str) -> float:
            hits = cube.search(query, top_k=30, config=config)
            return next(hit.parts.neighbour for hit in hits
                        if hit.memory.provenance.session_id == session and "sunset" in hit.memory.text)

        plain = SearchConfig(deep=False, answer_weight=0.0)
        assert neighbour(SearchConfig(deep=False), "s1") > neighbour(plain, "s1")
        assert neighbour(SearchConfig(deep=False), "s2") == neighbour(plain, "s2")  # the assistant's reply


def test_a_turn_that_asks_makes_way_for_one_that_tells(tmp_path: Path) -> None:
    """A question matches the question searched for by its form and words, yet asks rather than tells: among the
    best candidates a turn ending by asking another person loses for the share of it that asks. A user's question
    to the assistant, where the user says what they want, does not."""
    with MemOS(path=tmp_path / "q.db", llm=None) as mos:
        cube = mos.create_cube("q", owner="ann")
        _add_said(cube, "friends", "2024-03-01", [("Bob", "Nice! What is your favourite movie?"),
                                                  ("Ann", "Alien, I watched it again last week.")])
        _add_session(cube, "assistant", "2024-03-05", ["Which movie should I watch, given my favourite is Alien?",
                                                       "Try Aliens, the sequel."])
        _add_fillers(cube, "2024-03-1")

        query = "What is Ann's favourite movie?"
        plain = _scores_by_text(cube, query, SearchConfig(deep=False, asking_weight=0.0))
        asking = _scores_by_text(cube, query, SearchConfig(deep=False))
        asked, mine = "Nice! What is your favourite movie?", "Which movie should I watch, given my favourite is Alien?"
        assert asking[asked] < plain[asked]
        assert asking[mine] == plain[mine]


def test_a_turn_about_the_person_addressed_makes_way_for_one_about_the_speaker(tmp_path: Path) -> None:
    """A question about one person is answered by what they say of themselves: among the best candidates, their
    turn to another person that speaks only of that person ("You ...", "your ...", no "I" or "my") loses a
    little. Their turns about themselves, the other person's turns and an assistant's turns keep their place."""
    with MemOS(path=tmp_path / "y.db", llm=None) as mos:
        cube = mos.create_cube("y", owner="ann")
        _add_said(cube, "praise", "2024-03-01", [("Ann", "Wow, your pottery class sounds fun! You must love it."),
                                                 ("Bob", "Thanks, the pottery class is great.")])
        _add_said(cube, "own", "2024-03-02", [("Ann", "I love my pottery class, we made bowls."),
                                              ("Bob", "Bowls, nice!")])
        _add_session(cube, "assistant", "2024-03-03", ["Is a pottery class worth it?",
                                                       "Yes, you will love your pottery class."])
        _add_fillers(cube, "2024-03-1")

        query = "What does Ann love about her pottery class?"
        plain = _scores_by_text(cube, query, SearchConfig(deep=False, addressee_weight=0.0))
        about = _scores_by_text(cube, query, SearchConfig(deep=False))
        assert about["Wow, your pottery class sounds fun! You must love it."] < \
            plain["Wow, your pottery class sounds fun! You must love it."]
        for kept in ("I love my pottery class, we made bowls.", "Thanks, the pottery class is great.",
                     "Yes, you will love your pottery class."):
            assert about[kept] == plain[kept]


def test_a_question_about_the_first_or_latest_reads_an_order_of_time() -> None:
    assert asks_for_order("When did Nate get his first two turtles?") == -1
    assert asks_for_order("Which trip was the earliest?") == -1
    assert asks_for_order("What was the most recent book I read?") == 1
    assert asks_for_order("What is my latest project?") == 1
    # A rank ("first place") and a part of a period ("the first half of May") are not an order of time.
    assert asks_for_order("What dance did Gina's team perform to win first place?") == 0
    assert asks_for_order("Was the first half of September a good month for Nate?") == 0
    assert asks_for_order("What does Nate do with his turtles?") == 0


def test_the_first_of_something_is_found_where_it_happened(tmp_path: Path) -> None:
    """"His first turtle" happened once, in the earliest session about it; later sessions mention it again, maybe
    in more words: of the best sessions, the earlier ones gain, most of all the earliest, and for "the latest" the
    later ones."""
    with MemOS(path=tmp_path / "o.db", llm=None) as mos:
        cube = mos.create_cube("o", owner="ann")
        _add_said(cube, "got", "2024-01-05", [("Nate", "Today I got a turtle from the pet shop!"),
                                              ("Jo", "Congrats!")])
        _add_said(cube, "again", "2024-04-05", [("Nate", "My first turtle, my first pet turtle, loves lettuce."),
                                                ("Jo", "Cute!")])
        _add_fillers(cube, "2024-02-1")

        def first_session(query: str, config: SearchConfig) -> str | None:
            return cube.search(query, top_k=3, config=config)[0].memory.provenance.session_id

        query = "When did Nate get his first turtle?"
        assert first_session(query, SearchConfig(deep=False, order_weight=0.0)) == "again"
        assert first_session(query, SearchConfig(deep=False)) == "got"
        assert first_session("What did Nate say about his latest turtle?", SearchConfig(deep=False)) == "again"
