//! Sealed segments: immutable, zstd-compressed, made of independently decompressible blocks,
//! closed by a footer that indexes the blocks.
//!
//! ```text
//! "LBKSEG01" | block 0 | block 1 | ... | footer | footer_len: u32 | footer_crc32c: u32 | "LBKEND01"
//! ```
//!
//! A block is one zstd frame (content checksum on) of consecutive records, each encoded as
//! `varint payload_len | varint ts_delta_us | varint schema_version | payload | hash[0..4]`.
//! Offsets are implicit (dense from the block's first offset); `ts_delta_us` is relative to the
//! previous record (to the block's `first_ts` for its first record); `hash[0..4]` is the first
//! four bytes of the record's chain hash. The full 32-byte chain hash is stored once per block
//! (in the index) and at both ends of the segment (in the footer). Storing only a 4-byte prefix
//! per record keeps the segment compressible (32 random bytes per ~300-byte record would cost
//! most of zstd's ratio) while still naming the exact first bad record; the per-block full hash
//! keeps the chain cryptographically strong.
//!
//! Invariants: the builder computes the chain itself, so a sealed segment can only hold a chain
//! that links; the decoder checks every record's hash prefix, the count, the timestamp bounds and
//! the block's end hash before returning a single record, so no reader is ever served a record
//! from a damaged block.

use std::io::Write;

use super::error::DamageKind;
use super::record::{Record, chain_hash};
use super::varint;

/// Magic bytes opening every sealed segment.
pub const SEGMENT_MAGIC: &[u8; 8] = b"LBKSEG01";
/// Magic bytes closing every sealed segment.
pub const TRAILER_MAGIC: &[u8; 8] = b"LBKEND01";
/// Length of the trailer (footer length, footer checksum, magic).
pub const TRAILER_BYTES: usize = 16;
/// Version of the footer layout.
pub const FOOTER_VERSION: u16 = 1;
/// Bytes of one block-index entry.
pub const BLOCK_ENTRY_BYTES: usize = 8 + 4 + 8 + 8 + 8 + 4 + 4 + 4 + 32;
/// Bytes of the footer's fixed part.
pub const FOOTER_FIXED_BYTES: usize = 2 + 8 + 8 + 8 + 8 + 8 + 32 + 32 + 4;
/// Upper bound on a block's decompressed size accepted by the decoder (guards against a forged
/// index asking for an absurd allocation).
pub const BLOCK_RAW_BYTES_MAX: usize = 64 << 20;

/// One entry of the block index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockEntry {
    /// Offset of the block's first record.
    pub first_offset: u64,
    /// Number of records in the block.
    pub count: u32,
    /// Timestamp of the block's first record.
    pub first_ts: i64,
    /// Timestamp of the block's last record.
    pub last_ts: i64,
    /// Byte position of the compressed block in the file.
    pub file_pos: u64,
    /// Compressed length in bytes.
    pub compressed_len: u32,
    /// Decompressed length in bytes.
    pub raw_len: u32,
    /// CRC-32C of the compressed bytes: catches any changed byte, even one zstd would ignore
    /// (such as an unused frame-header bit), before decompression is attempted.
    pub compressed_crc: u32,
    /// Chain hash of the block's last record.
    pub end_hash: [u8; 32],
}

impl BlockEntry {
    /// Offset of the block's last record.
    pub fn last_offset(&self) -> u64 {
        self.first_offset
            .saturating_add(u64::from(self.count).saturating_sub(1))
    }
}

/// The footer of a sealed segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footer {
    /// First offset in the segment.
    pub first_offset: u64,
    /// Last offset in the segment.
    pub last_offset: u64,
    /// Number of records (`last_offset - first_offset + 1`).
    pub count: u64,
    /// Timestamp of the first record.
    pub first_ts: i64,
    /// Timestamp of the last record.
    pub last_ts: i64,
    /// Chain hash of the record before `first_offset` (zeros for offset 0).
    pub prev_hash: [u8; 32],
    /// Chain hash of the last record.
    pub last_hash: [u8; 32],
    /// The block index.
    pub blocks: Vec<BlockEntry>,
}

