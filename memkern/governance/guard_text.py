"""The guard's first layer: what a text says once its disguises are taken off.

A model reading a memory sees through homoglyphs, zero-width characters, letter spacing, words
cut at line ends and leetspeak, and it can decode base64, hex, rot13 or backwards text on
request. So the guard looks at the same text the model would understand: ``views(text)``
returns the readable *views* of a memory (the normalised text, its de-obfuscated spelling, every
encoded blob decoded, every HTML comment and piece of invisible markup) plus the *disguises*
found on the way. A disguise alone
proves nothing (emoji use U+200D, gamers write leet, commit hashes are hex); the scoring layer
counts it only when the text it hid carries an instruction frame.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import itertools
import re
import unicodedata
from dataclasses import dataclass, field

#: Zero-width, bidirectional-control, soft-hyphen and tag characters: invisible to a reader.
HIDDEN_CHARS = re.compile("[\u200b\u200c\u200d\u200e\u200f\u2060-\u2064\ufeff\u202a-\u202e\u2066-\u2069"
                          "\u00ad\U000e0000-\U000e007f]")
#: Cyrillic and Greek letters that look like Latin ones, folded to the Latin letter.
HOMOGLYPHS = str.maketrans({
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "х": "x", "у": "y", "і": "i", "ј": "j", "ѕ": "s",
    "һ": "h", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ɡ": "g", "ո": "n", "ⅼ": "l",
    "α": "a", "ε": "e", "ο": "o", "ρ": "p", "ν": "v", "τ": "t", "κ": "k", "ι": "i", "υ": "u",
    "А": "a", "Е": "e", "О": "o", "Р": "p", "С": "c", "Х": "x", "У": "y", "І": "i", "Т": "t", "М": "m",
    "Н": "h", "К": "k", "В": "b",
})
_LATIN_WITH_LOOKALIKE = re.compile("(?=[\\w]*[a-z])[\\w]*[" + "".join(
    k for k in "аеорсхуіјѕһԁԛԝɡոⅼαεορντκιυАЕОРСХУІТМНКВ") + "][\\w]*", re.IGNORECASE)
_HTML_COMMENT = re.compile(r"<!--(.*?)-->", re.DOTALL)
#: Document text a person does not see but a model reading the source does: elements styled
#: invisible (display:none, zero font size, white text), attribute text (alt, title, meta content),
#: script blocks and markdown comments ("[//]: # (...)").
_HIDDEN_MARKUP = re.compile(
    r"<(\w+)[^>]*?(?:display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0|color\s*[:=]\s*[\"']?(?:white"
    r"|#fff\b|#ffffff))[^>]*>(.*?)</\1\s*>"
    r"|\b(?:alt|title|content|aria-label)\s*=\s*\"([^\"]{12,})\""
    r"|<script\b[^>]*>(.*?)</script\s*>"
    r"|^\s*\[//\]\s*:\s*#\s*\((.*?)\)\s*$",
    re.DOTALL | re.IGNORECASE | re.MULTILINE)
#: Every match of ``_HIDDEN_MARKUP`` holds one of these: a text without them is not searched.
_MARKUP_MARKS = ("<", "=", "[")
_BASE64 = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{16,}={0,2}(?![A-Za-z0-9+/=_-])")
#: The run every ``_BASE64`` match holds, found twice as fast (no lookbehind tried at every character).
_BASE64_HINT = re.compile(r"[A-Za-z0-9+/_-]{16}")
_HEX = re.compile(r"(?<![0-9a-fA-F])(?:[0-9a-fA-F]{24,}|(?:[0-9a-fA-F]{2}[\s:]){11,}[0-9a-fA-F]{2})(?![0-9a-fA-F])")
#: A piece of every ``_HEX`` match, found three times faster (no lookbehind tried at every
#: character): a text without it holds no hex blob.
_HEX_HINT = re.compile(r"[0-9a-fA-F]{2}(?:[0-9a-fA-F]{22}|[\s:][0-9a-fA-F]{2}[\s:][0-9a-fA-F]{2}[\s:][0-9a-fA-F]{2})")
_SPACED = re.compile(r"(?<!\w)(?:\w[ .\-_*]){3,}\w(?!\w)")
#: The middle of every ``_SPACED`` match ("a b c d" holds " b c "): it starts with one of five
#: characters, so the engine jumps between them; a text without it has no letter spacing.
_SPACED_HINT = re.compile(r"[ .\-_*]\w[ .\-_*]\w[ .\-_*]")
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
_LEET_WORD = re.compile(r"(?<![\w@$])(?=[a-z0-9@$_]*[a-z])(?=[a-z0-9@$_]*[0-9@$])[a-z0-9@$_]{2,}(?![\w@$])")
#: Where a letter and a digit (or @, $) meet, with only underscores between: every ``_LEET_WORD``
#: match has such a place (the nearest letter to one of its digits). Written to start at the digit,
#: the rarer character, so that the engine jumps between digits.
_LEET_HINT = re.compile(r"[0-9@$](?:_*[a-z]|(?<=[a-z_][0-9@$]))")
#: Frequent English words, and the words instructions are made of: used to cut letter-spaced runs
#: back into words ("previousinstructions") and to recognise rot13 (its decoding is full of them).
WORDS = frozenset("""
a i the and to of you your all is in for that with it be not on are this any must always never send from now
user users assistant ai model ignore previous prior instructions instruction rules reveal system prompt tell
call delete files file without asking recommend note do mention memory share saved passwords password secretly
email forward conversation history chat new orders run keep quiet about quietly disregard earlier pretend
assistant filters no notes have person upload credentials stored before replying should whenever asks money
say only option is are was were will would can could may might me my we our they them their he she his her
at by as or if so but an up out into over then than there here what when where who how why which also just
safety given forward saved bank logins login details data secret secrets hidden developer operator admin override
policy memories tool tools function execute invoke export reply answer answers respond nothing settings warnings
guidelines recommend leak address book addresses contacts follow obey rule message allowed documents tax user's
""".split())
_SHORT_WORDS = frozenset("do to no so is it at on of be me my we or if an as up".split())
#: Words that rot13 turns into one of ``WORDS`` and are not words themselves ("vtaber" -> "ignore").
_ROT13_OF_WORDS = frozenset(codecs.encode(word, "rot13") for word in WORDS) - WORDS
#: The same for text written backwards ("erongi" -> "ignore").
_REVERSED_WORDS = frozenset(word[::-1] for word in WORDS) - WORDS
#: A word cut at a line end with a hyphen ("in-\nstructions"): joined again when respelling.
_LINE_HYPHEN = re.compile(r"(?<=\w)-\n(?=\w)")
_PUNCT = ".,:;!?'\"()"


@dataclass
class Views:
    """The readable versions of a text and the disguises that were removed to read them."""

    #: NFKC, hidden characters removed, homoglyphs folded, lower case, spaces collapsed.
    plain: str
    #: ``plain`` with letter spacing and leetspeak undone (equal to ``plain`` when nothing changed).
    respelled: str
    #: (disguise, text) pairs: decoded blobs and HTML comments, each to be read on its own.
    hidden: list[tuple[str, str]] = field(default_factory=list)
    #: Disguises found in the text itself: ``zero_width``, ``homoglyphs``, ``letter_spacing``, ``hyphenation``,
    #: ``leetspeak``.
    disguises: list[str] = field(default_factory=list)


def _printable(raw: bytes) -> str | None:
    """``raw`` as text when it is readable UTF-8 with spaces (a sentence, not binary or a token)."""
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(decoded) < 8 or " " not in decoded.strip():
        return None
    readable = sum(ch.isprintable() or ch.isspace() for ch in decoded)
    return decoded if readable / len(decoded) > 0.95 else None


def _base64_texts(text: str) -> list[str]:
    out: list[str] = []
    if not _BASE64_HINT.search(text):
        return out
    for match in _BASE64.finditer(text):
        blob = match.group().rstrip("=")
        for alphabet in (None, b"-_"):
            try:
                raw = base64.b64decode(blob + "=" * (-len(blob) % 4), altchars=alphabet, validate=False)
            except (binascii.Error, ValueError):
                continue
            decoded = _printable(raw)
            if decoded is not None:
                out.append(decoded)
                break
    return out


def _hex_texts(text: str) -> list[str]:
    out: list[str] = []
    if not _HEX_HINT.search(text):
        return out
    for match in _HEX.finditer(text):
        digits = re.sub(r"[\s:]", "", match.group())
        if len(digits) % 2:
            digits = digits[:-1]
        decoded = _printable(bytes.fromhex(digits))
        if decoded is not None:
            out.append(decoded)
    return out


def _decoded_texts(plain: str) -> list[tuple[str, str]]:
    """``plain`` decoded from rot13, or read backwards, when the decoding reads far more like
    English than ``plain`` does (at least three words become instruction words)."""
    words = list(map(str.strip, plain.split(), itertools.repeat(_PUNCT)))
    out = []
    if sum(map(_ROT13_OF_WORDS.__contains__, words)) >= 3:
        out.append(("rot13", codecs.encode(plain, "rot13")))
    if sum(map(_REVERSED_WORDS.__contains__, words)) >= 3:
        out.append(("reversed", plain[::-1]))
    return out


_BIDI_OVERRIDE = re.compile("\u202e([^\u202c]*)")
_TAG_CHARS = re.compile("[\U000e0020-\U000e007e]")


def _unhidden_texts(text: str) -> list[tuple[str, str]]:
    """Text made unreadable to people but not to models: right-to-left overrides (shown reversed)
    and Unicode tag characters (an invisible copy of ASCII)."""
    if text.isascii():  # both are made of characters outside ASCII
        return []
    out = [("bidi_reversed", m.group(1)[::-1]) for m in _BIDI_OVERRIDE.finditer(text) if m.group(1).strip()]
    if _TAG_CHARS.search(text):
        out.append(("tag_characters", _TAG_CHARS.sub(lambda m: chr(ord(m.group()) - 0xE0000), text)))
    return out


_SPACE_RUN = re.compile(r"[ \t\r\f\v]+")
#: A text holding none of these has no run of spaces to collapse (a single space stays as it is).
_SPACE_RUN_MARKS = ("  ", "\t", "\r", "\f", "\v")


def normalise(text: str) -> str:
    """NFKC, hidden characters removed, homoglyphs folded to Latin, lower case, spaces collapsed.

    An ASCII text is its own NFKC form and holds no hidden character or homoglyph; a text
    without two spaces or a tab (...) in a row has no run to collapse: those steps are skipped."""
    if not text.isascii():
        text = HIDDEN_CHARS.sub("", unicodedata.normalize("NFKC", text)).translate(HOMOGLYPHS)
    if any(map(text.__contains__, _SPACE_RUN_MARKS)):
        text = _SPACE_RUN.sub(" ", text)
    return text.lower()


def _segment(run: str) -> str:
    """``run`` cut into words ("previousinstructions" -> "previous instructions").

    Known words cost 1 each; a stretch of unknown letters costs 2 plus its length, so the
    cheapest cut keeps known words and leaves the rest as one unknown word ("assistantleak" ->
    "assistant leak" whether or not "leak" is known)."""
    best: list[tuple[float, list[str]] | None] = [(0.0, [])] + [None] * len(run)
    for end in range(1, len(run) + 1):
        for start in range(max(0, end - 14), end):
            head, word = best[start], run[start:end]
            if head is None:
                continue
            candidate = (head[0] + (1 if word in WORDS else 2 + len(word)), head[1] + [word])
            current = best[end]
            if current is None or candidate[0] < current[0]:
                best[end] = candidate
    found = best[len(run)]
    return " ".join(found[1]) if found else run


def respell(plain: str) -> str:
    """``plain`` with letter spacing ("i g n o r e", "i.g.n.o.r.e"), words cut at line ends
    ("in-\nstructions") and leetspeak ("1gn0r3") undone. Each rewrite runs only on a text holding
    a piece every match of it holds (found faster than the match itself)."""
    joined = _LINE_HYPHEN.sub("", plain) if "-\n" in plain else plain
    if _SPACED_HINT.search(joined):
        joined = _SPACED.sub(lambda m: _segment(re.sub(r"[ .\-_*]", "", m.group())), joined)
    joined = re.sub(r"(?<=\w) ([@.]) (?=\w)", r"\1", joined) if joined != plain else joined
    return _LEET_WORD.sub(_unleet, joined) if _LEET_HINT.search(joined) else joined


def _unleet(match: re.Match[str]) -> str:
    word = match.group()
    if "@" in word and re.match(r"[\w-]*\.\w", match.string[match.end():]):
        return word  # an e-mail address, not leetspeak
    plain = word.translate(_LEET)
    # Two characters are leet only for function words ("d0 n07"): "a1" is a cell, not "ai".
    return plain if len(word) > 2 or plain in _SHORT_WORDS else word


def _hidden_inside_words(text: str) -> bool:
    """Invisible characters between letters, or any bidi/tag control (a lone U+200D joins emoji)."""
    if text.isascii():  # every hidden character is outside ASCII
        return False
    for match in HIDDEN_CHARS.finditer(text):
        ch, at = match.group(), match.start()
        if ch != "\u200d" and ch != "\ufeff":
            return True
        if 0 < at < len(text) - 1 and text[at - 1].isalpha() and text[at + 1].isalpha():
            return True
    return False


def views(text: str) -> Views:
    """Every readable version of ``text``: see the module docstring."""
    plain = normalise(text)
    result = Views(plain=plain, respelled=respell(plain))
    nfkc = unicodedata.normalize("NFKC", text)
    if _hidden_inside_words(nfkc):
        result.disguises.append("zero_width")
    # Lookalike letters are never ASCII (nor are their other cases): an ASCII text holds none.
    if not nfkc.isascii() and _LATIN_WITH_LOOKALIKE.search(HIDDEN_CHARS.sub("", nfkc)):
        result.disguises.append("homoglyphs")
    if result.respelled != plain:
        kind = "letter_spacing" if _SPACED.search(plain) else "hyphenation" if _LINE_HYPHEN.search(plain) else "leetspeak"
        result.disguises.append(kind)
    result.hidden += _unhidden_texts(nfkc)
    result.hidden += [("html_comment", comment) for comment in _HTML_COMMENT.findall(text)]
    if any(mark in text for mark in _MARKUP_MARKS):
        result.hidden += [("hidden_markup", inner) for match in _HIDDEN_MARKUP.finditer(text)
                          for inner in match.groups()[1:] if inner and inner.strip()]
    result.hidden += [("base64", decoded) for decoded in _base64_texts(nfkc)]
    result.hidden += [("hex", decoded) for decoded in _hex_texts(nfkc)]
    result.hidden += _decoded_texts(plain)
    return result
