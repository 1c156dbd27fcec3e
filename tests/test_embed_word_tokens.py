"""The static embedder's word-by-word reading gives the tokenizer's own ids, and its vectors are
each text's normalised sum of token vectors, however a batch is grouped."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tokenizers")

from memkern.embed import word_tokens  # noqa: E402
from memkern.embed.static import StaticEmbedder  # noqa: E402
from memkern.embed.word_tokens import WordTokens  # noqa: E402

LOCOMO = Path("/work/shared/data/locomo/locomo-dev.json")
LME = Path("/work/shared/data/longmemeval/lme-dev.json")

EDGE_CASES = [
    "", " ", "\t\r\n", "Hello, World!", "don't stop-believing_now", "3.14 and 1,000,000 (approx.)",
    "a\x0bb", "a\x7fb", "a\x00b", "vertical\x0ctab", "x [UNK] y", "[PAD]", "[unk] is lower case",
    "café", "naïve — “quoted” ‘text’", "大学 is Chinese", "emoji 💰 here", "a" * 99, "b" * 100, "c" * 101,
    "word " + "z" * 150 + " end", "!!!???...", "~`@#$%^&*()_+-={}[]|\\:;\"'<>,./", "MiXeD CaSe WoRdS",
    "tokenization antidisestablishmentarianism", " ".join(["long"] * 700), "x" * 9000,
    # Not plain ASCII: read word by word, each word as the normaliser sees it.
    "a\x1cb c\x85d e\u200bf g\ufeffh", "a\u2028b\u2029c\xa0d\u3000e\u202ff\u205fg\u1680h\u2003i",
    "Ünïcödé ÀÉÎÕÜ straße İstanbul ǅ ﬁne", "e\u0301 \u0301e combining\u0301 \u0301", "日本語のテキストと中文混在 text",
    "한국어 문장입니다", "Привет, мир! Ελληνικά", "مرحبا بالعالم", "👍🏽 👨‍👩‍👧 ❤️ 25°C ½ ™ №",
    "curly “quotes” and ‘single’ — dash – en … ellipsis", "mixed café[UNK]x", "\ufffd replacement \ufffd",
    "tab\tnew\nline\rcr é", "é" * 150, "é " * 700, "x\x00y é", "\u00a0leading and trailing\u3000",
    "ﾊﾝｶｸ full-width ＡＢＣ１２３", "\U000e0041 tag chars \U000e007f", "a\u200db emoji\u200djoiner",
]


@pytest.fixture(scope="module")
def embedder() -> StaticEmbedder:
    return StaticEmbedder()


def _reference(embedder: StaticEmbedder, texts: list[str]) -> list[list[int]]:
    """The tokenizer's own ids (what the embedder read before the shortcut)."""
    tokenizer = embedder._model.tokenizer
    return [encoding.ids for encoding in tokenizer.encode_batch(texts, add_special_tokens=False)]


def _fresh(embedder: StaticEmbedder) -> WordTokens:
    model = embedder._model
    return WordTokens(model.tokenizer, model.config.max_tokens)


def test_edge_cases_get_the_tokenizers_ids(embedder: StaticEmbedder) -> None:
    tokens = _fresh(embedder)
    assert tokens.ids(EDGE_CASES) == _reference(embedder, EDGE_CASES)
    assert [tokens.ids([text])[0] for text in EDGE_CASES] == _reference(embedder, EDGE_CASES)
    assert len(tokens.ids([" ".join(["long"] * 700)])[0]) == embedder._model.config.max_tokens
    assert max(map(len, tokens._known)) <= word_tokens.LONGEST_KEPT  # "x" * 9000 and the like are not kept


def test_words_not_plain_ascii_are_remembered_whole(embedder: StaticEmbedder) -> None:
    tokens = _fresh(embedder)
    text = "naïve café owners said “bonjour” twice"
    assert tokens.ids([text]) == _reference(embedder, [text])
    assert {"naïve", "café", "“bonjour”", "owners", "said"} <= set(tokens._known)
    assert tokens.ids(["café " * 3]) == _reference(embedder, ["café " * 3])


