//! [`DurableConsumer`]: a named [`Subscription`] whose progress survives restarts, kept in
//! `<data>/state.sqlite`, table [`CONSUMER_TABLE`] (`name` → next offset to examine), apart from
//! the projection's own `checkpoints`.
//!
//! # Delivery semantics: at least once
//!
//! The consumer starts at its stored checkpoint and the application calls
//! [`DurableConsumer::commit`] after it has handled records. Each commit is its own short
//! transaction on a connection with `synchronous = FULL`, so once `commit` returns the
//! checkpoint survives a crash or power loss. A crash between handling a record and committing
//! past it redelivers that record on the next open: handlers must tolerate duplicates, which the
//! record's offset identifies. Nothing committed is ever redelivered, and nothing is skipped.
//!
//! Invariants: a stored checkpoint never exceeds what the consumer had examined when it was
//! written ([`SubscribeError::CommitAhead`]); opening refuses a checkpoint past the journal's end
//! ([`SubscribeError::AheadOfJournal`]). `logbook rebuild` deletes `state.sqlite` and with it
//! these checkpoints: consumers then start again from offset 0 (at least once still holds).

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};

use crate::journal::Journal;
use crate::projection::STATE_FILE;

use super::filter::EventFilter;
use super::subscription::{Delivery, From, Subscription};
use super::{Result, SubscribeError};

/// The table holding consumer checkpoints.
pub const CONSUMER_TABLE: &str = "consumer_checkpoints";

const DDL: &str = "CREATE TABLE IF NOT EXISTS consumer_checkpoints (
    name TEXT PRIMARY KEY,
    next_offset INTEGER NOT NULL
)";

/// Longest consumer name.
const NAME_MAX: usize = 200;

/// A named, checkpointed subscription; see the module docs.
#[derive(Debug)]
pub struct DurableConsumer {
    name: String,
    db: Connection,
    sub: Subscription,
    committed: u64,
}

impl DurableConsumer {
    /// Opens the consumer `name`, resuming at its committed checkpoint (offset 0 if it never
    /// committed), over `journal`, delivering records that pass `filter`.
    pub fn open(
        data_dir: impl AsRef<Path>,
        name: &str,
        journal: &Journal,
        filter: EventFilter,
    ) -> Result<DurableConsumer> {
        if name.is_empty() || name.len() > NAME_MAX || name.chars().any(char::is_control) {
            return Err(SubscribeError::Invalid(format!(
                "consumer name must be 1 to {NAME_MAX} bytes without control characters: {name:?}"
            )));
        }
        let data_dir = data_dir.as_ref();
        std::fs::create_dir_all(data_dir).map_err(|source| SubscribeError::Io {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let db = Connection::open(data_dir.join(STATE_FILE))?;
        db.busy_timeout(Duration::from_secs(30))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.execute_batch(DDL)?;
        let stored: Option<i64> = db
            .query_row(
                "SELECT next_offset FROM consumer_checkpoints WHERE name = ?1",
                [name],
                |row| row.get(0),
            )
            .optional()?;
        let committed = match stored {
            Some(v) => u64::try_from(v).map_err(|_| {
                SubscribeError::Invalid(format!("consumer {name:?}: stored offset {v} is negative"))
            })?,
            None => 0,
        };
        let journal_next = journal.next_offset();
        if committed > journal_next {
            return Err(SubscribeError::AheadOfJournal {
                name: name.to_string(),
                checkpoint: committed,
                journal_next,
            });
        }
        let sub = Subscription::new(journal, From::Offset(committed), filter)?;
        Ok(DurableConsumer {
            name: name.to_string(),
            db,
            sub,
            committed,
        })
    }

    /// The consumer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The last committed next offset (where a new consumer of this name would start).
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// The next offset to examine.
    pub fn position(&self) -> u64 {
        self.sub.position()
    }

    /// See [`Subscription::try_next`].
    pub fn try_next(&mut self) -> Result<Option<Delivery>> {
        self.sub.try_next()
    }

    /// See [`Subscription::next_blocking`].
    pub fn next_blocking(&mut self, deadline: Option<Instant>) -> Result<Option<Delivery>> {
        self.sub.next_blocking(deadline)
    }

    /// See [`Subscription::next_async`].
    pub async fn next_async(&mut self) -> Result<Delivery> {
        self.sub.next_async().await
    }

    /// Durably records that every record below `next_offset` is handled (one transaction,
    /// fsynced before returning). `next_offset` may not exceed [`position`](Self::position);
    /// committing an offset below the last commit moves the checkpoint back (a replay).
    pub fn commit(&mut self, next_offset: u64) -> Result<()> {
        let position = self.position();
        if next_offset > position {
            return Err(SubscribeError::CommitAhead {
                name: self.name.clone(),
                offset: next_offset,
                position,
            });
        }
        let value = i64::try_from(next_offset)
            .map_err(|_| SubscribeError::Invalid(format!("offset {next_offset} too large")))?;
        self.db.execute(
            "INSERT INTO consumer_checkpoints (name, next_offset) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET next_offset = excluded.next_offset",
            params![self.name, value],
        )?;
        self.committed = next_offset;
        Ok(())
    }

    /// Commits [`position`](Self::position): everything examined so far is handled.
    pub fn commit_position(&mut self) -> Result<()> {
        self.commit(self.position())
    }
}
