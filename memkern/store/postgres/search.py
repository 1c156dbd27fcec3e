"""The PostgreSQL store's search primitives: the index feed and lexical search.

Lexical search is a ``tsvector`` column on current, indexed versions only (written with
the version, see ``memories``): English snowball stemming like SQLite's porter tokenizer
and, like it, no stop words. Text is weighted A and entities B (1.0 and 0.5, as in
SQLite's bm25 column weights). Ranking is BM25-shaped: the sum over query terms of the
term's IDF in the cube times ``ts_rank``; ``ts_rank`` alone has no IDF, and a memory
repeating a common word would beat the one holding the rare word the query is about.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from memkern.store import sql
from memkern.store.base import IndexBatch
from memkern.store.dialect import POSTGRES
from memkern.store.postgres.connection import PostgresConnection, nul_free, one_row, q

#: ts_rank weights for labels D, C, B, A: text is A, entities B.
_RANK_WEIGHTS = "{0.1, 0.2, 0.5, 1.0}"
#: Texts longer than this are lexically indexed by their distinct words (tsvector <= 1 MB).
_FTS_FULL_CHARS = 100_000
_FTS_BUDGET_BYTES = 900_000


def fts_text(text: str) -> str:
    """What to feed ``to_tsvector``: the text, or for a very long one its distinct words in
    order of first use, up to a budget that keeps the tsvector under PostgreSQL's 1 MB."""
    if len(text) <= _FTS_FULL_CHARS:
        return text
    kept, used = [], 0
    for word in dict.fromkeys(text.split()):
        size = len(word.encode("utf-8"))
        cost = 2 * size + 12 if not word.isalnum() else size + 6  # lexeme + positions; compounds split
        if used + cost > _FTS_BUDGET_BYTES:
            break
        kept.append(word)
        used += cost
    return " ".join(kept)


class PostgresSearch(PostgresConnection):
    """``index_rows`` and ``lexical_search`` of ``PostgresStore``."""

    def index_rows(self, cube_id: str, after_seq: int, removals_after: int | None = None, *,
                   count: bool = True, limit: int | None = None) -> IndexBatch:
        with self._tx(snapshot=True) as cur:  # one snapshot for rows, count, revision and removals
            cur.execute(q(sql.INDEX_FEED) + sql.limit_clause(POSTGRES, limit), nul_free((cube_id, int(after_seq))))
            rows = cur.fetchall()
            rows_in_cube = -1
            if count:
                cur.execute(q(sql.INDEX_COUNT), nul_free((cube_id,)))
                rows_in_cube = one_row(cur)[0]
            cur.execute(q(sql.CUBE_REVISION), nul_free((cube_id,)))
            revision = cur.fetchone()
            removals: list[tuple] = []
            if removals_after is not None:
                cur.execute(q(sql.REMOVALS_AFTER), nul_free((cube_id, int(removals_after))))
                removals = cur.fetchall()
            cur.execute(q(sql.LAST_REMOVAL), nul_free((cube_id,)))
            removal_seq = int(one_row(cur)[0])  # an aggregate always returns its row
        return sql.index_batch(rows, rows_in_cube, revision, cube_id,
                               lambda found: np.stack(found).astype(np.float32, copy=False), removals, removal_seq)

    def lexical_search(self, cube_id: str, terms: Sequence[str], limit: int) -> list[tuple[str, float]]:
        terms = [t for t in terms if t and t.strip()]
        if not terms or limit <= 0:
            return []
        # BM25-shaped: per term, IDF over the cube's indexed memories times ts_rank (saturating
        # in term frequency, weighted text 1.0 / entities 0.5, normalised by document length).
        # Document frequencies are counted among the candidates: a memory containing a term
        # matches the OR query, so every memory counted by a term's df is a candidate.
        any_term = " || ".join(["plainto_tsquery('memkern_english', %s)"] * len(terms))
        # Every CTE is MATERIALIZED so that it is computed once whatever the planner believes:
        # right after a bulk insert its statistics are stale, and it would happily recount
        # document frequencies once per candidate.
        rows = self._read(
            "WITH cand AS MATERIALIZED ("
            "  SELECT seq, id, tsv FROM memories"
            f"  WHERE cube_id = %s AND tsv @@ ({any_term})),"
            " total AS MATERIALIZED (SELECT count(*) AS n FROM index_rows WHERE cube_id = %s),"
            " t AS MATERIALIZED ("
            "  SELECT q FROM (SELECT plainto_tsquery('memkern_english', term) AS q"
            "                 FROM unnest(%s::text[]) AS u(term)) AS parsed"
            "  WHERE numnode(q) > 0),"
            " df AS MATERIALIZED ("
            "  SELECT t.q, (SELECT count(*) FROM cand c WHERE c.tsv @@ t.q) AS n FROM t),"
            " idf AS MATERIALIZED ("
            "  SELECT df.q, ln(1 + (greatest(total.n, df.n) - df.n + 0.5) / (df.n + 0.5)) AS w"
            "  FROM df CROSS JOIN total)"
            " SELECT c.id,"
            f"  sum(idf.w * ts_rank('{_RANK_WEIGHTS}'::float4[], c.tsv, idf.q, 1)) AS score"
            " FROM cand c JOIN idf ON c.tsv @@ idf.q"
            " GROUP BY c.seq, c.id ORDER BY score DESC, c.seq LIMIT %s",
            (cube_id, *terms, cube_id, list(terms), int(limit)),
        )
        return [(mid, float(score)) for mid, score in rows if score > 0]
