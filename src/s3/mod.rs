//! S3 (DESIGN.md §7): sealed segments and artifact files shipped to a bucket, and the journal
//! restored (or followed) from it on another machine.
//!
//! | file | role |
//! |---|---|
//! | `mod.rs` | [`S3Location`] (`s3://bucket/prefix`), [`client`], [`S3Error`] |
//! | [`layout`] | the only place keys are built and parsed; `head.json`, metadata names |
//! | [`objects`] | [`Objects`]: the one object client (list, get, head, conditional puts, multipart, delete), request counts |
//! | [`timeouts`] | [`Timeouts`]: connect, per attempt, and per byte of body |
//! | [`lease`] | fencing: one writer per prefix (`writer.json`), proven before every object write |
//! | [`prefix`] | what a prefix holds (head, contiguous segments, their writer) against the local journal |
//! | [`ship`] | [`Shipper`]: sealed segments → `journal/`, `head.json`; checks the prefix each round (`ship/run.rs`: once, all, or as a task) |
//! | [`queue`] | [`ArtifactQueue`]: pending artifact uploads, beside segment shipping, never in its way |
//! | [`upload`] | artifact files → `artifacts/...`: single or multipart (`upload/multipart.rs`, streamed from the file), verified, journaled |
//! | [`status`] | [`ShipStatus`]: what shipping is doing, for `/v1/health` |
//! | [`stop`] | [`stop::Stop`]: how the shipper's tasks hear the process is stopping |
//! | [`segments`] | listing segment objects, contiguity, download + verify of one object |
//! | [`restore`] | download, verify and import concurrently, then rebuild the views |
//! | [`follow`] | [`Follower`]: keep applying newly shipped segments (a read-only replica) |
//!
//! Layout under `{prefix}/` (see [`layout`]):
//! - `journal/{first:020}-{last:020}.seg.zst`: one immutable object per sealed segment, the
//!   segment file's bytes unchanged; metadata `first-offset`, `last-offset`, `count`, `blake3`
//!   (of the object), `chain-start`, `chain-end` (hex), `writer-id`.
//! - `head.json`: the shipped end (`next_offset`, last key, chain end, writer), rewritten with
//!   `If-Match` at the end of each shipping round that shipped something: what a follower polls
//!   (one GET) instead of listing, and what the shipper checks (one HEAD) each round.
//! - `writer.json`: the lease naming the one data dir allowed to ship here.
//! - `artifacts/{session_id}/{collection_id}/{file_name}`: artifact files; metadata `sha256`,
//!   `artifact-id`, `artifact-type`, `tags`, `task-id`.
//!
//! # Invariants
//!
//! - **Never overwrite.** Segment objects and the lease are created with `If-None-Match: *`; an
//!   existing object with the same BLAKE3 is a segment shipped before a crash (accepted), with
//!   another is a conflict (refused, nothing written). `head.json` is replaced only with
//!   `If-Match` on the version this writer wrote or saw.
//! - **One writer per prefix, proven at every write.** The lease is checked before each object
//!   written; a writer that lost it stops for good, naming the holder. A prefix whose head or
//!   segments name another writer is refused even when its lease is missing; restore refuses
//!   a prefix whose segment objects carry two writer ids.
//! - **The copy is checked, not assumed.** Each round compares `head.json`'s ETag with the one
//!   the shipper wrote; a prefix wiped or rewound is re-shipped from the local sealed segments
//!   (the lease taken again), and a copy that cannot be made whole (S3 holds records the local
//!   journal no longer has) stops shipping, loudly, in the log and `/v1/health`.
//! - **Nothing shipped out of order; progress never ahead of S3.** Segments are uploaded in
//!   offset order, the checkpoint (`ship:{location}` in `state.sqlite`, an [`Anchor`]: offset
//!   and chain hash) moves only after an upload succeeded, and `head.json` names only fully
//!   uploaded segments.
//! - **Trust nothing downloaded.** Restore verifies every block, record and the chain across
//!   objects, and names the object and offset of the first problem.
//! - **Bounded waits.** Every request has a timeout ([`Timeouts`]); a stop signal ends
//!   shipping within a grace period whatever S3 does (in-flight work finished or abandoned;
//!   multipart uploads aborted, best effort).
//!
//! Configuration follows AWS conventions ([`crate::aws::load_sdk_config`]); with an endpoint URL
//! (`AWS_ENDPOINT_URL`, S3-compatible stores) the client uses path-style addressing.
//!
//! [`Anchor`]: crate::journal::Anchor

