//! Repairing damage the journal refuses to open or read over: always an explicit act of the
//! operator, always recorded, nothing destroyed.
//!
//! Two remedies, for damage anywhere (the active segment, a rolled one, a sealed one):
//! - **Cut** ([`cut_damage`]: `logbook repair --cut`; and `JournalConfig::repair`, for damage
//!   in the active segment only, where `logbook repair` applies it without a flag). Every record
//!   from the first damaged offset on is cut: the bytes go to `quarantine/` (kept, never
//!   destroyed) and a `journal.repaired` note takes the first cut offset, so the cut itself is
//!   on the record. The good records before the damage stay (in a damaged sealed block: those
//!   whose hash prefixes check).
//! - **Replace** ([`replace_sealed`]: `logbook repair --from s3://...`). A damaged sealed
//!   segment is replaced by a verified copy (the one shipped to S3) whose chain links with its
//!   neighbours on both sides, so the journal holds byte for byte the records it held before
//!   the damage and nothing else changes (no note is needed: no record changed). The damaged
//!   file goes to `quarantine/`.
//!
//! Crash safety of a cut. It touches several files, so it is prepared, then committed by one
//! rename, then applied: (1) the cut bytes are copied to `quarantine/` and the replacement of
//! the damaged segment (its good records plus the note, as an unsealed segment) is written to a
//! temporary file, all fsynced; (2) the intent file `REPAIR` (which files to remove, which
//! temporary file to install) is written and renamed into place: the commit point; (3) the
//! files are removed and the replacement renamed into place; (4) `REPAIR` is removed. A crash
//! before (2) leaves the journal as it was (the temporary files are deleted on open); after it,
//! the writer's open finishes (3) and (4) before anything else (idempotent). Both remedies run
//! under the directory's writer lock.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::JournalConfig;
use super::error::{Damage, DamageKind, JournalError, Result};
use super::files::{self, quarantine};
use super::names;
use super::record::{GENESIS_HASH, decode_frame, encode_frame};
use super::segment::{
    VerifiedSegment, decode_block_into, decode_footer_from_file_bytes, decompress_block,
};
use super::storage::{Storage, sync_dir};
use super::verify::verify_in;
use crate::event::{Event, JournalRepaired};

/// The intent file of a cut in progress (see the module docs).
pub const INTENT_FILE: &str = "REPAIR";

/// The payload of the `journal.repaired` note for a cut from `damage`.
pub fn note(damage: &Damage, bytes_cut: u64, quarantine: Option<&Path>) -> Vec<u8> {
    Event::JournalRepaired(JournalRepaired {
        id: None,
        cut_from_offset: damage.offset,
        bytes_cut,
        segment: damage.segment.display().to_string(),
        reason: damage.kind.to_string(),
        quarantine: quarantine.map(|p| p.display().to_string()),
    })
    .to_payload()
}

/// What a cut did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutReport {
    /// The damage it cut from.
    pub damage: Damage,
    /// Records cut (the journal's old end minus the damaged offset).
    pub records_cut: u64,
    /// Bytes moved to quarantine.
    pub bytes_cut: u64,
    /// The quarantine files, one per segment cut.
    pub quarantine: Vec<PathBuf>,
    /// The offset of the `journal.repaired` note (the damaged offset).
    pub note_offset: u64,
}

/// What [`replace_sealed`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaceReport {
    /// The segment replaced.
    pub segment: PathBuf,
    /// Where the damaged file was kept.
    pub quarantine: PathBuf,
}

/// The intent of a committed cut.
#[derive(Debug, Serialize, Deserialize)]
struct Intent {
    format: u32,
    /// File names to remove.
    remove: Vec<String>,
    /// A temporary file name and the segment name it becomes.
    install: (String, String),
}

/// Finds the first damage in the journal in `dir` (a full verify), takes the writer lock and
/// cuts the journal there (see the module docs). `Ok(None)` if there is no damage.
pub fn cut_damage(dir: &Path, config: &JournalConfig) -> Result<Option<CutReport>> {
    let storage = config.storage.as_ref();
    let _lock = storage.lock(dir)?;
    finish_intent(storage, dir)?;
    let report = verify_in(storage, dir, super::record::PAYLOAD_BYTES_MAX, &mut |_| {})?;
    let Some(damage) = report.damage else {
        return Ok(None);
    };
    cut_locked(storage, dir, &damage, report.head_hash).map(Some)
}

