"""LoCoMo answer scoring: the original normalisation and F1, per category, and the judge's verdict parsing."""

from __future__ import annotations

import pytest

from memkern.bench.qa import (
    JUDGE_PROMPT,
    JUDGE_PROMPT_SHA256,
    _parse_verdict,
    answer_tokens,
    gold_answer,
    multi_part_f1,
    normalize_answer,
    says_not_available,
    score_answer,
    token_f1,
)


@pytest.mark.parametrize("raw, expected", [
    ("The cat, and a DOG!", "cat dog"),
    ("Adoption agencies.", "adoption agencies"),
    ("  an   apple\tand\nthe pear ", "apple pear"),
    ("7 May, 2023", "7 may 2023"),
    ("Mother's day (U.S.)", "mothers day us"),
    ("theatre and band", "theatre band"),          # only whole words are dropped
    ("", ""),
])
def test_normalize_answer(raw: str, expected: str) -> None:
    assert normalize_answer(raw) == expected


def test_tokens_are_porter_stemmed() -> None:
    assert answer_tokens("Painted sunrises, running studies") == ["paint", "sunris", "run", "studi"]


def test_token_f1_multiset_overlap() -> None:
    assert token_f1("The violin", "violin") == 1.0
    assert token_f1("painted a sunrise", "painting the sunrises") == 1.0
    # pred {blue, vase}, gold {blue, potteri, vase}: P = 1, R = 2/3.
    assert token_f1("blue vase", "a blue pottery vase") == pytest.approx(0.8)
    # Multiset: a repeated word counts as often as it occurs on both sides.
    assert token_f1("dog dog dog", "dog") == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))
    assert token_f1("", "violin") == 0.0 and token_f1("violin", "") == 0.0
    assert token_f1("cello", "violin") == 0.0


@pytest.mark.parametrize("category", [2, 4])
def test_plain_categories(category: int) -> None:
    # "In 2022" vs "2022": P = 1/2, R = 1.
    assert score_answer("In 2022", "2022", category) == pytest.approx(2 / 3)
    assert score_answer("7 May 2023", "7 May, 2023", category) == 1.0


def test_category_1_multi_part() -> None:
    # Gold parts painting, pottery, hiking: best against any predicted part -> 1, 1, 0.
    assert score_answer("pottery, painting", "painting, pottery, hiking", 1) == pytest.approx(2 / 3)
    assert multi_part_f1("pottery, painting", "painting, pottery, hiking") == pytest.approx(2 / 3)
    # The prediction is split on commas before its commas are removed.
    assert score_answer("painting and pottery", "painting, pottery", 1) == pytest.approx(2 / 3)
    assert score_answer("Adoption agencies", "Adoption agencies", 1) == 1.0
    # A single gold part takes the best of the predicted parts ("she is single": P = 1/3, R = 1).
    assert score_answer("she is single, lives in Paris", "Single", 1) == pytest.approx(0.5)


def test_category_3_cuts_gold_at_the_first_semicolon() -> None:
    assert gold_answer("Likely yes; she loves music", 3) == "Likely yes"
    assert gold_answer("Likely yes; she loves music", 4) == "Likely yes; she loves music"
    assert score_answer("Likely yes", "Likely yes; she loves music", 3) == 1.0
    assert score_answer("Likely yes", "Likely yes; she loves music", 4) < 1.0


@pytest.mark.parametrize("answer, expected", [
    ("The information is not available in memory.", 1.0),
    ("Not mentioned in the conversation.", 1.0),
    ("There is no information about that.", 1.0),
    ("Unknown.", 1.0),
    ("It cannot be determined from the memories.", 1.0),
    ("The memories don't say.", 1.0),
    ("A dachshund.", 0.0),
    ("", 0.0),
])
def test_category_5_scores_saying_it_is_not_available(answer: str, expected: float) -> None:
    assert score_answer(answer, "", 5) == expected
    assert says_not_available(answer) is bool(expected)


def test_judge_prompt_is_stored_with_its_hash() -> None:
    import hashlib

    assert hashlib.sha256(JUDGE_PROMPT.encode("utf-8")).hexdigest() == JUDGE_PROMPT_SHA256
    assert "CORRECT" in JUDGE_PROMPT and "WRONG" in JUDGE_PROMPT


@pytest.mark.parametrize("text, expected", [
    ('{"verdict": "CORRECT"}', True),
    ('{"verdict": "wrong"}', False),
    ("CORRECT", True),
    ("The answer is WRONG.", False),
    ("CORRECT or WRONG?", None),
    ("maybe", None),
])
def test_verdict_parsing(text: str, expected: bool | None) -> None:
    assert _parse_verdict(text) is expected