impl Footer {
    /// Serializes the footer (without trailer).
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(FOOTER_FIXED_BYTES + self.blocks.len() * BLOCK_ENTRY_BYTES);
        out.extend_from_slice(&FOOTER_VERSION.to_le_bytes());
        out.extend_from_slice(&self.first_offset.to_le_bytes());
        out.extend_from_slice(&self.last_offset.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.first_ts.to_le_bytes());
        out.extend_from_slice(&self.last_ts.to_le_bytes());
        out.extend_from_slice(&self.prev_hash);
        out.extend_from_slice(&self.last_hash);
        out.extend_from_slice(&(self.blocks.len() as u32).to_le_bytes());
        for b in &self.blocks {
            out.extend_from_slice(&b.first_offset.to_le_bytes());
            out.extend_from_slice(&b.count.to_le_bytes());
            out.extend_from_slice(&b.first_ts.to_le_bytes());
            out.extend_from_slice(&b.last_ts.to_le_bytes());
            out.extend_from_slice(&b.file_pos.to_le_bytes());
            out.extend_from_slice(&b.compressed_len.to_le_bytes());
            out.extend_from_slice(&b.raw_len.to_le_bytes());
            out.extend_from_slice(&b.compressed_crc.to_le_bytes());
            out.extend_from_slice(&b.end_hash);
        }
        out
    }

    /// Parses a footer and checks its internal consistency (counts, contiguity, time order,
    /// block positions ending at `footer_pos`, the last block's hash equal to `last_hash`).
    pub fn decode(bytes: &[u8], footer_pos: u64) -> Result<Footer, DamageKind> {
        let bad = |why: &str| DamageKind::Footer(why.to_string());
        let mut r = Cursor { buf: bytes, at: 0 };
        let version = r.u16().ok_or_else(|| bad("footer too short"))?;
        if version != FOOTER_VERSION {
            return Err(bad(&format!("unknown footer version {version}")));
        }
        let first_offset = r.u64().ok_or_else(|| bad("footer too short"))?;
        let last_offset = r.u64().ok_or_else(|| bad("footer too short"))?;
        let count = r.u64().ok_or_else(|| bad("footer too short"))?;
        let first_ts = r.i64().ok_or_else(|| bad("footer too short"))?;
        let last_ts = r.i64().ok_or_else(|| bad("footer too short"))?;
        let prev_hash = r.hash().ok_or_else(|| bad("footer too short"))?;
        let last_hash = r.hash().ok_or_else(|| bad("footer too short"))?;
        let block_count = r.u32().ok_or_else(|| bad("footer too short"))? as usize;
        if bytes.len() != FOOTER_FIXED_BYTES + block_count * BLOCK_ENTRY_BYTES {
            return Err(bad("footer length disagrees with its block count"));
        }
        let mut blocks = Vec::with_capacity(block_count);
        for _ in 0..block_count {
            let entry = (|| {
                Some(BlockEntry {
                    first_offset: r.u64()?,
                    count: r.u32()?,
                    first_ts: r.i64()?,
                    last_ts: r.i64()?,
                    file_pos: r.u64()?,
                    compressed_len: r.u32()?,
                    raw_len: r.u32()?,
                    compressed_crc: r.u32()?,
                    end_hash: r.hash()?,
                })
            })()
            .ok_or_else(|| bad("block index too short"))?;
            blocks.push(entry);
        }
        let footer = Footer {
            first_offset,
            last_offset,
            count,
            first_ts,
            last_ts,
            prev_hash,
            last_hash,
            blocks,
        };
        footer.check(footer_pos)?;
        Ok(footer)
    }

    fn check(&self, footer_pos: u64) -> Result<(), DamageKind> {
        let bad = |why: String| Err(DamageKind::Footer(why));
        let span = (self.last_offset.checked_sub(self.first_offset)).and_then(|d| d.checked_add(1));
        if span != Some(self.count) {
            return bad("record count disagrees with the offset range".into());
        }
        if self.last_ts < self.first_ts {
            return bad("time range runs backwards".into());
        }
        let (Some(first), Some(last)) = (self.blocks.first(), self.blocks.last()) else {
            return bad("no blocks".into());
        };
        if first.first_offset != self.first_offset || first.first_ts != self.first_ts {
            return bad("first block does not start the segment".into());
        }
        if last.last_offset() != self.last_offset
            || last.last_ts != self.last_ts
            || last.end_hash != self.last_hash
        {
            return bad("last block does not end the segment".into());
        }
        let mut next_offset = self.first_offset;
        let mut next_pos = SEGMENT_MAGIC.len() as u64;
        let mut prev_ts = self.first_ts;
        for b in &self.blocks {
            if b.count == 0 || b.first_offset != next_offset {
                return bad(format!(
                    "block at offset {} is out of sequence",
                    b.first_offset
                ));
            }
            if b.file_pos != next_pos || b.raw_len as usize > BLOCK_RAW_BYTES_MAX {
                return bad(format!(
                    "block at offset {} has a bad position or size",
                    b.first_offset
                ));
            }
            if b.first_ts < prev_ts || b.last_ts < b.first_ts {
                return bad(format!(
                    "block at offset {} runs backwards in time",
                    b.first_offset
                ));
            }
            let (Some(offset), Some(pos)) = (
                b.first_offset.checked_add(u64::from(b.count)),
                b.file_pos.checked_add(u64::from(b.compressed_len)),
            ) else {
                return bad(format!("block at offset {} overflows", b.first_offset));
            };
            next_offset = offset;
            next_pos = pos;
            prev_ts = b.last_ts;
        }
        if next_pos != footer_pos {
            return bad("blocks do not end where the footer starts".into());
        }
        Ok(())
    }

    /// Index of the block holding `offset`, if the segment holds it.
    pub fn block_for_offset(&self, offset: u64) -> Option<usize> {
        if offset < self.first_offset || offset > self.last_offset {
            return None;
        }
        Some(
            self.blocks
                .partition_point(|b| b.first_offset <= offset)
                .saturating_sub(1),
        )
    }

    /// Index of the first block whose last timestamp is at or after `ts_us`.
    pub fn block_for_time(&self, ts_us: i64) -> Option<usize> {
        let i = self.blocks.partition_point(|b| b.last_ts < ts_us);
        (i < self.blocks.len()).then_some(i)
    }

    /// Chain hash preceding block `i`.
    pub fn prev_hash_of_block(&self, i: usize) -> [u8; 32] {
        match i.checked_sub(1).and_then(|p| self.blocks.get(p)) {
            Some(prev) => prev.end_hash,
            None => self.prev_hash,
        }
    }
}

