//! The sealer thread: turns rolled unsealed segments into sealed ones, off the append path.
//!
//! Steps, each crash-safe: decode every frame of the rolled file (checksums, dense offsets);
//! write the records with their *stored* chain hashes (the flusher computed them moments ago and
//! the CRC shows they are intact, so BLAKE3 is not paid twice on the ingest path; and a record
//! edited in the window would carry a stale hash into the sealed segment, where readers and
//! `verify`, which recompute the chain, catch it: sealing never launders an edit); write `first-last.seg.zst.tmp`; fsync it; rename to `first-last.seg.zst`;
//! fsync the directory; swap the catalog entry; delete the unsealed file; fsync the directory.
//! A crash at any point leaves either the unsealed file (sealed again on open) or both (the
//! unsealed one is deleted on open, since the rename only happens after the fsync).
//! A segment that fails to seal (an I/O error, damage, a panic) stays unsealed and readable,
//! and fails the journal: appends are refused with the cause, every waiter is woken, and the
//! next open seals it again. The sealed watermark advances after each seal, waking shippers.

use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, OnceLock};

use super::catalog::SegmentState;
use super::error::{Damage, DamageKind, JournalError, Result};
use super::names;
use super::record::decode_frame;
use super::segment::SegmentBuilder;
use super::shared::Shared;
use super::storage::{FileWriter, sync_dir};

/// Rolled segments that may wait for the sealer before rolling blocks the flusher.
pub const SEAL_QUEUE: usize = 4;

/// A rolled segment to seal.
#[derive(Debug, Clone)]
pub(crate) struct SealJob {
    pub first: u64,
    pub last: u64,
    pub path: PathBuf,
    pub bytes: u64,
    pub prev_hash: [u8; 32],
}

/// Runs until the job channel closes (after the flusher has exited) or a seal fails (which
/// fails the journal; see the module docs).
pub(crate) fn run(shared: Arc<Shared>, jobs: Receiver<SealJob>) {
    for job in jobs {
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| seal(&shared, &job)));
        let failure = match outcome {
            Ok(Ok(())) => {
                shared.stats.segment_sealed();
                shared.advance_sealed();
                super::quietly(|| tracing::debug!(first = job.first, last = job.last, "sealed"));
                continue;
            }
            Ok(Err(error)) => error.to_string(),
            Err(panic) => format!(
                "the sealer thread panicked: {}",
                super::panic_message(panic.as_ref())
            ),
        };
        shared.fail(&format!(
            "sealing {} failed (it stays unsealed and readable, and is sealed again on the \
             next open): {failure}",
            job.path.display()
        ));
        return;
    }
}

fn seal(shared: &Shared, job: &SealJob) -> Result<()> {
    let dir = &shared.dir;
    let storage = shared.config.storage.as_ref();
    let raw = storage
        .read(&job.path)
        .map_err(|e| JournalError::io(&job.path, e))?;
    let raw = raw.get(..job.bytes as usize).unwrap_or(&raw);
    let tmp = dir.join(names::sealed_temp(job.first, job.last));
    let mut out = storage
        .create(&tmp)
        .map_err(|e| JournalError::io(&tmp, e))?;
    let io = |e| JournalError::io(&tmp, e);
    let mut builder = SegmentBuilder::new(
        BufWriter::with_capacity(1 << 20, FileWriter(out.as_mut())),
        job.first,
        job.prev_hash,
        shared.config.block_bytes,
        shared.config.compression_level,
    )
    .map_err(io)?;
    let damage = |offset, kind| {
        let _ = storage.remove_file(&tmp);
        JournalError::Damaged(Damage {
            offset,
            segment: job.path.clone(),
            kind,
        })
    };
    let mut pos = 0usize;
    let mut expected = job.first;
    while let Some(rest) = raw.get(pos..).filter(|r| !r.is_empty()) {
        let (frame, used) = decode_frame(rest, super::record::PAYLOAD_BYTES_MAX)
            .map_err(|e| damage(expected, e.damage()))?;
        if frame.offset != expected {
            return Err(damage(
                expected,
                DamageKind::OffsetSequence {
                    expected,
                    found: frame.offset,
                },
            ));
        }
        builder
            .push_hashed(
                frame.offset,
                frame.ts_us,
                frame.schema_version,
                frame.payload,
                frame.hash,
            )
            .map_err(|_| damage(expected, DamageKind::TimeOrder))?;
        pos += used;
        expected += 1;
    }
    if expected != job.last + 1 {
        return Err(damage(
            expected,
            DamageKind::Frame("segment ends early".into()),
        ));
    }
    let (footer, writer) = builder.finish().map_err(io)?;
    writer.into_inner().map_err(|e| io(e.into_error()))?;
    out.sync_all().map_err(io)?;
    drop(out);
    let sealed = dir.join(names::sealed(job.first, job.last));
    storage
        .rename(&tmp, &sealed)
        .map_err(|e| JournalError::io(&sealed, e))?;
    sync_dir(storage, dir)?;
    {
        let mut catalog = shared.catalog_mut();
        if let Some(entry) = catalog.entry_mut(job.first) {
            let cell = Arc::new(OnceLock::new());
            let _ = cell.set(Arc::new(footer));
            entry.path = sealed;
            entry.state = SegmentState::Sealed {
                last: job.last,
                footer: cell,
            };
        }
    }
    storage
        .remove_file(&job.path)
        .map_err(|e| JournalError::io(&job.path, e))?;
    sync_dir(storage, dir)?;
    Ok(())
}
