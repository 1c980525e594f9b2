//! The recorder: the one path by which events enter the journal. It parses and validates each
//! event (stateless rules), checks it against the current state ([`Live`]: unknown ids,
//! duplicates, terminal transitions, idempotency keys), appends it, and applies it.
//!
//! # Invariants
//!
//! - **One order.** Check, sequencing into the journal and apply happen under one lock, so the
//!   journal's order is exactly the order in which events were checked, and the state is the
//!   fold of the journal's records (read-your-writes). The wait for durability happens outside
//!   the lock, so concurrent recorders share one group commit. A refused event writes nothing.
//! - **Never ahead of the journal.** The state applies an event when it is sequenced, before it
//!   is durable. If the journal then fails, the state holds events that may never be recorded:
//!   the recorder is *poisoned* at once. Every later call (record or view) fails fast with
//!   [`RecordError::Poisoned`] naming the cause, and nothing is checked or served against that
//!   state again; reopening rebuilds it from the journal (the projection holds durable records
//!   only). What a client may assume about a batch that failed is in `ingest`.
//! - **Start-up independent of the journal's length.** Opening checks the projection's anchor
//!   against the journal ([`Projection::open_anchored`]: one that does not match is set aside
//!   and rebuilt), applies what it lacks (normally nothing), and starts with an empty overlay.
//! - **The projection follows the durable journal.** A projector thread applies durable
//!   records to `state.sqlite` in batches, woken by the journal's durable watermark (no
//!   polling), and tells the state what it settled so clean entities can leave memory. It is
//!   the only writer of the projection in this process; a projection that fails (a corrupt
//!   file) is set aside and rebuilt under the state lock, never trusted.
//! - **A successful append is reported as success.** Nothing after the journal's
//!   acknowledgement can fail a record call: the projection catches up on its own.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::event::{Event, EventError};
use crate::journal::{Journal, JournalConfig, JournalError};
use crate::live::Live;
use crate::projection::{Opened, Projection, ProjectionError};
use crate::state::{Refusal, UpgradeView, Verdict};

/// Why an event was not recorded (or a view not served).
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
    /// The journal failed earlier; the recorder refuses everything until it is reopened.
    #[error(
        "the recorder stopped after the journal failed ({0}); nothing is checked or served \
         until it is reopened, which rebuilds the state from the journal"
    )]
    Poisoned(String),
    /// `state.sqlite` failed and could not be rebuilt.
    #[error(transparent)]
    State(#[from] ProjectionError),
}

