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

/// The per-frame rule of a scan: dense offsets, timestamps that never decrease, a sparse index.
struct Scanner {
    scan: Scan,
    first: u64,
    index_interval: u64,
    /// Whether every frame's checksum is checked (see [`scan_file`]).
    checksums: bool,
    /// The scan as it was before the last frame taken (to take it back).
    before_last: Option<Mark>,
}

/// Where a scan stood before a frame: end, next offset, last hash, last ts, index length.
#[derive(Debug, Clone, Copy)]
struct Mark {
    end: usize,
    next: u64,
    last_hash: [u8; 32],
    last_ts: Option<i64>,
    index_len: usize,
}

/// What [`Scanner::step`] did with the bytes it was given.
enum Step {
    /// Took one whole frame of this many bytes.
    Took(usize),
    /// The bytes end before the frame does.
    Incomplete,
    /// The first failure.
    Failed(DamageKind),
}

impl Scanner {
    fn new(first: u64, prev_hash: [u8; 32], index_interval: u64, checksums: bool) -> Scanner {
        Scanner {
            checksums,
            before_last: None,
            scan: Scan {
                end: 0,
                next: first,
                last_hash: prev_hash,
                last_ts: None,
                index: Vec::new(),
                problem: None,
            },
            first,
            index_interval,
        }
    }

