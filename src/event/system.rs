//! Events Logbook writes about itself:
//! - `journal.repaired`, appended by `Journal::open` with `repair: true` after it cut damaged
//!   records (see `journal::recovery`);
//! - `subscriber.skipped`, appended by a durable consumer that had to skip a record it can never
//!   deliver (an EventBridge entry over the request limit, see `eventbridge`), so the gap in
//!   what the consumer delivered is itself on the record.
//!
//! DESIGN.md §3 does not list it, but journals contain it, and every record must stay readable
//! as an [`Event`](super::Event); so it is a variant like the others, with a schema. Producers may
//! not append it: [`Event::validate`](super::Event::validate) refuses it
//! ([`EventError::Reserved`](super::EventError::Reserved)), so a repair note in the journal
//! always comes from the journal.
//!
//! Invariant: the fields are exactly those `Journal::open` writes; `quarantine` is written as
//! `null` when nothing was kept, which `Option` accepts.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::validate::{ID_MAX, ID_PATTERN, TEXT_MAX};

/// A durable consumer skipped the record at `skipped_offset`: it can never be delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriberSkipped {
    /// Idempotency key: `skipped-{consumer}-{skipped_offset}`, so a consumer that restarts
    /// before its checkpoint moved notes the skip once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub id: Option<String>,
    /// The consumer's name (e.g. `eventbridge`).
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub consumer: String,
    /// The offset of the record it skipped.
    pub skipped_offset: u64,
    /// The skipped record's event type.
    #[schemars(length(max = TEXT_MAX))]
    pub event_type: String,
    /// Why it cannot be delivered.
    #[schemars(length(max = TEXT_MAX))]
    pub reason: String,
}

/// The journal cut damaged committed records on open and says what it cut.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JournalRepaired {
    /// Idempotency key (never set by the journal; present for uniformity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = ID_MAX), pattern(ID_PATTERN))]
    pub id: Option<String>,
    /// First offset that was cut (this note takes its place).
    pub cut_from_offset: u64,
    /// Bytes cut from the segment.
    pub bytes_cut: u64,
    /// The segment file that was cut.
    #[schemars(length(max = TEXT_MAX))]
    pub segment: String,
    /// The damage found.
    #[schemars(length(max = TEXT_MAX))]
    pub reason: String,
    /// Where the cut bytes were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = TEXT_MAX))]
    pub quarantine: Option<String>,
}
