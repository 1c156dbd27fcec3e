"""Versioned schema of the SQLite store.

Each entry of ``MIGRATIONS`` brings the database from version ``i`` to ``i + 1`` and is
applied in its own transaction, so that a store written by an older memkern is upgraded
in place and a newer one is refused rather than misread.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 0 -> 1: cubes, versioned memories, vectors, lexical index, operation log.
    """
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );

    CREATE TABLE cubes (
        id             TEXT PRIMARY KEY,
        name           TEXT NOT NULL UNIQUE,
        owner          TEXT NOT NULL,
        body           TEXT NOT NULL,            -- CubeInfo as JSON
        revision       INTEGER NOT NULL DEFAULT 0
    );

    -- One row per version. Immutable content lives in ``body`` (MemoryItem JSON); the
    -- columns are what filters need and what changes in place on the current version.
    CREATE TABLE memories (
        seq              INTEGER PRIMARY KEY AUTOINCREMENT,
        cube_id          TEXT NOT NULL REFERENCES cubes(id) ON DELETE CASCADE,
        id               TEXT NOT NULL,
        version          INTEGER NOT NULL,
        is_current       INTEGER NOT NULL,
        kind             TEXT NOT NULL,
        session_id       TEXT,
        position         INTEGER,
        speaker          TEXT,
        event_time       REAL,
        state            TEXT NOT NULL,
        source_key       TEXT,
        content_key      TEXT NOT NULL,
        valid_to         TEXT,
        expired_at       TEXT,
        access_count     INTEGER NOT NULL DEFAULT 0,
        last_accessed_at TEXT,
        body             TEXT NOT NULL,
        UNIQUE (cube_id, id, version)
    );
    CREATE INDEX memories_current ON memories (cube_id, is_current, seq);
    CREATE INDEX memories_by_id ON memories (cube_id, id);
    CREATE INDEX memories_session ON memories (cube_id, session_id, position);
    CREATE UNIQUE INDEX memories_source_key ON memories (cube_id, source_key)
        WHERE is_current = 1 AND source_key IS NOT NULL;
    CREATE UNIQUE INDEX memories_content_key ON memories (cube_id, content_key)
        WHERE is_current = 1;

    -- Search index rows: current versions only. A change to a row deletes and re-inserts
    -- it under a new ``seq`` so that readers detect it by a count mismatch.
    CREATE TABLE index_rows (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        memory_seq INTEGER NOT NULL UNIQUE REFERENCES memories(seq) ON DELETE CASCADE,
        cube_id    TEXT NOT NULL,
        vector     BLOB NOT NULL
    );
    CREATE INDEX index_rows_cube ON index_rows (cube_id, seq);

    -- rowid = memories.seq. ``cube`` restricts a query to one cube; it carries no weight.
    CREATE VIRTUAL TABLE memory_fts USING fts5(
        cube, text, entities,
        tokenize = 'porter unicode61 remove_diacritics 2'
    );

    -- Append-only, ids only: survives deletion of what it names.
    CREATE TABLE operations (
        seq       INTEGER PRIMARY KEY AUTOINCREMENT,
        at        TEXT NOT NULL,
        cube_id   TEXT NOT NULL,
        memory_id TEXT,
        version   INTEGER,
        op        TEXT NOT NULL,
        actor     TEXT,
        reason    TEXT
    );
    CREATE INDEX operations_memory ON operations (cube_id, memory_id);
    """,
    # 1 -> 2: governance: users, hashed API keys, per-cube grants, the audit log.
    """
    CREATE TABLE users (
        id         TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        role       TEXT NOT NULL,
        created_at TEXT NOT NULL
    );

    -- The key itself is never stored: its public prefix (for lookup) and its sha256.
    CREATE TABLE api_keys (
        prefix     TEXT PRIMARY KEY,
        user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        key_hash   TEXT NOT NULL,
        created_at TEXT NOT NULL,
        revoked_at TEXT
    );
    CREATE INDEX api_keys_user ON api_keys (user_id);

    CREATE TABLE grants (
        cube_id    TEXT NOT NULL REFERENCES cubes(id) ON DELETE CASCADE,
        user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        permission TEXT NOT NULL,
        granted_at TEXT NOT NULL,
        PRIMARY KEY (cube_id, user_id)
    );
    CREATE INDEX grants_user ON grants (user_id);

    -- Append-only, ids only: who did what on which cube and memories, and how it ended.
    CREATE TABLE audit (
        seq       INTEGER PRIMARY KEY AUTOINCREMENT,
        at        TEXT NOT NULL,
        user_id   TEXT,
        operation TEXT NOT NULL,
        cube_id   TEXT,
        item_ids  TEXT NOT NULL,
        result    TEXT NOT NULL,
        detail    TEXT
    );
    CREATE INDEX audit_cube ON audit (cube_id, seq);
    CREATE INDEX audit_user ON audit (user_id, seq);
    """,
    # 2 -> 3: the scheduler's durable job queue (memkern.store.queue) and the marks its
    # handlers keep per memory ("extracted"). Times are epoch seconds. Jobs of one ``lane``
    # (a cube) run in ``seq`` order; they go with their cube.
    """
    CREATE TABLE jobs (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        id           TEXT NOT NULL UNIQUE,
        lane         TEXT NOT NULL,
        cube_id      TEXT REFERENCES cubes(id) ON DELETE CASCADE,
        type         TEXT NOT NULL,
        payload      TEXT NOT NULL,
        status       TEXT NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        run_at       REAL NOT NULL,
        created_at   REAL NOT NULL,
        started_at   REAL,
        finished_at  REAL,
        lease_owner  TEXT,
        lease_token  TEXT,
        lease_until  REAL,
        heartbeat_at REAL,
        dedup_key    TEXT,
        last_error   TEXT,
        result       TEXT
    );
    CREATE INDEX jobs_open_lane ON jobs (lane, seq) WHERE status IN ('pending', 'running');
    CREATE INDEX jobs_status ON jobs (status, run_at);
    CREATE INDEX jobs_cube ON jobs (cube_id, seq);
    CREATE UNIQUE INDEX jobs_dedup ON jobs (dedup_key) WHERE status = 'pending' AND dedup_key IS NOT NULL;

    CREATE TABLE job_marks (
        cube_id   TEXT NOT NULL REFERENCES cubes(id) ON DELETE CASCADE,
        mark      TEXT NOT NULL,
        memory_id TEXT NOT NULL,
        at        REAL NOT NULL,
        job_id    TEXT,
        PRIMARY KEY (cube_id, mark, memory_id)
    );
    """,
    # 3 -> 4: the removal feed of the search index. A deleted memory leaves its index with
    # nothing to re-read, so each removal is logged here (ids only, like ``operations``);
    # ``memkern.retrieval.index`` follows it to tombstone rows instead of reloading the cube.
    """
    CREATE TABLE index_removals (
        seq       INTEGER PRIMARY KEY AUTOINCREMENT,
        cube_id   TEXT NOT NULL,
        memory_id TEXT NOT NULL
    );
    CREATE INDEX index_removals_cube ON index_removals (cube_id, seq);
    """,
    # 4 -> 5: each cube's count of index rows, kept by triggers so that no write path can forget it.
    # A search index checks its copy against this count (``memkern.retrieval.index``); counting the
    # rows instead read the whole cube's part of ``index_rows_cube``, over a second at a million rows
    # when the file was not in the page cache.
    """
    ALTER TABLE cubes ADD COLUMN indexed INTEGER NOT NULL DEFAULT 0;
    UPDATE cubes SET indexed = (SELECT count(*) FROM index_rows r WHERE r.cube_id = cubes.id);
    CREATE TRIGGER index_rows_counted AFTER INSERT ON index_rows BEGIN
        UPDATE cubes SET indexed = indexed + 1 WHERE id = NEW.cube_id;
    END;
    CREATE TRIGGER index_rows_uncounted AFTER DELETE ON index_rows BEGIN
        UPDATE cubes SET indexed = indexed - 1 WHERE id = OLD.cube_id;
    END;
    """,
    # 5 -> 6: index rows added are counted once per write transaction by the store
    # (``SQLiteStore._add_index_rows``, the one place that writes them): the per-row trigger was 8 %
    # of the time of ingesting LoCoMo. Removals keep their trigger: cascades delete rows too.
    """
    DROP TRIGGER index_rows_counted;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