impl RecordError {
    /// Whether this is the caller's input's fault (exit code 2, HTTP 400) rather than a failure.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, RecordError::Invalid(_) | RecordError::Refused(_))
    }

    /// The machine-readable code of a refusal (`unknown_task`, `duplicate_id`,
    /// `terminal_status`, `out_of_range`, `invalid`, ...; see [`Refusal::code`]), or `None`
    /// for a failure (the journal or the state), which is not the input's fault.
    pub fn code(&self) -> Option<&'static str> {
        use crate::event::{EventError, FieldProblem};
        match self {
            RecordError::Refused(refusal) => Some(refusal.code()),
            RecordError::Invalid(EventError::Field {
                problem: FieldProblem::NotFinite(_) | FieldProblem::OutOfRange { .. },
                ..
            }) => Some("out_of_range"),
            RecordError::Invalid(EventError::Reserved { .. }) => Some("system_event"),
            RecordError::Invalid(_) => Some("invalid"),
            RecordError::Journal(_) | RecordError::Poisoned(_) | RecordError::State(_) => None,
        }
    }

    /// Whether the recorder is out of service (HTTP 503): the journal or the state failed.
    pub fn is_unavailable(&self) -> bool {
        !self.is_bad_input()
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

/// What the recorder shares with its projector thread.
#[derive(Debug)]
struct Shared {
    journal: Journal,
    data_dir: PathBuf,
    live: Mutex<Live>,
    /// Signalled whenever the projection settles further.
    settled: Condvar,
    poison: Mutex<Option<String>>,
    /// Bumped when the projection file is replaced (the projector then reconnects).
    generation: AtomicU64,
}

impl Shared {
    fn live(&self) -> MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn poisoned(&self) -> Option<String> {
        self.poison
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn poison(&self, cause: &str) {
        let mut poison = self.poison.lock().unwrap_or_else(PoisonError::into_inner);
        if poison.is_none() {
            *poison = Some(cause.to_string());
            crate::journal::quietly(|| {
                tracing::error!(
                    cause,
                    "recorder poisoned: the journal failed; refusing everything until reopened"
                );
            });
        }
        drop(poison);
        self.settled.notify_all();
    }

    /// Sets the projection aside and rebuilds it up to the durable end, under the state lock
    /// (appends wait: the state cannot load from a projection that is not caught up).
    fn rebuild_projection(
        &self,
        live: &mut Live,
        why: &str,
    ) -> Result<Projection, ProjectionError> {
        let kept = Projection::set_aside(&self.data_dir)?;
        crate::journal::quietly(|| {
            tracing::warn!(
                reason = why,
                set_aside = ?kept,
                "state.sqlite cannot be used; set aside and rebuilt from the journal"
            );
        });
        self.generation.fetch_add(1, Ordering::AcqRel);
        let mut projection = Projection::open(&self.data_dir)?;
        projection.catch_up_with(&self.journal, self.journal.durable_offset(), |_| {})?;
        let reader =
            Projection::open_read(&self.data_dir)?.ok_or_else(|| ProjectionError::Corrupt {
                what: "state.sqlite",
                value: "missing after its rebuild".into(),
            })?;
        live.replace_projection(reader, projection.checkpoint()?);
        self.settled.notify_all();
        Ok(projection)
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct Recorder {
    shared: Arc<Shared>,
    projector: Mutex<Option<JoinHandle<()>>>,
    replica: bool,
}

/// Opens the projection for `journal` as its writer: anchored (a file that does not match is set
/// aside, named in a warning) and caught up to the journal's durable end.
fn open_projection(data_dir: &Path, journal: &Journal) -> Result<Projection, ProjectionError> {
    let (mut projection, opened) = Projection::open_anchored(data_dir, journal)?;
    if let Opened::Rebuilt { reason, set_aside } = &opened {
        crate::journal::quietly(|| {
            tracing::warn!(
                reason,
                set_aside = ?set_aside,
                "state.sqlite did not match the journal or could not be read: set aside, and \
                 rebuilt from the journal"
            );
        });
    }
    let started = Instant::now();
    let end = journal.durable_offset();
    let done = match projection.catch_up_with(journal, end, |_| {}) {
        Ok(done) => done,
        // Damage found only while reading its rows: set aside and start again once.
        Err(ProjectionError::Sqlite(e)) => {
            crate::journal::quietly(
                || tracing::warn!(error = %e, "state.sqlite failed while catching up; rebuilding"),
            );
            drop(projection);
            Projection::set_aside(data_dir)?;
            projection = Projection::open(data_dir)?;
            projection.catch_up_with(journal, end, |_| {})?
        }
        Err(e) => return Err(e),
    };
    if done.applied + done.skipped > 0 {
        crate::journal::quietly(|| {
            tracing::info!(
                applied = done.applied,
                skipped = done.skipped,
                ms = started.elapsed().as_millis() as u64,
                "state.sqlite caught up with the journal"
            );
        });
    }
    Ok(projection)
}

impl Recorder {
    /// Opens the data dir `data_dir` (its journal in `data_dir/journal`) as the journal's writer.
    pub fn open(
        data_dir: impl AsRef<Path>,
        config: JournalConfig,
    ) -> Result<Recorder, RecordError> {
        let data_dir = data_dir.as_ref();
        let journal = Journal::open(data_dir.join("journal"), config)?;
        Recorder::with_journal(data_dir, journal, false)
    }

    /// Opens the data dir `data_dir` as a read-only replica (a follower's data dir, which a
    /// follower keeps extending): recording is refused ([`JournalError::ReadOnly`]);
    /// [`Recorder::refresh`] adopts what the follower added. The projection is this process's.
    pub fn open_replica(
        data_dir: impl AsRef<Path>,
        config: JournalConfig,
    ) -> Result<Recorder, RecordError> {
        let data_dir = data_dir.as_ref();
        let journal = Journal::open_replica(data_dir.join("journal"), config)?;
        Recorder::with_journal(data_dir, journal, true)
    }

    fn with_journal(
        data_dir: &Path,
        journal: Journal,
        replica: bool,
    ) -> Result<Recorder, RecordError> {
        let projection = open_projection(data_dir, &journal)?;
        let reader = Projection::open_read(data_dir)?.ok_or_else(|| ProjectionError::Corrupt {
            what: "state.sqlite",
            value: "missing after open".into(),
        })?;
        let live = Live::new(reader, projection.checkpoint()?);
        let shared = Arc::new(Shared {
            journal,
            data_dir: data_dir.to_path_buf(),
            live: Mutex::new(live),
            settled: Condvar::new(),
            poison: Mutex::new(None),
            generation: AtomicU64::new(0),
        });
        let worker = shared.clone();
        let projector = std::thread::Builder::new()
            .name("logbook-projector".into())
            .spawn(move || {
                // A panic here must not leave the state waiting for a projection that never
                // comes: it poisons the recorder, which then says why.
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    project(&worker, projection)
                }));
                if let Err(panic) = outcome {
                    worker.poison(&format!(
                        "the projector thread panicked: {}",
                        crate::journal::panic_message(panic.as_ref())
                    ));
                }
            })
            .map_err(|e| JournalError::Io {
                path: data_dir.to_path_buf(),
                source: e,
            })?;
        Ok(Recorder {
            shared,
            projector: Mutex::new(Some(projector)),
            replica,
        })
    }

    /// A replica: adopts the segments its follower added and waits until the state includes
    /// them; the journal's new end. A writer's recorder is always current: its end.
    pub fn refresh(&self) -> Result<u64, RecordError> {
        let end = self.shared.journal.refresh()?;
        if self.replica {
            self.wait_settled(end)?;
        }
        Ok(end)
    }

    /// Waits until the projection holds every record below `offset` (or the recorder fails).
    pub fn wait_settled(&self, offset: u64) -> Result<(), RecordError> {
        let mut live = self.shared.live();
        while live.settled() < offset {
            if let Some(cause) = self.shared.poisoned() {
                return Err(RecordError::Poisoned(cause));
            }
            live = self
                .shared
                .settled
                .wait_timeout(live, std::time::Duration::from_millis(200))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            if self.shared.journal.failure().is_some()
                && self.shared.journal.durable_offset() < offset
            {
                return Err(RecordError::Journal(JournalError::WriterFailed(
                    self.shared.journal.failure().unwrap_or_default(),
                )));
            }
        }
        Ok(())
    }

    /// Whether this is a read-only replica.
    pub fn is_replica(&self) -> bool {
        self.replica
    }

    /// The underlying journal (for readers).
    pub fn journal(&self) -> &Journal {
        &self.shared.journal
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.shared.data_dir
    }

    /// Why the recorder refuses everything, if it does (see the module docs).
    pub fn poisoned(&self) -> Option<String> {
        self.shared.poisoned()
    }

    fn check_poison(&self) -> Result<(), RecordError> {
        match self.shared.poisoned() {
            Some(cause) => Err(RecordError::Poisoned(cause)),
            None => Ok(()),
        }
    }

    /// The current state, for views (hold the guard briefly: recording waits for it). Fails
    /// once the recorder is poisoned.
    pub fn live(&self) -> Result<MutexGuard<'_, Live>, RecordError> {
        self.check_poison()?;
        Ok(self.shared.live())
    }

    /// The current view of an upgrade.
    pub fn upgrade(&self, upgrade_id: &str) -> Result<Option<UpgradeView>, RecordError> {
        Ok(self.live()?.upgrade_view(upgrade_id)?)
    }

    /// Checks `event` against the current state without recording it (a preflight: the state
    /// may change before a later record call).
    pub fn check(&self, event: &Event) -> Result<Verdict, RecordError> {
        event.validate()?;
        let mut live = self.live()?;
        self.prepare(&mut live, event)?;
        Ok(live.check(event)?)
    }

    /// Records one event; returns once it is acknowledged under the durability policy.
    pub fn record(&self, event: &Event) -> Result<Recorded, RecordError> {
        let (outcome, end) = self.place(event)?;
        if let Some(end) = end {
            self.acked(self.shared.journal.wait_acked(end))?;
        }
        Ok(outcome)
    }

    /// Async form of [`Recorder::record`]: the check and sequencing take microseconds under a
    /// std mutex (never held across an await); the durability wait is awaited.
    pub async fn record_async(&self, event: &Event) -> Result<Recorded, RecordError> {
        let (outcome, end) = self.place(event)?;
        if let Some(end) = end {
            self.acked(self.shared.journal.wait_acked_async(end).await)?;
        }
        Ok(outcome)
    }

    /// Records events one by one in order (each checked against the state including the ones
    /// before it); a refused event writes nothing and does not stop the others. All accepted
    /// events share one acknowledgement wait. A failure of the journal or the state ends the
    /// call with that error (see `ingest` for what the caller may then assume).
    pub fn record_all<'a>(
        &self,
        events: impl IntoIterator<Item = &'a Event>,
    ) -> Result<Vec<Result<Recorded, RecordError>>, RecordError> {
        let mut results = Vec::new();
        let mut end = None;
        for event in events {
            match self.place(event) {
                Ok((outcome, placed)) => {
                    end = placed.or(end);
                    results.push(Ok(outcome));
                }
                Err(refused) if refused.is_bad_input() => results.push(Err(refused)),
                Err(failure) => return Err(failure),
            }
        }
        if let Some(end) = end {
            self.acked(self.shared.journal.wait_acked(end))?;
        }
        Ok(results)
    }

    /// Records a system event (`subscriber.skipped`...), which producers may not append: for
    /// Logbook's own components. Its idempotency key is honoured like any other.
    pub async fn record_system_async(&self, event: &Event) -> Result<Recorded, RecordError> {
        event.validate_system()?;
        let (outcome, end) = {
            let mut live = self.live()?;
            self.prepare(&mut live, event)?;
            match event.id().and_then(|_| live.check(event).ok()) {
                Some(Verdict::AlreadyRecorded(offset)) => (Recorded::AlreadyRecorded(offset), None),
                _ => self.sequence(&mut live, event)?,
            }
        };
        if let Some(end) = end {
            self.acked(self.shared.journal.wait_acked_async(end).await)?;
        }
        Ok(outcome)
    }

    /// A failed acknowledgement poisons the recorder: the state holds events the journal may
    /// never have recorded.
    fn acked(&self, result: Result<(), JournalError>) -> Result<(), RecordError> {
        result.map_err(|e| {
            self.shared.poison(&e.to_string());
            RecordError::Journal(e)
        })
    }

    /// Loads what `event` needs into the state; a projection that fails is rebuilt once.
    fn prepare(&self, live: &mut Live, event: &Event) -> Result<(), RecordError> {
        match live.prepare(event) {
            Ok(()) => Ok(()),
            Err(error) => {
                let why = error.to_string();
                self.shared.rebuild_projection(live, &why)?;
                Ok(live.prepare(event)?)
            }
        }
    }

    /// Validates, checks, sequences and applies under the state lock; returns the outcome and,
    /// if something was appended, the offset to wait for.
    fn place(&self, event: &Event) -> Result<(Recorded, Option<u64>), RecordError> {
        event.validate()?;
        let mut live = self.live()?;
        self.prepare(&mut live, event)?;
        match live.check(event)? {
            Verdict::AlreadyRecorded(offset) => Ok((Recorded::AlreadyRecorded(offset), None)),
            Verdict::Fresh => self.sequence(&mut live, event),
        }
    }

    /// Appends a checked `event` and applies it (the caller holds the state lock).
    fn sequence(
        &self,
        live: &mut Live,
        event: &Event,
    ) -> Result<(Recorded, Option<u64>), RecordError> {
        let placed = match self.shared.journal.submit(&[event.to_payload()]) {
            Ok(placed) => placed,
            Err(e) => {
                if !matches!(e, JournalError::ReadOnly) {
                    self.shared.poison(&e.to_string());
                }
                return Err(e.into());
            }
        };
        live.apply(placed.offsets.start, placed.ts_us, event);
        Ok((
            Recorded::Appended(placed.offsets.start),
            Some(placed.offsets.end),
        ))
    }

    /// Flushes and fsyncs the journal, lets the projection catch up with it, and stops.
    pub fn close(self) -> Result<(), RecordError> {
        self.shutdown()
    }

    /// [`Recorder::close`] through a shared reference (for an owner, such as
    /// [`crate::Logbook`], whose recorder others may still hold): later records fail with
    /// "closed"; a second call returns the first one's outcome again.
    pub fn finish(&self) -> Result<(), RecordError> {
        self.shutdown()
    }

    fn shutdown(&self) -> Result<(), RecordError> {
        let closed = self.shared.journal.finish_locked();
        if let Some(handle) = self
            .projector
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            && handle.join().is_err()
        {
            crate::journal::quietly(|| tracing::error!("the projector thread panicked"));
        }
        // The projection is written no more: the next writer may open the data dir.
        self.shared.journal.unlock();
        Ok(closed?)
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// The projector thread: applies durable records to the projection until the journal closes
/// or fails, then applies what is durable and stops (see the module docs).
fn project(shared: &Shared, mut projection: Projection) {
    let mut generation = shared.generation.load(Ordering::Acquire);
    loop {
        if shared.generation.load(Ordering::Acquire) != generation {
            // The state rebuilt the file: reconnect to the new one.
            generation = shared.generation.load(Ordering::Acquire);
            match Projection::open(&shared.data_dir) {
                Ok(p) => projection = p,
                Err(error) => {
                    shared.poison(&format!("state.sqlite cannot be reopened: {error}"));
                    return;
                }
            }
        }
        let checkpoint = match projection.checkpoint() {
            Ok(c) => c,
            Err(error) => {
                if !recover(shared, &mut projection, &error.to_string()) {
                    return;
                }
                continue;
            }
        };
        let durable = shared.journal.durable_offset();
        if durable > checkpoint {
            let settle = |done: &crate::projection::CatchUp| {
                shared.live().settle(done.next_offset);
                shared.settled.notify_all();
            };
            match projection.catch_up_with(&shared.journal, durable, settle) {
                Ok(_) => {}
                Err(ProjectionError::Journal(error)) => {
                    crate::journal::quietly(
                        || tracing::error!(%error, "projector: reading the journal failed"),
                    );
                    return;
                }
                Err(error) => {
                    if !recover(shared, &mut projection, &error.to_string()) {
                        return;
                    }
                }
            }
            continue;
        }
        if !shared.journal.wait_durable(checkpoint + 1, None) {
            // Closed or failed: what is durable is applied, then the thread ends.
            let end = shared.journal.durable_offset();
            if end > checkpoint {
                let _ = projection.catch_up_with(&shared.journal, end, |done| {
                    shared.live().settle(done.next_offset);
                });
            }
            shared.settled.notify_all();
            return;
        }
    }
}

/// Rebuilds the projection after the projector's own failure; `false` if that failed too (the
/// recorder is then poisoned).
fn recover(shared: &Shared, projection: &mut Projection, why: &str) -> bool {
    let mut live = shared.live();
    match shared.rebuild_projection(&mut live, why) {
        Ok(rebuilt) => {
            *projection = rebuilt;
            true
        }
        Err(error) => {
            drop(live);
            shared.poison(&format!(
                "state.sqlite failed ({why}) and cannot be rebuilt: {error}"
            ));
            false
        }
    }
}

/// Parses a payload as a typed event of the current schema version (for input at the edge).
pub fn parse_event(bytes: &[u8]) -> Result<crate::event::Event, RecordError> {
    Ok(crate::event::Event::parse(bytes)?)
}
