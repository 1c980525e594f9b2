//! Where records come from: a data directory (`<data>/journal/`) or an S3 prefix
//! (`s3://bucket/prefix`, streamed segment by segment, never restored to disk).
//!
//! Both backends hand the scanner ([`crate::scan`]) the same thing: a sequence of [`Chunk`]s in
//! offset order, each either a sealed segment (its footer and a way to read its blocks) or, for
//! a directory, the unsealed tail (a journal [`Reader`]). Only the chunks and blocks a range
//! needs are produced: footers (read with two small reads per file, or from the S3 listing's
//! names) select them, the block index narrows each one.
//!
//! Invariants: chunks come in offset order, without gap or overlap (S3 listings are checked for
//! contiguity from 0 before anything is read); every block is verified by the scanner (CRC,
//! every record's chain prefix, the block's end hash), and consecutive sealed chunks must chain
//! (`footer.prev_hash == previous footer.last_hash`), so a scan never yields an unverified
//! record. The chain into the first chunk of a range starting mid-journal is not re-checked
//! there: `verify` checks the whole chain.

mod dir;
mod s3;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use logbook::journal::Reader;
use logbook::journal::segment::{BlockEntry, Footer};

use crate::error::{ReplayError, Result};
use crate::point::{Point, Range};

pub use dir::DirSource;
pub use s3::S3Source;

/// A journal to replay.
#[derive(Debug)]
pub enum Source {
    /// A data directory holding `journal/`.
    Dir(DirSource),
    /// An S3 prefix the shipper writes to.
    S3(S3Source),
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOutcome {
    /// Records checked and found good.
    pub records: u64,
    /// Chain hash of the last good record.
    pub head_hash: [u8; 32],
    /// The first damage found, described with its offset and file or object.
    pub damage: Option<String>,
}

impl Source {
    /// Opens `text`: `s3://bucket/prefix`, or a data directory holding `journal/`.
    pub fn open(text: &str) -> Result<Source> {
        if text.starts_with("s3://") {
            Ok(Source::S3(S3Source::open(text)?))
        } else {
            Ok(Source::Dir(DirSource::open(PathBuf::from(text))?))
        }
    }

    /// The offset after the last record (= the number of records).
    pub fn end(&self) -> u64 {
        match self {
            Source::Dir(d) => d.end(),
            Source::S3(s) => s.end(),
        }
    }

    /// The chunks holding `range`, in offset order.
    pub(crate) fn chunks<'a>(
        &'a self,
        range: &Range,
    ) -> Result<Box<dyn Iterator<Item = Result<Chunk>> + 'a>> {
        match self {
            Source::Dir(d) => d.chunks(range),
            Source::S3(s) => s.chunks(range),
        }
    }

    /// Verifies everything: frames, blocks, footers and the chain end to end.
    pub fn verify(&self) -> Result<VerifyOutcome> {
        match self {
            Source::Dir(d) => d.verify(),
            Source::S3(s) => s.verify(),
        }
    }
}

/// Where a sealed segment's bytes are.
#[derive(Debug, Clone)]
pub(crate) enum SegmentBytes {
    /// A local file, read block by block (positioned reads, shared between workers).
    File(Arc<File>),
    /// A downloaded object held whole.
    Memory(Arc<Vec<u8>>),
}

impl SegmentBytes {
    /// The compressed bytes of one block.
    pub(crate) fn block(&self, entry: &BlockEntry, name: &str) -> Result<Vec<u8>> {
        let len = entry.compressed_len as usize;
        let outside = || {
            ReplayError::Damaged(format!(
                "{name}: block at offset {} lies outside the segment",
                entry.first_offset
            ))
        };
        match self {
            SegmentBytes::File(file) => {
                let mut buf = vec![0u8; len];
                file.read_exact_at(&mut buf, entry.file_pos)
                    .map_err(|e| match e.kind() {
                        std::io::ErrorKind::UnexpectedEof => outside(),
                        _ => ReplayError::Damaged(format!("{name}: {e}")),
                    })?;
                Ok(buf)
            }
            SegmentBytes::Memory(bytes) => {
                let start = usize::try_from(entry.file_pos).map_err(|_| outside())?;
                start
                    .checked_add(len)
                    .and_then(|end| bytes.get(start..end))
                    .map(<[u8]>::to_vec)
                    .ok_or_else(outside)
            }
        }
    }
}

/// A sealed segment to read: its name (file or key), footer, bytes, and which blocks.
#[derive(Debug)]
pub(crate) struct SealedChunk {
    pub name: Arc<str>,
    pub footer: Arc<Footer>,
    pub bytes: SegmentBytes,
    pub blocks: std::ops::Range<usize>,
}

/// A piece of the journal to read, in offset order.
#[derive(Debug)]
pub(crate) enum Chunk {
    /// Blocks of a sealed segment.
    Sealed(SealedChunk),
    /// The unsealed tail of a directory, from the reader's position.
    Tail(Box<Reader>),
}

/// The blocks of `footer` that may hold records of `range` (empty if none).
pub(crate) fn select_blocks(footer: &Footer, range: &Range) -> std::ops::Range<usize> {
    let n = footer.blocks.len();
    let start = match range.from {
        None => 0,
        Some(Point::Offset(o)) if o <= footer.first_offset => 0,
        Some(Point::Offset(o)) => footer.block_for_offset(o).unwrap_or(n),
        Some(Point::Time(t)) => footer.block_for_time(t).unwrap_or(n),
    };
    let end = match range.until {
        None => n,
        Some(Point::Offset(o)) => footer.blocks.partition_point(|b| b.first_offset <= o),
        Some(Point::Time(t)) => footer.blocks.partition_point(|b| b.first_ts <= t),
    };
    start..end.max(start)
}

/// Whether a sealed segment with `footer` lies wholly before `range`.
pub(crate) fn before_range(footer: &Footer, range: &Range) -> bool {
    match range.from {
        None => false,
        Some(Point::Offset(o)) => footer.last_offset < o,
        Some(Point::Time(t)) => footer.last_ts < t,
    }
}

/// Whether a sealed segment with `footer` lies wholly after `range`.
pub(crate) fn after_range(footer: &Footer, range: &Range) -> bool {
    match range.until {
        None => false,
        Some(Point::Offset(o)) => footer.first_offset > o,
        Some(Point::Time(t)) => footer.first_ts > t,
    }
}

/// Lowercase hex of a hash.
pub fn hex(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}
