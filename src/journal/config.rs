//! Journal configuration: durability policy, segment rolling, block size, bounds, and the
//! storage the files live on.

use std::sync::Arc;
use std::time::Duration;

use super::error::{JournalError, Result};
use super::storage::Storage;

/// When an append is acknowledged; see the `writer` module for the exact guarantees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Acknowledge after the fdatasync covering the record (group commit).
    Sync,
    /// Acknowledge after the write; fdatasync at most every `interval`.
    Batch {
        /// Longest time between a write and its fdatasync.
        interval: Duration,
    },
    /// Acknowledge once sequenced; fsync only when a segment rolls or the journal closes.
    None,
}

impl Durability {
    /// `sync`, `batch` or `none` (the policy's name, for labels and reports).
    pub fn name(self) -> &'static str {
        match self {
            Durability::Sync => "sync",
            Durability::Batch { .. } => "batch",
            Durability::None => "none",
        }
    }
}

impl std::str::FromStr for Durability {
    type Err = String;

    /// Parses `sync`, `none`, `batch` (100 ms) or `batch:N` (N milliseconds).
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text {
            "sync" => Ok(Durability::Sync),
            "none" => Ok(Durability::None),
            "batch" => Ok(Durability::Batch {
                interval: Duration::from_millis(100),
            }),
            other => match other.strip_prefix("batch:").map(str::parse::<u64>) {
                Some(Ok(ms)) if ms > 0 => Ok(Durability::Batch {
                    interval: Duration::from_millis(ms),
                }),
                _ => Err(format!(
                    "unknown durability {other:?}: expected sync, batch, batch:MILLIS or none"
                )),
            },
        }
    }
}

/// Journal settings. `Default` gives the production defaults.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// Acknowledgement policy.
    pub durability: Durability,
    /// The active segment rolls once it holds at least this many bytes.
    pub segment_bytes: u64,
    /// The active segment rolls once it is this old and holds a record (bounds how long a quiet
    /// journal keeps records out of sealed segments, and so out of S3).
    pub segment_age: Duration,
    /// Target decompressed size of a sealed block (the unit a reader decompresses).
    pub block_bytes: usize,
    /// zstd level for sealed blocks.
    pub compression_level: i32,
    /// Largest payload accepted.
    pub record_bytes_max: usize,
    /// Bound of the pending buffer between producers and the flusher.
    pub queue_bytes: usize,
    /// Records between sparse index points of the active segment.
    pub index_interval: u64,
    /// On open, cut damaged committed records instead of refusing (recorded in the journal).
    pub repair: bool,
    /// Where the files live: the operating system's file system, or a simulation in tests.
    pub storage: Arc<dyn Storage>,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            durability: Durability::Sync,
            segment_bytes: 32 << 20,
            segment_age: Duration::from_secs(10),
            block_bytes: 1 << 20,
            compression_level: 3,
            record_bytes_max: 4 << 20,
            queue_bytes: 4 << 20,
            index_interval: 128,
            repair: false,
            storage: super::storage::os(),
        }
    }
}

impl JournalConfig {
    /// Checks ranges; called by `Journal::open`.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: &str| Err(JournalError::Config(why.into()));
        if self.segment_bytes < 1024 {
            return bad("segment_bytes must be at least 1024");
        }
        if self.segment_age.is_zero() {
            return bad("segment_age must be positive");
        }
        if self.block_bytes == 0 || self.block_bytes > 16 << 20 {
            return bad("block_bytes must be in 1..=16 MiB");
        }
        if self.record_bytes_max == 0 || self.record_bytes_max > 16 << 20 {
            return bad("record_bytes_max must be in 1..=16 MiB");
        }
        if self.queue_bytes < 64 << 10 {
            return bad("queue_bytes must be at least 64 KiB");
        }
        if self.index_interval == 0 {
            return bad("index_interval must be positive");
        }
        if !(1..=19).contains(&self.compression_level) {
            return bad("compression_level must be in 1..=19");
        }
        Ok(())
    }
}
