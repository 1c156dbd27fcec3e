"""The shared store: PostgreSQL with pgvector, for many application nodes on one database.

It behaves exactly like the SQLite store (same tables, dedup keys, logging and revision
bumps); what differs is how it stays correct when several processes on several machines
write at once, where SQLite relies on one file lock:

- Every write is one transaction on a pooled connection (``psycopg_pool``): threads of one
  node do not queue behind a single connection, and a connection broken by a server
  restart is replaced instead of failing every later call.
- A write that changes a cube's index first locks the cube's row (``FOR NO KEY UPDATE``,
  the lock its final revision bump needs anyway). Writers to one cube are therefore
  serialized, so index rows become visible in ``seq`` order: a reader that has seen row
  ``n`` can never later meet a committed row below ``n``, which is what lets
  ``IndexCache`` follow the store incrementally. Writers to different cubes do not wait
  for each other.
- Duplicates are refused by partial unique indexes over current versions with
  ``ON CONFLICT DO NOTHING``: the database, not a read-then-write check, decides, so two
  nodes adding the same message cannot both win.
- Turn positions are computed under a transaction-level advisory lock per (cube, session),
  so that the "max + 1" read and the insert are atomic across nodes without locking the
  table; the lock goes away with the transaction, even if the client dies.
- Migrations run under a global advisory lock, so nodes starting together upgrade once.
  Everything lives in one schema (``schema=``), which lets tests use a throwaway schema
  each and lets several deployments share a database.

Representation choices:
- Vectors are a ``vector`` column without a fixed dimension: cubes have embedders of
  different dimensions in one table. Retrieval scans a cube's vectors in memory (see
  ``memkern.retrieval.index``) until the cube holds ``dense.DENSE_MIN_ROWS`` rows; then the
  cube gets a partial HNSW index of its own (the column cast to the cube's dimension, built
  concurrently at run time), the database answers the dense half of its searches, and the
  nodes' index copies drop their vectors (``dense``). The column is read and written
  in pgvector's binary format by two small adapters, decoded straight into numpy (no
  per-float Python objects, and no client package beyond psycopg).
- Lexical search is a ``tsvector`` column on current, indexed versions only: English
  snowball stemming like SQLite's porter tokenizer and, like it, no stop words, so that
  any word can be searched. Text is weighted A and entities B (1.0 and 0.5, as in
  SQLite's bm25 column weights). Ranking is BM25-shaped: the sum over query terms of the
  term's IDF in the cube times ``ts_rank`` (saturating in frequency, normalised by
  length); ``ts_rank`` alone has no IDF, and a memory repeating a common word would beat
  the one holding the rare word the query is about. A very long text is indexed by its
  distinct words in order, as many as keep the tsvector under PostgreSQL's 1 MB limit: a
  text of ~1M distinct tokens is stored whole, but only its first ~60k distinct words
  are searchable lexically (dense search sees it all).
- PostgreSQL text cannot hold NUL: NULs in values that go into columns are replaced by
  U+FFFD (the JSON body, where the item is stored exactly, escapes them). Keys that may be
  long (the source key, built from caller-given ids) are stored hashed, and the session
  index is a hash index, so no caller-given string can exceed a btree row's size limit.
- Times are ISO strings and event times epoch seconds, as in SQLite, so both stores give
  back exactly what was stored.

The package, by concern: ``connection`` (the pool, transactions, migrations, NUL-safe
values, pgvector's binary format), ``schema`` (the migrations), ``memories`` (cubes and
versions), ``search`` (the index feed and lexical search), ``dense`` (the HNSW index of each big
cube and dense search in the database) and ``governance`` (the hooks of
``memkern.governance.sqlstore``). Statements shared with SQLite are in ``memkern.store.sql``,
rendered by ``memkern.store.dialect.POSTGRES``.
"""

from __future__ import annotations

from memkern.governance.sqlstore import GovernanceSQL
from memkern.store.base import Store
from memkern.store.postgres.connection import drop_schema
from memkern.store.postgres.governance import PostgresGovernance
from memkern.store.postgres.memories import PostgresMemories
from memkern.store.postgres.schema import MIGRATIONS, SCHEMA_VERSION
from memkern.store.postgres.search import PostgresSearch

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "PostgresStore", "drop_schema"]


class PostgresStore(PostgresGovernance, PostgresSearch, PostgresMemories, GovernanceSQL, Store):
    """``Store`` on a PostgreSQL database with pgvector (see the module docstring).

    ``dsn`` is a libpq connection string or URL; ``schema`` is where the tables live
    (created if missing); ``pool_size`` bounds the connections this store opens.
    """
