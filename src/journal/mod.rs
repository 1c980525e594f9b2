//! The journal: an append-only, segmented, hash-chained, crash-safe log of records.
//!
//! Files (`<data>/journal/`): `LOCK` (writer lock), unsealed segments `{first}.log` in the frame
//! format of [`record`], sealed segments `{first}-{last}.seg.zst` in the format of [`segment`],
//! and `quarantine/` for bytes cut by recovery or repair. The byte-level format is specified in
//! `schemas/journal-format.md`.
//!
//! **The journal owns every byte under `journal/`.** Nothing else in Logbook creates, renames or
//! deletes a file there: appends go through [`Journal`], restored or followed segments through
//! [`Importer`] (temporary file → fsync → rename → directory fsync, names from [`names`]), and
//! every file operation through [`storage`], so tests can simulate power loss and I/O errors.
//!
//! | file | role |
//! |---|---|
//! | [`record`] | frame codec of unsealed segments, the BLAKE3 chain |
//! | [`segment`] | sealed segments: blocks, footer (the one footer reader), builder, decoder |
//! | `shared` | the sequencer, watermarks, catalog and failure shared by all threads |
//! | `writer` | the flusher thread: group commit, roll |
//! | `sealer` | compresses rolled segments off the append path |
//! | [`reader`] | reads from an offset or a time, waits for new records |
//! | `files` | the directory's files: listing, footers, frame scans, quarantine |
//! | [`recovery`] | open: torn tail vs damage, leftovers from crashes |
//! | [`repair`] | cutting damage in the active segment or a sealed one, and replacing a segment |
//! | [`import`] | [`Importer`]: verified sealed segments into a directory (restore, follow) |
//! | [`anchor`] | [`Anchor`]: an offset and the chain hash before it, for derived copies |
//! | [`verify`] | full check of a directory |
//! | [`storage`] | the file I/O trait, the OS implementation and the simulator |
//! | `catalog`, `watermark`, [`lock`], [`names`], `varint` | shared state and small parts |

pub mod anchor;
pub(crate) mod catalog;
pub mod config;
pub mod error;
pub(crate) mod files;
pub mod import;
pub mod lock;
pub mod names;
pub mod reader;
pub mod record;
pub mod recovery;
pub mod repair;
pub(crate) mod sealer;
pub mod segment;
pub(crate) mod shared;
pub mod stats;
pub mod storage;
pub mod varint;
pub mod verify;
pub(crate) mod watermark;
pub(crate) mod writer;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

pub use anchor::{Anchor, AnchorCheck};
pub use config::{Durability, JournalConfig};
pub use error::{Damage, DamageKind, JournalError, Result};
pub use import::Importer;
pub use reader::{Reader, StartAt};
pub use record::Record;
pub use recovery::RecoveryReport;
pub use shared::Sequenced;
pub use verify::{VerifyReport, verify_dir};

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

/// How a journal was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The single writer: holds the lock, appends, seals.
    Writer,
    /// A reader: no lock, changes nothing on disk, sees what was committed when it opened.
    ReadOnly,
    /// A read-only replica of a directory a follower extends: [`Journal::refresh`] adopts the
    /// sealed segments added after its end.
    Replica,
}

use recovery::{Mode, recover};
use shared::{Sequencer, Shared};
use storage::DirGuard;
use writer::{ActiveSegment, Flusher};

/// Runs `log` (a `tracing` call), swallowing a panic: a subscriber that panics (a full stderr,
/// a broken writer) must never take down a journal thread. Logging can fail; the journal goes on.
pub(crate) fn quietly(log: impl FnOnce()) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(log));
}

/// The message of a caught panic.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "(no message)".to_string()
    }
}

