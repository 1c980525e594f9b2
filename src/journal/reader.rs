//! Readers: iterate committed records from any offset or time, across sealed and unsealed
//! segments, and wait for new ones.
//!
//! Invariants: a reader never returns a record at or beyond the `visible` watermark (so never an
//! uncommitted one); it returns offsets strictly in sequence, each once, whatever seals or rolls
//! happen meanwhile; every record it returns was verified: in a sealed segment, its whole block
//! (hash prefixes, count, end hash); in an unsealed one, the frame checksum and the chain link
//! from the previous record (index points carry the previous hash). A damaged record ends the
//! read with [`JournalError::Damaged`]; it is never skipped.
//! Reading from offset N in a sealed segment decompresses only the block holding N.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::catalog::{FooterCell, SegmentEntry, SegmentState};
use super::error::{Damage, DamageKind, JournalError, Result};
use super::files::{read_footer, sealed_twin};
use super::record::{Record, chain_hash, decode_frame};
use super::segment::{Footer, decode_block, decompress_block};
use super::shared::Shared;
use super::storage::StorageFile;

/// Where a reader starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The first record.
    Earliest,
    /// After the last committed record: only new records.
    Latest,
    /// At this offset (may equal the next offset to be written).
    Offset(u64),
    /// At the first record whose timestamp (µs since epoch) is at or after this.
    Time(i64),
}

/// Bytes read from an unsealed segment per read call.
const RAW_READ_BYTES: usize = 256 << 10;

/// Reads records in offset order; see the module docs.
#[derive(Debug)]
pub struct Reader {
    shared: Arc<Shared>,
    next: u64,
    /// The anchor after the last record returned (`None` before the first, unless at 0).
    last: Option<super::Anchor>,
    block: VecDeque<Record>,
    sealed_file: Option<(u64, Box<dyn StorageFile>)>,
    raw: Option<RawCursor>,
}

#[derive(Debug)]
struct RawCursor {
    first: u64,
    path: PathBuf,
    file: Box<dyn StorageFile>,
    /// File position of `buf[0]`.
    buf_pos: u64,
    buf: Vec<u8>,
    /// Index into `buf` of the next frame.
    at: usize,
    /// Offset of the next frame.
    next: u64,
    prev_hash: [u8; 32],
}

impl Reader {
    pub(crate) fn new(shared: Arc<Shared>, start: StartAt) -> Result<Reader> {
        let end = shared.visible.get();
        let next = match start {
            StartAt::Earliest => 0,
            StartAt::Latest => end,
            StartAt::Offset(offset) if offset <= end => offset,
            StartAt::Offset(offset) => {
                return Err(JournalError::OffsetBeyondEnd { offset, next: end });
            }
            StartAt::Time(_) => 0,
        };
        let mut reader = Reader {
            shared,
            next,
            last: None,
            block: VecDeque::new(),
            sealed_file: None,
            raw: None,
        };
        if let StartAt::Time(ts) = start {
            reader.next = reader.seek_time(ts)?;
        }
        Ok(reader)
    }

    /// The offset the next record returned will have.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// The anchor at [`Reader::position`] (next offset and the chain hash before it), if this
    /// reader knows it without a read: after it returned a record, or at offset 0.
    pub fn anchor(&self) -> Option<super::Anchor> {
        match self.last {
            Some(anchor) if anchor.next_offset == self.next => Some(anchor),
            _ if self.next == 0 => Some(super::Anchor::GENESIS),
            _ => None,
        }
    }

    /// The anchor at `next_offset` of this reader's journal (reads the record before it).
    pub fn anchor_at(&self, next_offset: u64) -> Result<super::Anchor> {
        if let Some(anchor) = self.anchor().filter(|a| a.next_offset == next_offset) {
            return Ok(anchor);
        }
        if next_offset == 0 {
            return Ok(super::Anchor::GENESIS);
        }
        let mut reader = Reader::new(self.shared.clone(), StartAt::Offset(next_offset - 1))?;
        match reader.next()? {
            Some(record) => Ok(super::Anchor::after(&record)),
            None => Err(JournalError::OffsetBeyondEnd {
                offset: next_offset,
                next: self.shared.visible.get(),
            }),
        }
    }

