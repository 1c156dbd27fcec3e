"""The guard's text views take shortcuts (ASCII texts skip NFKC and folding, rewrites run only on
texts holding a hint of a match); these tests check that each shortcut answers as the full step."""

from __future__ import annotations

import re
import unicodedata

import pytest

from memkern.governance import guard_text as gt
from tests.test_guard_prefilter import eval_texts

TRICKY = [
    "", " ", "a  b", "a\tb", "a \t\r\f\v b", "tab\there", "i g n o r e", "i.g.n.o.r.e", "a_b_c_d", "_ _ _ _",
    "x-\ny", "in-\nstructions", "1gn0r3 all", "a_1", "1__a", "$5 and @home", "p4ssw0rd", "d0 n07", "3pm",
    "user@example.com", "ΑΙ аssistant", "zero\u200bwidth", "\ufeffbom", "ｆｕｌｌｗｉｄｔｈ", "ﬁne ligature",
    "aGVsbG8gd29ybGQgdGhpcyBpcyBh", "abc-def_ghi/jkl+mno", "deadbeefcafebabe0123456789",
    "\u202eerongi\u202c", "tag\U000e0041\U000e0042",
]


def reference_normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = gt.HIDDEN_CHARS.sub("", text).translate(gt.HOMOGLYPHS)
    return re.sub(r"[ \t\r\f\v]+", " ", text).lower()


def texts() -> list[str]:
    return TRICKY + eval_texts()


def test_normalise_answers_as_every_step_does() -> None:
    for text in texts():
        assert gt.normalise(text) == reference_normalise(text), text[:80]


@pytest.mark.parametrize(("pattern", "hint"), [
    (gt._SPACED, gt._SPACED_HINT), (gt._LEET_WORD, gt._LEET_HINT), (gt._BASE64, gt._BASE64_HINT),
])
def test_every_match_holds_its_hint(pattern: re.Pattern[str], hint: re.Pattern[str]) -> None:
    matched = 0
    for text in texts():
        for view in (text, gt.normalise(text)):
            for match in pattern.finditer(view):
                matched += 1
                assert hint.search(view), (pattern.pattern, view[:80])
                # the hint lies inside the match (so the shortcut does not rely on the rest of the text)
                assert hint.search(view, match.start(), match.end()), view[:80]
    assert matched > 20


def reference_respell(plain: str) -> str:
    joined = gt._SPACED.sub(lambda m: gt._segment(re.sub(r"[ .\-_*]", "", m.group())), gt._LINE_HYPHEN.sub("", plain))
    joined = re.sub(r"(?<=\w) ([@.]) (?=\w)", r"\1", joined) if joined != plain else joined
    return gt._LEET_WORD.sub(gt._unleet, joined)


def test_respell_answers_as_every_rewrite_does() -> None:
    for text in texts():
        plain = gt.normalise(text)
        assert gt.respell(plain) == reference_respell(plain), text[:80]
