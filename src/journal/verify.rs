//! Full verification of a journal directory, independent of any open journal: every frame,
//! every block, every footer, and the hash chain end to end across segments.
//!
//! Read-only and lock-free, so it can run beside a live writer (it then checks what was
//! committed when it listed the directory). It reports the first offset that cannot be trusted
//! and the kind of damage; a torn tail at the very end of the last segment (which is then
//! unsealed) is reported separately: it is an unacknowledged write cut short, cut on the next
//! open, and not damage.

use std::path::{Path, PathBuf};

use super::error::{Damage, DamageKind, JournalError, Result};
use super::files::{CloseMarker, list, scan_raw, sealed_twin};
use super::record::{GENESIS_HASH, chain_hash, decode_frame};
use super::segment::{decode_block, decode_footer_from_file_bytes, decompress_block};
use super::storage::{OsStorage, Storage};

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records checked and found good (all records before the damage, if any).
    pub records: u64,
    /// Sealed segments checked.
    pub sealed_segments: usize,
    /// Unsealed segments checked.
    pub unsealed_segments: usize,
    /// Chain hash of the last good record.
    pub head_hash: [u8; 32],
    /// Bytes of torn tail after the last whole record (not damage).
    pub torn_tail_bytes: u64,
    /// The first damage found, if any.
    pub damage: Option<Damage>,
}

impl VerifyReport {
    /// Whether no damage was found.
    pub fn is_ok(&self) -> bool {
        self.damage.is_none()
    }
}

/// Verifies the journal in `dir`. `progress` is called with the running record count after each
/// segment. I/O errors (unreadable files) are errors; damage is part of the report.
pub fn verify_dir(
    dir: &Path,
    max_payload: usize,
    progress: &mut dyn FnMut(u64),
) -> Result<VerifyReport> {
    verify_in(&OsStorage, dir, max_payload, progress)
}

/// [`verify_dir`] on the journal in `dir` of `storage`.
pub fn verify_in(
    storage: &dyn Storage,
    dir: &Path,
    max_payload: usize,
    progress: &mut dyn FnMut(u64),
) -> Result<VerifyReport> {
    let listing = list(storage, dir)?;
    let sealed_firsts: Vec<u64> = listing.sealed.iter().map(|s| s.0).collect();
    let raws: Vec<&(u64, PathBuf)> = listing
        .raw
        .iter()
        .filter(|(first, _)| sealed_firsts.binary_search(first).is_err())
        .collect();
    let mut report = VerifyReport {
        records: 0,
        sealed_segments: listing.sealed.len(),
        unsealed_segments: raws.len(),
        head_hash: GENESIS_HASH,
        torn_tail_bytes: 0,
        damage: None,
    };
    // One offset order over sealed and unsealed segments (a segment whose sealing failed stays
    // unsealed between sealed ones).
    let mut segments: Vec<(u64, Option<u64>, &Path)> = listing
        .sealed
        .iter()
        .map(|(first, last, path)| (*first, Some(*last), path.as_path()))
        .chain(
            raws.iter()
                .map(|(first, path)| (*first, None, path.as_path())),
        )
        .collect();
    segments.sort_by_key(|s| s.0);
    let mut walk = Walk {
        expected: 0,
        last_ts: i64::MIN,
        max_payload,
    };
    let count = segments.len();
    for (i, (first, last, path)) in segments.into_iter().enumerate() {
        if first != walk.expected {
            let kind = DamageKind::MissingSegment {
                expected: walk.expected,
                found: first,
            };
            report.damage = Some(damage(walk.expected, path, kind));
            return Ok(report);
        }
        let (bytes, last, path) = match (storage.read(path), last) {
            (Ok(bytes), last) => (bytes, last, path.to_path_buf()),
            // Beside a live writer: sealed since we listed; verify the sealed twin instead.
            (Err(e), None) if e.kind() == std::io::ErrorKind::NotFound => {
                let Some((last, twin)) = sealed_twin(storage, dir, first)? else {
                    return Err(JournalError::io(path, e));
                };
                let bytes = storage
                    .read(&twin)
                    .map_err(|e| JournalError::io(&twin, e))?;
                report.sealed_segments += 1;
                report.unsealed_segments -= 1;
                (bytes, Some(last), twin)
            }
            (Err(e), _) => return Err(JournalError::io(path, e)),
        };
        let path = path.as_path();
        let outcome = match last {
            Some(last) => walk.sealed(&mut report, &bytes, first, last),
            None => {
                let whole = CloseMarker::read(storage, dir, first, bytes.len() as u64).is_some();
                walk.unsealed(&mut report, &bytes, i + 1 == count && !whole)
            }
        };
        if let Err((offset, kind)) = outcome {
            report.damage = Some(damage(offset, path, kind));
            return Ok(report);
        }
        progress(report.records);
    }
    Ok(report)
}

