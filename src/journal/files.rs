//! The files of a journal directory as every other journal module sees them: the segment
//! files listed by name, a sealed segment's footer read, an unsealed segment's frames scanned,
//! bytes kept in `quarantine/`. It sits below `recovery`, `repair` and `verify`, which all use
//! it (and never each other's internals for these), so they form no import circle.
//!
//! Invariants: listing classifies names only through [`super::names`]; a scan never reads past
//! the bytes it is given and names the first frame that fails and whether a valid frame exists
//! after it (the torn-tail rule of `recovery`); quarantine files are created new, fsynced with
//! their directory, and never overwritten or deleted.

use std::path::{Path, PathBuf};

use super::catalog::IndexPoint;
use super::error::{Damage, DamageKind, JournalError, Result};
use super::names::{self, SegmentName};
use super::record::{FRAME_OVERHEAD_BYTES, decode_frame, peek_offset};
use super::segment::{Footer, FooterReadError};
use super::storage::{Storage, sync_dir};

/// Result of scanning an unsealed segment.
#[derive(Debug)]
pub struct Scan {
    /// End of the last good frame.
    pub end: usize,
    /// Offset after the last good frame.
    pub next: u64,
    /// Stored hash of the last good frame (or the incoming prev hash).
    pub last_hash: [u8; 32],
    /// Timestamp of the last good frame.
    pub last_ts: Option<i64>,
    /// Sparse index of the good frames.
    pub index: Vec<IndexPoint>,
    /// The first failure, if any.
    pub problem: Option<Problem>,
}

/// A failure found while scanning.
#[derive(Debug, Clone)]
pub struct Problem {
    /// Byte position of the failed frame.
    pub pos: usize,
    /// The first offset that could not be read.
    pub offset: u64,
    /// What failed.
    pub kind: DamageKind,
    /// Whether a valid frame exists after the failure (so it is damage, not a torn tail).
    pub valid_after: bool,
}

/// Scans the frames of an unsealed segment starting at `first` (see the module docs).
pub fn scan_raw(
    bytes: &[u8],
    first: u64,
    prev_hash: [u8; 32],
    max_payload: usize,
    index_interval: u64,
) -> Scan {
    let mut scan = Scan {
        end: 0,
        next: first,
        last_hash: prev_hash,
        last_ts: None,
        index: Vec::new(),
        problem: None,
    };
    while let Some(rest) = bytes.get(scan.end..).filter(|r| !r.is_empty()) {
        let kind = match decode_frame(rest, max_payload) {
            Ok((frame, _)) if frame.offset != scan.next => DamageKind::OffsetSequence {
                expected: scan.next,
                found: frame.offset,
            },
            Ok((frame, _)) if scan.last_ts.is_some_and(|t| frame.ts_us < t) => {
                DamageKind::TimeOrder
            }
            Ok((frame, used)) => {
                if (scan.next - first).is_multiple_of(index_interval) {
                    scan.index.push(IndexPoint {
                        offset: frame.offset,
                        pos: scan.end as u64,
                        prev_hash: scan.last_hash,
                    });
                }
                scan.last_hash = frame.hash;
                scan.last_ts = Some(frame.ts_us);
                scan.next += 1;
                scan.end += used;
                continue;
            }
            Err(e) => e.damage(),
        };
        // A frame that decodes (checksum good) but sits in the wrong place was not torn by a
        // crash: torn writes fail their checksum or end early. So it is damage, never a torn tail.
        let decodes = matches!(
            kind,
            DamageKind::OffsetSequence { .. } | DamageKind::TimeOrder
        );
        scan.problem = Some(Problem {
            pos: scan.end,
            offset: scan.next,
            kind,
            valid_after: decodes || valid_frame_after(bytes, scan.end, scan.next, max_payload),
        });
        break;
    }
    scan
}