    /// Takes the frame at the start of `rest` (which sits at byte `scan.end`).
    fn step(&mut self, rest: &[u8], max_payload: usize) -> Step {
        let scan = &mut self.scan;
        match super::record::decode_frame_checked(rest, max_payload, self.checksums) {
            Ok((frame, _)) if frame.offset != scan.next => {
                Step::Failed(DamageKind::OffsetSequence {
                    expected: scan.next,
                    found: frame.offset,
                })
            }
            Ok((frame, _)) if scan.last_ts.is_some_and(|t| frame.ts_us < t) => {
                Step::Failed(DamageKind::TimeOrder)
            }
            Ok((frame, used)) => {
                self.before_last = Some(Mark {
                    end: scan.end,
                    next: scan.next,
                    last_hash: scan.last_hash,
                    last_ts: scan.last_ts,
                    index_len: scan.index.len(),
                });
                if (scan.next - self.first).is_multiple_of(self.index_interval) {
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
                Step::Took(used)
            }
            Err(super::record::FrameError::Incomplete) => Step::Incomplete,
            Err(e) => Step::Failed(e.damage()),
        }
    }

    /// Records the failure found at `scan.end`; `after` holds the bytes from there to the end.
    fn fail(&mut self, kind: DamageKind, after: &[u8], max_payload: usize) {
        // A frame that decodes (checksum good) but sits in the wrong place was not torn by a
        // crash: torn writes fail their checksum or end early. So it is damage, never a torn tail.
        let decodes = matches!(
            kind,
            DamageKind::OffsetSequence { .. } | DamageKind::TimeOrder
        );
        self.scan.problem = Some(Problem {
            pos: self.scan.end,
            offset: self.scan.next,
            kind,
            valid_after: decodes || valid_frame_after(after, 0, self.scan.next, max_payload),
        });
    }
}

/// Scans the frames of an unsealed segment held in memory, starting at offset `first` (see
/// the module docs).
pub fn scan_raw(
    bytes: &[u8],
    first: u64,
    prev_hash: [u8; 32],
    max_payload: usize,
    index_interval: u64,
) -> Scan {
    let mut scanner = Scanner::new(first, prev_hash, index_interval, true);
    while let Some(rest) = bytes.get(scanner.scan.end..).filter(|r| !r.is_empty()) {
        match scanner.step(rest, max_payload) {
            Step::Took(_) => {}
            Step::Incomplete => {
                let kind = super::record::FrameError::Incomplete.damage();
                scanner.fail(kind, rest, max_payload);
                break;
            }
            Step::Failed(kind) => {
                scanner.fail(kind, rest, max_payload);
                break;
            }
        }
    }
    scanner.scan
}

/// A scan of an unsealed segment file, and its tail after the first failure.
#[derive(Debug)]
pub(crate) struct FileScan {
    /// The scan.
    pub scan: Scan,
    /// The file's length.
    pub len: u64,
    /// The bytes from the first failure to the end (empty without one).
    pub tail: Vec<u8>,
}

/// Bytes read at a time by [`scan_file`].
const SCAN_CHUNK_BYTES: usize = 1 << 20;

/// Scans the unsealed segment file at `path` like [`scan_raw`], reading it a chunk at a time
/// (an active segment can be `segment_bytes` long: open reads it through a 1 MiB buffer, not
/// into memory whole), and returns the bytes after the first failure for the caller's
/// torn-tail rule and quarantine.
///
/// With `checksums` off (a read-only open, which changes nothing on disk) frames are walked
/// by their lengths and offsets only, and the last one's checksum is checked (a frame still
/// being written fails it, and the scan then ends before it): readers check every frame's
/// checksum and chain link before serving it, so damage inside is found when read, not here.
pub(crate) fn scan_file(
    storage: &dyn Storage,
    path: &Path,
    first: u64,
    prev_hash: [u8; 32],
    max_payload: usize,
    index_interval: u64,
    checksums: bool,
) -> Result<FileScan> {
    let io = |e| JournalError::io(path, e);
    let file = storage.open_read(path).map_err(io)?;
    let len = file.len().map_err(io)?;
    let mut scanner = Scanner::new(first, prev_hash, index_interval, checksums);
    let mut buf: Vec<u8> = Vec::with_capacity(SCAN_CHUNK_BYTES);
    let mut buf_pos = 0u64; // file position of buf[0]
    let mut at = 0usize; // next frame in buf
    loop {
        let rest = buf.get(at..).unwrap_or(&[]);
        let step = if rest.is_empty() {
            Step::Incomplete
        } else {
            scanner.step(rest, max_payload)
        };
        match step {
            Step::Took(used) => at += used,
            Step::Incomplete => {
                let have = buf_pos + buf.len() as u64;
                if have >= len {
                    if at == buf.len() {
                        if !checksums {
                            return last_frame_checked(
                                scanner,
                                file.as_ref(),
                                path,
                                len,
                                max_payload,
                            );
                        }
                        break; // every byte is in whole frames
                    }
                    let kind = super::record::FrameError::Incomplete.damage();
                    let tail = buf.get(at..).unwrap_or(&[]).to_vec();
                    scanner.fail(kind, &tail, max_payload);
                    return Ok(FileScan {
                        scan: scanner.scan,
                        len,
                        tail,
                    });
                }
                buf.drain(..at);
                buf_pos += at as u64;
                at = 0;
                let want = usize::try_from((len - have).min(SCAN_CHUNK_BYTES as u64))
                    .unwrap_or(SCAN_CHUNK_BYTES);
                let old = buf.len();
                buf.resize(old + want, 0);
                let target = buf.get_mut(old..).unwrap_or(&mut []);
                file.read_exact_at(target, have).map_err(io)?;
            }
            Step::Failed(kind) => {
                let start = buf_pos + at as u64;
                let mut tail = vec![0u8; usize::try_from(len - start).unwrap_or(0)];
                file.read_exact_at(&mut tail, start).map_err(io)?;
                scanner.fail(kind, &tail, max_payload);
                return Ok(FileScan {
                    scan: scanner.scan,
                    len,
                    tail,
                });
            }
        }
    }
    Ok(FileScan {
        scan: scanner.scan,
        len,
        tail: Vec::new(),
    })
}

/// The end of an unchecked walk ([`scan_file`]): the last frame's checksum is checked; if it
/// fails the frame is taken back, and reported as the first failure.
fn last_frame_checked(
    mut scanner: Scanner,
    file: &dyn super::storage::StorageFile,
    path: &Path,
    len: u64,
    max_payload: usize,
) -> Result<FileScan> {
    let Some(Mark {
        end,
        next,
        last_hash,
        last_ts,
        index_len,
    }) = scanner.before_last
    else {
        return Ok(FileScan {
            scan: scanner.scan,
            len,
            tail: Vec::new(),
        });
    };
    let mut frame = vec![0u8; usize::try_from(len - end as u64).unwrap_or(0)];
    file.read_exact_at(&mut frame, end as u64)
        .map_err(|e| JournalError::io(path, e))?;
    if decode_frame(&frame, max_payload).is_ok() {
        return Ok(FileScan {
            scan: scanner.scan,
            len,
            tail: Vec::new(),
        });
    }
    let scan = &mut scanner.scan;
    (scan.end, scan.next, scan.last_hash, scan.last_ts) = (end, next, last_hash, last_ts);
    scan.index.truncate(index_len);
    scanner.fail(DamageKind::Checksum, &frame, max_payload);
    Ok(FileScan {
        scan: scanner.scan,
        len,
        tail: frame,
    })
}

/// What a writer that closed cleanly knew of its active segment, kept beside it in
/// `{first}.log.closed` so the next open need not scan it: a clean close fsynced every byte, so
/// the segment can have no torn tail. Open uses it only if it is intact (its own CRC-32C) and
/// the segment's length is exactly the one it names (a crash after appends leaves it stale);
/// a writer's open deletes it before appending anything. Damage inside the segment is then
/// found by readers and `verify`, as for a read-only open.
///
/// Layout: `"LBKCLS01"`, then u64 first, u64 bytes, u64 next, [32] last_hash, i64 last_ts
/// (i64::MIN for none), u32 index points, each u64 offset, u64 pos, [32] prev_hash; then u32
/// CRC-32C of everything before it. Little-endian.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CloseMarker {
    pub first: u64,
    pub bytes: u64,
    pub next: u64,
    pub last_hash: [u8; 32],
    pub last_ts: Option<i64>,
    pub index: Vec<IndexPoint>,
}

