//! The journal: an append-only, segmented, hash-chained, crash-safe log of records.
//!
//! Files (`<data>/journal/`): `LOCK` (writer lock), unsealed segments `{first}.log` in the frame
//! format of [`record`], sealed segments `{first}-{last}.seg.zst` in the format of [`segment`],
//! and `quarantine/` for bytes cut by recovery. The byte-level format is specified in
//! `schemas/journal-format.md`.
//!
//! | file | role |
//! |---|---|
//! | [`record`] | frame codec of unsealed segments, the BLAKE3 chain |
//! | [`segment`] | sealed segments: blocks, footer, builder and decoder |
//! | [`writer`] | producers → pending buffer → flusher thread (group commit, roll) |
//! | [`sealer`] | compresses rolled segments off the append path |
//! | [`reader`] | reads from an offset or a time, waits for new records |
//! | [`recovery`] | open: torn tail vs damage, leftovers from crashes |
//! | [`verify`] | full check of a directory |
//! | [`catalog`], [`watermark`], [`lock`], [`names`], [`varint`] | shared state and small parts |

pub mod catalog;
pub mod config;
pub mod error;
pub mod lock;
pub mod names;
pub mod reader;
pub mod record;
pub mod recovery;
pub mod sealer;
pub mod segment;
pub mod varint;
pub mod verify;
pub mod watermark;
pub mod writer;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Instant;

pub use config::{Durability, JournalConfig};
pub use error::{Damage, DamageKind, JournalError, Result};
pub use reader::{Reader, StartAt};
pub use record::Record;
pub use recovery::RecoveryReport;
pub use verify::{VerifyReport, verify_dir};
pub use writer::Sequenced;

/// A sealed segment file of the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSegment {
    /// First offset it holds.
    pub first: u64,
    /// Last offset it holds.
    pub last: u64,
    /// Its file (`{first:020}-{last:020}.seg.zst`).
    pub path: PathBuf,
}

use lock::DirLock;
use recovery::{Mode, recover};
use watermark::Watermark;
use writer::{ActiveSegment, Flusher, Sequencer, Shared};

