//! Object keys under a prefix and the small JSON documents Logbook keeps there.
//!
//! Invariant: a segment's key is its local file name under `journal/` (zero-padded offsets),
//! so lexical key order is offset order and a `ListObjectsV2` with `start-after` the last key
//! known returns exactly the newer segments.

use serde::{Deserialize, Serialize};

use super::S3Location;
use crate::journal::names::{self, SegmentName};

/// The folder of segment objects.
pub const JOURNAL_DIR: &str = "journal/";
/// The head document.
pub const HEAD: &str = "head.json";
/// The writer lease.
pub const WRITER: &str = "writer.json";

/// The key of the segment object holding `first..=last`.
pub fn segment_key(location: &S3Location, first: u64, last: u64) -> String {
    location.key(&format!("{JOURNAL_DIR}{}", names::sealed(first, last)))
}

/// The prefix every segment key starts with.
pub fn journal_prefix(location: &S3Location) -> String {
    location.key(JOURNAL_DIR)
}

/// `(first, last)` of a segment key, or `None` for any other key.
pub fn parse_segment_key(location: &S3Location, key: &str) -> Option<(u64, u64)> {
    let name = key.strip_prefix(&journal_prefix(location))?;
    match names::parse(name)? {
        SegmentName::Sealed { first, last } => Some((first, last)),
        _ => None,
    }
}

/// The key of an artifact file (the original system's layout).
pub fn artifact_key(
    location: &S3Location,
    session_id: &str,
    collection_id: &str,
    file_name: &str,
) -> String {
    location.key(&format!(
        "artifacts/{session_id}/{collection_id}/{file_name}"
    ))
}

/// `head.json`: how far the journal is shipped. Rewritten at the end of each shipping round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// Document format (1).
    pub format: u32,
    /// The writer that shipped it.
    pub writer_id: String,
    /// One past the last shipped offset.
    pub next_offset: u64,
    /// The key of the last shipped segment.
    pub last_key: String,
    /// The chain hash of the last shipped record (hex).
    pub chain_end: String,
    /// When it was written (RFC 3339).
    pub updated: String,
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Object metadata names (sent as `x-amz-meta-*`).
pub mod meta {
    /// First offset in a segment object.
    pub const FIRST: &str = "first-offset";
    /// Last offset in a segment object.
    pub const LAST: &str = "last-offset";
    /// Records in a segment object.
    pub const COUNT: &str = "count";
    /// BLAKE3 of the object's bytes (hex).
    pub const BLAKE3: &str = "blake3";
    /// Chain hash before the first record (hex).
    pub const CHAIN_START: &str = "chain-start";
    /// Chain hash of the last record (hex).
    pub const CHAIN_END: &str = "chain-end";
    /// The shipping writer.
    pub const WRITER: &str = "writer-id";
    /// SHA-256 of an artifact (hex).
    pub const SHA256: &str = "sha256";
    /// The artifact's id.
    pub const ARTIFACT_ID: &str = "artifact-id";
    /// The artifact's type.
    pub const ARTIFACT_TYPE: &str = "artifact-type";
    /// The artifact's tags, comma-separated.
    pub const TAGS: &str = "tags";
    /// The producing task.
    pub const TASK_ID: &str = "task-id";
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn segment_keys_sort_by_offset_and_parse_back() {
        let l: S3Location = "s3://bucket/p".parse().unwrap();
        let a = segment_key(&l, 0, 99);
        let b = segment_key(&l, 100, 1_000_000);
        assert_eq!(
            a,
            "p/journal/00000000000000000000-00000000000000000099.seg.zst"
        );
        assert!(a < b);
        assert_eq!(parse_segment_key(&l, &b), Some((100, 1_000_000)));
        assert_eq!(parse_segment_key(&l, "p/head.json"), None);
        assert_eq!(parse_segment_key(&l, "q/journal/x"), None);
        assert_eq!(
            artifact_key(&l, "s", "c", "a b.log"),
            "p/artifacts/s/c/a b.log"
        );
        assert_eq!(hex(&[0, 255, 16]), "00ff10");
    }
}
