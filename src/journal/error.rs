//! Typed errors of the journal.
//!
//! Every error that concerns bytes on disk carries the path and, where one exists, the offset
//! of the first record that could not be trusted, so an operator can act on it without a
//! debugger. Damage to committed records ([`Damage`]) is a value of its own: recovery reports it,
//! `verify` reports it, and the writer refuses to append over it unless told to repair.

use std::fmt;
use std::path::PathBuf;

/// Errors returned by the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// An operating-system I/O call failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the writer lock of this journal.
    #[error(
        "journal {dir} is locked by another writer (pid {holder}); stop it or use a different --data directory"
    )]
    Locked {
        /// The journal directory.
        dir: PathBuf,
        /// The pid written into the lock file by the holder (or "unknown").
        holder: String,
    },
    /// Committed records are damaged; see [`Damage`].
    #[error("{0}")]
    Damaged(Damage),
    /// A record payload was empty.
    #[error("empty record payload")]
    EmptyRecord,
    /// A record payload exceeds the configured limit.
    #[error("record of {len} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// Payload length in bytes.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The writer hit an I/O error earlier; the journal refuses further appends (an fsync that
    /// failed cannot be retried safely).
    #[error("journal writer failed and refuses further appends: {0}")]
    WriterFailed(String),
    /// The journal was closed.
    #[error("journal is closed")]
    Closed,
    /// The journal was opened read-only.
    #[error("journal was opened read-only")]
    ReadOnly,
    /// A configuration value is out of range.
    #[error("invalid journal configuration: {0}")]
    Config(String),
    /// Segments cannot be imported into this directory (see `journal::import`), or a repair
    /// cannot be applied.
    #[error("{0}")]
    Import(String),
    /// A reader was asked for an offset that does not exist yet.
    #[error("offset {offset} is beyond the end of the journal (next offset is {next})")]
    OffsetBeyondEnd {
        /// The requested offset.
        offset: u64,
        /// The next offset the journal will assign.
        next: u64,
    },
}

impl JournalError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        JournalError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias for journal operations.
pub type Result<T, E = JournalError> = std::result::Result<T, E>;

/// Damage found in committed records: where, and what kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The first offset that cannot be trusted.
    pub offset: u64,
    /// The segment file holding it.
    pub segment: PathBuf,
    /// What is wrong.
    pub kind: DamageKind,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "journal damaged at offset {} in {}: {}",
            self.offset,
            self.segment.display(),
            self.kind
        )
    }
}

/// The kinds of damage `verify` and recovery distinguish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DamageKind {
    /// A frame's checksum does not match its bytes (bit flip, partial overwrite).
    Checksum,
    /// A frame's length field is impossible or the frame is cut short inside committed data.
    Frame(String),
    /// A record does not link to its predecessor: edited, reordered, inserted or deleted.
    ChainBroken,
    /// Offsets are not dense: a record is missing or duplicated.
    OffsetSequence {
        /// The offset that should have come next.
        expected: u64,
        /// The offset found instead.
        found: u64,
    },
    /// A record's timestamp is earlier than its predecessor's.
    TimeOrder,
    /// A compressed block cannot be decompressed.
    Block(String),
    /// A sealed segment's header, footer or block index is invalid or disagrees with its blocks.
    Footer(String),
    /// A segment file is missing: offsets jump between two segments.
    MissingSegment {
        /// The offset the next segment should start at.
        expected: u64,
        /// The offset the next segment present starts at.
        found: u64,
    },
}

impl fmt::Display for DamageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DamageKind::Checksum => write!(f, "checksum mismatch"),
            DamageKind::Frame(why) => write!(f, "bad frame: {why}"),
            DamageKind::ChainBroken => write!(
                f,
                "hash chain broken (record edited, reordered, inserted or deleted)"
            ),
            DamageKind::OffsetSequence { expected, found } => {
                write!(
                    f,
                    "offset out of sequence: expected {expected}, found {found}"
                )
            }
            DamageKind::TimeOrder => write!(f, "timestamp earlier than the previous record's"),
            DamageKind::Block(why) => write!(f, "unreadable compressed block: {why}"),
            DamageKind::Footer(why) => write!(f, "bad segment footer: {why}"),
            DamageKind::MissingSegment { expected, found } => write!(
                f,
                "missing segment: offsets jump from {expected} to {found}"
            ),
        }
    }
}

impl DamageKind {
    /// A short stable name for machine output (`verify --json`).
    pub fn code(&self) -> &'static str {
        match self {
            DamageKind::Checksum => "checksum",
            DamageKind::Frame(_) => "frame",
            DamageKind::ChainBroken => "chain_broken",
            DamageKind::OffsetSequence { .. } => "offset_sequence",
            DamageKind::TimeOrder => "time_order",
            DamageKind::Block(_) => "block",
            DamageKind::Footer(_) => "footer",
            DamageKind::MissingSegment { .. } => "missing_segment",
        }
    }
}
