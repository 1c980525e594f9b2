//! SQLite projections: the domain fold of [`crate::state`] kept in tables at
//! `<data>/state.sqlite` (DESIGN.md §5), so views, search and statistics need no replay of the
//! whole journal.
//!
//! | file | role |
//! |---|---|
//! | [`schema`] | the DDL and the digest order of the tables |
//! | `apply` | one event → SQL, with exactly the effects of `State::apply` |
//! | `store` | the one connection to the file, [`Projection::open_anchored`], [`Projection::catch_up`], [`Projection::digest`] |
//! | [`checkpoints`] | the anchored checkpoints of durable consumers and the shipper, with history |
//! | [`query`] | views (the `state` structs), artifact search and statistics |
//!
//! # Invariants
//!
//! - **Same content as the fold.** For any journal, the views read from the projection equal
//!   those of [`crate::state::state_at`] with [`crate::state::Until::End`]: the same leniency
//!   for events that would not pass `check` (they change nothing they cannot name), times taken
//!   from the records (never the clock), and records that are not typed events skipped (they
//!   belong to no view, as in the recorder) while still advancing the checkpoint.
//! - **Exactly once.** Catching up applies records from the checkpoint (row `projection` of
//!   `checkpoints`: the next offset to apply) to the journal's end in batches; each batch is one
//!   transaction holding its rows *and* the new checkpoint, so a crash loses whole batches
//!   only, and the next catch-up re-applies exactly them: no event is applied twice or skipped.
//!   The checkpoint is read inside the write transaction, so two processes catching up the same
//!   file cannot apply a batch twice either.
//! - **Anchored, never trusted blindly.** The checkpoint stores the chain hash of the record
//!   before it ([`crate::journal::Anchor`]). A file whose anchor does not match the journal (a
//!   tail cut by a repair or a crash, a restore into the directory, another journal's file, an
//!   edit) is detected on open and before any catch-up that did not write the checkpoint
//!   itself; a writer sets it aside (renamed, named in a warning) and rebuilds it
//!   ([`Projection::open_anchored`]); readers fold the journal instead.
//! - **Rebuildable.** The journal is the source of truth; deleting `state.sqlite` (with its
//!   `-wal` and `-shm`) and catching up again gives the same [`Projection::digest`].
//!
//! # Durability
//!
//! WAL journal mode with `synchronous = NORMAL`: a commit is not fsynced, only the WAL
//! checkpoints are. A power loss may therefore lose the last committed transactions, but never
//! corrupts the file, and since each transaction carries its own checkpoint the projection then
//! simply resumes from an older checkpoint and re-applies those records from the journal. The
//! fsync per batch that `FULL` would add buys nothing the journal does not already provide.

mod apply;
pub mod checkpoints;
pub mod query;
pub mod schema;
mod store;

use std::path::PathBuf;

pub use crate::artifacts::search::{ArtifactQuery, ArtifactStats, TagMatch, Tally};
pub use checkpoints::{Checkpoints, Resume};
pub use store::{CatchUp, DEFAULT_BATCH_SIZE, Opened, Projection, STATE_FILE};

/// Why the projection failed.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// SQLite failed.
    #[error("state.sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Reading the journal failed.
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file was written by a build with other tables.
    #[error(
        "{path} has projection schema version {found}, this build uses {expected}; \
         run `logbook rebuild`"
    )]
    SchemaVersion {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// This build's version.
        expected: i64,
    },
    /// The checkpoint's anchor does not match the journal: the file reflects records the
    /// journal does not hold (cut by a repair or a crash, or another journal's).
    #[error("state.sqlite does not match the journal: {reason}; it must be rebuilt")]
    Diverged {
        /// What does not match.
        reason: String,
    },
    /// A stored value cannot be read back (the file was edited by hand).
    #[error("state.sqlite holds an invalid {what}: {value:?}")]
    Corrupt {
        /// What.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// A batch size of 0.
    #[error("batch size must be at least 1")]
    BatchSize,
}
