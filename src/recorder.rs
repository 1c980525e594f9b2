//! The recorder: the one path by which events enter the journal. It parses and validates each
//! event (stateless rules), checks it against the domain [`State`] (unknown ids, duplicates,
//! terminal transitions, idempotency keys), appends it, and applies it to the state.
//!
//! Invariants: check, sequencing into the journal and apply happen under one lock, so the
//! journal's order is exactly the order in which events were checked, and the state is always
//! the fold of the journal's records (read-your-writes). The wait for durability happens
//! outside the lock, so concurrent recorders share one group commit. A refused event writes
//! nothing. Opening replays the journal into the state (O(journal); the SQLite projection's
//! checkpoint will make this incremental): records that are not typed events, which journals
//! from before typed events may hold, are counted and skipped with a warning.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::event::{Event, EventError, upcast};
use crate::journal::{Journal, JournalConfig, JournalError, StartAt};
use crate::state::{Refusal, State, UpgradeView, Verdict};

/// Why an event was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The event is malformed or a value is out of bounds.
    #[error("{0}")]
    Invalid(#[from] EventError),
    /// The event does not fit the journal's state.
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl RecordError {
    /// Whether this is the caller's input's fault (exit code 2, HTTP 400) rather than a failure.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, RecordError::Journal(_))
    }
}

/// The outcome of recording one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Appended at this offset.
    Appended(u64),
    /// Its idempotency key was already recorded at this offset; nothing was written.
    AlreadyRecorded(u64),
}