const CLOSE_MAGIC: &[u8; 8] = b"LBKCLS01";

impl CloseMarker {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.index.len() * 48);
        out.extend_from_slice(CLOSE_MAGIC);
        out.extend_from_slice(&self.first.to_le_bytes());
        out.extend_from_slice(&self.bytes.to_le_bytes());
        out.extend_from_slice(&self.next.to_le_bytes());
        out.extend_from_slice(&self.last_hash);
        out.extend_from_slice(&self.last_ts.unwrap_or(i64::MIN).to_le_bytes());
        out.extend_from_slice(&u32::try_from(self.index.len()).unwrap_or(0).to_le_bytes());
        for p in &self.index {
            out.extend_from_slice(&p.offset.to_le_bytes());
            out.extend_from_slice(&p.pos.to_le_bytes());
            out.extend_from_slice(&p.prev_hash);
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<CloseMarker> {
        let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
        if crc32c::crc32c(body).to_le_bytes() != crc {
            return None;
        }
        let mut at = 0usize;
        let mut take = |n: usize| {
            let field = body.get(at..at + n);
            at += n;
            field
        };
        if take(8)? != CLOSE_MAGIC {
            return None;
        }
        let u64_of = |b: &[u8]| b.try_into().ok().map(u64::from_le_bytes);
        let first = u64_of(take(8)?)?;
        let bytes = u64_of(take(8)?)?;
        let next = u64_of(take(8)?)?;
        let last_hash: [u8; 32] = take(32)?.try_into().ok()?;
        let last_ts = i64::from_le_bytes(take(8)?.try_into().ok()?);
        let points = u32::from_le_bytes(take(4)?.try_into().ok()?);
        let mut index = Vec::with_capacity(points.min(1 << 20) as usize);
        for _ in 0..points {
            index.push(IndexPoint {
                offset: u64_of(take(8)?)?,
                pos: u64_of(take(8)?)?,
                prev_hash: take(32)?.try_into().ok()?,
            });
        }
        Some(CloseMarker {
            first,
            bytes,
            next,
            last_hash,
            last_ts: (last_ts != i64::MIN).then_some(last_ts),
            index,
        })
    }

    /// Writes the marker beside its segment (temporary file, fsync, rename, directory fsync).
    pub fn write(&self, storage: &dyn Storage, dir: &Path) -> Result<()> {
        let name = names::closed(self.first);
        let tmp = dir.join(format!("{name}.tmp"));
        let path = dir.join(&name);
        let io = |e| JournalError::io(&tmp, e);
        let mut file = storage.create(&tmp).map_err(io)?;
        file.write_all(&self.encode()).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        storage
            .rename(&tmp, &path)
            .map_err(|e| JournalError::io(&path, e))?;
        sync_dir(storage, dir)
    }

    /// The marker of the segment starting at `first` whose file is `len` bytes, if one is
    /// there, intact, and names exactly that length.
    pub fn read(storage: &dyn Storage, dir: &Path, first: u64, len: u64) -> Option<CloseMarker> {
        let bytes = storage.read(&dir.join(names::closed(first))).ok()?;
        CloseMarker::decode(&bytes).filter(|m| m.first == first && m.bytes == len)
    }

    /// Removes the marker of the segment starting at `first`, if any (a writer's open does,
    /// before it appends: the segment is about to change).
    pub fn remove(storage: &dyn Storage, dir: &Path, first: u64) -> Result<()> {
        let path = dir.join(names::closed(first));
        if storage.exists(&path) {
            storage
                .remove_file(&path)
                .map_err(|e| JournalError::io(&path, e))?;
            sync_dir(storage, dir)?;
        }
        Ok(())
    }
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
