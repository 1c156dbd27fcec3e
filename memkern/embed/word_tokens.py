"""The static embedder's tokenizer, read faster: same ids, fewer passes.

The bundled tokenizer is BERT's (``BertNormalizer`` with lower-casing, ``BertPreTokenizer``,
``WordPiece``). Every step of it reads one word at a time, a word being what lies between the
characters its normaliser turns into spaces: it removes control characters, cuts Chinese characters
apart, strips accents and lower-cases character by character, and then splits at whitespace and
punctuation and looks each piece up in WordPiece on its own. So a text's ids are its words' ids, in
order, and a word's ids never change: they are worked out once by the real tokenizer and remembered.

On a word of plain ASCII (no control character) those steps reduce further: lower-case, cut into
runs of letters and digits and single punctuation characters. Such a piece is what is remembered,
so that a plain ASCII text costs a regular-expression pass and a dictionary lookup per piece instead
of the tokenizer's normalisation with alignments: the embed stage of ``memkern bench ingest`` on
LongMemEval's long turns takes about half the time. Any other word (accents, curly quotes, emoji,
Chinese, a control character inside it) is remembered whole.

A text holding one of the tokenizer's added tokens written out (``[UNK]``), which it matches before
normalising, goes to the tokenizer itself, and so does every text when the tokenizer is not of that
kind (a model folder of another make). ``tests/test_embed_word_tokens.py`` checks the ids are the
tokenizer's on edge cases, the LoCoMo dev turns and a quarter of LongMemEval's.
"""
from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from itertools import chain
from typing import Any

#: Pieces of a lower-cased ASCII text as ``BertPreTokenizer`` cuts it: runs of letters and digits,
#: and each punctuation character alone (whitespace separates and is dropped).
_PIECE = re.compile(r"[a-z0-9]+|[^a-z0-9\s]")
#: ASCII control characters the normaliser removes (tab, newline and carriage return are whitespace).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
#: The characters the normaliser turns into spaces: tab, newline, carriage return and Unicode's
#: white space that is not a control character (U+000B, U+000C, U+001C-U+001F and U+0085 are, and
#: are removed: "a\x1cb" reads as one word).
_WORD_BREAK = re.compile("[\t\n\r \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+")
#: Distinct pieces whose ids are remembered (a conversation uses tens of thousands).
CACHE_SIZE = 1 << 17
#: Up to this many texts the shortcut cannot read (an added token written out, a tokenizer of another
#: kind) are encoded one by one: a batch call starts the tokenizer's threads, which costs more than
#: it saves on a few texts.
FEW = 8
#: Longer pieces (and words) are not remembered, so that a hostile run of letters cannot fill memory
#: (WordPiece reads any piece over 100 characters as the unknown token anyway).
LONGEST_KEPT = 100


def _reads_like_bert(config: dict[str, Any]) -> bool:
    """Whether a tokenizer's configuration (its JSON) is the kind the shortcut reads alike: a
    lower-casing BERT normaliser, BERT's pre-tokenizer and WordPiece."""
    normalizer = config.get("normalizer") or {}
    return (normalizer.get("type") == "BertNormalizer" and normalizer.get("lowercase") is True
            and (config.get("pre_tokenizer") or {}).get("type") == "BertPreTokenizer"
            and (config.get("model") or {}).get("type") == "WordPiece")


class WordTokens:
    """``ids(texts)``: each text's token ids as ``tokenizer.encode_batch`` gives them (without
    special tokens, cut at ``max_tokens``), read word by word as above."""

    def __init__(self, tokenizer: Any, max_tokens: int) -> None:
        self._tokenizer = tokenizer
        self._max_tokens = max_tokens
        self._added = tuple(token.content for token in tokenizer.get_added_tokens_decoder().values())
        self._bert = _reads_like_bert(json.loads(tokenizer.to_str()))
        #: Each piece seen, with its ids. Read without a lock; filled and emptied only under it.
        self._known: dict[str, tuple[int, ...]] = {}
        self._lock = threading.Lock()

    def _plain(self, text: str) -> bool:
        """Whether ``text`` is plain ASCII, read piece by piece."""
        return text.isascii() and _CONTROL.search(text) is None

    def _by_words(self, text: str) -> bool:
        """Whether the shortcut reads ``text`` alike (word by word) with the tokenizer."""
        return self._bert and not any(map(text.__contains__, self._added))

    def _plain_ids(self, text: str) -> list[int]:
        # Every piece gives at least one id, so the first max_tokens pieces hold every id kept.
        return self._ids_of(_PIECE.findall(text.lower())[:self._max_tokens])

    def _word_ids(self, text: str) -> list[int]:
        """The ids of a text that is not plain ASCII: its plain words piece by piece, the others whole
        (a word may give no id at all, so none is left out before the ids are cut)."""
        pieces: list[str] = []
        for word in _WORD_BREAK.split(text):
            if self._plain(word):
                pieces += _PIECE.findall(word.lower())
            elif word:
                pieces.append(word)
        return self._ids_of(pieces)

    def _ids_of(self, pieces: list[str]) -> list[int]:
        """The ids of ``pieces`` (plain pieces or whole words) in order, cut at ``max_tokens``."""
        try:
            return list(chain.from_iterable(map(self._known.__getitem__, pieces)))[:self._max_tokens]
        except KeyError:  # a piece not seen yet (or the table was emptied meanwhile)
            pass
        with self._lock:
            known, encode = self._known, self._tokenizer.encode
            found = {piece: known[piece] if piece in known else tuple(encode(piece, add_special_tokens=False).ids)
                     for piece in set(pieces)}
            new = {piece: ids for piece, ids in found.items() if piece not in known and len(piece) <= LONGEST_KEPT}
            if len(known) + len(new) > CACHE_SIZE:
                known.clear()
            known.update(new)
        return list(chain.from_iterable(map(found.__getitem__, pieces)))[:self._max_tokens]

    def ids(self, texts: Sequence[str]) -> list[list[int]]:
        out: list[list[int]] = []
        other = []
        for position, text in enumerate(texts):
            if not self._by_words(text):
                out.append([])
                other.append(position)
            elif self._plain(text):
                out.append(self._plain_ids(text))
            else:
                out.append(self._word_ids(text))
        if len(other) <= FEW:
            for position in other:
                out[position] = self._tokenizer.encode(texts[position], add_special_tokens=False).ids
        else:
            encode_batch = getattr(self._tokenizer, "encode_batch_fast", self._tokenizer.encode_batch)
            for position, encoding in zip(other, encode_batch([texts[p] for p in other], add_special_tokens=False)):
                out[position] = encoding.ids
        return out