/// Parses the trailer (the last [`TRAILER_BYTES`] of a segment): footer length and checksum.
pub fn decode_trailer(trailer: &[u8]) -> Result<(u32, u32), DamageKind> {
    let mut r = Cursor {
        buf: trailer,
        at: 0,
    };
    let (Some(len), Some(crc)) = (r.u32(), r.u32()) else {
        return Err(DamageKind::Footer(
            "segment shorter than its trailer".into(),
        ));
    };
    if trailer.get(8..16) != Some(&TRAILER_MAGIC[..]) {
        return Err(DamageKind::Footer("trailer magic missing".into()));
    }
    Ok((len, crc))
}

/// Why a footer could not be read: the bytes could not be read, or they are not a valid footer.
#[derive(Debug)]
pub enum FooterReadError {
    /// A read failed.
    Io(std::io::Error),
    /// The segment's end is not a valid trailer and footer.
    Damaged(DamageKind),
}

/// The one footer reader: reads and checks a sealed segment's footer from a segment of `len`
/// bytes through positioned reads (`read_at(buf, pos)` fills `buf` from `pos`): the trailer
/// first, then the footer its length names, whose CRC-32C must match. Used for files
/// (recovery, readers, `logbook-replay`) and for bytes in memory
/// ([`decode_footer_from_file_bytes`]), so every reader checks a footer the same way.
pub fn read_footer(
    len: u64,
    read_at: &mut dyn FnMut(&mut [u8], u64) -> std::io::Result<()>,
) -> Result<Footer, FooterReadError> {
    let damaged = |why: &str| FooterReadError::Damaged(DamageKind::Footer(why.into()));
    let trailer_pos = len
        .checked_sub(TRAILER_BYTES as u64)
        .filter(|p| *p >= SEGMENT_MAGIC.len() as u64)
        .ok_or_else(|| damaged("segment shorter than its trailer"))?;
    let mut trailer = [0u8; TRAILER_BYTES];
    read_at(&mut trailer, trailer_pos).map_err(FooterReadError::Io)?;
    let (footer_len, crc) = decode_trailer(&trailer).map_err(FooterReadError::Damaged)?;
    let footer_pos = trailer_pos
        .checked_sub(u64::from(footer_len))
        .filter(|p| *p >= SEGMENT_MAGIC.len() as u64)
        .ok_or_else(|| damaged("footer length exceeds the file"))?;
    let mut footer = vec![0u8; footer_len as usize];
    read_at(&mut footer, footer_pos).map_err(FooterReadError::Io)?;
    if crc32c::crc32c(&footer) != crc {
        return Err(damaged("footer checksum mismatch"));
    }
    Footer::decode(&footer, footer_pos).map_err(FooterReadError::Damaged)
}