/// The segment files of `dir` in offset order: `(first, Some(last) if sealed, name)`.
fn segments(storage: &dyn Storage, dir: &Path) -> Result<Vec<(u64, Option<u64>, String)>> {
    let listing = files::list(storage, dir)?;
    let sealed_firsts: Vec<u64> = listing.sealed.iter().map(|s| s.0).collect();
    let name = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string()
    };
    let mut all: Vec<(u64, Option<u64>, String)> = listing
        .sealed
        .iter()
        .map(|(first, last, p)| (*first, Some(*last), name(p)))
        .chain(
            listing
                .raw
                .iter()
                .filter(|(first, _)| sealed_firsts.binary_search(first).is_err())
                .map(|(first, p)| (*first, None, name(p))),
        )
        .collect();
    all.sort_by_key(|s| s.0);
    Ok(all)
}

/// Cuts from `damage.offset` (the lock is held; `prev` is the chain hash before it).
pub(crate) fn cut_locked(
    storage: &dyn Storage,
    dir: &Path,
    damage: &Damage,
    prev: [u8; 32],
) -> Result<CutReport> {
    let at = damage.offset;
    let all = segments(storage, dir)?;
    let index = all
        .iter()
        .rposition(|(first, _, _)| *first <= at)
        .ok_or_else(|| JournalError::Import(format!("no segment holds offset {at}")))?;
    let mut quarantined = Vec::new();
    let mut bytes_cut = 0u64;
    let mut remove = Vec::new();
    let (first, last, name) = all
        .get(index)
        .cloned()
        .ok_or_else(|| JournalError::Import(format!("no segment holds offset {at}")))?;
    let path = dir.join(&name);
    let bytes = storage
        .read(&path)
        .map_err(|e| JournalError::io(&path, e))?;
    // The good records of the damaged segment (as frames) and the bytes cut from it.
    let (mut kept, cut_from) = match last {
        Some(_) => {
            let (frames, chain) = sealed_prefix(&bytes, at).unwrap_or((Vec::new(), prev));
            if chain != prev || frames_end(&frames, first) != at {
                return Err(JournalError::Import(format!(
                    "cannot cut {name} at offset {at}: its records before the damage do not \
                     chain to the verified head; restore the segment from S3 instead"
                )));
            }
            (frames, 0)
        }
        None => {
            let end = raw_prefix_end(&bytes, first, at);
            (bytes.get(..end).unwrap_or_default().to_vec(), end)
        }
    };
    let cut_bytes = bytes.get(cut_from..).unwrap_or_default();
    bytes_cut += cut_bytes.len() as u64;
    quarantined.push(quarantine(
        storage,
        dir,
        &format!("{name}.cut-from-{at}"),
        cut_bytes,
    )?);
    if last.is_some() {
        remove.push(name.clone());
    }
    // At least: a damaged unsealed segment counts only the records decodable before a hole.
    let mut records_cut = records_after(&bytes, first, last, at);
    for (later_first, later_last, later) in all.iter().skip(index + 1) {
        let p = dir.join(later);
        let later_bytes = storage.read(&p).map_err(|e| JournalError::io(&p, e))?;
        bytes_cut += later_bytes.len() as u64;
        quarantined.push(quarantine(
            storage,
            dir,
            &format!("{later}.cut"),
            &later_bytes,
        )?);
        remove.push(later.clone());
        records_cut += records_after(&later_bytes, *later_first, *later_last, *later_first);
    }
    // Clean-close markers of the segments that change or go are stale after the cut.
    for (seg_first, _, _) in all.iter().skip(index) {
        let marker = names::closed(*seg_first);
        if storage.exists(&dir.join(&marker)) {
            remove.push(marker);
        }
    }
    // The note, chained after the last kept record, at the first cut offset.
    let last_ts = last_ts_of(&kept);
    let payload = note(damage, bytes_cut, quarantined.first().map(PathBuf::as_path));
    let ts = crate::timestamp::now_us().max(last_ts.unwrap_or(i64::MIN));
    encode_frame(
        &mut kept,
        &prev,
        at,
        ts,
        super::record::CURRENT_SCHEMA_VERSION,
        &payload,
    );
    let target = names::raw(first);
    let tmp = names::temp(&target);
    write_durably(storage, dir, &tmp, &kept)?;
    let intent = Intent {
        format: 1,
        remove,
        install: (tmp, target),
    };
    let text = serde_json::to_vec(&intent).map_err(|e| JournalError::Import(e.to_string()))?;
    let intent_tmp = format!("{INTENT_FILE}.tmp");
    write_durably(storage, dir, &intent_tmp, &text)?;
    storage
        .rename(&dir.join(&intent_tmp), &dir.join(INTENT_FILE))
        .map_err(|e| JournalError::io(dir.join(INTENT_FILE), e))?;
    sync_dir(storage, dir)?;
    finish_intent(storage, dir)?;
    Ok(CutReport {
        damage: damage.clone(),
        records_cut,
        bytes_cut,
        quarantine: quarantined,
        note_offset: at,
    })
}

