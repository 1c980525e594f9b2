//! State shared by the journal's producers, its flusher and sealer threads, and its readers:
//! the sequencer (offsets, timestamps, the bounded pending buffer), the watermarks, the segment
//! catalog and the failure.
//!
//! Invariants:
//! - Offsets are assigned densely under the sequencer lock; the pending buffer holds frames in
//!   offset order and never more than `queue_bytes` (producers wait, never grow it).
//! - `durable <= visible <= next_offset`, and `sealed <= visible`: checked on every advance in
//!   debug builds, since a refactor that breaks them would let a reader or an acknowledgement
//!   run ahead of the disk.
//! - **Failure is final and wakes everyone.** The first failure of any journal thread (an I/O
//!   error, a panic) is recorded once, closes the sequencer and every watermark, and wakes every
//!   blocked producer and waiter: they return [`JournalError::WriterFailed`] with the cause;
//!   nothing waits forever. Logging about it happens after, and cannot undo it.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError, RwLock};

use super::catalog::{Catalog, SegmentState};
use super::config::{Durability, JournalConfig};
use super::error::{JournalError, Result};
use super::record;
use super::watermark::Watermark;
use crate::timestamp::now_us;

/// Records placed in the journal's order but not yet acknowledged: their offsets and the
/// recorder timestamp they all carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequenced {
    /// The consecutive offsets assigned.
    pub offsets: Range<u64>,
    /// Their recorder timestamp (µs since epoch).
    pub ts_us: i64,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub config: JournalConfig,
    pub seq: Mutex<Sequencer>,
    pub data_cv: Condvar,
    pub space_cv: Condvar,
    pub space_notify: tokio::sync::Notify,
    /// Records readers may see (acknowledgement point of `batch`).
    pub visible: Watermark,
    /// Records fsynced (acknowledgement point of `sync`).
    pub durable: Watermark,
    /// End of the contiguous run of sealed segments from offset 0.
    pub sealed: Watermark,
    pub catalog: RwLock<Catalog>,
    /// Counters of what the journal did (for metrics).
    pub stats: super::stats::JournalStats,
    failure: Mutex<Option<String>>,
}

/// Producer-side state, guarded by `Shared::seq`.
#[derive(Debug)]
pub(crate) struct Sequencer {
    pub next_offset: u64,
    pub last_ts: i64,
    pub pending: Vec<u8>,
    /// Records in `pending`.
    pub pending_records: u64,
    /// The flusher sleeps until `pending_records` reaches this (1 = any record).
    pub wake_at: u64,
    pub flusher_waiting: bool,
    pub closing: bool,
    /// [`crate::journal::Journal::seal_now`] asked for the active segment to roll.
    pub roll_requested: bool,
}

impl Sequencer {
    pub fn new(next_offset: u64, last_ts: i64, closing: bool) -> Sequencer {
        Sequencer {
            next_offset,
            last_ts,
            pending: Vec::new(),
            pending_records: 0,
            wake_at: 1,
            flusher_waiting: false,
            closing,
            roll_requested: false,
        }
    }
}

impl Shared {
    pub fn new(dir: PathBuf, config: JournalConfig, seq: Sequencer, catalog: Catalog) -> Shared {
        let next = seq.next_offset;
        let sealed = sealed_prefix_end(&catalog);
        Shared {
            dir,
            config,
            seq: Mutex::new(seq),
            data_cv: Condvar::new(),
            space_cv: Condvar::new(),
            space_notify: tokio::sync::Notify::new(),
            visible: Watermark::new(next),
            durable: Watermark::new(next),
            sealed: Watermark::new(sealed),
            catalog: RwLock::new(catalog),
            stats: super::stats::JournalStats::default(),
            failure: Mutex::new(None),
        }
    }

    pub fn lock_seq(&self) -> MutexGuard<'_, Sequencer> {
        self.seq.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn catalog(&self) -> std::sync::RwLockReadGuard<'_, Catalog> {
        self.catalog.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn catalog_mut(&self) -> std::sync::RwLockWriteGuard<'_, Catalog> {
        self.catalog.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The recorded failure, if the journal failed.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The error to report when a watermark wait ended without reaching its target.
    pub fn stopped_error(&self) -> JournalError {
        match self.failure() {
            Some(msg) => JournalError::WriterFailed(msg),
            None => JournalError::Closed,
        }
    }

    /// Raises `visible` (readers may see records below `next`).
    pub fn advance_visible(&self, next: u64) {
        debug_assert!(
            next <= self.lock_seq().next_offset,
            "visible beyond sequenced"
        );
        self.visible.advance(next);
    }

    /// Raises `durable`; never beyond `visible` (a reader must find what is acknowledged).
    pub fn advance_durable(&self, next: u64) {
        debug_assert!(next <= self.visible.get(), "durable ahead of visible");
        self.durable.advance(next);
    }