pub mod follow;
pub mod layout;
pub mod lease;
pub mod objects;
pub mod prefix;
pub mod queue;
pub mod restore;
pub mod segments;
pub mod ship;
pub mod status;
pub mod stop;
pub mod timeouts;
pub mod upload;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use aws_sdk_s3::Client;

pub use follow::Follower;
pub use lease::Lease;
pub use objects::Objects;
pub use queue::ArtifactQueue;
pub use restore::{RestoreOptions, RestoreReport, restore};
pub use ship::{ShipProgress, ShipReport, Shipper};
pub use status::ShipStatus;
pub use timeouts::Timeouts;
pub use upload::{ArtifactUploader, UploadConfig};

/// A bucket and a key prefix: `s3://bucket/prefix` (the prefix may be empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket.
    pub bucket: String,
    /// The key prefix, without leading or trailing `/` (may be empty).
    pub prefix: String,
}

impl FromStr for S3Location {
    type Err = S3Error;

    fn from_str(text: &str) -> Result<S3Location, S3Error> {
        let bad = |why: &str| S3Error::BadUrl {
            url: text.to_string(),
            reason: why.to_string(),
        };
        let rest = text
            .strip_prefix("s3://")
            .ok_or_else(|| bad("must start with s3://"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_bucket {
            return Err(bad(
                "the bucket name must be 3-63 characters of a-z, 0-9, '-' and '.'",
            ));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|part| part == "." || part == "..")
            || prefix.contains("//")
            || prefix.chars().any(char::is_control)
        {
            return Err(bad(
                "the prefix has an empty, '.' or '..' part or a control character",
            ));
        }
        Ok(S3Location {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// An S3 client from the shared configuration with the default [`Timeouts`]; path-style
/// addressing when an endpoint URL is configured (S3-compatible stores, where virtual-hosted
/// buckets do not resolve).
pub fn client(sdk: &aws_config::SdkConfig) -> Client {
    client_with(sdk, &Timeouts::default())
}

/// [`client`] with other timeouts.
pub fn client_with(sdk: &aws_config::SdkConfig, timeouts: &Timeouts) -> Client {
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(sdk.endpoint_url().is_some())
        .timeout_config(timeouts.config())
        .build();
    Client::from_conf(config)
}

/// Why an S3 operation failed.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// Not an `s3://bucket/prefix` URL.
    #[error("{url}: {reason}")]
    BadUrl {
        /// The text given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A request failed (after the SDK's retries).
    #[error("S3 {operation} {key}: {message}")]
    Request {
        /// The operation (PutObject, GetObject...).
        operation: &'static str,
        /// The object key (or prefix).
        key: String,
        /// The SDK's error, with its context.
        message: String,
    },
    /// Another data dir holds the prefix's writer lease.
    #[error(
        "{location} belongs to another journal: its writer is {holder}; this data dir is writer \
         {ours}. Ship to another prefix (two journals in one prefix would corrupt it)"
    )]
    Fenced {
        /// The prefix.
        location: S3Location,
        /// The lease found.
        holder: Box<Lease>,
        /// This data dir's writer id.
        ours: String,
    },
    /// This writer's lease was taken by another writer while it shipped: it stopped, for good.
    #[error(
        "lost the writer lease of {location}: it is now held by writer {holder}; this data dir \
         (writer {ours}) stopped shipping there and writes nothing more. If that writer is a \
         mistake, stop it and delete {location}/writer.json, then restart this one"
    )]
    LeaseLost {
        /// The prefix.
        location: S3Location,
        /// The lease found.
        holder: Box<Lease>,
        /// This data dir's writer id.
        ours: String,
    },
    /// The prefix holds another writer's journal, although its lease is missing.
    #[error(
        "{location} belongs to another journal: {evidence} names writer {writer_id}, and its \
         writer lease (writer.json) is missing; this data dir is writer {ours}. Not taking the \
         lease: ship to another prefix (two journals in one prefix would corrupt it), or delete \
         the prefix first if that journal is gone for good"
    )]
    ClaimedByOther {
        /// The prefix.
        location: S3Location,
        /// The writer its objects name.
        writer_id: String,
        /// Which object names it.
        evidence: String,
        /// This data dir's writer id.
        ours: String,
    },
    /// The prefix holds segment objects of two writers.
    #[error(
        "the journal in S3 holds two writers' segments: {first_key} was shipped by writer \
         {first}, {other_key} by writer {other}; a prefix holds one writer's journal, so it \
         cannot be restored as one (restore stopped, nothing kept)"
    )]
    MixedWriters {
        /// The first writer id seen.
        first: String,
        /// An object it shipped.
        first_key: String,
        /// The other writer id.
        other: String,
        /// An object that one shipped.
        other_key: String,
    },
    /// S3 holds records the local journal does not (a local cut, another journal): the copy
    /// cannot be made whole from here.
    #[error(
        "refusing to ship to {location}: {reason}. Shipping would fork the copy; nothing was \
         written. Restore from {location} into a new directory, or ship this journal to another \
         prefix"
    )]
    Diverged {
        /// The prefix.
        location: S3Location,
        /// What differs, naming the offsets.
        reason: String,
    },
    /// Abandoned because the process is stopping.
    #[error("stopped")]
    Stopped,
    /// An object that should be identical to a local file is not.
    #[error("{key} already exists in S3 with different content ({reason}); refusing to continue")]
    Conflict {
        /// The object.
        key: String,
        /// What differs.
        reason: String,
    },
    /// A downloaded segment fails verification.
    #[error("{key}: {reason} (at offset {offset})")]
    Tampered {
        /// The object.
        key: String,
        /// The first offset at fault.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The objects do not form a contiguous journal.
    #[error("{reason}")]
    Gap {
        /// What is missing, naming the objects around the gap.
        reason: String,
    },
    /// The artifact cannot be uploaded or served from S3.
    #[error("artifact {artifact_id}: {reason}")]
    Artifact {
        /// The artifact.
        artifact_id: String,
        /// Why.
        reason: String,
    },
    /// A local file operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// This data dir cannot follow a prefix (it is not a follower's, or was restored to a
    /// point in time).
    #[error("{0}")]
    CannotFollow(String),
    /// The restore target already holds a journal.
    #[error("{0} already holds a journal; restore into an empty or new directory")]
    NotEmpty(PathBuf),
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    /// Recording an event failed.
    #[error(transparent)]
    Record(#[from] crate::recorder::RecordError),
    /// The projection failed.
    #[error(transparent)]
    Projection(#[from] crate::projection::ProjectionError),
    /// `state.sqlite` failed.
    #[error("state.sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

impl S3Error {
    /// Whether the caller's input is at fault (exit code 2): a bad URL, a non-empty target, a
    /// data dir that cannot follow, an artifact that is unknown, deleted, not uploaded or no
    /// longer the recorded file.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            S3Error::BadUrl { .. }
                | S3Error::NotEmpty(_)
                | S3Error::CannotFollow(_)
                | S3Error::Artifact { .. }
        )
    }

    /// Whether retrying later may succeed (network, server errors), as opposed to a refusal.
    pub fn is_transient(&self) -> bool {
        matches!(self, S3Error::Request { .. } | S3Error::Io { .. })
    }

    /// Whether this writer may no longer write to the prefix (fenced, lease lost, claimed by
    /// another writer, diverged): shipping stops for good.
    pub fn is_fencing(&self) -> bool {
        matches!(
            self,
            S3Error::Fenced { .. }
                | S3Error::LeaseLost { .. }
                | S3Error::ClaimedByOther { .. }
                | S3Error::Diverged { .. }
        )
    }

    pub(crate) fn request<E>(operation: &'static str, key: &str, error: E) -> S3Error
    where
        E: std::error::Error + 'static,
    {
        S3Error::Request {
            operation,
            key: key.to_string(),
            message: error_chain(&error),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> S3Error {
        S3Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// An error and its sources on one line (`service error: NoSuchBucket: The specified bucket
/// does not exist`), each cause once: the SDK's own `DisplayErrorContext` ends with the whole
/// raw HTTP response in `Debug` form, which is no message for a user.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn parses_locations() {
        let l: S3Location = "s3://my-bucket/team/prod/".parse().unwrap();
        assert_eq!(l.bucket, "my-bucket");
        assert_eq!(l.prefix, "team/prod");
        assert_eq!(l.to_string(), "s3://my-bucket/team/prod");
        let bare: S3Location = "s3://bucket".parse().unwrap();
        assert_eq!(bare.to_string(), "s3://bucket");
        for bad in [
            "http://b/p",
            "s3://",
            "s3://B/p",
            "s3://ab/p",
            "s3://bucket/a/../b",
            "s3://bucket/a//b",
        ] {
            assert!(bad.parse::<S3Location>().is_err(), "{bad}");
        }
    }
}