/// Parses a whole sealed segment held in memory up to its footer (header, trailer, footer).
pub fn decode_footer_from_file_bytes(file: &[u8]) -> Result<Footer, DamageKind> {
    if file.get(..SEGMENT_MAGIC.len()) != Some(&SEGMENT_MAGIC[..]) {
        return Err(DamageKind::Footer("segment magic missing".into()));
    }
    let mut read_at = |buf: &mut [u8], pos: u64| {
        let start = usize::try_from(pos).unwrap_or(usize::MAX);
        let src = start
            .checked_add(buf.len())
            .and_then(|end| file.get(start..end))
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    };
    match read_footer(file.len() as u64, &mut read_at) {
        Ok(footer) => Ok(footer),
        Err(FooterReadError::Damaged(kind)) => Err(kind),
        Err(FooterReadError::Io(e)) => Err(DamageKind::Footer(e.to_string())),
    }
}

/// Decompresses one block, checking its declared sizes.
pub fn decompress_block(compressed: &[u8], entry: &BlockEntry) -> Result<Vec<u8>, DamageKind> {
    if compressed.len() != entry.compressed_len as usize {
        return Err(DamageKind::Block(
            "compressed length disagrees with the index".into(),
        ));
    }
    if crc32c::crc32c(compressed) != entry.compressed_crc {
        return Err(DamageKind::Block(
            "checksum of the compressed bytes mismatches".into(),
        ));
    }
    let raw_len = entry.raw_len as usize;
    if raw_len > BLOCK_RAW_BYTES_MAX {
        return Err(DamageKind::Block("declared size too large".into()));
    }
    let raw = zstd::bulk::decompress(compressed, raw_len)
        .map_err(|e| DamageKind::Block(e.to_string()))?;
    if raw.len() != raw_len {
        return Err(DamageKind::Block(
            "decompressed length disagrees with the index".into(),
        ));
    }
    Ok(raw)
}

/// Decodes and verifies a decompressed block: every record's hash prefix against the chain
/// recomputed from `prev_hash`, the record count, the time bounds and the block's end hash.
/// On damage returns the first offset that cannot be trusted and what is wrong.
pub fn decode_block(
    raw: &[u8],
    entry: &BlockEntry,
    prev_hash: &[u8; 32],
) -> Result<Vec<Record>, (u64, DamageKind)> {
    let mut records = Vec::with_capacity(entry.count as usize);
    decode_block_into(raw, entry, prev_hash, &mut records)?;
    Ok(records)
}

