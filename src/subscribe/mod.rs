//! Subscribers (DESIGN.md §6): read the journal from any point, filtered, across the hand-over
//! from catch-up to the live tail; named durable consumers; isolated callbacks.
//!
//! | file | role |
//! |---|---|
//! | [`filter`] | [`EventFilter`]: type globs, `upgrade_id`, `session_id` |
//! | [`subscription`] | [`Subscription`] from [`From`] (earliest, latest, offset, time) |
//! | [`consumer`] | [`DurableConsumer`]: a named subscription checkpointed in `state.sqlite` |
//! | [`callbacks`] | [`Callbacks`]: each callback in its own thread, panics isolated |
//!
//! # Invariants
//!
//! - **Dense and exact.** A subscription examines every committed offset from its start, once,
//!   in order ([`crate::journal::Reader`] guarantees it across sealing and rolling); it delivers
//!   the matching ones and skips the others while still advancing its
//!   [`position`](Subscription::position). There is no separate live path: the live tail *is*
//!   the journal read at the `visible` watermark, so catch-up cannot hand over with a gap or a
//!   duplicate.
//! - **Appends never wait for subscribers.** A subscriber only reads; it is never pushed to.
//!   A lagging one reads older records from disk at its own pace.
//! - **One durable-consumer mechanism.** Every copy that follows the journal (the SQLite
//!   projection, each [`DurableConsumer`] such as EventBridge, the S3 shipper) keeps its
//!   progress as an anchored checkpoint (next offset + chain hash) in one table of
//!   `state.sqlite` ([`crate::projection::Checkpoints`]), checks it against the journal when it
//!   opens, and is woken by a journal watermark, never by polling: the projector by the
//!   `durable` one, subscriptions by `visible`, the shipper by `sealed`.
//! - **Bounded memory.** A subscription holds the reader's buffer (one decoded sealed block, or a
//!   window of at most 256 KiB of an unsealed segment, or one record larger than that) and the
//!   delivery it is returning; nothing grows with the journal or with the lag.

pub mod callbacks;
pub mod consumer;
pub mod filter;
pub mod subscription;

pub use callbacks::{CallbackState, Callbacks, StatusChange, Subject};
pub use consumer::{DurableConsumer, checkpoint_name};
pub use filter::EventFilter;
pub use subscription::{Delivery, From, Subscription};

use crate::journal::JournalError;

/// Why a subscriber failed.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// Reading the journal failed, or it was closed with every record read.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// `state.sqlite` (the checkpoints) failed.
    #[error(transparent)]
    State(#[from] crate::projection::ProjectionError),
    /// The data directory could not be created.
    #[error("{path}: {source}")]
    Io {
        /// The directory.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A filter, start point or consumer name that cannot be used.
    #[error("{0}")]
    Invalid(String),
    /// A commit past what the consumer has examined.
    #[error("consumer {name:?}: cannot commit {offset}, it has examined up to {position}")]
    CommitAhead {
        /// The consumer.
        name: String,
        /// The offset asked for.
        offset: u64,
        /// Its position.
        position: u64,
    },
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, SubscribeError>;
