//! Full verification of a journal directory, independent of any open journal: every frame,
//! every block, every footer, and the hash chain end to end across segments.
//!
//! Read-only and lock-free, so it can run beside a live writer (it then checks what was
//! committed when it listed the directory). It reports the first offset that cannot be trusted
//! and the kind of damage; a torn tail at the very end of the last unsealed segment is reported
//! separately (it is an unacknowledged write cut short, cut on the next open) and is not damage.

use std::path::{Path, PathBuf};

use super::error::{Damage, DamageKind, JournalError, Result};
use super::record::{GENESIS_HASH, chain_hash, decode_frame};
use super::recovery::{list, scan_raw};
use super::segment::{decode_block, decode_footer_from_file_bytes, decompress_block};

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
    let listing = list(dir)?;
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
    let mut expected = 0u64;
    let mut last_ts = i64::MIN;
    let fail = |report: &mut VerifyReport, offset, path: &Path, kind| {
        report.damage = Some(Damage {
            offset,
            segment: path.to_path_buf(),
            kind,
        });
        Ok(report.clone())
    };
    for (first, last, path) in &listing.sealed {
        if *first != expected {
            let kind = DamageKind::MissingSegment {
                expected,
                found: *first,
            };
            return fail(&mut report, expected, path, kind);
        }
        let bytes = std::fs::read(path).map_err(|e| JournalError::io(path, e))?;
        let footer = match decode_footer_from_file_bytes(&bytes) {
            Ok(footer) => footer,
            Err(kind) => return fail(&mut report, *first, path, kind),
        };
        if footer.first_offset != *first || footer.last_offset != *last {
            let kind = DamageKind::Footer("offsets disagree with the file name".into());
            return fail(&mut report, *first, path, kind);
        }
        if footer.prev_hash != report.head_hash {
            return fail(&mut report, *first, path, DamageKind::ChainBroken);
        }
        if footer.first_ts < last_ts {
            return fail(&mut report, *first, path, DamageKind::TimeOrder);
        }
        for (i, entry) in footer.blocks.iter().enumerate() {
            let start = entry.file_pos as usize;
            let compressed = bytes
                .get(start..start + entry.compressed_len as usize)
                .unwrap_or(&[]);
            let raw = match decompress_block(compressed, entry) {
                Ok(raw) => raw,
                Err(kind) => return fail(&mut report, entry.first_offset, path, kind),
            };
            match decode_block(&raw, entry, &footer.prev_hash_of_block(i)) {
                Ok(records) => report.records += records.len() as u64,
                Err((offset, kind)) => return fail(&mut report, offset, path, kind),
            }
        }
        report.head_hash = footer.last_hash;
        last_ts = footer.last_ts;
        expected = last + 1;
        progress(report.records);
    }
    let raw_count = raws.len();
    for (i, (first, path)) in raws.into_iter().enumerate() {
        if *first != expected {
            let kind = DamageKind::MissingSegment {
                expected,
                found: *first,
            };
            return fail(&mut report, expected, path, kind);
        }
        let bytes = std::fs::read(path).map_err(|e| JournalError::io(path, e))?;
        let mut pos = 0usize;
        while let Some(rest) = bytes.get(pos..).filter(|r| !r.is_empty()) {
            let frame = match decode_frame(rest, max_payload) {
                Ok((frame, used)) => {
                    pos += used;
                    frame
                }
                Err(_) => {
                    let scan = scan_raw(rest, expected, report.head_hash, max_payload, u64::MAX);
                    let problem = scan.problem.map(|p| (p.kind, p.valid_after));
                    match problem {
                        Some((_, false)) if i + 1 == raw_count => {
                            report.torn_tail_bytes = rest.len() as u64;
                            break;
                        }
                        Some((kind, _)) => return fail(&mut report, expected, path, kind),
                        None => unreachable!("decode failed, so the scan finds the problem"),
                    }
                }
            };
            if frame.offset != expected {
                let kind = DamageKind::OffsetSequence {
                    expected,
                    found: frame.offset,
                };
                return fail(&mut report, expected, path, kind);
            }
            if frame.ts_us < last_ts {
                return fail(&mut report, expected, path, DamageKind::TimeOrder);
            }
            let hash = chain_hash(
                &report.head_hash,
                frame.offset,
                frame.ts_us,
                frame.schema_version,
                frame.payload,
            );
            if hash != frame.hash {
                return fail(&mut report, expected, path, DamageKind::ChainBroken);
            }
            report.head_hash = hash;
            report.records += 1;
            last_ts = frame.ts_us;
            expected += 1;
        }
        progress(report.records);
    }
    Ok(report)
}