/// [`decode_block`] into `records`: on damage, `records` holds the records before the first
/// bad offset, each checked against its hash prefix (what a repair may keep of a damaged block;
/// the block's end hash, which makes the check cryptographic, is past the damage).
pub fn decode_block_into(
    raw: &[u8],
    entry: &BlockEntry,
    prev_hash: &[u8; 32],
    records: &mut Vec<Record>,
) -> Result<(), (u64, DamageKind)> {
    let base = records.len();
    let mut at = 0usize;
    let mut chain = *prev_hash;
    let mut ts = entry.first_ts;
    let mut offset = entry.first_offset;
    let frame_err = |offset: u64, why: &str| (offset, DamageKind::Frame(why.to_string()));
    while at < raw.len() {
        if records.len() - base == entry.count as usize {
            return Err(frame_err(
                offset,
                "block holds more records than its index says",
            ));
        }
        let rest = raw.get(at..).unwrap_or(&[]);
        let (len, n1) = varint::decode(rest).ok_or_else(|| frame_err(offset, "bad length"))?;
        let (delta, n2) = varint::decode(rest.get(n1..).unwrap_or(&[]))
            .ok_or_else(|| frame_err(offset, "bad time delta"))?;
        let (version, n3) = varint::decode(rest.get(n1 + n2..).unwrap_or(&[]))
            .ok_or_else(|| frame_err(offset, "bad schema version"))?;
        let version =
            u16::try_from(version).map_err(|_| frame_err(offset, "bad schema version"))?;
        let head = n1 + n2 + n3;
        let len = usize::try_from(len).map_err(|_| frame_err(offset, "bad length"))?;
        let payload = head
            .checked_add(len)
            .and_then(|end| rest.get(head..end))
            .ok_or_else(|| frame_err(offset, "record runs past the block"))?;
        let prefix = rest
            .get(head + len..head + len + 4)
            .ok_or_else(|| frame_err(offset, "record runs past the block"))?;
        if records.len() == base && delta != 0 {
            return Err((offset, DamageKind::TimeOrder)); // first delta is relative to first_ts
        }
        if len == 0 {
            return Err(frame_err(offset, "empty payload"));
        }
        ts = i64::try_from(delta)
            .ok()
            .and_then(|d| ts.checked_add(d))
            .ok_or((offset, DamageKind::TimeOrder))?;
        let hash = chain_hash(&chain, offset, ts, version, payload);
        if hash.get(..4) != Some(prefix) {
            return Err((offset, DamageKind::ChainBroken));
        }
        records.push(Record {
            offset,
            ts_us: ts,
            schema_version: version,
            payload: payload.to_vec(),
            hash,
        });
        chain = hash;
        offset = offset
            .checked_add(1)
            .ok_or_else(|| frame_err(offset, "offset overflows"))?;
        at += head + len + 4;
    }
    if records.len() - base != entry.count as usize {
        return Err(frame_err(
            offset,
            "block holds fewer records than its index says",
        ));
    }
    if ts != entry.last_ts {
        return Err((entry.last_offset(), DamageKind::TimeOrder));
    }
    if chain != entry.end_hash {
        return Err((entry.last_offset(), DamageKind::ChainBroken));
    }
    Ok(())
}

/// Streams records into a sealed segment written to `out`.
#[expect(missing_debug_implementations, reason = "holds a zstd context")]
pub struct SegmentBuilder<W: Write> {
    out: W,
    pos: u64,
    compressor: zstd::bulk::Compressor<'static>,
    block_target_bytes: usize,
    raw: Vec<u8>,
    block: Option<BlockEntry>,
    footer: Option<Footer>,
    prev_hash: [u8; 32],
    chain: [u8; 32],
    next_offset: u64,
    last_ts: i64,
    blocks: Vec<BlockEntry>,
}

impl<W: Write> SegmentBuilder<W> {
    /// Starts a segment whose first record will have `first_offset` and link to `prev_hash`.
    pub fn new(
        mut out: W,
        first_offset: u64,
        prev_hash: [u8; 32],
        block_target_bytes: usize,
        level: i32,
    ) -> std::io::Result<Self> {
        let mut compressor = zstd::bulk::Compressor::new(level)?;
        compressor.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
        out.write_all(SEGMENT_MAGIC)?;
        Ok(SegmentBuilder {
            out,
            pos: SEGMENT_MAGIC.len() as u64,
            compressor,
            block_target_bytes: block_target_bytes.clamp(1, BLOCK_RAW_BYTES_MAX / 2),
            raw: Vec::new(),
            block: None,
            footer: None,
            prev_hash,
            chain: prev_hash,
            next_offset: first_offset,
            last_ts: i64::MIN,
            blocks: Vec::new(),
        })
    }

    /// Appends the next record and returns its chain hash. Offsets must be dense and
    /// timestamps non-decreasing (checked: an `InvalidInput` error otherwise).
    pub fn push(
        &mut self,
        offset: u64,
        ts_us: i64,
        version: u16,
        payload: &[u8],
    ) -> std::io::Result<[u8; 32]> {
        let hash = chain_hash(&self.chain, offset, ts_us, version, payload);
        self.push_hashed(offset, ts_us, version, payload, hash)?;
        Ok(hash)
    }

