//! The directory backend: `<data>/journal/` (or a journal directory given directly) opened read-only (no lock, nothing written), so it
//! runs beside a live writer and sees the records committed when it opened.
//!
//! Sealed segments are read with positioned reads: the trailer and footer first (two small
//! reads), then only the blocks a range needs; the unsealed tail through the journal's own
//! [`Reader`], which verifies frames and the chain.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use logbook::journal::record::PAYLOAD_BYTES_MAX;
use logbook::journal::segment::{self, Footer, FooterReadError};
use logbook::journal::{Journal, JournalConfig, SealedSegment, StartAt, verify_dir};

use super::{
    Chunk, SealedChunk, SegmentBytes, VerifyOutcome, after_range, before_range, select_blocks,
};
use crate::error::{ReplayError, Result};
use crate::point::Range;

/// A data directory's journal.
#[derive(Debug)]
pub struct DirSource {
    dir: PathBuf,
    journal: Journal,
    sealed: Vec<SealedSegment>,
}

impl DirSource {
    /// Opens `data/journal` read-only; a missing journal is bad input.
    pub fn open(data: PathBuf) -> Result<DirSource> {
        let nested = data.join("journal");
        // A journal directory itself (e.g. a kept fixture) is accepted too.
        let is_journal = |d: &Path| {
            std::fs::read_dir(d).is_ok_and(|entries| {
                entries.flatten().any(|e| {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    name.ends_with(".seg.zst") || name.ends_with(".log")
                })
            })
        };
        let dir = if !nested.is_dir() && is_journal(&data) {
            data.clone()
        } else {
            nested
        };
        if !dir.is_dir() {
            return Err(ReplayError::BadInput(format!(
                "no journal at {} (SOURCE is a data directory holding journal/, or \
                 s3://bucket/prefix)",
                dir.display()
            )));
        }
        let journal = Journal::open_read_only(&dir, JournalConfig::default())?;
        let sealed = journal.sealed_segments();
        Ok(DirSource {
            dir,
            journal,
            sealed,
        })
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn end(&self) -> u64 {
        self.journal.next_offset()
    }

    pub(super) fn chunks<'a>(
        &'a self,
        range: &Range,
    ) -> Result<Box<dyn Iterator<Item = Result<Chunk>> + 'a>> {
        let range = *range;
        let end = self.end();
        let sealed_end = self.sealed.last().map_or(0, |s| s.last + 1).min(end);
        let first = range.first_offset();
        let sealed = self
            .sealed
            .iter()
            .filter(move |s| s.last >= first && s.first < end)
            .map(move |s| sealed_chunk(s, &range));
        // The tail: records after the last sealed segment (if the range reaches them).
        let tail_start = sealed_end.max(first);
        let tail_needed = match range.until {
            Some(crate::point::Point::Offset(o)) => o >= tail_start,
            _ => true,
        };
        let tail = (tail_start < end && tail_needed).then(|| {
            self.journal
                .reader(StartAt::Offset(tail_start))
                .map(|r| Chunk::Tail(Box::new(r)))
                .map_err(ReplayError::from)
        });
        Ok(Box::new(StopAfter::new(sealed, range).chain(tail)))
    }

    pub(super) fn verify(&self) -> Result<VerifyOutcome> {
        let report = verify_dir(&self.dir, PAYLOAD_BYTES_MAX, &mut |_| {})?;
        Ok(VerifyOutcome {
            records: report.records,
            head_hash: report.head_hash,
            damage: report.damage.map(|d| d.to_string()),
        })
    }
}

/// Stops the sealed chunks after the first one past the range's end (the rest are later).
struct StopAfter<I> {
    inner: I,
    range: Range,
    done: bool,
}

impl<I> StopAfter<I> {
    fn new(inner: I, range: Range) -> StopAfter<I> {
        StopAfter {
            inner,
            range,
            done: false,
        }
    }
}

impl<I: Iterator<Item = Result<Option<Chunk>>>> Iterator for StopAfter<I> {
    type Item = Result<Chunk>;

    fn next(&mut self) -> Option<Result<Chunk>> {
        loop {
            if self.done {
                return None;
            }
            match self.inner.next()? {
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Ok(None) => continue,
                Ok(Some(Chunk::Sealed(c))) => {
                    if after_range(&c.footer, &self.range) {
                        self.done = true;
                        return None;
                    }
                    return Some(Ok(Chunk::Sealed(c)));
                }
                Ok(Some(tail)) => return Some(Ok(tail)),
            }
        }
    }
}

/// Opens a sealed segment and reads its footer; `None` if the range needs none of its blocks.
fn sealed_chunk(segment: &SealedSegment, range: &Range) -> Result<Option<Chunk>> {
    let name: Arc<str> = segment.path.display().to_string().into();
    let damaged = |why: String| ReplayError::Damaged(format!("{name}: {why}"));
    let file = File::open(&segment.path).map_err(|e| damaged(e.to_string()))?;
    let footer = read_footer(&file).map_err(damaged)?;
    if footer.first_offset != segment.first || footer.last_offset != segment.last {
        return Err(damaged(format!(
            "its footer holds {}..={}, its name says {}..={}",
            footer.first_offset, footer.last_offset, segment.first, segment.last
        )));
    }
    if before_range(&footer, range) {
        return Ok(None);
    }
    let blocks = select_blocks(&footer, range);
    Ok(Some(Chunk::Sealed(SealedChunk {
        name,
        footer: Arc::new(footer),
        bytes: SegmentBytes::File(Arc::new(file)),
        blocks,
    })))
}

/// Reads a sealed segment's footer through the journal's one footer reader (two positioned
/// reads: the trailer, then the footer, its CRC-32C checked).
fn read_footer(file: &File) -> Result<Footer, String> {
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut read_at = |buf: &mut [u8], pos: u64| file.read_exact_at(buf, pos);
    segment::read_footer(len, &mut read_at).map_err(|e| match e {
        FooterReadError::Io(e) => e.to_string(),
        FooterReadError::Damaged(kind) => kind.to_string(),
    })
}