def _dev_turns() -> list[str]:
    texts: list[str] = []
    if LOCOMO.exists():
        for sample in json.loads(LOCOMO.read_text()):
            conversation = sample["conversation"]
            texts += [turn["text"] for key, session in conversation.items()
                      if key.startswith("session_") and isinstance(session, list) for turn in session]
    if LME.exists():
        lme = json.loads(LME.read_text())
        texts += [turn["content"] for item in lme[::4] for session in item["haystack_sessions"] for turn in session]
    return texts


@pytest.mark.skipif(not (LOCOMO.exists() or LME.exists()), reason="LoCoMo and LongMemEval dev data not available")
def test_dev_turns_get_the_tokenizers_ids(embedder: StaticEmbedder) -> None:
    texts = [text[:embedder._model.max_chars] for text in _dev_turns()]
    assert len(texts) > 1000
    assert _fresh(embedder).ids(texts) == _reference(embedder, texts)


@pytest.mark.skipif(not LME.exists(), reason="LongMemEval dev data not available")
def test_every_longmemeval_turn_not_plain_ascii_gets_the_tokenizers_ids(embedder: StaticEmbedder) -> None:
    lme = json.loads(LME.read_text())
    texts = sorted({turn["content"][:embedder._model.max_chars] for item in lme for session in item["haystack_sessions"]
                    for turn in session if not turn["content"].isascii()})
    assert len(texts) > 1000
    assert _fresh(embedder).ids(texts) == _reference(embedder, texts)


def test_a_full_table_is_emptied_and_the_ids_stay_right(embedder: StaticEmbedder,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(word_tokens, "CACHE_SIZE", 8)
    tokens = _fresh(embedder)
    texts = ["one two three four five", "six seven eight nine ten eleven", "one two twelve", "a b c d e f g h i j k"]
    assert tokens.ids(texts) == _reference(embedder, texts)
    assert len(tokens._known) <= 11  # emptied when full; a text's own new pieces are kept after that


def test_threads_reading_new_pieces_at_once_get_the_same_ids(embedder: StaticEmbedder,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(word_tokens, "CACHE_SIZE", 64)  # the table is emptied while other threads read it
    tokens = _fresh(embedder)
    texts = [f"thread {n} writes word{n} and shared words like memory, kernel and cube" for n in range(200)]
    expected = _reference(embedder, texts)
    wrong: list[int] = []

    def read(offset: int) -> None:
        for position in range(offset, len(texts), 4):
            try:
                if tokens.ids([texts[position]])[0] != expected[position]:
                    wrong.append(position)
            except Exception:  # a thread's exception would otherwise pass unseen
                wrong.append(position)

    workers = [threading.Thread(target=read, args=(n,)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert wrong == []


def test_each_vector_is_its_texts_normalised_sum_however_the_batch_is_grouped(embedder: StaticEmbedder) -> None:
    # Lengths from one token to past the cut, in one batch: the sums are grouped by length.
    texts = ["hi", "a short one", " ".join(["medium"] * 40), " ".join(["long words here"] * 300), "hello world",
             "x" * 300, "[UNK] only", " ".join(map(str, range(90)))]
    model = embedder._model
    vectors = embedder.embed(texts)
    for text, vector, ids in zip(texts, vectors, _reference(embedder, texts)):
        kept = [i for i in ids if i != model.config.unk_token_id]
        expected = model.matrix[kept].sum(axis=0) if kept else np.zeros(embedder.dim, np.float32)
        norm = np.linalg.norm(expected)
        assert np.allclose(vector, expected / norm if norm else expected, atol=1e-6), text[:40]


def test_a_tokenizer_of_another_kind_reads_every_text_itself(embedder: StaticEmbedder) -> None:
    from tokenizers import Tokenizer

    config = json.loads(embedder._model.tokenizer.to_str())
    config["normalizer"]["lowercase"] = False  # "Hello" and "hello" are no longer one piece
    tokenizer = Tokenizer.from_str(json.dumps(config))
    tokens = WordTokens(tokenizer, 512)
    texts = ["Hello there", "hello there"]
    assert tokens.ids(texts) == [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
    assert tokens._known == {}
