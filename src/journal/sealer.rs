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
//! A segment that fails to seal stays unsealed and readable; the failure is logged.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, OnceLock, PoisonError};

use super::catalog::SegmentState;
use super::error::{Damage, DamageKind, JournalError, Result};
use super::names;
use super::record::decode_frame;
use super::segment::SegmentBuilder;
use super::writer::{Shared, sync_dir};

/// Rolled segments that may wait for the sealer before rolling blocks the flusher.
pub const SEAL_QUEUE: usize = 4;

/// A rolled segment to seal.
#[derive(Debug, Clone)]
pub struct SealJob {
    pub first: u64,
    pub last: u64,
    pub path: PathBuf,
    pub bytes: u64,
    pub prev_hash: [u8; 32],
}

/// Runs until the job channel closes (after the flusher has exited).
pub fn run(shared: Arc<Shared>, jobs: Receiver<SealJob>) {
    for job in jobs {
        let span = tracing::info_span!("seal", first = job.first, last = job.last);
        let _guard = span.enter();
        match seal(&shared, &job) {
            Ok(()) => tracing::debug!("sealed"),
            Err(error) => tracing::error!(%error, path = %job.path.display(),
                "sealing failed; the segment stays unsealed and readable"),
        }
    }
}

fn seal(shared: &Shared, job: &SealJob) -> Result<()> {
    let dir = &shared.dir;
    let raw = std::fs::read(&job.path).map_err(|e| JournalError::io(&job.path, e))?;
    let raw = raw.get(..job.bytes as usize).unwrap_or(&raw);
    let tmp = dir.join(names::sealed_temp(job.first, job.last));
    let out = File::create(&tmp).map_err(|e| JournalError::io(&tmp, e))?;
    let io = |e| JournalError::io(&tmp, e);
    let mut builder = SegmentBuilder::new(
        BufWriter::with_capacity(1 << 20, out),
        job.first,
        job.prev_hash,
        shared.config.block_bytes,
        shared.config.compression_level,
    )
    .map_err(io)?;
    let damage = |offset, kind| {
        let _ = std::fs::remove_file(&tmp);
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
    let file = writer.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    drop(file);
    let sealed = dir.join(names::sealed(job.first, job.last));
    std::fs::rename(&tmp, &sealed).map_err(|e| JournalError::io(&sealed, e))?;
    sync_dir(dir)?;
    {
        let mut catalog = shared
            .catalog
            .write()
            .unwrap_or_else(PoisonError::into_inner);
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
    std::fs::remove_file(&job.path).map_err(|e| JournalError::io(&job.path, e))?;
    sync_dir(dir)?;
    Ok(())
}