/// Writes `bytes` to `dir/name` and fsyncs it (not the directory).
fn write_durably(storage: &dyn Storage, dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    let io = |e| JournalError::io(&path, e);
    let mut file = storage.create(&path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Applies a committed intent, if `dir` holds one (idempotent; see the module docs).
pub(crate) fn finish_intent(storage: &dyn Storage, dir: &Path) -> Result<()> {
    let path = dir.join(INTENT_FILE);
    if !storage.exists(&path) {
        return Ok(());
    }
    let text = storage
        .read(&path)
        .map_err(|e| JournalError::io(&path, e))?;
    let intent: Intent = serde_json::from_slice(&text).map_err(|e| {
        JournalError::Import(format!("{} is not a repair intent: {e}", path.display()))
    })?;
    for name in &intent.remove {
        let p = dir.join(name);
        if storage.exists(&p) {
            storage
                .remove_file(&p)
                .map_err(|e| JournalError::io(&p, e))?;
        }
    }
    let (tmp, target) = (dir.join(&intent.install.0), dir.join(&intent.install.1));
    if storage.exists(&tmp) {
        storage
            .rename(&tmp, &target)
            .map_err(|e| JournalError::io(&target, e))?;
    }
    sync_dir(storage, dir)?;
    storage
        .remove_file(&path)
        .map_err(|e| JournalError::io(&path, e))?;
    sync_dir(storage, dir)
}

/// Whether `dir` holds an unfinished repair (read-only opens refuse such a directory).
pub(crate) fn intent_pending(storage: &dyn Storage, dir: &Path) -> bool {
    storage.exists(&dir.join(INTENT_FILE))
}

/// The records of a sealed segment before `at` that verify (blocks before the damaged one
/// entirely; in the damaged block, those before `at` whose hash prefixes check), re-encoded as
/// frames chained from the segment's `prev_hash`; and the chain hash after them.
fn sealed_prefix(bytes: &[u8], at: u64) -> Option<(Vec<u8>, [u8; 32])> {
    let footer = decode_footer_from_file_bytes(bytes).ok()?;
    let mut records = Vec::new();
    for (i, entry) in footer.blocks.iter().enumerate() {
        if entry.first_offset >= at {
            break;
        }
        let start = usize::try_from(entry.file_pos).ok()?;
        let Some(compressed) = start
            .checked_add(entry.compressed_len as usize)
            .and_then(|end| bytes.get(start..end))
        else {
            break;
        };
        let Ok(raw) = decompress_block(compressed, entry) else {
            break;
        };
        if decode_block_into(&raw, entry, &footer.prev_hash_of_block(i), &mut records).is_err() {
            break;
        }
    }
    records.retain(|r| r.offset < at);
    let mut frames = Vec::new();
    let mut chain = footer.prev_hash;
    for (i, r) in records.iter().enumerate() {
        if r.offset != footer.first_offset + i as u64 {
            break;
        }
        let hash = encode_frame(
            &mut frames,
            &chain,
            r.offset,
            r.ts_us,
            r.schema_version,
            &r.payload,
        );
        if hash != r.hash {
            return None;
        }
        chain = hash;
    }
    Some((frames, chain))
}

/// The byte position in an unsealed segment where the frame of offset `at` starts (the end of
/// the whole frames before it).
fn raw_prefix_end(bytes: &[u8], first: u64, at: u64) -> usize {
    whole_frames(bytes, first, Some(at)).0
}

/// The end of the whole, consecutive frames of `bytes` starting at offset `first` (stopping
/// before offset `stop`), and the offset after them.
fn whole_frames(bytes: &[u8], first: u64, stop: Option<u64>) -> (usize, u64) {
    let mut pos = 0usize;
    let mut next = first;
    while stop.is_none_or(|stop| next < stop) {
        let Some(rest) = bytes.get(pos..).filter(|r| !r.is_empty()) else {
            break;
        };
        match decode_frame(rest, super::record::PAYLOAD_BYTES_MAX) {
            Ok((frame, used)) if frame.offset == next => {
                pos += used;
                next += 1;
            }
            _ => break,
        }
    }
    (pos, next)
}

/// Records of a segment (`last`: sealed) at or after `at`; for an unsealed one, those that
/// decode before the first bad frame, and at least the damaged one.
fn records_after(bytes: &[u8], first: u64, last: Option<u64>, at: u64) -> u64 {
    match last {
        Some(last) => (last + 1).saturating_sub(at),
        None => whole_frames(bytes, first, None)
            .1
            .saturating_sub(at)
            .max(u64::from(at >= first)),
    }
}

/// The offset after the last whole frame of `frames` (unsealed format) starting at `first`.
fn frames_end(frames: &[u8], first: u64) -> u64 {
    whole_frames(frames, first, None).1
}

/// The timestamp of the last frame in `frames` (unsealed format), if any.
fn last_ts_of(frames: &[u8]) -> Option<i64> {
    let mut pos = 0usize;
    let mut last = None;
    while let Some(rest) = frames.get(pos..).filter(|r| !r.is_empty()) {
        match decode_frame(rest, super::record::PAYLOAD_BYTES_MAX) {
            Ok((frame, used)) => {
                last = Some(frame.ts_us);
                pos += used;
            }
            Err(_) => break,
        }
    }
    last
}

/// Replaces the damaged sealed segment of the same offsets with `segment` (verified), after
/// checking that its chain links with both neighbours; see the module docs.
pub fn replace_sealed(
    dir: &Path,
    config: &JournalConfig,
    segment: &VerifiedSegment,
) -> Result<ReplaceReport> {
    let storage = config.storage.as_ref();
    let _lock = storage.lock(dir)?;
    finish_intent(storage, dir)?;
    let footer = segment.footer();
    let (first, last) = (footer.first_offset, footer.last_offset);
    let all = segments(storage, dir)?;
    let index = all
        .iter()
        .position(|(f, l, _)| *f == first && *l == Some(last))
        .ok_or_else(|| {
            JournalError::Import(format!(
                "{} holds no sealed segment {first}..={last} to replace",
                dir.display()
            ))
        })?;
    let refuse = |why: String| Err(JournalError::Import(why));
    // The link before: the previous segment's last hash (genesis at offset 0).
    let before = match index.checked_sub(1).and_then(|i| all.get(i)) {
        None => GENESIS_HASH,
        Some((_, Some(_), name)) => files::read_footer(storage, &dir.join(name))?.last_hash,
        Some((f, None, name)) => last_hash_of_raw(storage, &dir.join(name), *f)?,
    };
    if footer.prev_hash != before {
        return refuse(format!(
            "the replacement for {first}..={last} does not link to the segment before it"
        ));
    }
    // The link after: the next segment's first record must chain from our last hash.
    match all.get(index + 1) {
        None => {}
        Some((_, Some(_), name))
            if files::read_footer(storage, &dir.join(name))?.prev_hash != footer.last_hash =>
        {
            return refuse(format!(
                "the replacement for {first}..={last} does not link to {name} after it"
            ));
        }
        Some((_, Some(_), _)) => {}
        Some((f, None, name)) => {
            let p = dir.join(name);
            let bytes = storage.read(&p).map_err(|e| JournalError::io(&p, e))?;
            if let Ok((frame, _)) = decode_frame(&bytes, super::record::PAYLOAD_BYTES_MAX) {
                let expect = super::record::chain_hash(
                    &footer.last_hash,
                    frame.offset,
                    frame.ts_us,
                    frame.schema_version,
                    frame.payload,
                );
                if frame.offset != *f || expect != frame.hash {
                    return refuse(format!(
                        "the replacement for {first}..={last} does not link to {name} after it"
                    ));
                }
            }
        }
    }
    let name = names::sealed(first, last);
    let path = dir.join(&name);
    let damaged = storage
        .read(&path)
        .map_err(|e| JournalError::io(&path, e))?;
    let kept = quarantine(storage, dir, &format!("{name}.replaced"), &damaged)?;
    let tmp = names::temp(&name);
    write_durably(storage, dir, &tmp, segment.bytes())?;
    storage
        .rename(&dir.join(&tmp), &path)
        .map_err(|e| JournalError::io(&path, e))?;
    sync_dir(storage, dir)?;
    Ok(ReplaceReport {
        segment: path,
        quarantine: kept,
    })
}

/// The chain hash of the last whole frame of an unsealed segment.
fn last_hash_of_raw(storage: &dyn Storage, path: &Path, first: u64) -> Result<[u8; 32]> {
    let bytes = storage.read(path).map_err(|e| JournalError::io(path, e))?;
    let mut pos = 0usize;
    let mut hash = None;
    let mut next = first;
    while let Some(rest) = bytes.get(pos..).filter(|r| !r.is_empty()) {
        match decode_frame(rest, super::record::PAYLOAD_BYTES_MAX) {
            Ok((frame, used)) if frame.offset == next => {
                hash = Some(frame.hash);
                pos += used;
                next += 1;
            }
            _ => break,
        }
    }
    hash.ok_or_else(|| {
        JournalError::Damaged(Damage {
            offset: first,
            segment: path.to_path_buf(),
            kind: DamageKind::Frame("no whole record to link to".into()),
        })
    })
}