impl Recorded {
    /// The offset holding the event.
    pub fn offset(self) -> u64 {
        match self {
            Recorded::Appended(o) | Recorded::AlreadyRecorded(o) => o,
        }
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct Recorder {
    journal: Journal,
    state: Mutex<State>,
    untyped_records: u64,
    /// A replica ([`Recorder::open_replica`]): records nothing, follows its journal.
    replica: Option<Mutex<u64>>,
}

/// Applies `journal`'s records from `from` to its end to `state`; the end and the number of
/// records that are not typed events.
fn replay(journal: &Journal, state: &mut State, from: u64) -> Result<(u64, u64), JournalError> {
    let mut untyped = 0u64;
    let mut end = from;
    let mut reader = journal.reader(StartAt::Offset(from))?;
    while let Some(record) = reader.next()? {
        match upcast(record.schema_version, &record.payload) {
            Ok(event) => state.apply(record.offset, record.ts_us, &event),
            Err(_) => untyped += 1,
        }
        end = record.offset + 1;
    }
    Ok((end, untyped))
}

impl Recorder {
    /// Opens the journal in `dir` as its writer and replays it into the state.
    pub fn open(dir: impl AsRef<Path>, config: JournalConfig) -> Result<Recorder, JournalError> {
        Recorder::with_journal(Journal::open(dir, config)?, false)
    }

    /// Opens the journal in `dir` as a read-only replica (a follower's data dir, which a
    /// follower keeps extending): recording is refused ([`JournalError::ReadOnly`]);
    /// [`Recorder::refresh`] adopts what the follower added.
    pub fn open_replica(
        dir: impl AsRef<Path>,
        config: JournalConfig,
    ) -> Result<Recorder, JournalError> {
        Recorder::with_journal(Journal::open_replica(dir, config)?, true)
    }

    fn with_journal(journal: Journal, replica: bool) -> Result<Recorder, JournalError> {
        let mut state = State::new();
        let (end, untyped) = if journal.next_offset() == 0 {
            (0, 0)
        } else {
            replay(&journal, &mut state, 0)?
        };
        if untyped > 0 {
            tracing::warn!(
                untyped,
                "journal holds records that are not typed events (written before typed events); \
                 they are kept and readable but not part of the views"
            );
        }
        Ok(Recorder {
            journal,
            state: Mutex::new(state),
            untyped_records: untyped,
            replica: replica.then(|| Mutex::new(end)),
        })
    }

    /// A replica: adopts the segments its follower added and applies their records to the
    /// state; the journal's new end. A writer's recorder is always current: no-op.
    pub fn refresh(&self) -> Result<u64, JournalError> {
        let Some(replayed) = &self.replica else {
            return Ok(self.journal.next_offset());
        };
        let end = self.journal.refresh()?;
        let mut replayed = replayed.lock().unwrap_or_else(PoisonError::into_inner);
        if end > *replayed {
            let mut state = self.state();
            (*replayed, _) = replay(&self.journal, &mut state, *replayed)?;
        }
        Ok(end)
    }

    /// Whether this is a read-only replica.
    pub fn is_replica(&self) -> bool {
        self.replica.is_some()
    }

    /// The underlying journal (for readers).
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Records found on open that are not typed events.
    pub fn untyped_records(&self) -> u64 {
        self.untyped_records
    }

    /// The current state (hold the guard briefly: recording waits for it).
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current view of an upgrade.
    pub fn upgrade(&self, upgrade_id: &str) -> Option<UpgradeView> {
        self.state().upgrade_view(upgrade_id)
    }

    /// Records one event; returns once it is acknowledged under the durability policy.
    pub fn record(&self, event: &Event) -> Result<Recorded, RecordError> {
        let (outcome, end) = self.place(event)?;
        if let Some(end) = end {
            self.journal.wait_acked(end)?;
        }
        Ok(outcome)
    }

    /// Async form of [`Recorder::record`]: the check and sequencing take microseconds under a
    /// std mutex (never held across an await); the durability wait is awaited.
    pub async fn record_async(&self, event: &Event) -> Result<Recorded, RecordError> {
        let (outcome, end) = self.place(event)?;
        if let Some(end) = end {
            self.journal.wait_acked_async(end).await?;
        }
        Ok(outcome)
    }

    /// Records events one by one in order (each checked against the state including the ones
    /// before it); a refused event writes nothing and does not stop the others. All accepted
    /// events share one acknowledgement wait.
    pub fn record_all<'a>(
        &self,
        events: impl IntoIterator<Item = &'a Event>,
    ) -> Result<Vec<Result<Recorded, RecordError>>, JournalError> {
        let mut results = Vec::new();
        let mut end = None;
        for event in events {
            match self.place(event) {
                Ok((outcome, placed)) => {
                    end = placed.or(end);
                    results.push(Ok(outcome));
                }
                Err(RecordError::Journal(e)) => return Err(e),
                Err(refused) => results.push(Err(refused)),
            }
        }
        if let Some(end) = end {
            self.journal.wait_acked(end)?;
        }
        Ok(results)
    }

    /// Records a system event (`subscriber.skipped`...), which producers may not append: for
    /// Logbook's own components. Its idempotency key is honoured like any other.
    pub async fn record_system_async(&self, event: &Event) -> Result<Recorded, RecordError> {
        event.validate_system()?;
        let (outcome, end) = {
            let mut state = self.state();
            if let Some(offset) = event.id().and_then(|key| state.recorded_key(key)) {
                (Recorded::AlreadyRecorded(offset), None)
            } else {
                self.sequence(&mut state, event)?
            }
        };
        if let Some(end) = end {
            self.journal.wait_acked_async(end).await?;
        }
        Ok(outcome)
    }

    /// Validates, checks, sequences and applies under the state lock; returns the outcome and,
    /// if something was appended, the offset to wait for.
    fn place(&self, event: &Event) -> Result<(Recorded, Option<u64>), RecordError> {
        event.validate()?;
        let mut state = self.state();
        match state.check(event)? {
            Verdict::AlreadyRecorded(offset) => Ok((Recorded::AlreadyRecorded(offset), None)),
            Verdict::Fresh => self.sequence(&mut state, event),
        }
    }

    /// Appends a checked `event` and applies it (the caller holds the state lock).
    fn sequence(
        &self,
        state: &mut State,
        event: &Event,
    ) -> Result<(Recorded, Option<u64>), RecordError> {
        let placed = self.journal.submit(&[event.to_payload()])?;
        state.apply(placed.offsets.start, placed.ts_us, event);
        Ok((
            Recorded::Appended(placed.offsets.start),
            Some(placed.offsets.end),
        ))
    }

    /// Flushes, fsyncs and stops the journal.
    pub fn close(self) -> Result<(), JournalError> {
        self.journal.close()
    }
}

/// Parses a payload as a typed event of the current schema version (for input at the edge).
pub fn parse_event(bytes: &[u8]) -> Result<Event, RecordError> {
    Ok(Event::parse(bytes)?)
}