/// An open journal. Appends may come from many threads and tasks at once (`&self`).
#[derive(Debug)]
pub struct Journal {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    report: RecoveryReport,
    read_only: bool,
    /// Opened with [`Journal::open_replica`].
    replica: bool,
    _lock: Option<DirLock>,
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir` as its single writer.
    ///
    /// Fails with [`JournalError::Locked`] if another process writes it, and with
    /// [`JournalError::Damaged`] if committed records are damaged (unless `config.repair`).
    pub fn open(dir: impl AsRef<Path>, config: JournalConfig) -> Result<Journal> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| JournalError::io(&dir, e))?;
        let lock = DirLock::acquire(&dir)?;
        let recovered = recover(&dir, &config, Mode::Write)?;
        let (active, catalog_tail) = match recovered.active {
            Some(tail) => {
                let file = std::fs::OpenOptions::new()
                    .append(true)
                    .read(true)
                    .open(&tail.path)
                    .map_err(|e| JournalError::io(&tail.path, e))?;
                let active = ActiveSegment {
                    first: tail.first,
                    path: tail.path,
                    file,
                    bytes: tail.bytes,
                    next: tail.first + tail.records,
                    prev_hash: tail.prev_hash,
                    opened: Instant::now(),
                    since_index: tail.records % config.index_interval,
                };
                (active, None)
            }
            None => {
                let first = recovered.next_offset;
                let file = writer::create_segment_file(&dir, first)?;
                let path = dir.join(names::raw(first));
                let entry = catalog::SegmentEntry {
                    first,
                    path: path.clone(),
                    state: catalog::SegmentState::Raw {
                        next: first,
                        bytes: 0,
                        index: Arc::new(Vec::new()),
                    },
                };
                let active = ActiveSegment {
                    first,
                    path,
                    file,
                    bytes: 0,
                    next: first,
                    prev_hash: recovered.chain,
                    opened: Instant::now(),
                    since_index: 0,
                };
                (active, Some(entry))
            }
        };
        let mut catalog = recovered.catalog;
        catalog.segments.extend(catalog_tail);
        let next = recovered.next_offset;
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            config,
            seq: Mutex::new(Sequencer {
                next_offset: next,
                last_ts: recovered.last_ts,
                pending: Vec::new(),
                pending_records: 0,
                wake_at: 1,
                flusher_waiting: false,
                closing: false,
                roll_requested: false,
            }),
            data_cv: Condvar::new(),
            space_cv: Condvar::new(),
            space_notify: tokio::sync::Notify::new(),
            visible: Watermark::new(next),
            durable: Watermark::new(next),
            catalog: RwLock::new(catalog),
            failure: Mutex::new(None),
        });
        let (seal_tx, seal_rx) = std::sync::mpsc::sync_channel(sealer::SEAL_QUEUE);
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| JournalError::io(&dir, e))
        };
        let sealer_shared = shared.clone();
        let sealer_thread = spawn(
            "logbook-sealer",
            Box::new(move || sealer::run(sealer_shared, seal_rx)),
        )?;
        // Segments left unsealed by a crash: sealed first (the queue is bounded).
        for job in recovered.seal_jobs {
            let _ = seal_tx.send(job);
        }
        let flusher = Flusher {
            shared: shared.clone(),
            active,
            chain: recovered.chain,
            sealer: seal_tx,
            unsynced: false,
            last_sync: Instant::now(),
            last_batch_records: 1,
            last_fsync: std::time::Duration::ZERO,
        };
        let threads = vec![
            spawn("logbook-flusher", Box::new(move || flusher.run()))?,
            sealer_thread,
        ];
        let journal = Journal {
            shared,
            threads: Mutex::new(threads),
            report: recovered.report,
            read_only: false,
            replica: false,
            _lock: Some(lock),
        };
        if let Some(damage) = &journal.report.repaired {
            let note = serde_json::json!({
                "type": "journal.repaired",
                "cut_from_offset": damage.offset,
                "bytes_cut": journal.report.repaired_bytes,
                "segment": damage.segment.display().to_string(),
                "reason": damage.kind.to_string(),
                "quarantine": journal.report.quarantine.as_ref().map(|p| p.display().to_string()),
            });
            let end = journal.shared.sequence(&[note.to_string()])?.offsets.end;
            if !journal.shared.durable.wait(end, None) {
                return Err(journal.shared.stopped_error());
            }
        }
        Ok(journal)
    }

    /// Opens the journal in `dir` for reading only: takes no lock and changes nothing on disk,
    /// so it can run beside a live writer. It sees the records committed when it opened.
    pub fn open_read_only(dir: impl AsRef<Path>, config: JournalConfig) -> Result<Journal> {
        let journal = Journal::open_unlocked(dir, config, false)?;
        journal.shared.visible.close();
        journal.shared.durable.close();
        Ok(journal)
    }

    /// Opens `dir` as a replica: read-only like [`Journal::open_read_only`] (no lock, nothing
    /// changed on disk), but [`Journal::refresh`] adopts sealed segments that appear after its
    /// end (written by a follower, see `s3::restore`), and waiting readers see them.
    pub fn open_replica(dir: impl AsRef<Path>, config: JournalConfig) -> Result<Journal> {
        Journal::open_unlocked(dir, config, true)
    }

    /// A replica: adopts the sealed segments that now continue the journal and wakes waiting
    /// readers; the new end. Other journals: their end.
    pub fn refresh(&self) -> Result<u64> {
        let end = self.next_offset();
        if !self.replica {
            return Ok(end);
        }
        let listing = recovery::list(&self.shared.dir)?;
        let mut added = end;
        {
            let mut catalog = self
                .shared
                .catalog
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if catalog
                .segments
                .last()
                .is_some_and(|s| matches!(s.state, catalog::SegmentState::Raw { .. }))
            {
                return Ok(end); // an unsealed tail: not a follower's journal
            }
            for (first, last, path) in listing.sealed {
                if first < added {
                    continue;
                }
                if first != added {
                    break;
                }
                catalog.segments.push(catalog::SegmentEntry {
                    first,
                    path,
                    state: catalog::SegmentState::Sealed {
                        last,
                        footer: catalog::FooterCell::default(),
                    },
                });
                added = last + 1;
            }
        }
        if added > end {
            self.shared.lock_seq().next_offset = added;
            self.shared.visible.advance(added);
            self.shared.durable.advance(added);
        }
        Ok(added)
    }

    fn open_unlocked(
        dir: impl AsRef<Path>,
        config: JournalConfig,
        replica: bool,
    ) -> Result<Journal> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let recovered = recover(&dir, &config, Mode::ReadOnly)?;
        let next = recovered.next_offset;
        let shared = Arc::new(Shared {
            dir,
            config,
            seq: Mutex::new(Sequencer {
                next_offset: next,
                last_ts: recovered.last_ts,
                pending: Vec::new(),
                pending_records: 0,
                wake_at: 1,
                flusher_waiting: false,
                closing: true,
                roll_requested: false,
            }),
            data_cv: Condvar::new(),
            space_cv: Condvar::new(),
            space_notify: tokio::sync::Notify::new(),
            visible: Watermark::new(next),
            durable: Watermark::new(next),
            catalog: RwLock::new(recovered.catalog),
            failure: Mutex::new(None),
        });
        Ok(Journal {
            shared,
            threads: Mutex::new(Vec::new()),
            report: recovered.report,
            read_only: true,
            replica,
            _lock: None,
        })
    }

    /// The journal directory.
    pub fn dir(&self) -> &PathBuf {
        &self.shared.dir
    }

    /// What opening found (torn tail cut, repair, segment counts).
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// The sealed segment files, in offset order (immutable once listed; what the S3 shipper
    /// uploads).
    pub fn sealed_segments(&self) -> Vec<SealedSegment> {
        self.sealed_segments_from(0)
    }

    /// The sealed segment files holding offsets at or after `offset`, in offset order (the
    /// catalog is searched, not scanned).
    pub fn sealed_segments_from(&self, offset: u64) -> Vec<SealedSegment> {
        let catalog = self.shared.catalog();
        let start = catalog.segments.partition_point(|s| s.end() <= offset);
        catalog
            .segments
            .get(start..)
            .unwrap_or_default()
            .iter()
            .filter_map(|s| match &s.state {
                catalog::SegmentState::Sealed { last, .. } => Some(SealedSegment {
                    first: s.first,
                    last: *last,
                    path: s.path.clone(),
                }),
                catalog::SegmentState::Raw { .. } => None,
            })
            .collect()
    }

    /// Rolls the active segment now (if it holds records) and waits up to `timeout` until every
    /// record committed before the call is in a sealed segment; whether they are. For shipping
    /// on demand (`logbook ship --once --seal`); sealing otherwise happens by size and age.
    pub fn seal_now(&self, timeout: std::time::Duration) -> Result<bool> {
        let target = self.next_offset();
        if self.sealed_end() >= target {
            return Ok(true);
        }
        if self.read_only {
            return Ok(false);
        }
        {
            let mut seq = self.shared.lock_seq();
            seq.roll_requested = true;
            self.shared.data_cv.notify_one();
        }
        let deadline = Instant::now() + timeout;
        while self.sealed_end() < target {
            if let Some(error) = self
                .shared
                .failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
            {
                return Err(JournalError::WriterFailed(error.clone()));
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Ok(true)
    }

    /// One past the last offset held in a sealed segment (0 if none is sealed): what a shipper
    /// can ship. Reads the catalog's tail only.
    pub fn sealed_end(&self) -> u64 {
        self.shared
            .catalog()
            .segments
            .iter()
            .rev()
            .find_map(|s| match &s.state {
                catalog::SegmentState::Sealed { last, .. } => Some(last + 1),
                catalog::SegmentState::Raw { .. } => None,
            })
            .unwrap_or(0)
    }

    /// The offset the next committed record will have (= number of committed records).
    pub fn next_offset(&self) -> u64 {
        self.shared.visible.get()
    }

    /// Offsets below this are durable (fsynced).
    pub fn durable_offset(&self) -> u64 {
        self.shared.durable.get()
    }

    /// Appends one record; returns its offset once acknowledged under the durability policy.
    pub fn append(&self, payload: impl AsRef<[u8]>) -> Result<u64> {
        Ok(self.append_batch(&[payload])?.start)
    }

    /// Appends records with consecutive offsets; returns their range once all are acknowledged.
    pub fn append_batch<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Result<Range<u64>> {
        let range = self.submit(payloads)?.offsets;
        self.shared.wait_ack(range.end)?;
        Ok(range)
    }

    /// Async form of [`Journal::append`]: never blocks the runtime's threads.
    pub async fn append_async(&self, payload: impl AsRef<[u8]>) -> Result<u64> {
        Ok(self.append_batch_async(&[payload]).await?.start)
    }

    /// Async form of [`Journal::append_batch`].
    pub async fn append_batch_async<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Result<Range<u64>> {
        self.writable()?;
        let range = self.shared.sequence_async(payloads).await?.offsets;
        self.shared.wait_ack_async(range.end).await?;
        Ok(range)
    }

    /// Places records in the journal's order without waiting for their acknowledgement (blocks
    /// only while the bounded queue is full). Pair with [`Journal::wait_acked`]: a caller that
    /// must order appends with its own state (the recorder) sequences under its lock and waits
    /// outside it, so concurrent callers still share one group commit.
    pub fn submit<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Result<Sequenced> {
        self.writable()?;
        self.shared.sequence(payloads)
    }

    /// Waits until every record below `end` is acknowledged under the durability policy.
    pub fn wait_acked(&self, end: u64) -> Result<()> {
        self.shared.wait_ack(end)
    }

    /// Async form of [`Journal::wait_acked`].
    pub async fn wait_acked_async(&self, end: u64) -> Result<()> {
        self.shared.wait_ack_async(end).await
    }

    fn writable(&self) -> Result<()> {
        if self.read_only {
            return Err(JournalError::ReadOnly);
        }
        Ok(())
    }

    /// Waits until every record appended so far is visible to readers (written), whatever the
    /// durability policy.
    pub fn wait_visible(&self) -> Result<()> {
        let next = self.shared.lock_seq().next_offset;
        if self.shared.visible.wait(next, None) {
            Ok(())
        } else {
            Err(self.shared.stopped_error())
        }
    }

    /// A reader starting at `start`.
    pub fn reader(&self, start: StartAt) -> Result<Reader> {
        Reader::new(self.shared.clone(), start)
    }

    /// Flushes and fsyncs everything appended, waits for pending seals, and stops the threads.
    /// Returns the writer's failure, if it had one.
    pub fn close(self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&self) -> Result<()> {
        if self.read_only {
            // Waiting readers of a replica end.
            self.shared.visible.close();
            self.shared.durable.close();
        }
        {
            let mut seq = self.shared.lock_seq();
            seq.closing = true;
            self.shared.data_cv.notify_one();
        }
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        for handle in threads {
            if handle.join().is_err() {
                tracing::error!("a journal thread panicked");
            }
        }
        match self
            .shared
            .failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            Some(msg) => Err(JournalError::WriterFailed(msg.clone())),
            None => Ok(()),
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
