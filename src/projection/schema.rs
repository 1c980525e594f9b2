//! The DDL of `state.sqlite`. Tables hold the facts of the fold in `crate::state` (one row per
//! upgrade, task, session, collection, artifact, tag and idempotency key); derived numbers
//! (roll-up percentages, a collection's artifact list) are computed when read, as `State`
//! computes them. `checkpoints` holds every anchored checkpoint of the data dir (the
//! projection's, each durable consumer's, the shipper's), `checkpoint_history` a few older
//! anchors of each, so a consumer whose anchor no longer matches the journal can resume at the
//! newest point that still does.
//!
//! Ordering columns: `tasks.added_offset`, `collections.created_offset` and
//! `artifacts.added_offset` are the offsets of the events that created the rows; they give the
//! insertion order `State` keeps in its vectors. `artifacts.listed` records whether the artifact
//! joined its collection's list when it was added (in an unvalidated journal the collection may
//! not have existed yet, and `State` then never lists it).

/// Bumped whenever the tables change. A writer sets a file of another version aside and
/// rebuilds it; readers fall back to folding the journal.
///
/// 2: checkpoints carry the chain hash at their offset (anchors) and a history of older
/// anchors; the idempotency keys moved from memory into `idempotency_keys`; consumer and ship
/// progress moved into `checkpoints`.
pub const SCHEMA_VERSION: i64 = 2;

/// Creates every table (idempotent).
pub const DDL: &str = r#"
CREATE TABLE IF NOT EXISTS checkpoints (
    name        TEXT PRIMARY KEY,
    next_offset INTEGER NOT NULL,
    chain       TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS checkpoint_history (
    name        TEXT NOT NULL,
    next_offset INTEGER NOT NULL,
    chain       TEXT NOT NULL,
    PRIMARY KEY (name, next_offset)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS idempotency_keys (
    key    TEXT PRIMARY KEY,
    offset INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS upgrades (
    upgrade_id      TEXT PRIMARY KEY,
    plan_id         TEXT NOT NULL,
    cluster_name    TEXT NOT NULL,
    phase           TEXT NOT NULL,
    status          TEXT NOT NULL,
    metadata        TEXT NOT NULL,
    message         TEXT,
    error           TEXT,
    started_at_us   INTEGER NOT NULL,
    completed_at_us INTEGER,
    last_offset     INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS tasks (
    upgrade_id      TEXT NOT NULL,
    task_id         TEXT NOT NULL,
    added_offset    INTEGER NOT NULL,
    name            TEXT NOT NULL,
    task_type       TEXT NOT NULL,
    parent_id       TEXT,
    status          TEXT NOT NULL,
    percentage      REAL NOT NULL,
    message         TEXT,
    details         TEXT,
    metrics         TEXT,
    error           TEXT,
    started_at_us   INTEGER,
    completed_at_us INTEGER,
    PRIMARY KEY (upgrade_id, task_id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS tasks_order ON tasks (upgrade_id, added_offset);

CREATE TABLE IF NOT EXISTS sessions (
    session_id    TEXT PRIMARY KEY,
    upgrade_id    TEXT NOT NULL,
    cluster_name  TEXT NOT NULL,
    created_at_us INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS collections (
    session_id      TEXT NOT NULL,
    collection_id   TEXT NOT NULL,
    created_offset  INTEGER NOT NULL,
    name            TEXT NOT NULL,
    task_id         TEXT,
    PRIMARY KEY (session_id, collection_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS artifacts (
    artifact_id   TEXT PRIMARY KEY,
    added_offset  INTEGER NOT NULL,
    session_id    TEXT NOT NULL,
    collection_id TEXT NOT NULL,
    listed        INTEGER NOT NULL,
    file_name     TEXT NOT NULL,
    artifact_type TEXT NOT NULL,
    status        TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    size_bytes    INTEGER NOT NULL,
    task_id       TEXT,
    description   TEXT,
    s3_key        TEXT,
    etag          TEXT,
    error         TEXT,
    created_at_us INTEGER NOT NULL,
    expires_at    TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS artifacts_collection ON artifacts (session_id, collection_id, added_offset);

CREATE TABLE IF NOT EXISTS artifact_tags (
    artifact_id TEXT NOT NULL,
    position    INTEGER NOT NULL,
    tag         TEXT NOT NULL,
    PRIMARY KEY (artifact_id, position)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS artifact_tags_tag ON artifact_tags (tag, artifact_id);

CREATE VIRTUAL TABLE IF NOT EXISTS artifacts_fts USING fts5 (
    artifact_id UNINDEXED,
    file_name,
    description,
    tags
);
"#;

/// Tables in digest order, each with the query listing its rows in primary-key order.
pub const DIGEST_TABLES: [(&str, &str); 8] = [
    ("upgrades", "SELECT * FROM upgrades ORDER BY upgrade_id"),
    ("tasks", "SELECT * FROM tasks ORDER BY upgrade_id, task_id"),
    ("sessions", "SELECT * FROM sessions ORDER BY session_id"),
    (
        "collections",
        "SELECT * FROM collections ORDER BY session_id, collection_id",
    ),
    ("artifacts", "SELECT * FROM artifacts ORDER BY artifact_id"),
    (
        "artifact_tags",
        "SELECT * FROM artifact_tags ORDER BY artifact_id, position",
    ),
    (
        "artifacts_fts",
        "SELECT artifact_id, file_name, description, tags FROM artifacts_fts \
         ORDER BY artifact_id",
    ),
    (
        "idempotency_keys",
        "SELECT * FROM idempotency_keys ORDER BY key",
    ),
];
