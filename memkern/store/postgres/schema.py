"""The PostgreSQL store's schema: its migrations, one per version, applied in order.

``PostgresStore`` runs them under an advisory lock when it opens (``connection.migrate``).
The tables are the SQLite store's (``memkern.store.sqlite_schema``) in PostgreSQL's types,
plus what only PostgreSQL has: a ``tsvector`` column for lexical search, a ``text[]`` copy
of the tags for filters, a ``vector`` column and identity columns.
"""

from __future__ import annotations

#: Each entry brings a schema from version ``i`` to ``i + 1``, in its own transaction. They
#: run with ``search_path`` set to the store's schema (then pgvector's), so names are
#: unqualified.
MIGRATIONS: list[str] = [
    # 0 -> 1: cubes, versioned memories, vectors, lexical index, operation log.
    """
    CREATE TABLE meta (
        key   text PRIMARY KEY,
        value text NOT NULL
    );

    -- English stemming without a stop-word list: like SQLite's porter tokenizer, every
    -- word is searchable ("the", "and"); IDF keeps common words from mattering.
    CREATE TEXT SEARCH DICTIONARY memkern_english_stem (TEMPLATE = snowball, LANGUAGE = english);
    CREATE TEXT SEARCH CONFIGURATION memkern_english (COPY = pg_catalog.english);
    ALTER TEXT SEARCH CONFIGURATION memkern_english
        ALTER MAPPING REPLACE english_stem WITH memkern_english_stem;

    CREATE TABLE cubes (
        id       text PRIMARY KEY,
        name     text NOT NULL UNIQUE,
        owner    text NOT NULL,
        body     text NOT NULL,                 -- CubeInfo as JSON
        revision bigint NOT NULL DEFAULT 0
    );

    -- One row per version. Immutable content lives in ``body`` (MemoryItem JSON); the
    -- columns are what filters need and what changes in place on the current version.
    CREATE TABLE memories (
        seq              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        cube_id          text NOT NULL REFERENCES cubes(id) ON DELETE CASCADE,
        id               text NOT NULL,
        version          integer NOT NULL,
        is_current       boolean NOT NULL,
        kind             text NOT NULL,
        session_id       text,
        position         integer,
        speaker          text,
        event_time       double precision,
        state            text NOT NULL,
        source_key       text,                  -- sha256 of dedup_keys()[0]
        content_key      text NOT NULL,
        valid_to         text,
        expired_at       text,
        access_count     integer NOT NULL DEFAULT 0,
        last_accessed_at text,
        tags             text NOT NULL,         -- JSON list, for index rows
        tag_list         text[] NOT NULL,       -- the same, for filters
        body             text NOT NULL,
        tsv              tsvector,              -- set while the version is indexed
        UNIQUE (cube_id, id, version)
    );
    CREATE INDEX memories_current ON memories (cube_id, seq) WHERE is_current;
    CREATE INDEX memories_by_id ON memories (cube_id, id);
    CREATE INDEX memories_session ON memories USING hash (session_id);
    CREATE UNIQUE INDEX memories_source_key ON memories (cube_id, source_key)
        WHERE is_current AND source_key IS NOT NULL;
    CREATE UNIQUE INDEX memories_content_key ON memories (cube_id, content_key)
        WHERE is_current;
    CREATE INDEX memories_tsv ON memories USING gin (tsv);

    -- Search index rows: current versions only. A change to a row deletes and re-inserts
    -- it under a new ``seq`` so that readers detect it by a count mismatch.
    CREATE TABLE index_rows (
        seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        memory_seq bigint NOT NULL UNIQUE REFERENCES memories(seq) ON DELETE CASCADE,
        cube_id    text NOT NULL,
        vector     vector NOT NULL
    );
    CREATE INDEX index_rows_cube ON index_rows (cube_id, seq);

    -- Append-only, ids only: survives deletion of what it names.
    CREATE TABLE operations (
        seq       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at        text NOT NULL,
        cube_id   text NOT NULL,
        memory_id text,
        version   integer,
        op        text NOT NULL,
        actor     text,
        reason    text
    );
    CREATE INDEX operations_memory ON operations (cube_id, memory_id, seq);
    CREATE INDEX operations_cube ON operations (cube_id, seq);
    """,
    # 1 -> 2: governance: users, hashed API keys, per-cube grants, the audit log.
    """
    CREATE TABLE users (
        id         text PRIMARY KEY,
        name       text NOT NULL,
        role       text NOT NULL,
        created_at text NOT NULL
    );

    -- The key itself is never stored: its public prefix (for lookup) and its sha256.
    CREATE TABLE api_keys (
        prefix     text PRIMARY KEY,
        user_id    text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        key_hash   text NOT NULL,
        created_at text NOT NULL,
        revoked_at text
    );
    CREATE INDEX api_keys_user ON api_keys (user_id);

    CREATE TABLE grants (
        cube_id    text NOT NULL REFERENCES cubes(id) ON DELETE CASCADE,
        user_id    text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        permission text NOT NULL,
        granted_at text NOT NULL,
        PRIMARY KEY (cube_id, user_id)
    );
    CREATE INDEX grants_user ON grants (user_id);

    -- Append-only, ids only: who did what on which cube and memories, and how it ended.
    CREATE TABLE audit (
        seq       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at        text NOT NULL,
        user_id   text,
        operation text NOT NULL,
        cube_id   text,
        item_ids  text NOT NULL,
        result    text NOT NULL,
        detail    text
    );
    CREATE INDEX audit_cube ON audit (cube_id, seq);
    CREATE INDEX audit_user ON audit (user_id, seq);
    """,
    # 2 -> 3: the scheduler's durable job queue (memkern.store.queue) and the marks its
    # handlers keep per memory ("extracted"). Times are epoch seconds. Jobs of one ``lane``
    # (a cube) run in ``seq`` order; they go with their cube.
    """
    CREATE TABLE jobs (
        seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id           text NOT NULL UNIQUE,
        lane         text NOT NULL,
        cube_id      text REFERENCES cubes(id) ON DELETE CASCADE,
        type         text NOT NULL,
        payload      text NOT NULL,
        status       text NOT NULL,
        attempts     integer NOT NULL DEFAULT 0,
        max_attempts integer NOT NULL,
        run_at       double precision NOT NULL,
        created_at   double precision NOT NULL,
        started_at   double precision,
        finished_at  double precision,
        lease_owner  text,
        lease_token  text,
        lease_until  double precision,
        heartbeat_at double precision,
        dedup_key    text,
        last_error   text,
        result       text
    );
    CREATE INDEX jobs_open_lane ON jobs (lane, seq) WHERE status IN ('pending', 'running');
    CREATE INDEX jobs_status ON jobs (status, run_at);
    CREATE INDEX jobs_cube ON jobs (cube_id, seq);
    CREATE UNIQUE INDEX jobs_dedup ON jobs (dedup_key) WHERE status = 'pending' AND dedup_key IS NOT NULL;

    CREATE TABLE job_marks (
        cube_id   text NOT NULL REFERENCES cubes(id) ON DELETE CASCADE,
        mark      text NOT NULL,
        memory_id text NOT NULL,
        at        double precision NOT NULL,
        job_id    text,
        PRIMARY KEY (cube_id, mark, memory_id)
    );
    """,
    # 3 -> 4: the removal feed of the search index (ids only, see the SQLite schema).
    """
    CREATE TABLE index_removals (
        seq       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        cube_id   text NOT NULL,
        memory_id text NOT NULL
    );
    CREATE INDEX index_removals_cube ON index_removals (cube_id, seq);
    """,
    # 4 -> 5: the database's own dense search (``memkern.store.postgres.dense``). A cube past the
    # switch point gets a partial HNSW index over its rows of ``index_rows``, built at run time
    # (CREATE INDEX CONCURRENTLY, which no transaction can hold); this table names each one with its
    # cube and dimension. No foreign key: the entry outlives a deleted cube until its index is dropped.
    """
    CREATE TABLE dense_indexes (
        name       text PRIMARY KEY,
        cube_id    text NOT NULL,
        dim        integer NOT NULL,
        created_at text NOT NULL
    );
    CREATE INDEX dense_indexes_cube ON dense_indexes (cube_id);
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)

#: The tables ``PostgresStore.reset`` empties.
TABLES = ("audit", "grants", "api_keys", "users", "operations", "index_removals", "index_rows", "memories", "cubes")
