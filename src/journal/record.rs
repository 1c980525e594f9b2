//! Records and their frame in the active (uncompressed) segment, and the BLAKE3 hash chain.
//!
//! Frame layout (all integers little-endian; see schemas/journal-format.md):
//!
//! ```text
//! len: u32 | crc: u32 | offset: u64 | ts_us: i64 | schema_version: u16 | hash: [u8; 32] | payload
//! ```
//!
//! `len` counts the bytes after the `crc` field (50 + payload length); `crc` is CRC-32C of those
//! bytes. `hash` is the chain hash of this record:
//! `BLAKE3(prev_hash || offset || ts_us || schema_version || payload)`, with `prev_hash` all zeros
//! for offset 0.
//!
//! Producers append frames with `crc` and `hash` zeroed ([`encode_pending`]); the single flusher
//! thread fills both in ([`finish_frame`]) just before writing, so the chain is computed in offset
//! order off the producers' threads. Invariant: a frame is only ever written to disk finished.

use super::error::DamageKind;

/// Length of the `len` and `crc` fields.
pub const FRAME_PREFIX_BYTES: usize = 8;
/// Length of the fixed part of a frame body (offset, ts, version, hash).
pub const BODY_FIXED_BYTES: usize = 8 + 8 + 2 + 32;
/// Bytes of a frame excluding its payload.
pub const FRAME_OVERHEAD_BYTES: usize = FRAME_PREFIX_BYTES + BODY_FIXED_BYTES;
/// The chain hash that precedes offset 0.
pub const GENESIS_HASH: [u8; 32] = [0; 32];
/// Largest payload the format allows; decoders accept up to this whatever the appending
/// configuration was (`JournalConfig::record_bytes_max` may only be lower).
pub const PAYLOAD_BYTES_MAX: usize = 16 << 20;
/// The payload schema version written by this build.
pub const CURRENT_SCHEMA_VERSION: u16 = 1;

/// A committed journal record as served to readers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Dense position in the journal, from 0.
    pub offset: u64,
    /// Recorder timestamp, microseconds since the Unix epoch (UTC); never decreases.
    pub ts_us: i64,
    /// Schema version of the payload.
    pub schema_version: u16,
    /// The payload bytes (a JSON object for every record Logbook itself writes).
    pub payload: Vec<u8>,
    /// This record's chain hash.
    pub hash: [u8; 32],
}

/// Computes the chain hash of a record from its predecessor's.
pub fn chain_hash(
    prev: &[u8; 32],
    offset: u64,
    ts_us: i64,
    schema_version: u16,
    payload: &[u8],
) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(prev);
    hasher.update(&offset.to_le_bytes());
    hasher.update(&ts_us.to_le_bytes());
    hasher.update(&schema_version.to_le_bytes());
    hasher.update(payload);
    *hasher.finalize().as_bytes()
}

/// Appends an unfinished frame (zero `crc` and `hash`) to `buf`.
pub fn encode_pending(buf: &mut Vec<u8>, offset: u64, ts_us: i64, version: u16, payload: &[u8]) {
    let body_len = BODY_FIXED_BYTES + payload.len();
    debug_assert!(
        u32::try_from(body_len).is_ok(),
        "payload limit keeps len in u32"
    );
    buf.reserve(FRAME_PREFIX_BYTES + body_len);
    buf.extend_from_slice(&(body_len as u32).to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&offset.to_le_bytes());
    buf.extend_from_slice(&ts_us.to_le_bytes());
    buf.extend_from_slice(&version.to_le_bytes());
    buf.extend_from_slice(&[0; 32]);
    buf.extend_from_slice(payload);
}

/// Appends a finished frame to `buf` and returns its chain hash.
pub fn encode_frame(
    buf: &mut Vec<u8>,
    prev: &[u8; 32],
    offset: u64,
    ts_us: i64,
    version: u16,
    payload: &[u8],
) -> [u8; 32] {
    let start = buf.len();
    encode_pending(buf, offset, ts_us, version, payload);
    match buf.get_mut(start..) {
        Some(frame) => finish_frame(frame, prev),
        None => unreachable!("frame was just appended"),
    }
}

/// Fills in the chain hash and checksum of the unfinished frame at the start of `frame`
/// (which must hold exactly that frame or more) and returns the chain hash.
#[expect(
    clippy::indexing_slicing,
    reason = "frames in the pending buffer are built by encode_pending, whose lengths are exact"
)]
pub fn finish_frame(frame: &mut [u8], prev: &[u8; 32]) -> [u8; 32] {
    let (prefix, body) = frame.split_at_mut(FRAME_PREFIX_BYTES);
    let body_len = read_u32(prefix, 0) as usize;
    let body = &mut body[..body_len];
    let offset = read_u64(body, 0);
    let ts_us = read_u64(body, 8) as i64;
    let version = u16::from_le_bytes([body[16], body[17]]);
    let hash = chain_hash(prev, offset, ts_us, version, &body[BODY_FIXED_BYTES..]);
    body[18..50].copy_from_slice(&hash);
    let crc = crc32c::crc32c(body);
    prefix[4..8].copy_from_slice(&crc.to_le_bytes());
    hash
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The buffer ends before the frame does (a torn tail, or simply more to read).
    Incomplete,
    /// The length field is outside what any frame can have.
    BadLength(u32),
    /// The checksum does not match.
    Checksum,
}

impl FrameError {
    /// The damage this error means when it occurs inside committed bytes.
    pub fn damage(&self) -> DamageKind {
        match self {
            FrameError::Incomplete => DamageKind::Frame("frame cut short".into()),
            FrameError::BadLength(len) => DamageKind::Frame(format!("impossible length {len}")),
            FrameError::Checksum => DamageKind::Checksum,
        }
    }
}

