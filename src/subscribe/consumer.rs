//! [`DurableConsumer`]: a named [`Subscription`] whose progress survives restarts, kept with
//! every other checkpoint of the data dir in `state.sqlite` ([`Checkpoints`]), anchored to the
//! journal (the next offset and the chain hash before it).
//!
//! # Delivery semantics: at least once
//!
//! The consumer starts at its stored checkpoint and the application calls
//! [`DurableConsumer::commit`] after it has handled records. Each commit is one short
//! transaction (WAL, `synchronous = NORMAL`): a crash, or a power loss that rolls the last
//! commit back, redelivers the records after the checkpoint that survived; handlers must
//! tolerate duplicates, which the record's offset identifies. Nothing is ever skipped.
//!
//! A checkpoint whose anchor no longer matches the journal (records it reflects were cut by a
//! repair or a crash, or the data dir now holds another journal) is not trusted: the consumer
//! resumes at the newest point of its checkpoint history that still matches, or at the start,
//! says so ([`DurableConsumer::rewound`], and a warning), and delivers again from there.
//!
//! Invariant: a stored checkpoint never exceeds what the consumer had examined when it was
//! written ([`SubscribeError::CommitAhead`]). `logbook rebuild` deletes `state.sqlite` and with
//! it these checkpoints: consumers then start again from offset 0 (at least once still holds).

use std::path::Path;
use std::time::Instant;

use crate::journal::Journal;
use crate::projection::Checkpoints;

use super::filter::EventFilter;
use super::subscription::{Delivery, From, Subscription};
use super::{Result, SubscribeError};

/// Longest consumer name.
const NAME_MAX: usize = 200;

/// A named, checkpointed subscription; see the module docs.
#[derive(Debug)]
pub struct DurableConsumer {
    name: String,
    checkpoints: Checkpoints,
    sub: Subscription,
    committed: u64,
    rewound: Option<String>,
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
        let checkpoints = Checkpoints::open(data_dir)?;
        let resume = checkpoints.resume(&checkpoint_name(name), journal)?;
        if let Some(why) = &resume.rewound {
            crate::journal::quietly(|| tracing::warn!(consumer = name, "{why}"));
        }
        let committed = resume.anchor.next_offset;
        let sub = Subscription::new(journal, From::Offset(committed), filter)?;
        Ok(DurableConsumer {
            name: name.to_string(),
            checkpoints,
            sub,
            committed,
            rewound: resume.rewound,
        })
    }

    /// Set when the stored checkpoint did not match the journal: what happened, and where the
    /// consumer resumed instead (see the module docs).
    pub fn rewound(&self) -> Option<&str> {
        self.rewound.as_deref()
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

    /// Records that every record below `next_offset` is handled (one transaction, with the
    /// anchor at that offset). `next_offset` may not exceed [`position`](Self::position);
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
        let anchor = self.sub.anchor_at(next_offset)?;
        self.checkpoints
            .put(&checkpoint_name(&self.name), &anchor)?;
        self.committed = next_offset;
        Ok(())
    }

    /// Commits [`position`](Self::position): everything examined so far is handled.
    pub fn commit_position(&mut self) -> Result<()> {
        self.commit(self.position())
    }
}

/// The row of consumer `name` in `checkpoints` (a prefix keeps consumers apart from the
/// projection's and the shipper's rows).
pub fn checkpoint_name(name: &str) -> String {
    format!("consumer:{name}")
}