/// Whether any position at or after `from` holds a frame that decodes with an offset at or
/// beyond `next` (and plausibly close to it). Cheap filters run before the checksum.
fn valid_frame_after(bytes: &[u8], from: usize, next: u64, max_payload: usize) -> bool {
    let plausible = (bytes.len().saturating_sub(from) / FRAME_OVERHEAD_BYTES) as u64 + 1;
    (from..bytes.len()).any(|pos| {
        let rest = bytes.get(pos..).unwrap_or(&[]);
        peek_offset(rest).is_some_and(|o| o >= next && o - next <= plausible)
            && decode_frame(rest, max_payload).is_ok()
    })
}

/// Reads the footer of a sealed segment file through [`super::segment::read_footer`].
pub(crate) fn read_footer(storage: &dyn Storage, path: &Path) -> Result<Footer> {
    let file = storage
        .open_read(path)
        .map_err(|e| JournalError::io(path, e))?;
    let len = file.len().map_err(|e| JournalError::io(path, e))?;
    let mut read_at = |buf: &mut [u8], pos: u64| file.read_exact_at(buf, pos);
    super::segment::read_footer(len, &mut read_at).map_err(|e| match e {
        FooterReadError::Io(e) => JournalError::io(path, e),
        FooterReadError::Damaged(kind) => JournalError::Damaged(Damage {
            offset: names_first(path),
            segment: path.to_path_buf(),
            kind,
        }),
    })
}

fn names_first(path: &Path) -> u64 {
    match path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(names::parse)
    {
        Some(SegmentName::Raw { first } | SegmentName::Sealed { first, .. }) => first,
        _ => 0,
    }
}

/// Segment files of a journal directory, sorted by first offset.
#[derive(Debug, Default)]
pub struct Listing {
    /// Sealed segments: (first, last, path).
    pub sealed: Vec<(u64, u64, PathBuf)>,
    /// Unsealed segments: (first, path).
    pub raw: Vec<(u64, PathBuf)>,
    /// Leftover temporary files.
    pub temps: Vec<PathBuf>,
}

/// Lists the segment files in `dir`.
pub(crate) fn list(storage: &dyn Storage, dir: &Path) -> Result<Listing> {
    let mut listing = Listing::default();
    let names = storage.list(dir).map_err(|e| JournalError::io(dir, e))?;
    for name in names {
        let path = dir.join(&name);
        match names::parse(&name) {
            Some(SegmentName::Sealed { first, last }) => listing.sealed.push((first, last, path)),
            Some(SegmentName::Raw { first }) => listing.raw.push((first, path)),
            Some(SegmentName::Temp) => listing.temps.push(path),
            None => {}
        }
    }
    listing.sealed.sort();
    listing.raw.sort();
    Ok(listing)
}

/// The sealed twin of the unsealed segment starting at `first` (a live writer's sealer replaced
/// it after a reader listed the directory): its last offset and path.
pub(crate) fn sealed_twin(
    storage: &dyn Storage,
    dir: &Path,
    first: u64,
) -> Result<Option<(u64, PathBuf)>> {
    Ok(list(storage, dir)?
        .sealed
        .into_iter()
        .find(|(f, _, _)| *f == first)
        .map(|(_, last, path)| (last, path)))
}

/// Keeps `bytes` under `quarantine/` in a new file named after `stem` and the time, fsynced;
/// its path. Nothing the journal cuts is ever destroyed.
pub(crate) fn quarantine(
    storage: &dyn Storage,
    dir: &Path,
    stem: &str,
    bytes: &[u8],
) -> Result<PathBuf> {
    let qdir = dir.join("quarantine");
    storage
        .create_dir_all(&qdir)
        .map_err(|e| JournalError::io(&qdir, e))?;
    let qpath = qdir.join(format!("{stem}.{}.bin", crate::timestamp::now_us()));
    let io = |e| JournalError::io(&qpath, e);
    let mut out = storage.create_new(&qpath).map_err(io)?;
    out.write_all(bytes).map_err(io)?;
    out.sync_all().map_err(io)?;
    sync_dir(storage, &qdir)?;
    sync_dir(storage, dir)?;
    Ok(qpath)
}