    /// Like [`SegmentBuilder::push`] with a chain hash computed elsewhere (the sealer passes the
    /// hash stored in the unsealed frame). A wrong hash yields a segment whose chain fails
    /// verification; it is never silently accepted by readers.
    pub fn push_hashed(
        &mut self,
        offset: u64,
        ts_us: i64,
        version: u16,
        payload: &[u8],
        hash: [u8; 32],
    ) -> std::io::Result<()> {
        if offset != self.next_offset || ts_us < self.last_ts {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("record {offset} out of order while sealing"),
            ));
        }
        let block = self.block.get_or_insert(BlockEntry {
            first_offset: offset,
            count: 0,
            first_ts: ts_us,
            last_ts: ts_us,
            file_pos: 0,
            compressed_len: 0,
            raw_len: 0,
            compressed_crc: 0,
            end_hash: [0; 32],
        });
        varint::encode(&mut self.raw, payload.len() as u64);
        varint::encode(&mut self.raw, (ts_us - block.last_ts) as u64);
        varint::encode(&mut self.raw, u64::from(version));
        self.raw.extend_from_slice(payload);
        self.raw.extend_from_slice(hash.get(..4).unwrap_or(&[0; 4]));
        block.count += 1;
        block.last_ts = ts_us;
        block.end_hash = hash;
        let footer = self.footer.get_or_insert(Footer {
            first_offset: offset,
            last_offset: offset,
            count: 0,
            first_ts: ts_us,
            last_ts: ts_us,
            prev_hash: self.prev_hash,
            last_hash: hash,
            blocks: Vec::new(),
        });
        footer.last_offset = offset;
        footer.count += 1;
        footer.last_ts = ts_us;
        footer.last_hash = hash;
        self.chain = hash;
        self.next_offset = offset + 1;
        self.last_ts = ts_us;
        if self.raw.len() >= self.block_target_bytes {
            self.flush_block()?;
        }
        Ok(())
    }

    fn flush_block(&mut self) -> std::io::Result<()> {
        let Some(mut block) = self.block.take() else {
            return Ok(());
        };
        let compressed = self.compressor.compress(&self.raw)?;
        self.out.write_all(&compressed)?;
        block.file_pos = self.pos;
        block.compressed_len = compressed.len() as u32;
        block.raw_len = self.raw.len() as u32;
        block.compressed_crc = crc32c::crc32c(&compressed);
        self.pos += compressed.len() as u64;
        self.raw.clear();
        self.blocks.push(block);
        Ok(())
    }

    /// Writes the last block, the footer and the trailer; returns the footer and the writer.
    /// Fails if no record was pushed (a sealed segment is never empty).
    pub fn finish(mut self) -> std::io::Result<(Footer, W)> {
        self.flush_block()?;
        let Some(mut footer) = self.footer.take() else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "cannot seal an empty segment",
            ));
        };
        footer.blocks = std::mem::take(&mut self.blocks);
        let bytes = footer.encode();
        self.out.write_all(&bytes)?;
        self.out.write_all(&(bytes.len() as u32).to_le_bytes())?;
        self.out.write_all(&crc32c::crc32c(&bytes).to_le_bytes())?;
        self.out.write_all(TRAILER_MAGIC)?;
        self.out.flush()?;
        Ok((footer, self.out))
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.buf.get(self.at..self.at + N)?);
        self.at += N;
        Some(out)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_le_bytes)
    }
    fn hash(&mut self) -> Option<[u8; 32]> {
        self.take()
    }
}

/// Verifies a sealed segment held in memory (footer, every block's checksum, every record and
/// the chain from the footer's `prev_hash` to its `last_hash`) one block at a time, keeping no
/// records; calls `each` with every verified record. Errors carry the first bad offset.
pub fn verify_segment(
    file: &[u8],
    mut each: impl FnMut(&Record),
) -> Result<Footer, (u64, DamageKind)> {
    let footer = decode_footer_from_file_bytes(file).map_err(|k| (0, k))?;
    for (i, entry) in footer.blocks.iter().enumerate() {
        let start = usize::try_from(entry.file_pos).unwrap_or(usize::MAX);
        let compressed = start
            .checked_add(entry.compressed_len as usize)
            .and_then(|end| file.get(start..end))
            .ok_or((
                entry.first_offset,
                DamageKind::Block("block outside the file".into()),
            ))?;
        let raw = decompress_block(compressed, entry).map_err(|k| (entry.first_offset, k))?;
        for record in decode_block(&raw, entry, &footer.prev_hash_of_block(i))? {
            each(&record);
        }
    }
    Ok(footer)
}

/// A sealed segment's bytes whose every block, record and chain link was verified: the only
/// input [`super::Importer::import_sealed`] takes, so nothing unverified is ever imported into a
/// journal directory.
#[derive(Debug, Clone)]
pub struct VerifiedSegment {
    bytes: Vec<u8>,
    footer: Footer,
}

