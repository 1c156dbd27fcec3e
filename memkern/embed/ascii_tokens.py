"""The static embedder's tokenizer, read faster on plain ASCII text: same ids, fewer passes.

The bundled tokenizer is BERT's (``BertNormalizer`` with lower-casing, ``BertPreTokenizer``,
``WordPiece``). On a text that is ASCII and holds no control character other than tab, newline and
carriage return, those steps reduce to: lower-case, cut into runs of letters and digits and
single punctuation characters, and look each piece up in WordPiece, which reads every piece on its
own. So a piece's ids are worked out once by the real tokenizer and remembered, and such a text
costs a regular-expression pass and a dictionary lookup per piece instead of the tokenizer's
normalisation with alignments: the embed stage of ``memkern bench ingest`` on LongMemEval's long
turns takes about half the time.

Any other text goes to the tokenizer itself: non-ASCII text (accents, Unicode punctuation,
Chinese characters spaced apart), control characters (removed by the normaliser, which would join
the pieces around them) and the tokenizer's added tokens written out (``[UNK]``), which it
matches before normalising. So does every text when the tokenizer is not of that kind (a model
folder of another make). ``tests/test_embed_ascii_tokens.py`` checks the ids are the tokenizer's on
edge cases, the LoCoMo dev turns and a quarter of LongMemEval's (all of them when this was written).
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
#: Control characters the normaliser removes (tab, newline and carriage return are whitespace).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
#: Distinct pieces whose ids are remembered (a conversation uses tens of thousands).
CACHE_SIZE = 1 << 17
#: Up to this many texts the shortcut cannot read are encoded one by one: a batch call starts the
#: tokenizer's threads, which costs more than it saves on a few texts (the guard's learned layer
#: embeds a window or two per write).
FEW = 8
#: Longer pieces are not remembered, so that a hostile run of letters cannot fill memory (WordPiece
#: reads any piece over 100 characters as the unknown token anyway).
LONGEST_KEPT = 100


def _reads_like_bert(config: dict[str, Any]) -> bool:
    """Whether a tokenizer's configuration (its JSON) is the kind the shortcut reads alike: a
    lower-casing BERT normaliser, BERT's pre-tokenizer and WordPiece."""
    normalizer = config.get("normalizer") or {}
    return (normalizer.get("type") == "BertNormalizer" and normalizer.get("lowercase") is True
            and (config.get("pre_tokenizer") or {}).get("type") == "BertPreTokenizer"
            and (config.get("model") or {}).get("type") == "WordPiece")


class AsciiTokens:
    """``ids(texts)``: each text's token ids as ``tokenizer.encode_batch`` gives them (without
    special tokens, cut at ``max_tokens``), with plain ASCII texts read by the shortcut above."""

    def __init__(self, tokenizer: Any, max_tokens: int) -> None:
        self._tokenizer = tokenizer
        self._max_tokens = max_tokens
        self._added = tuple(token.content for token in tokenizer.get_added_tokens_decoder().values())
        self._bert = _reads_like_bert(json.loads(tokenizer.to_str()))
        #: Each piece seen, with its ids. Read without a lock; filled and emptied only under it.
        self._known: dict[str, tuple[int, ...]] = {}
        self._lock = threading.Lock()

    def _plain(self, text: str) -> bool:
        """Whether ``text`` is read alike by the shortcut and the tokenizer."""
        return self._bert and text.isascii() and _CONTROL.search(text) is None and not any(map(text.__contains__, self._added))

    def _plain_ids(self, text: str) -> list[int]:
        # Every piece gives at least one id, so the first max_tokens pieces hold every id kept.
        pieces = _PIECE.findall(text.lower())[:self._max_tokens]
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
            if self._plain(text):
                out.append(self._plain_ids(text))
            else:
                out.append([])
                other.append(position)
        if len(other) <= FEW:
            for position in other:
                out[position] = self._tokenizer.encode(texts[position], add_special_tokens=False).ids
        else:
            encode_batch = getattr(self._tokenizer, "encode_batch_fast", self._tokenizer.encode_batch)
            for position, encoding in zip(other, encode_batch([texts[p] for p in other], add_special_tokens=False)):
                out[position] = encoding.ids
        return out