    /// The next committed record, or `None` if the reader has caught up.
    #[expect(
        clippy::should_implement_trait,
        reason = "fallible, and waits are separate"
    )]
    pub fn next(&mut self) -> Result<Option<Record>> {
        if self.next >= self.shared.visible.get() {
            return Ok(None);
        }
        for _attempt in 0..8 {
            if let Some(record) = self.take_buffered()? {
                self.next += 1;
                self.last = Some(super::Anchor::after(&record));
                return Ok(Some(record));
            }
            self.reposition()?;
        }
        // Each reposition either fills a buffer or finds the segment moved (sealed) under us;
        // eight in a row without progress means the catalog is inconsistent.
        Err(self.damage(
            self.next,
            PathBuf::from("(catalog)"),
            DamageKind::Frame("committed record not found in any segment".into()),
        ))
    }

    /// Waits up to `deadline` for the next record; `Ok(None)` on timeout.
    pub fn next_blocking(&mut self, deadline: Option<Instant>) -> Result<Option<Record>> {
        loop {
            if let Some(record) = self.next()? {
                return Ok(Some(record));
            }
            if !self.shared.visible.wait(self.next + 1, deadline) {
                if self.shared.visible.is_closed() && self.shared.visible.get() <= self.next {
                    return Err(self.shared.stopped_error());
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(None);
                }
            }
        }
    }

    /// Waits (asynchronously) for the next record. Errors once the journal is closed and every
    /// committed record has been read.
    pub async fn next_async(&mut self) -> Result<Record> {
        loop {
            if let Some(record) = self.next()? {
                return Ok(record);
            }
            if !self.shared.visible.wait_async(self.next + 1).await
                && self.shared.visible.get() <= self.next
            {
                return Err(self.shared.stopped_error());
            }
        }
    }

    fn damage(&self, offset: u64, segment: PathBuf, kind: DamageKind) -> JournalError {
        JournalError::Damaged(Damage {
            offset,
            segment,
            kind,
        })
    }

    fn take_buffered(&mut self) -> Result<Option<Record>> {
        while self.block.front().is_some_and(|r| r.offset < self.next) {
            self.block.pop_front();
        }
        if self.block.front().is_some_and(|r| r.offset == self.next) {
            return Ok(self.block.pop_front());
        }
        self.block.clear();
        let limit = super::record::PAYLOAD_BYTES_MAX;
        let Some(cursor) = self.raw.as_mut().filter(|c| c.next == self.next) else {
            self.raw = None;
            return Ok(None);
        };
        let committed = {
            let catalog = self.shared.catalog();
            catalog.raw_bytes(cursor.first)
        };
        // A segment that was sealed meanwhile is complete: its file (still open) is final.
        let committed = match committed {
            Some(bytes) => bytes,
            None => cursor
                .file
                .len()
                .map_err(|e| JournalError::io(&cursor.path, e))?,
        };
        match cursor.read_frame(committed, limit)? {
            Some(record) => Ok(Some(record)),
            None => {
                self.raw = None;
                Ok(None)
            }
        }
    }

    /// Points the buffers at the segment holding `self.next`.
    fn reposition(&mut self) -> Result<()> {
        let entry = {
            let catalog = self.shared.catalog();
            catalog.locate(self.next).cloned()
        };
        let Some(entry) = entry else {
            return Ok(());
        };
        match entry.state {
            SegmentState::Sealed { footer, .. } => {
                self.load_block(entry.first, &entry.path, &footer)
            }
            SegmentState::Raw { index, .. } => {
                let i = index.partition_point(|p| p.offset <= self.next);
                let Some(point) = i.checked_sub(1).and_then(|i| index.get(i)) else {
                    return Ok(());
                };
                let file = match self.shared.config.storage.open_read(&entry.path) {
                    Ok(file) => file,
                    // Sealed and removed since we looked. A writer's own catalog already says so;
                    // a read-only snapshot learns it here, so the next reposition finds the twin.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return self.adopt_sealed_twin(entry.first, e);
                    }
                    Err(e) => return Err(JournalError::io(&entry.path, e)),
                };
                self.raw = Some(RawCursor {
                    first: entry.first,
                    path: entry.path,
                    file,
                    buf_pos: point.pos,
                    buf: Vec::new(),
                    at: 0,
                    next: point.offset,
                    prev_hash: point.prev_hash,
                });
                // Skip forward to `self.next` within the segment.
                let limit = super::record::PAYLOAD_BYTES_MAX;
                while let Some(cursor) = self.raw.as_mut().filter(|c| c.next < self.next) {
                    let committed = self.shared.catalog().raw_bytes(cursor.first);
                    let committed = match committed {
                        Some(c) => c,
                        None => cursor
                            .file
                            .len()
                            .map_err(|e| JournalError::io(&cursor.path, e))?,
                    };
                    if cursor.read_frame(committed, limit)?.is_none() {
                        self.raw = None;
                    }
                }
                Ok(())
            }
        }
    }

    fn adopt_sealed_twin(&self, first: u64, gone: std::io::Error) -> Result<()> {
        let storage = self.shared.config.storage.as_ref();
        let mut catalog = self.shared.catalog_mut();
        let Some(entry) = catalog.entry_mut(first) else {
            return Ok(());
        };
        if matches!(entry.state, SegmentState::Sealed { .. }) {
            return Ok(());
        }
        let Some((last, twin)) = sealed_twin(storage, &self.shared.dir, first)? else {
            return Err(JournalError::io(&entry.path, gone));
        };
        entry.path = twin;
        entry.state = SegmentState::Sealed {
            last,
            footer: Arc::new(std::sync::OnceLock::new()),
        };
        Ok(())
    }

    fn footer(&self, path: &Path, cell: &FooterCell) -> Result<Arc<Footer>> {
        if let Some(footer) = cell.get() {
            return Ok(footer.clone());
        }
        let footer = Arc::new(read_footer(self.shared.config.storage.as_ref(), path)?);
        let _ = cell.set(footer.clone());
        Ok(footer)
    }

    fn load_block(&mut self, first: u64, path: &PathBuf, cell: &FooterCell) -> Result<()> {
        let footer = self.footer(path, cell)?;
        let Some(i) = footer.block_for_offset(self.next) else {
            return Err(self.damage(
                self.next,
                path.clone(),
                DamageKind::Footer("offset missing from the block index".into()),
            ));
        };
        self.fill_block(first, path, &footer, i)
    }

    fn fill_block(&mut self, first: u64, path: &PathBuf, footer: &Footer, i: usize) -> Result<()> {
        let Some(entry) = footer.blocks.get(i) else {
            return Ok(());
        };
        if self.sealed_file.as_ref().is_none_or(|(f, _)| *f != first) {
            let file = self
                .shared
                .config
                .storage
                .open_read(path)
                .map_err(|e| JournalError::io(path, e))?;
            self.sealed_file = Some((first, file));
        }
        let mut compressed = vec![0u8; entry.compressed_len as usize];
        if let Some((_, file)) = &self.sealed_file {
            file.read_exact_at(&mut compressed, entry.file_pos)
                .map_err(|e| JournalError::io(path, e))?;
        }
        let raw = decompress_block(&compressed, entry)
            .map_err(|kind| self.damage(entry.first_offset, path.clone(), kind))?;
        let records = decode_block(&raw, entry, &footer.prev_hash_of_block(i))
            .map_err(|(offset, kind)| self.damage(offset, path.clone(), kind))?;
        self.block = records.into();
        Ok(())
    }

    /// Offset of the first committed record with `ts_us >= ts` (the end if none).
    ///
    /// Timestamps never decrease along offsets, so a binary search over the segments by their
    /// last timestamp finds the one segment to look into: a sealed segment's comes from its
    /// footer (O(log n) footers read), an unsealed one's from decoding it (only the active
    /// segment, or one whose sealing failed, is unsealed). Inside a sealed segment the block
    /// index narrows it to one block; an unsealed one is scanned.
    fn seek_time(&mut self, ts: i64) -> Result<u64> {
        let end = self.shared.visible.get();
        let segments = self.shared.catalog().segments.clone();
        let (mut lo, mut hi) = (0usize, segments.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let Some(entry) = segments.get(mid) else {
                break;
            };
            match self.last_ts_of(entry)? {
                Some(last) if last < ts => lo = mid + 1,
                None if mid + 1 == segments.len() => hi = mid, // empty active segment
                None => lo = mid + 1,
                Some(_) => hi = mid,
            }
        }
        let Some(entry) = segments.get(lo) else {
            return Ok(end);
        };
        match &entry.state {
            SegmentState::Sealed { footer, .. } => {
                let footer = self.footer(&entry.path, footer)?;
                if let Some(i) = footer.block_for_time(ts) {
                    self.fill_block(entry.first, &entry.path, &footer, i)?;
                    let found = self.block.iter().find(|r| r.ts_us >= ts).map(|r| r.offset);
                    self.block.clear();
                    if let Some(offset) = found {
                        return Ok(offset);
                    }
                }
                Ok(entry.end())
            }
            SegmentState::Raw { .. } => {
                self.next = entry.first;
                let stop = entry.end().min(end);
                while self.next < stop {
                    let Some(record) = self.next()? else { break };
                    if record.ts_us >= ts {
                        self.raw = None;
                        return Ok(record.offset);
                    }
                }
                self.raw = None;
                Ok(self.next.max(stop))
            }
        }
    }

    /// The last committed timestamp of a segment (`None` for an empty one).
    fn last_ts_of(&mut self, entry: &SegmentEntry) -> Result<Option<i64>> {
        match &entry.state {
            SegmentState::Sealed { footer, .. } => {
                Ok(Some(self.footer(&entry.path, footer)?.last_ts))
            }
            SegmentState::Raw { next, .. } if *next == entry.first => Ok(None),
            SegmentState::Raw { next, .. } => {
                // Read the segment's last record through the ordinary (verifying) path.
                let saved = (self.next, self.raw.take());
                self.next = next - 1;
                let last = self.next().map(|r| r.map(|r| r.ts_us));
                (self.next, self.raw) = saved;
                last
            }
        }
    }
}