fn damage(offset: u64, path: &Path, kind: DamageKind) -> Damage {
    Damage {
        offset,
        segment: path.to_path_buf(),
        kind,
    }
}

/// Position of the walk: the next offset and the last timestamp seen.
struct Walk {
    expected: u64,
    last_ts: i64,
    max_payload: usize,
}

type Outcome = std::result::Result<(), (u64, DamageKind)>;

impl Walk {
    fn sealed(
        &mut self,
        report: &mut VerifyReport,
        bytes: &[u8],
        first: u64,
        last: u64,
    ) -> Outcome {
        let footer = decode_footer_from_file_bytes(bytes).map_err(|k| (first, k))?;
        if footer.first_offset != first || footer.last_offset != last {
            let kind = DamageKind::Footer("offsets disagree with the file name".into());
            return Err((first, kind));
        }
        if footer.prev_hash != report.head_hash {
            return Err((first, DamageKind::ChainBroken));
        }
        if footer.first_ts < self.last_ts {
            return Err((first, DamageKind::TimeOrder));
        }
        for (i, entry) in footer.blocks.iter().enumerate() {
            let start = entry.file_pos as usize;
            let compressed = bytes
                .get(start..start + entry.compressed_len as usize)
                .unwrap_or(&[]);
            let raw = decompress_block(compressed, entry).map_err(|k| (entry.first_offset, k))?;
            let records = decode_block(&raw, entry, &footer.prev_hash_of_block(i))?;
            report.records += records.len() as u64;
        }
        report.head_hash = footer.last_hash;
        self.last_ts = footer.last_ts;
        self.expected = last + 1;
        Ok(())
    }

    /// `torn_allowed`: this is the last segment and no clean-close marker says it was whole
    /// (then a failure at its end is a torn write, not damage).
    fn unsealed(&mut self, report: &mut VerifyReport, bytes: &[u8], torn_allowed: bool) -> Outcome {
        let mut pos = 0usize;
        while let Some(rest) = bytes.get(pos..).filter(|r| !r.is_empty()) {
            let frame = match decode_frame(rest, self.max_payload) {
                Ok((frame, used)) => {
                    pos += used;
                    frame
                }
                Err(e) => {
                    let scan = scan_raw(
                        rest,
                        self.expected,
                        report.head_hash,
                        self.max_payload,
                        u64::MAX,
                    );
                    let valid_after = scan.problem.is_some_and(|p| p.valid_after);
                    if torn_allowed && !valid_after {
                        report.torn_tail_bytes = rest.len() as u64;
                        return Ok(());
                    }
                    return Err((self.expected, e.damage()));
                }
            };
            if frame.offset != self.expected {
                let kind = DamageKind::OffsetSequence {
                    expected: self.expected,
                    found: frame.offset,
                };
                return Err((self.expected, kind));
            }
            if frame.ts_us < self.last_ts {
                return Err((self.expected, DamageKind::TimeOrder));
            }
            let hash = chain_hash(
                &report.head_hash,
                frame.offset,
                frame.ts_us,
                frame.schema_version,
                frame.payload,
            );
            if hash != frame.hash {
                return Err((self.expected, DamageKind::ChainBroken));
            }
            report.head_hash = hash;
            report.records += 1;
            self.last_ts = frame.ts_us;
            self.expected += 1;
        }
        Ok(())
    }
}
