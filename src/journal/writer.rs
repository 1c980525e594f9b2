//! The append path: producers sequence records into a shared bounded buffer; one flusher thread
//! chains, writes and fsyncs them in batches (group commit) and rolls the active segment.
//!
//! Why this shape: a producer's work under the lock is only assigning an offset and timestamp
//! and copying its payload into the pending buffer, so many producers (threads or tasks) queue up
//! cheaply. The flusher swaps the whole buffer out, fills in every frame's chain hash and
//! checksum, and issues one `write` and (under `sync`) one `fdatasync` for the batch, while
//! producers keep filling the next one. Hashing on the flusher keeps the chain in offset order
//! without a second lock and moves BLAKE3 off the producers' core.
//!
//! Acknowledgement (the `Durability` policy):
//! - `Sync`: after the `fdatasync` covering the record; readers see it at the same moment.
//! - `Batch { interval }`: after the `write` (survives a process crash); fsynced at most
//!   `interval` later (a power loss may lose up to that window).
//! - `None`: once sequenced into the writer's buffer (microseconds); written by the flusher
//!   right away and fsynced only on roll and close. A crash may lose the buffer in flight.
//!
//! Backpressure: the pending buffer is bounded by `queue_bytes`; a full buffer blocks blocking
//! producers on a condvar and makes async producers await, never grows memory.
//! Failure: after any I/O error (an fsync failure cannot be retried safely) or a panic, the
//! flusher fails the journal (`shared`): the cause is recorded first, every waiter is woken,
//! and every later append fails with `WriterFailed`. Logging never runs before that, and a
//! logger that panics is caught (`quietly`).
//! Clean close: after the last fsync the flusher leaves a clean-close marker beside the active
//! segment (`files::CloseMarker`), so the next open knows the segment was whole.

use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, MutexGuard, PoisonError};
use std::time::Instant;

use super::catalog::{IndexPoint, SegmentEntry, SegmentState};
use super::config::Durability;
use super::error::{JournalError, Result};
use super::names;
use super::record::{self, FRAME_PREFIX_BYTES};
use super::sealer::SealJob;
use super::shared::{Sequencer, Shared};
use super::storage::{Storage, StorageFile, sync_dir};

/// The active segment as the flusher owns it.
#[derive(Debug)]
pub(crate) struct ActiveSegment {
    pub first: u64,
    pub path: PathBuf,
    pub file: Box<dyn StorageFile>,
    pub bytes: u64,
    pub next: u64,
    pub prev_hash: [u8; 32],
    pub opened: Instant,
    /// Records since the last index point.
    pub since_index: u64,
}

/// The flusher: owns the active segment and the chain head.
pub(crate) struct Flusher {
    pub shared: Arc<Shared>,
    pub active: ActiveSegment,
    pub chain: [u8; 32],
    pub sealer: SyncSender<SealJob>,
    pub unsynced: bool,
    pub last_sync: Instant,
    /// Records in the last batch written (group-commit target).
    pub last_batch_records: u64,
    /// Duration of the last fdatasync.
    pub last_fsync: std::time::Duration,
}

/// Longest a batch waits to gather more producers before its fsync.
const GATHER_MAX: std::time::Duration = std::time::Duration::from_millis(2);

