//! Opening a journal directory: find the segments, recover the active tail, and tell a torn
//! tail from damage to committed records.
//!
//! Open cost is independent of the number of sealed segments: it lists the directory (names
//! carry offsets), reads the footer of the newest sealed segment only (for the chain head and
//! last timestamp), and scans the unsealed segments (at most a few, each bounded by
//! `segment_bytes`), checking frame lengths, checksums and dense offsets. The chain itself is
//! checked by `verify`, by readers and by the sealer.
//!
//! Torn tail or damage? Scanning the last unsealed segment stops at the first frame that fails.
//! - If no valid frame (checksum passes, offset beyond the last good one) exists anywhere after
//!   that point, the bytes from there to the end are a *torn tail*: a write that was cut short
//!   by a crash. Under `sync` such a write was never acknowledged, because the acknowledgement
//!   waits for the fdatasync that would have made the whole write durable. Open cuts it (the
//!   bytes are moved to `quarantine/`, never destroyed) and logs a warning with the byte count.
//! - If a valid frame exists after it, committed records were damaged in place (bit rot, an
//!   edit, a deleted or reordered record). This is never cut silently: open fails with
//!   [`JournalError::Damaged`] naming the first bad offset, and the writer refuses to append.
//!   `JournalConfig::repair` cuts from the damage through [`super::repair`] (bytes
//!   quarantined, a `journal.repaired` note in place of the first cut record).
//! - Any failed frame in an unsealed segment that is not the last one is damage: segments are
//!   fsynced before they roll, so they cannot have torn tails.
//!
//! The rule errs on the side of refusing: a torn write whose pages reached the disk out of order
//! could in principle leave a valid frame after a hole; it is then reported as damage and needs
//! an explicit repair, which is safe (nothing in it was acknowledged) and recorded.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use super::catalog::{Catalog, FooterCell, SegmentEntry, SegmentState};
use super::config::JournalConfig;
use super::error::{Damage, DamageKind, JournalError, Result};
use super::files::{
    CloseMarker, FileScan, Scan, list, quarantine, read_footer, scan_file, sealed_twin,
};
use super::record::GENESIS_HASH;
use super::sealer::SealJob;
use super::storage::{Storage, sync_dir};

/// How the directory is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// As the single writer: may cut a torn tail, delete leftovers, seal.
    Write,
    /// As a reader beside (or without) a writer: changes nothing on disk.
    ReadOnly,
}

/// What opening found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Bytes of torn tail found after the last whole record (cut in write mode).
    pub torn_tail_bytes: u64,
    /// Damage cut by an explicit repair.
    pub repaired: Option<Damage>,
    /// Bytes cut by the repair.
    pub repaired_bytes: u64,
    /// Where cut bytes were kept.
    pub quarantine: Option<PathBuf>,
    /// Sealed segments found.
    pub sealed_segments: usize,
    /// Unsealed segments found (the active one included).
    pub unsealed_segments: usize,
}

/// The state recovered from disk.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub catalog: Catalog,
    pub next_offset: u64,
    pub last_ts: i64,
    pub chain: [u8; 32],
    /// The last unsealed segment (first offset, prev hash, bytes, records) if one exists.
    pub active: Option<ActiveTail>,
    pub seal_jobs: Vec<SealJob>,
    pub report: RecoveryReport,
}

/// The last unsealed segment found on disk.
#[derive(Debug, Clone)]
pub(crate) struct ActiveTail {
    pub first: u64,
    pub path: PathBuf,
    pub bytes: u64,
    pub prev_hash: [u8; 32],
    pub records: u64,
}

