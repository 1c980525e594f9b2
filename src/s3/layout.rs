//! Object keys under a prefix, and the small JSON documents and metadata Logbook keeps there:
//! the only place a key is built or parsed.
//!
//! A [`Key`] can only be made here (or taken from a listing by [`super::objects`]), so every
//! request names an object of this layout:
//!
//! | key | what |
//! |---|---|
//! | `{prefix}/journal/{first:020}-{last:020}.seg.zst` | one sealed segment, its file unchanged |
//! | `{prefix}/head.json` | [`Head`]: the shipped end, rewritten after each shipping round |
//! | `{prefix}/writer.json` | [`super::Lease`]: the one writer allowed to ship here |
//! | `{prefix}/artifacts/{session_id}/{collection_id}/{file_name}` | an artifact file |
//!
//! Invariant: a segment's key is its local file name under `journal/` (zero-padded offsets), so
//! lexical key order is offset order and a `ListObjectsV2` with `start-after` the last key
//! known returns exactly the newer segments. `parse_segment_key(segment_key(l, a, b)) == (a, b)`.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::S3Location;
use crate::journal::names::{self, SegmentName};

/// The folder of segment objects.
pub const JOURNAL_DIR: &str = "journal/";
/// The folder of artifact files.
pub const ARTIFACTS_DIR: &str = "artifacts/";
/// The head document.
pub const HEAD: &str = "head.json";
/// The writer lease.
pub const WRITER: &str = "writer.json";

/// The key of an object under a prefix (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(String);

impl Key {
    /// The key as S3 knows it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A key S3 listed (its shape is checked by whoever parses it).
    pub(super) fn listed(key: String) -> Key {
        Key(key)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn under(location: &S3Location, rest: &str) -> Key {
    if location.prefix.is_empty() {
        Key(rest.to_string())
    } else {
        Key(format!("{}/{rest}", location.prefix))
    }
}

/// `{prefix}/head.json`.
pub fn head_key(location: &S3Location) -> Key {
    under(location, HEAD)
}

/// `{prefix}/writer.json`.
pub fn writer_key(location: &S3Location) -> Key {
    under(location, WRITER)
}

/// The key of the segment object holding `first..=last`.
pub fn segment_key(location: &S3Location, first: u64, last: u64) -> Key {
    under(
        location,
        &format!("{JOURNAL_DIR}{}", names::sealed(first, last)),
    )
}

/// The prefix every segment key starts with (what a listing of segments asks for).
pub fn journal_prefix(location: &S3Location) -> Key {
    under(location, JOURNAL_DIR)
}

/// `(first, last)` of a segment key, or `None` for any other key.
pub fn parse_segment_key(location: &S3Location, key: &str) -> Option<(u64, u64)> {
    let name = key.strip_prefix(journal_prefix(location).as_str())?;
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
) -> Key {
    under(
        location,
        &format!("{ARTIFACTS_DIR}{session_id}/{collection_id}/{file_name}"),
    )
}

/// The key an `artifact.uploaded` event recorded, if it is an artifact key under `location`
/// (a key recorded for another prefix is never deleted or signed through this one).
pub fn recorded_artifact_key(location: &S3Location, recorded: &str) -> Option<Key> {
    let rest = recorded.strip_prefix(under(location, ARTIFACTS_DIR).as_str())?;
    let parts: Vec<&str> = rest.splitn(3, '/').collect();
    match parts.as_slice() {
        [session, collection, file]
            if [session, collection, file]
                .iter()
                .all(|p| !p.is_empty() && **p != "." && **p != "..") =>
        {
            Some(artifact_key(location, session, collection, file))
        }
        _ => None,
    }
}

/// `head.json`: how far the journal is shipped. Rewritten (conditionally, on the ETag of the
/// version this writer last wrote or saw) at the end of each shipping round that shipped
/// something.
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
    crate::journal::anchor::hex(bytes)
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
            a.as_str(),
            "p/journal/00000000000000000000-00000000000000000099.seg.zst"
        );
        assert!(a < b);
        assert_eq!(parse_segment_key(&l, b.as_str()), Some((100, 1_000_000)));
        assert_eq!(parse_segment_key(&l, "p/head.json"), None);
        assert_eq!(parse_segment_key(&l, "q/journal/x"), None);
        assert_eq!(head_key(&l).as_str(), "p/head.json");
        assert_eq!(writer_key(&l).as_str(), "p/writer.json");
        let bare: S3Location = "s3://bucket".parse().unwrap();
        assert_eq!(head_key(&bare).as_str(), "head.json");
        assert_eq!(
            parse_segment_key(&bare, segment_key(&bare, 5, 7).as_str()),
            Some((5, 7))
        );
        assert_eq!(hex(&[0, 255, 16]), "00ff10");
    }

    #[test]
    fn artifact_keys_build_and_recorded_ones_are_checked() {
        let l: S3Location = "s3://bucket/p".parse().unwrap();
        let key = artifact_key(&l, "s", "c", "a b.log");
        assert_eq!(key.as_str(), "p/artifacts/s/c/a b.log");
        assert_eq!(recorded_artifact_key(&l, key.as_str()), Some(key));
        for foreign in [
            "q/artifacts/s/c/a.log",
            "p/journal/x",
            "p/artifacts/s/c",
            "p/artifacts/s/../a.log",
            "p/artifacts//c/a.log",
        ] {
            assert_eq!(recorded_artifact_key(&l, foreign), None, "{foreign}");
        }
    }
}