    /// Recomputes the sealed watermark from the catalog (after a seal).
    pub fn advance_sealed(&self) {
        let end = sealed_prefix_end(&self.catalog());
        debug_assert!(end <= self.visible.get(), "sealed ahead of visible");
        self.sealed.advance(end);
    }

    fn check_payloads<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Result<usize> {
        let mut bytes = 0;
        for p in payloads {
            let len = p.as_ref().len();
            if len == 0 {
                return Err(JournalError::EmptyRecord);
            }
            if len > self.config.record_bytes_max {
                return Err(JournalError::RecordTooLarge {
                    len,
                    max: self.config.record_bytes_max,
                });
            }
            bytes += len + record::FRAME_OVERHEAD_BYTES;
        }
        Ok(bytes)
    }

    /// Tries to sequence `payloads` as consecutive records. `Ok(None)` means the buffer is full.
    fn try_sequence<P: AsRef<[u8]>>(
        &self,
        seq: &mut Sequencer,
        payloads: &[P],
        bytes: usize,
    ) -> Result<Option<Sequenced>> {
        if seq.closing {
            return Err(self.stopped_error());
        }
        if !seq.pending.is_empty() && seq.pending.len() + bytes > self.config.queue_bytes {
            return Ok(None);
        }
        let first = seq.next_offset;
        let ts = now_us().max(seq.last_ts);
        for p in payloads {
            record::encode_pending(
                &mut seq.pending,
                seq.next_offset,
                ts,
                record::CURRENT_SCHEMA_VERSION,
                p.as_ref(),
            );
            seq.next_offset += 1;
        }
        seq.last_ts = ts;
        seq.pending_records += payloads.len() as u64;
        if seq.flusher_waiting && seq.pending_records >= seq.wake_at {
            self.data_cv.notify_one();
        }
        Ok(Some(Sequenced {
            offsets: first..seq.next_offset,
            ts_us: ts,
        }))
    }

    /// Sequences `payloads` as consecutive records, blocking while the buffer is full.
    pub fn sequence<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Result<Sequenced> {
        let bytes = self.check_payloads(payloads)?;
        let mut seq = self.lock_seq();
        loop {
            if let Some(range) = self.try_sequence(&mut seq, payloads, bytes)? {
                return Ok(range);
            }
            seq = self
                .space_cv
                .wait(seq)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Sequences `payloads`, awaiting (not blocking the runtime) while the buffer is full.
    pub async fn sequence_async<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Result<Sequenced> {
        let bytes = self.check_payloads(payloads)?;
        loop {
            let notified = self.space_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut seq = self.lock_seq();
                if let Some(range) = self.try_sequence(&mut seq, payloads, bytes)? {
                    return Ok(range);
                }
            }
            notified.await;
        }
    }

    /// Waits until the records below `end` are acknowledged under the durability policy.
    pub fn wait_ack(&self, end: u64) -> Result<()> {
        let reached = match self.config.durability {
            Durability::None => return self.check_alive(),
            Durability::Batch { .. } => self.visible.wait(end, None),
            Durability::Sync => self.durable.wait(end, None),
        };
        if reached {
            Ok(())
        } else {
            Err(self.stopped_error())
        }
    }

    /// Async form of [`Shared::wait_ack`].
    pub async fn wait_ack_async(&self, end: u64) -> Result<()> {
        let reached = match self.config.durability {
            Durability::None => return self.check_alive(),
            Durability::Batch { .. } => self.visible.wait_async(end).await,
            Durability::Sync => self.durable.wait_async(end).await,
        };
        if reached {
            Ok(())
        } else {
            Err(self.stopped_error())
        }
    }

    /// Under `none` an acknowledgement waits for nothing, but never comes from a failed journal.
    fn check_alive(&self) -> Result<()> {
        match self.failure() {
            Some(msg) => Err(JournalError::WriterFailed(msg)),
            None => Ok(()),
        }
    }

    /// Records the journal's failure (the first one wins), refuses further appends and wakes
    /// every waiter; see the module docs.
    pub fn fail(&self, error: &str) {
        let first = {
            let mut failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
            let first = failure.is_none();
            if first {
                *failure = Some(error.to_string());
            }
            first
        };
        self.lock_seq().closing = true;
        self.visible.close();
        self.durable.close();
        self.sealed.close();
        self.data_cv.notify_all();
        self.space_cv.notify_all();
        self.space_notify.notify_waiters();
        if first {
            super::quietly(|| {
                tracing::error!(error, "journal failed; refusing further appends");
            });
        }
    }
}

/// One past the last offset of the contiguous sealed segments from the start of the catalog.
fn sealed_prefix_end(catalog: &Catalog) -> u64 {
    let mut end = catalog.segments.first().map_or(0, |s| s.first);
    for segment in &catalog.segments {
        match segment.state {
            SegmentState::Sealed { last, .. } if segment.first == end => end = last + 1,
            _ => break,
        }
    }
    end
}