/// An open journal. Appends may come from many threads and tasks at once (`&self`).
#[derive(Debug)]
pub struct Journal {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    report: RecoveryReport,
    access: Access,
    lock: Mutex<Option<Box<dyn DirGuard>>>,
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir` as its single writer.
    ///
    /// Fails with [`JournalError::Locked`] if another process writes it, and with
    /// [`JournalError::Damaged`] if committed records are damaged (unless `config.repair`, which
    /// cuts damage in the active segment; damage in a sealed segment needs [`repair`]).
    pub fn open(dir: impl AsRef<Path>, config: JournalConfig) -> Result<Journal> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let storage = config.storage.clone();
        storage
            .create_dir_all(&dir)
            .map_err(|e| JournalError::io(&dir, e))?;
        let lock = storage.lock(&dir)?;
        let recovered = recover(&dir, &config, Mode::Write)?;
        let (active, catalog_tail) = match recovered.active {
            Some(tail) => {
                let file = storage
                    .open_append(&tail.path)
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
                let file = writer::create_segment_file(storage.as_ref(), &dir, first)?;
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
        let shared = Arc::new(Shared::new(
            dir.clone(),
            config,
            Sequencer::new(recovered.next_offset, recovered.last_ts, false),
            catalog,
        ));
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
        let flusher = Flusher {
            shared: shared.clone(),
            active,
            chain: recovered.chain,
            sealer: seal_tx.clone(),
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
            access: Access::Writer,
            lock: Mutex::new(Some(lock)),
        };
        // Segments left unsealed by a crash are sealed first. Sent from here (not before the
        // flusher exists) so a full queue can never block open: the sealer is running.
        for job in recovered.seal_jobs {
            seal_tx
                .send(job)
                .map_err(|_| JournalError::WriterFailed("the sealer thread stopped".into()))?;
        }
        drop(seal_tx);
        Ok(journal)
    }

    /// Opens the journal in `dir` for reading only: takes no lock and changes nothing on disk,
    /// so it can run beside a live writer. It sees the records committed when it opened.
    pub fn open_read_only(dir: impl AsRef<Path>, config: JournalConfig) -> Result<Journal> {
        let journal = Journal::open_unlocked(dir, config, Access::ReadOnly)?;
        journal.shared.visible.close();
        journal.shared.durable.close();
        journal.shared.sealed.close();
        Ok(journal)
    }

    /// Opens `dir` as a replica: read-only like [`Journal::open_read_only`] (no lock, nothing
    /// changed on disk), but [`Journal::refresh`] adopts sealed segments that appear after its
    /// end (written by a follower through an [`Importer`]), and waiting readers see them.
    pub fn open_replica(dir: impl AsRef<Path>, config: JournalConfig) -> Result<Journal> {
        Journal::open_unlocked(dir, config, Access::Replica)
    }

    /// A replica: adopts the sealed segments that now continue the journal and wakes waiting
    /// readers; the new end. Other journals: their end.
    pub fn refresh(&self) -> Result<u64> {
        let end = self.next_offset();
        if self.access != Access::Replica {
            return Ok(end);
        }
        let listing = files::list(self.shared.config.storage.as_ref(), &self.shared.dir)?;
        let mut added = end;
        {
            let mut catalog = self.shared.catalog_mut();
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
            self.shared.advance_visible(added);
            self.shared.advance_durable(added);
            self.shared.advance_sealed();
        }
        Ok(added)
    }

    fn open_unlocked(
        dir: impl AsRef<Path>,
        config: JournalConfig,
        access: Access,
    ) -> Result<Journal> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let recovered = recover(&dir, &config, Mode::ReadOnly)?;
        let shared = Arc::new(Shared::new(
            dir,
            config,
            Sequencer::new(recovered.next_offset, recovered.last_ts, true),
            recovered.catalog,
        ));
        Ok(Journal {
            shared,
            threads: Mutex::new(Vec::new()),
            report: recovered.report,
            access,
            lock: Mutex::new(None),
        })
    }

    /// The journal directory.
    pub fn dir(&self) -> &PathBuf {
        &self.shared.dir
    }

    /// How it was opened.
    pub fn access(&self) -> Access {
        self.access
    }

    /// What the journal has done since it opened (records, bytes, batches, fsyncs, seals).
    pub fn stats(&self) -> &stats::JournalStats {
        &self.shared.stats
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &JournalConfig {
        &self.shared.config
    }

    /// What opening found (torn tail cut, repair, segment counts).
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// Why the journal failed, if it did: after a failure every append and wait returns
    /// [`JournalError::WriterFailed`] with this cause.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure()
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

    /// The footer of a sealed segment (read once and cached).
    pub fn footer(&self, segment: &SealedSegment) -> Result<Arc<segment::Footer>> {
        let cell = {
            let catalog = self.shared.catalog();
            match catalog.locate(segment.first).map(|e| &e.state) {
                Some(catalog::SegmentState::Sealed { footer, .. }) => Some(footer.clone()),
                _ => None,
            }
        };
        let storage = self.shared.config.storage.as_ref();
        match cell {
            Some(cell) => match cell.get() {
                Some(footer) => Ok(footer.clone()),
                None => {
                    let footer = Arc::new(files::read_footer(storage, &segment.path)?);
                    let _ = cell.set(footer.clone());
                    Ok(footer)
                }
            },
            None => Ok(Arc::new(files::read_footer(storage, &segment.path)?)),
        }
    }

    /// Rolls the active segment now (if it holds records) and waits up to `timeout` until every
    /// record committed before the call is in a sealed segment; whether they are. For shipping
    /// on demand (`logbook ship --once`); sealing otherwise happens by size and age.
    pub fn seal_now(&self, timeout: std::time::Duration) -> Result<bool> {
        let target = self.next_offset();
        if self.sealed_end() >= target {
            return Ok(true);
        }
        if self.access != Access::Writer {
            return Ok(false);
        }
        {
            let mut seq = self.shared.lock_seq();
            seq.roll_requested = true;
            self.shared.data_cv.notify_one();
        }
        if self
            .shared
            .sealed
            .wait(target, Some(Instant::now() + timeout))
        {
            return Ok(true);
        }
        match self.shared.failure() {
            Some(error) => Err(JournalError::WriterFailed(error)),
            None => Ok(false),
        }
    }

    /// Waits (asynchronously) until the sealed end passes `offset`; `false` if the journal
    /// closed or failed first. Shippers wait here instead of polling.
    pub async fn wait_sealed_beyond(&self, offset: u64) -> bool {
        self.shared.sealed.wait_async(offset + 1).await
    }

    /// One past the last offset of the contiguous sealed segments from offset 0 (0 if none):
    /// what a shipper can ship.
    pub fn sealed_end(&self) -> u64 {
        self.shared.sealed.get()
    }

    /// The offset the next committed record will have (= number of committed records).
    pub fn next_offset(&self) -> u64 {
        self.shared.visible.get()
    }

    /// Offsets below this are durable (fsynced).
    pub fn durable_offset(&self) -> u64 {
        self.shared.durable.get()
    }

    /// Waits up to `deadline` until the durable offset reaches `target`; whether it did.
    pub fn wait_durable(&self, target: u64, deadline: Option<Instant>) -> bool {
        self.shared.durable.wait(target, deadline)
    }

    /// Async form of [`Journal::wait_durable`] (no deadline: it returns `false` once the
    /// journal closes or fails).
    pub async fn wait_durable_async(&self, target: u64) -> bool {
        self.shared.durable.wait_async(target).await
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
        if self.access != Access::Writer {
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

    /// [`Journal::close`] for a journal that is shared: the same, through `&self`. Appends fail
    /// afterwards with [`JournalError::Closed`]; readers still read what was committed.
    pub fn finish(&self) -> Result<()> {
        let finished = self.shutdown();
        self.unlock();
        finished
    }

    /// Like [`Journal::finish`], but keeps the directory locked until [`Journal::unlock`]
    /// (for an owner that still writes derived files, such as the recorder's projector).
    pub(crate) fn finish_locked(&self) -> Result<()> {
        self.shutdown()
    }

    /// Releases the writer lock of a finished journal: the directory is free for the next
    /// writer, even while handles on this closed journal (readers, shared owners) live on.
    pub(crate) fn unlock(&self) {
        drop(
            self.lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }

    fn shutdown(&self) -> Result<()> {
        if self.access != Access::Writer {
            // Waiting readers of a replica end.
            self.shared.visible.close();
            self.shared.durable.close();
            self.shared.sealed.close();
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
                self.shared.fail("a journal thread panicked");
            }
        }
        self.shared.sealed.close();
        match self.shared.failure() {
            Some(msg) => Err(JournalError::WriterFailed(msg)),
            None => Ok(()),
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