impl RawCursor {
    /// Decodes the next frame if it lies within the committed `committed` bytes.
    fn read_frame(&mut self, committed: u64, limit: usize) -> Result<Option<Record>> {
        loop {
            let rest = self.buf.get(self.at..).unwrap_or(&[]);
            match decode_frame(rest, limit) {
                Ok((frame, used)) => {
                    let damage = |kind| {
                        JournalError::Damaged(Damage {
                            offset: self.next,
                            segment: self.path.clone(),
                            kind,
                        })
                    };
                    if frame.offset != self.next {
                        return Err(damage(DamageKind::OffsetSequence {
                            expected: self.next,
                            found: frame.offset,
                        }));
                    }
                    let expect = chain_hash(
                        &self.prev_hash,
                        frame.offset,
                        frame.ts_us,
                        frame.schema_version,
                        frame.payload,
                    );
                    if expect != frame.hash {
                        return Err(damage(DamageKind::ChainBroken));
                    }
                    let record = frame.to_record();
                    self.prev_hash = frame.hash;
                    self.at += used;
                    self.next += 1;
                    return Ok(Some(record));
                }
                Err(super::record::FrameError::Incomplete) => {
                    let consumed = self.buf_pos + self.at as u64;
                    if consumed >= committed {
                        return Ok(None);
                    }
                    // Keep the unread tail and read more, never past the committed end.
                    self.buf.drain(..self.at);
                    self.buf_pos = consumed;
                    self.at = 0;
                    let have = self.buf.len() as u64;
                    let want = (committed - consumed - have).min(RAW_READ_BYTES.max(limit) as u64);
                    if want == 0 {
                        return Err(JournalError::Damaged(Damage {
                            offset: self.next,
                            segment: self.path.clone(),
                            kind: DamageKind::Frame("frame runs past the committed end".into()),
                        }));
                    }
                    let old = self.buf.len();
                    self.buf.resize(old + want as usize, 0);
                    let target = self.buf.get_mut(old..).unwrap_or(&mut []);
                    self.file
                        .read_exact_at(target, consumed + have)
                        .map_err(|e| JournalError::io(&self.path, e))?;
                }
                Err(e) => {
                    return Err(JournalError::Damaged(Damage {
                        offset: self.next,
                        segment: self.path.clone(),
                        kind: e.damage(),
                    }));
                }
            }
        }
    }
}