/// Recovers the journal in `dir` (see the module docs).
pub(crate) fn recover(dir: &Path, config: &JournalConfig, mode: Mode) -> Result<Recovered> {
    let write = mode == Mode::Write;
    let storage = config.storage.as_ref();
    if write {
        super::repair::finish_intent(storage, dir)?;
    } else if super::repair::intent_pending(storage, dir) {
        return Err(JournalError::Import(format!(
            "{} holds an unfinished repair; open it as the writer (e.g. `logbook verify` after \
             any writer command) to finish it",
            dir.display()
        )));
    }
    let mut listing = list(storage, dir)?;
    if write {
        for tmp in &listing.temps {
            storage
                .remove_file(tmp)
                .map_err(|e| JournalError::io(tmp, e))?;
        }
    }
    // A sealed twin exists only after its fsync and rename, so the unsealed file is redundant.
    let sealed_firsts: Vec<u64> = listing.sealed.iter().map(|s| s.0).collect();
    let mut superseded = Vec::new();
    listing.raw.retain(|(first, path)| {
        let keep = sealed_firsts.binary_search(first).is_err();
        if !keep {
            superseded.push(path.clone());
        }
        keep
    });
    if write && !superseded.is_empty() {
        for path in &superseded {
            storage
                .remove_file(path)
                .map_err(|e| JournalError::io(path, e))?;
        }
        sync_dir(storage, dir)?;
    }
    let mut report = RecoveryReport {
        sealed_segments: listing.sealed.len(),
        unsealed_segments: listing.raw.len(),
        ..RecoveryReport::default()
    };
    let missing = |expected: u64, found: u64, path: &Path| {
        JournalError::Damaged(Damage {
            offset: expected,
            segment: path.to_path_buf(),
            kind: DamageKind::MissingSegment { expected, found },
        })
    };
    // Sealed and unsealed segments in one offset order: normally all unsealed ones come last,
    // but a segment whose sealing failed stays unsealed between sealed ones.
    let mut segments: Vec<(u64, Option<u64>, PathBuf)> = listing
        .sealed
        .iter()
        .map(|(first, last, path)| (*first, Some(*last), path.clone()))
        .chain(
            listing
                .raw
                .iter()
                .map(|(first, path)| (*first, None, path.clone())),
        )
        .collect();
    segments.sort_by_key(|s| s.0);
    let mut catalog = Catalog::default();
    let mut expected = 0u64;
    let (mut chain, mut last_ts) = (GENESIS_HASH, i64::MIN);
    // The chain head is only read from a sealed footer when something needs it: before an
    // unsealed segment and at the very end. Open reads O(1) footers in the normal case.
    let mut chain_from: Option<(PathBuf, FooterCell)> = None;
    let mut seal_jobs = Vec::new();
    let mut active = None;
    let count = segments.len();
    for (i, (first, last, path)) in segments.into_iter().enumerate() {
        if first != expected {
            return Err(missing(expected, first, &path));
        }
        if let Some(last) = last {
            let cell: FooterCell = Arc::new(OnceLock::new());
            catalog.segments.push(SegmentEntry {
                first,
                path: path.clone(),
                state: SegmentState::Sealed {
                    last,
                    footer: cell.clone(),
                },
            });
            chain_from = Some((path, cell));
            expected = last + 1;
            continue;
        }
        if let Some((path, cell)) = chain_from.take() {
            (chain, last_ts) = head_of(storage, &path, &cell)?;
        }
        let is_last = i + 1 == count;
        // A segment its writer closed cleanly was whole: it cannot have a torn tail, so a
        // failure at its end is damage. A read-only open takes the marker's word for its
        // frames (readers check each before serving it); a writer, which must never append
        // after damage, scans them all.
        let marked = is_last
            .then(|| closed_cleanly(storage, dir, &path, first, chain))
            .flatten();
        let complete = marked.is_some();
        let scanned = match marked.filter(|_| !write) {
            Some(marked) => Ok(marked),
            _ => scan_file(
                storage,
                &path,
                first,
                chain,
                super::record::PAYLOAD_BYTES_MAX,
                config.index_interval,
                write,
            ),
        };
        let FileScan { scan, len, tail } = match scanned {
            Ok(scanned) => scanned,
            // Read-only beside a live writer: sealed since we listed; take the sealed twin.
            Err(JournalError::Io { source, .. })
                if !write && source.kind() == std::io::ErrorKind::NotFound =>
            {
                let Some((last, twin)) = sealed_twin(storage, dir, first)? else {
                    return Err(JournalError::io(&path, source));
                };
                let cell: FooterCell = Arc::new(OnceLock::new());
                catalog.segments.push(SegmentEntry {
                    first,
                    path: twin.clone(),
                    state: SegmentState::Sealed {
                        last,
                        footer: cell.clone(),
                    },
                });
                chain_from = Some((twin, cell));
                expected = last + 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        if let Some(problem) = &scan.problem {
            let cut_bytes = len - problem.pos as u64;
            let damage = Damage {
                offset: problem.offset,
                segment: path.clone(),
                kind: problem.kind.clone(),
            };
            if !is_last || problem.valid_after || complete {
                if !(write && config.repair && is_last) {
                    return Err(JournalError::Damaged(damage));
                }
                // An explicit repair of the active segment: cut (recorded by a note in the
                // journal, bytes kept in quarantine), then open what the cut left.
                super::quietly(
                    || tracing::warn!(%damage, cut_bytes, "repair: cutting damaged records"),
                );
                let cut = super::repair::cut_locked(storage, dir, &damage, scan.last_hash)?;
                let mut recovered = recover(dir, config, mode)?;
                recovered.report.repaired = Some(damage);
                recovered.report.repaired_bytes = cut.bytes_cut;
                recovered.report.quarantine = cut.quarantine.first().cloned();
                return Ok(recovered);
            }
            report.torn_tail_bytes = cut_bytes;
            if write {
                super::quietly(|| {
                    tracing::warn!(
                        segment = %path.display(),
                        cut_bytes,
                        last_offset = scan.next.checked_sub(1),
                        reason = %problem.kind,
                        "cut torn tail (an unacknowledged write cut short by a crash)"
                    );
                });
                report.quarantine = Some(cut(storage, dir, &path, &tail, problem.pos)?);
            }
        }
        if write && is_last && complete {
            // Checked whole, and about to change: the marker would be stale. (Removed only
            // now: if the scan found damage, the marker stays to say the segment was whole, so
            // no later open takes that damage for a torn write.)
            CloseMarker::remove(storage, dir, first)?;
        }
        catalog.segments.push(SegmentEntry {
            first,
            path: path.clone(),
            state: SegmentState::Raw {
                next: scan.next,
                bytes: scan.end as u64,
                index: Arc::new(scan.index),
            },
        });
        if is_last {
            active = Some(ActiveTail {
                first,
                path,
                bytes: scan.end as u64,
                prev_hash: chain,
                records: scan.next - first,
            });
        } else if write && scan.next > first {
            seal_jobs.push(SealJob {
                first,
                last: scan.next - 1,
                path,
                bytes: scan.end as u64,
                prev_hash: chain,
            });
        }
        chain = scan.last_hash;
        last_ts = scan.last_ts.unwrap_or(last_ts).max(last_ts);
        expected = scan.next;
    }
    if let Some((path, cell)) = chain_from.take() {
        (chain, last_ts) = head_of(storage, &path, &cell)?;
    }
    Ok(Recovered {
        catalog,
        next_offset: expected,
        last_ts,
        chain,
        active,
        seal_jobs,
        report,
    })
}

/// The active segment as its writer left it at a clean close, if it left an intact marker that
/// matches the file (its length, and its chain start): no scan needed (`files::CloseMarker`).
fn closed_cleanly(
    storage: &dyn Storage,
    dir: &Path,
    path: &Path,
    first: u64,
    chain: [u8; 32],
) -> Option<FileScan> {
    let len = storage.open_read(path).ok()?.len().ok()?;
    let marker = CloseMarker::read(storage, dir, first, len)?;
    let starts = marker.index.first().map_or(marker.next == first, |p| {
        p.offset == first && p.pos == 0 && p.prev_hash == chain
    });
    if !starts || marker.next < first {
        return None;
    }
    Some(FileScan {
        scan: Scan {
            end: usize::try_from(marker.bytes).ok()?,
            next: marker.next,
            last_hash: if marker.next > first {
                marker.last_hash
            } else {
                chain
            },
            last_ts: marker.last_ts,
            index: marker.index,
            problem: None,
        },
        len,
        tail: Vec::new(),
    })
}

/// Chain hash and timestamp at the end of a sealed segment, caching its footer.
fn head_of(storage: &dyn Storage, path: &Path, cell: &FooterCell) -> Result<([u8; 32], i64)> {
    let footer = match cell.get() {
        Some(footer) => footer.clone(),
        None => {
            let footer = Arc::new(read_footer(storage, path)?);
            let _ = cell.set(footer.clone());
            footer
        }
    };
    Ok((footer.last_hash, footer.last_ts))
}

/// Moves `tail` (the bytes of the segment at `path` from `pos` to its end) to the quarantine
/// directory, then truncates the segment at `pos`. Both are fsynced before returning.
pub(crate) fn cut(
    storage: &dyn Storage,
    dir: &Path,
    path: &Path,
    tail: &[u8],
    pos: usize,
) -> Result<PathBuf> {
    let stem = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("segment");
    let qpath = quarantine(storage, dir, &format!("{stem}.at-{pos}"), tail)?;
    storage
        .truncate(path, pos as u64)
        .map_err(|e| JournalError::io(path, e))?;
    Ok(qpath)
}
