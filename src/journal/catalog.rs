//! The in-memory list of segments shared by the writer, the sealer and readers.
//!
//! Invariants: entries are sorted by first offset and contiguous; only the last entry is the
//! active segment, the only one whose `bytes`/`next` grow; an unsealed entry's `bytes` always end
//! on a frame boundary and cover exactly the records below `next`. The flusher updates an entry
//! before it advances the `visible` watermark, so a reader that saw the watermark finds the bytes.
//! The sealer swaps a rolled unsealed entry for its sealed twin atomically under the write lock.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use super::segment::Footer;

/// A point in an unsealed segment from which frames can be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexPoint {
    /// Offset of the frame at `pos`.
    pub offset: u64,
    /// Byte position of that frame in the file.
    pub pos: u64,
    /// Chain hash of the record before it.
    pub prev_hash: [u8; 32],
}

/// Lazily loaded, immutable footer of a sealed segment.
pub type FooterCell = Arc<OnceLock<Arc<Footer>>>;

/// One segment as the catalog knows it.
#[derive(Debug, Clone)]
pub enum SegmentState {
    /// Sealed: immutable, compressed.
    Sealed {
        /// Last offset held.
        last: u64,
        /// The footer, once some reader loaded it.
        footer: FooterCell,
    },
    /// Unsealed: the active segment, or one rolled and waiting for the sealer.
    Raw {
        /// Exclusive end of the committed records in it.
        next: u64,
        /// Committed length in bytes.
        bytes: u64,
        /// Sparse index of frame positions (first frame always included when non-empty).
        index: Arc<Vec<IndexPoint>>,
    },
}

/// A catalog entry.
#[derive(Debug, Clone)]
pub struct SegmentEntry {
    /// First offset of the segment.
    pub first: u64,
    /// Its file.
    pub path: PathBuf,
    /// Sealed or not.
    pub state: SegmentState,
}

impl SegmentEntry {
    /// Exclusive end offset of the committed records in this segment.
    pub fn end(&self) -> u64 {
        match &self.state {
            SegmentState::Sealed { last, .. } => last + 1,
            SegmentState::Raw { next, .. } => *next,
        }
    }
}

/// See the module documentation.
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    /// Segments in offset order.
    pub segments: Vec<SegmentEntry>,
}

impl Catalog {
    /// The segment holding `offset`, if any committed segment does.
    pub fn locate(&self, offset: u64) -> Option<&SegmentEntry> {
        let i = self.segments.partition_point(|s| s.first <= offset);
        let entry = self.segments.get(i.checked_sub(1)?)?;
        (offset < entry.end()).then_some(entry)
    }

    /// The entry starting at `first`.
    pub fn entry_mut(&mut self, first: u64) -> Option<&mut SegmentEntry> {
        let i = self
            .segments
            .binary_search_by_key(&first, |s| s.first)
            .ok()?;
        self.segments.get_mut(i)
    }

    /// The committed byte length of the unsealed segment starting at `first`, if still unsealed.
    pub fn raw_bytes(&self, first: u64) -> Option<u64> {
        let i = self
            .segments
            .binary_search_by_key(&first, |s| s.first)
            .ok()?;
        match self.segments.get(i)?.state {
            SegmentState::Raw { bytes, .. } => Some(bytes),
            SegmentState::Sealed { .. } => None,
        }
    }
}
