//! Logbook: an audit-grade flight recorder for long-running operations.
//!
//! Every progress change of a long operation is appended to an immutable, segment-compressed,
//! hash-chained [`journal`]; everything else (views, live streams, the copy in S3) is derived
//! from it by reading it from an offset.
//!
//! | module | role |
//! |---|---|
//! | [`journal`] | the append-only log: group commit, segments, sealing, readers, recovery, verify |
//! | [`event`] | typed events (DESIGN §3): validation, JSON Schemas, versions and upcasting |
//! | [`recorder`] | the one path into the journal: validate, check against state, append, apply |
//! | [`state`] | the domain fold: stateful validation, current and as-of views |
//! | [`envelope`] | records as JSON lines: offset, ts, schema version, then the payload |
//! | [`type_filter`] | `task.*,upgrade.failed` style filters over event types |
//! | [`timestamp`] | recorder timestamps (µs since epoch, RFC 3339 on the wire) |
//!
//! ```
//! use logbook::journal::{Journal, JournalConfig, StartAt};
//!
//! let dir = tempfile::tempdir()?;
//! let journal = Journal::open(dir.path(), JournalConfig::default())?;
//! let offset = journal.append(br#"{"type":"task.progress","task_id":"t-1","percentage":50.0}"#)?;
//! assert_eq!(offset, 0);
//! let mut reader = journal.reader(StartAt::Earliest)?;
//! let record = reader.next()?.expect("the record just appended");
//! assert_eq!(record.offset, 0);
//! journal.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::indexing_slicing))]
#![warn(missing_debug_implementations)]

pub mod envelope;
pub mod event;
pub mod journal;
pub mod recorder;
pub mod state;
pub mod timestamp;
pub mod type_filter;