impl Flusher {
    /// Runs until the journal closes or fails (an I/O error, or a panic anywhere in the loop:
    /// either fails the journal, waking every waiter, instead of leaving them to wait forever).
    pub fn run(mut self) {
        let shared = self.shared.clone();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_loop()));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(error)) => shared.fail(&error.to_string()),
            Err(panic) => shared.fail(&format!(
                "the flusher thread panicked: {}",
                super::panic_message(panic.as_ref())
            )),
        }
        shared.visible.close();
        shared.durable.close();
    }

    fn run_loop(&mut self) -> Result<()> {
        let mut buf = Vec::new();
        loop {
            let shared = self.shared.clone();
            let (closing, roll) = {
                let mut seq = shared.lock_seq();
                if seq.pending.is_empty() && !seq.closing && !seq.roll_requested {
                    let now = Instant::now();
                    let timer = self
                        .next_deadline()
                        .map(|d| d.saturating_duration_since(now));
                    if self.gathering() {
                        // Expect last batch's producers back: one sleep until all are here.
                        let gather = self.gather_window();
                        let timeout = timer.map_or(gather, |t| t.min(gather));
                        seq = self.wait_for_data(seq, self.last_batch_records, Some(timeout));
                        if seq.pending_records == 0 {
                            self.last_batch_records = 1; // went quiet: wake on the first record
                        }
                    } else {
                        seq = self.wait_for_data(seq, 1, timer);
                    }
                }
                seq = self.gather(seq);
                std::mem::swap(&mut seq.pending, &mut buf);
                seq.pending_records = 0;
                (seq.closing, std::mem::take(&mut seq.roll_requested))
            };
            if !buf.is_empty() {
                self.shared.space_cv.notify_all();
                self.shared.space_notify.notify_waiters();
                self.write_batch(&mut buf)?;
                buf.clear();
            }
            self.on_timers()?;
            if roll && self.active.next > self.active.first {
                self.roll()?;
            }
            if closing && self.shared.lock_seq().pending.is_empty() {
                self.sync()?;
                self.mark_closed();
                return Ok(());
            }
        }
    }

    fn wait_for_data<'a>(
        &self,
        mut seq: MutexGuard<'a, Sequencer>,
        wake_at: u64,
        timeout: Option<std::time::Duration>,
    ) -> MutexGuard<'a, Sequencer> {
        seq.flusher_waiting = true;
        seq.wake_at = wake_at;
        let cv = &self.shared.data_cv;
        seq = match timeout {
            Some(t) => {
                cv.wait_timeout(seq, t)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
            None => cv.wait(seq).unwrap_or_else(PoisonError::into_inner),
        };
        seq.flusher_waiting = false;
        seq.wake_at = 1;
        seq
    }

    /// Group commit under `sync`: the producers acknowledged by the last fsync are usually about
    /// to append again, so before starting the next fsync wait (briefly) until as many records
    /// are pending as the last batch held. Without this, batches settle at about half the
    /// number of concurrent producers. The wait is bounded by half the last fsync's duration
    /// (at most 2 ms), so a lone producer never waits: its batch of one is already there.
    fn gather<'a>(&mut self, mut seq: MutexGuard<'a, Sequencer>) -> MutexGuard<'a, Sequencer> {
        if !self.gathering() || seq.pending_records == 0 {
            self.last_batch_records = seq.pending_records.max(1);
            return seq;
        }
        let target = self.last_batch_records;
        let deadline = Instant::now() + self.gather_window();
        while seq.pending_records < target && !seq.closing {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            seq = self.wait_for_data(seq, target, Some(deadline - now));
        }
        self.last_batch_records = seq.pending_records.max(1);
        seq
    }

    /// Whether the next batch should wait for more producers (group commit under `sync`).
    fn gathering(&self) -> bool {
        self.shared.config.durability == Durability::Sync && self.last_batch_records > 1
    }

    /// How long a batch may wait for its producers: half the last fsync, at most `GATHER_MAX`.
    fn gather_window(&self) -> std::time::Duration {
        (self.last_fsync / 2).min(GATHER_MAX)
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut deadline = None;
        if self.active.next > self.active.first {
            deadline = Some(self.active.opened + self.shared.config.segment_age);
        }
        if let (Durability::Batch { interval }, true) =
            (self.shared.config.durability, self.unsynced)
        {
            let due = self.last_sync + interval;
            deadline = Some(deadline.map_or(due, |d: Instant| d.min(due)));
        }
        deadline
    }

    fn on_timers(&mut self) -> Result<()> {
        let now = Instant::now();
        if let Durability::Batch { interval } = self.shared.config.durability
            && self.unsynced
            && now >= self.last_sync + interval
        {
            self.sync()?;
        }
        if self.active.next > self.active.first
            && now >= self.active.opened + self.shared.config.segment_age
        {
            self.roll()?;
        }
        Ok(())
    }

    /// Chains, writes and (under `sync`) fsyncs one batch of pending frames, splitting it where
    /// the active segment reaches `segment_bytes` so segments stay close to that size.
    fn write_batch(&mut self, buf: &mut [u8]) -> Result<()> {
        let mut start = 0usize;
        while start < buf.len() {
            let end = self.write_part(buf, start)?;
            if self.active.bytes >= self.shared.config.segment_bytes {
                self.roll()?;
            }
            start = end;
        }
        Ok(())
    }

    /// Finishes and writes the frames of `buf` from `start` until the segment is full (at least
    /// one frame); returns where it stopped.
    fn write_part(&mut self, buf: &mut [u8], start: usize) -> Result<usize> {
        let interval = self.shared.config.index_interval;
        let room = self
            .shared
            .config
            .segment_bytes
            .saturating_sub(self.active.bytes);
        let mut points = Vec::new();
        let mut pos = start;
        let mut next = self.active.next;
        while let Some(frame) = buf.get_mut(pos..) {
            if frame.is_empty() || (pos > start && (pos - start) as u64 >= room) {
                break;
            }
            let offset = record::peek_offset(frame).unwrap_or(next);
            debug_assert_eq!(offset, next, "pending frames are dense");
            if self.active.since_index == 0 {
                points.push(IndexPoint {
                    offset,
                    pos: self.active.bytes + (pos - start) as u64,
                    prev_hash: self.chain,
                });
            }
            self.active.since_index = (self.active.since_index + 1) % interval;
            let len = frame_len(frame);
            self.chain = record::finish_frame(frame, &self.chain);
            pos += len;
            next = offset + 1;
        }
        let path = &self.active.path;
        self.active
            .file
            .write_all(buf.get(start..pos).unwrap_or(&[]))
            .map_err(|e| JournalError::io(path, e))?;
        self.unsynced = true;
        self.shared
            .stats
            .batch_written(next - self.active.next, (pos - start) as u64);
        self.active.bytes += (pos - start) as u64;
        self.active.next = next;
        let sync = self.shared.config.durability == Durability::Sync;
        if sync {
            self.fsync_active()?;
        }
        {
            let mut catalog = self.shared.catalog_mut();
            if let Some(SegmentEntry {
                state:
                    SegmentState::Raw {
                        next: n,
                        bytes,
                        index,
                    },
                ..
            }) = catalog.entry_mut(self.active.first)
            {
                *n = next;
                *bytes = self.active.bytes;
                if !points.is_empty() {
                    Arc::make_mut(index).extend(points);
                }
            }
        }
        // Order matters: readers (visible) first, then acknowledgements (durable), so whoever
        // is acknowledged can read their own record; durable never runs ahead of visible.
        self.shared.advance_visible(next);
        if sync {
            self.shared.advance_durable(next);
        }
        Ok(pos)
    }

    /// After a clean close (everything fsynced): leaves the active segment's state beside it, so
    /// the next open need not scan it (`files::CloseMarker`). Best effort: without it the next
    /// open scans, as after a crash.
    fn mark_closed(&self) {
        let index = match self
            .shared
            .catalog()
            .locate(self.active.first)
            .map(|e| e.state.clone())
        {
            Some(SegmentState::Raw { index, .. }) => (*index).clone(),
            _ => Vec::new(),
        };
        let last_ts =
            (self.active.next > self.active.first).then(|| self.shared.lock_seq().last_ts);
        let marker = super::files::CloseMarker {
            first: self.active.first,
            bytes: self.active.bytes,
            next: self.active.next,
            last_hash: self.chain,
            last_ts,
            index,
        };
        if let Err(error) = marker.write(self.shared.config.storage.as_ref(), &self.shared.dir) {
            super::quietly(|| tracing::warn!(%error, "cannot leave the clean-close marker"));
        }
    }

    /// fsyncs the active segment and advances `durable` to everything written so far.
    fn sync(&mut self) -> Result<()> {
        self.fsync_active()?;
        self.shared.advance_durable(self.active.next);
        Ok(())
    }

    fn fsync_active(&mut self) -> Result<()> {
        if self.unsynced {
            let path = &self.active.path;
            let started = Instant::now();
            self.active
                .file
                .sync_data()
                .map_err(|e| JournalError::io(path, e))?;
            self.last_fsync = started.elapsed();
            self.shared.stats.fsynced(self.last_fsync);
            self.unsynced = false;
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Closes the active segment (fsynced), starts a new one and hands the old one to the sealer.
    fn roll(&mut self) -> Result<()> {
        if self.active.next == self.active.first {
            return Ok(());
        }
        self.sync()?;
        let first = self.active.next;
        let dir = &self.shared.dir;
        let active = ActiveSegment {
            file: create_segment_file(self.shared.config.storage.as_ref(), dir, first)?,
            first,
            path: dir.join(names::raw(first)),
            bytes: 0,
            next: first,
            prev_hash: self.chain,
            opened: Instant::now(),
            since_index: 0,
        };
        self.shared.catalog_mut().segments.push(SegmentEntry {
            first,
            path: active.path.clone(),
            state: SegmentState::Raw {
                next: first,
                bytes: 0,
                index: Arc::new(Vec::new()),
            },
        });
        let old = std::mem::replace(&mut self.active, active);
        super::quietly(|| {
            tracing::debug!(
                first = old.first,
                last = old.next - 1,
                bytes = old.bytes,
                "rolled segment"
            );
        });
        // Bounded: if the sealer is `SEAL_QUEUE` segments behind, this blocks the flusher (and so,
        // through the pending buffer, the producers) instead of piling up unsealed segments.
        // The sealer outlives the flusher; a send fails only if the sealer stopped (it failed
        // the journal first), and then the flusher stops too.
        self.sealer
            .send(SealJob {
                first: old.first,
                last: old.next - 1,
                path: old.path,
                bytes: old.bytes,
                prev_hash: old.prev_hash,
            })
            .map_err(|_| JournalError::WriterFailed("the sealer thread stopped".into()))?;
        Ok(())
    }
}

fn frame_len(frame: &[u8]) -> usize {
    let mut len = [0u8; 4];
    if let Some(src) = frame.get(..4) {
        len.copy_from_slice(src);
    }
    FRAME_PREFIX_BYTES + u32::from_le_bytes(len) as usize
}

/// Creates a new, empty unsealed segment file and makes its directory entry durable.
pub(crate) fn create_segment_file(
    storage: &dyn Storage,
    dir: &Path,
    first: u64,
) -> Result<Box<dyn StorageFile>> {
    let path = dir.join(names::raw(first));
    let file = storage
        .create_new(&path)
        .map_err(|e| JournalError::io(&path, e))?;
    sync_dir(storage, dir)?;
    Ok(file)
}

impl std::fmt::Debug for Flusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flusher")
            .field("active", &self.active)
            .finish()
    }
}