/// A decoded frame borrowing its payload from the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef<'a> {
    /// Record offset.
    pub offset: u64,
    /// Recorder timestamp (µs since epoch).
    pub ts_us: i64,
    /// Payload schema version.
    pub schema_version: u16,
    /// Stored chain hash.
    pub hash: [u8; 32],
    /// Payload bytes.
    pub payload: &'a [u8],
}

impl FrameRef<'_> {
    /// Copies the frame into an owned [`Record`].
    pub fn to_record(&self) -> Record {
        Record {
            offset: self.offset,
            ts_us: self.ts_us,
            schema_version: self.schema_version,
            payload: self.payload.to_vec(),
            hash: self.hash,
        }
    }
}

/// Decodes the frame at the start of `buf`, checking length bounds and checksum.
/// Returns the frame and the number of bytes it occupies.
pub fn decode_frame(buf: &[u8], max_payload: usize) -> Result<(FrameRef<'_>, usize), FrameError> {
    decode_frame_checked(buf, max_payload, true)
}

/// [`decode_frame`], with the checksum checked only if `checksum`: a read-only open walks the
/// frames of an unsealed segment by their lengths and offsets without it (readers check every
/// frame's checksum and chain link before serving it), and checks the last one.
pub fn decode_frame_checked(
    buf: &[u8],
    max_payload: usize,
    checksum: bool,
) -> Result<(FrameRef<'_>, usize), FrameError> {
    let Some(prefix) = buf.get(..FRAME_PREFIX_BYTES) else {
        return Err(FrameError::Incomplete);
    };
    let body_len = read_u32(prefix, 0);
    let crc = read_u32(prefix, 4);
    let len = body_len as usize;
    // An empty payload is never appended, so a zero-length one is a bad frame too.
    if len <= BODY_FIXED_BYTES || len - BODY_FIXED_BYTES > max_payload {
        return Err(FrameError::BadLength(body_len));
    }
    let Some(body) = buf.get(FRAME_PREFIX_BYTES..FRAME_PREFIX_BYTES + len) else {
        return Err(FrameError::Incomplete);
    };
    if checksum && crc32c::crc32c(body) != crc {
        return Err(FrameError::Checksum);
    }
    let (fixed, payload) = body.split_at(BODY_FIXED_BYTES);
    let mut hash = [0u8; 32];
    hash.copy_from_slice(fixed.get(18..50).unwrap_or(&[0; 32]));
    let frame = FrameRef {
        offset: read_u64(fixed, 0),
        ts_us: read_u64(fixed, 8) as i64,
        schema_version: u16::from_le_bytes([
            fixed.get(16).copied().unwrap_or(0),
            fixed.get(17).copied().unwrap_or(0),
        ]),
        hash,
        payload,
    };
    Ok((frame, FRAME_PREFIX_BYTES + len))
}

/// Reads the offset field of a would-be frame at `buf` without checking anything else; used to
/// look for valid frames after damage cheaply before paying for a checksum.
pub fn peek_offset(buf: &[u8]) -> Option<u64> {
    buf.get(FRAME_PREFIX_BYTES..FRAME_PREFIX_BYTES + 8)
        .map(|b| read_u64(b, 0))
}

fn read_u32(buf: &[u8], at: usize) -> u32 {
    let mut bytes = [0u8; 4];
    if let Some(src) = buf.get(at..at + 4) {
        bytes.copy_from_slice(src);
    }
    u32::from_le_bytes(bytes)
}

fn read_u64(buf: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    if let Some(src) = buf.get(at..at + 8) {
        bytes.copy_from_slice(src);
    }
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frame_round_trip_and_chain() {
        let mut buf = Vec::new();
        let h0 = encode_frame(&mut buf, &GENESIS_HASH, 0, 10, 1, b"{\"a\":1}");
        let h1 = encode_frame(&mut buf, &h0, 1, 11, 1, b"{}");
        let (f0, n0) = decode_frame(&buf, 1024).expect("first frame");
        assert_eq!(
            (f0.offset, f0.ts_us, f0.payload),
            (0, 10, &b"{\"a\":1}"[..])
        );
        assert_eq!(f0.hash, h0);
        let (f1, n1) = decode_frame(&buf[n0..], 1024).expect("second frame");
        assert_eq!(f1.hash, h1);
        assert_eq!(n0 + n1, buf.len());
        assert_eq!(chain_hash(&h0, 1, 11, 1, b"{}"), h1);
    }

    #[test]
    fn every_truncation_is_incomplete() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, &GENESIS_HASH, 7, 1, 1, b"payload");
        for cut in 0..buf.len() {
            assert_eq!(
                decode_frame(&buf[..cut], 1024),
                Err(FrameError::Incomplete),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, &GENESIS_HASH, 7, 1, 1, b"payload");
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    decode_frame(&bad, 1024).is_err(),
                    "flip {byte}:{bit} undetected"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn prop_round_trip(offset: u64, ts: i64, version: u16,
                           payload in proptest::collection::vec(any::<u8>(), 1..2048),
                           prev in proptest::array::uniform32(any::<u8>())) {
            let mut buf = Vec::new();
            let hash = encode_frame(&mut buf, &prev, offset, ts, version, &payload);
            let (frame, used) = decode_frame(&buf, 4096).expect("decodes");
            prop_assert_eq!(used, buf.len());
            prop_assert_eq!(frame.offset, offset);
            prop_assert_eq!(frame.ts_us, ts);
            prop_assert_eq!(frame.schema_version, version);
            prop_assert_eq!(frame.payload, &payload[..]);
            prop_assert_eq!(frame.hash, hash);
            prop_assert_eq!(chain_hash(&prev, offset, ts, version, &payload), hash);
        }

        #[test]
        fn prop_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_frame(&bytes, 256);
        }
    }
}