impl VerifiedSegment {
    /// Verifies `bytes` as [`verify_segment`] does, calling `each` with every record.
    pub fn verify(
        bytes: Vec<u8>,
        each: impl FnMut(&Record),
    ) -> Result<VerifiedSegment, (u64, DamageKind)> {
        let footer = verify_segment(&bytes, each)?;
        Ok(VerifiedSegment { bytes, footer })
    }

    /// Its footer.
    pub fn footer(&self) -> &Footer {
        &self.footer
    }

    /// Its bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Decodes and verifies every record of a sealed segment held in memory, chaining from the
/// footer's `prev_hash`. Used by the fuzz target and by tests; readers decode block by block.
pub fn decode_segment(file: &[u8]) -> Result<(Footer, Vec<Record>), (u64, DamageKind)> {
    let footer = decode_footer_from_file_bytes(file).map_err(|k| (0, k))?;
    let mut records = Vec::new();
    for (i, entry) in footer.blocks.iter().enumerate() {
        let start = entry.file_pos as usize;
        let compressed = file
            .get(start..start + entry.compressed_len as usize)
            .ok_or((
                entry.first_offset,
                DamageKind::Block("block outside the file".into()),
            ))?;
        let raw = decompress_block(compressed, entry).map_err(|k| (entry.first_offset, k))?;
        records.extend(decode_block(&raw, entry, &footer.prev_hash_of_block(i))?);
    }
    Ok((footer, records))
}

#[cfg(test)]
#[expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::*;
    use crate::journal::record::GENESIS_HASH;
    use proptest::prelude::*;

    fn build(records: &[(i64, Vec<u8>)], first: u64, block: usize) -> Vec<u8> {
        let mut b = SegmentBuilder::new(Vec::new(), first, GENESIS_HASH, block, 3).unwrap();
        for (i, (ts, p)) in records.iter().enumerate() {
            b.push(first + i as u64, *ts, 1, p).unwrap();
        }
        b.finish().unwrap().1
    }

    #[test]
    fn round_trip_many_blocks() {
        let recs: Vec<(i64, Vec<u8>)> = (0..1000)
            .map(|i| (1_000 + i * 3, format!("{{\"n\":{i}}}").into_bytes()))
            .collect();
        let bytes = build(&recs, 40, 512);
        let (footer, out) = decode_segment(&bytes).unwrap();
        assert!(footer.blocks.len() > 10);
        assert_eq!(footer.first_offset, 40);
        assert_eq!(footer.last_offset, 1039);
        assert_eq!(out.len(), 1000);
        for (i, r) in out.iter().enumerate() {
            assert_eq!(r.offset, 40 + i as u64);
            assert_eq!(r.ts_us, recs[i].0);
            assert_eq!(r.payload, recs[i].1);
        }
        assert_eq!(footer.block_for_offset(40), Some(0));
        assert_eq!(footer.block_for_offset(1039), Some(footer.blocks.len() - 1));
        assert_eq!(footer.block_for_offset(1040), None);
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let recs: Vec<(i64, Vec<u8>)> = (0..20)
            .map(|i| (i, format!("{{\"n\":{i}}}").into_bytes()))
            .collect();
        let bytes = build(&recs, 0, 64);
        for byte in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[byte] ^= 0x10;
            assert!(decode_segment(&bad).is_err(), "flip at {byte} undetected");
        }
    }

    proptest! {
        #[test]
        fn prop_round_trip(payloads in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 1..300), 1..60),
            block in 1usize..2000, first in 0u64..1_000_000) {
            let recs: Vec<(i64, Vec<u8>)> = payloads.into_iter().enumerate()
                .map(|(i, p)| (i as i64 * 7, p)).collect();
            let bytes = build(&recs, first, block);
            let (_, out) = decode_segment(&bytes).unwrap();
            prop_assert_eq!(out.len(), recs.len());
            for (r, (ts, p)) in out.iter().zip(&recs) {
                prop_assert_eq!(&r.payload, p);
                prop_assert_eq!(r.ts_us, *ts);
            }
        }

        #[test]
        fn prop_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut file = SEGMENT_MAGIC.to_vec();
            file.extend_from_slice(&bytes);
            let _ = decode_segment(&file);
            let _ = decode_segment(&bytes);
        }
    }
}
