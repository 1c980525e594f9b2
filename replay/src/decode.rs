//! Records as the analysis commands see them: offset, time and the typed event (upcast from
//! the record's schema version), parsed on the scanner's worker threads.
//!
//! A record that is not a readable event (a pre-typed journal, a newer schema version) is kept
//! with the reason instead of its event: commands show it or count it, never drop it silently.

use logbook::event::{Event, upcast};
use logbook::journal::Record;

/// One record, decoded.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// Offset.
    pub offset: u64,
    /// Recorder time, µs since the epoch.
    pub ts_us: i64,
    /// The typed event, or why the payload is not one.
    pub event: Result<Event, String>,
}

/// Decodes a record (the scanner's `map` for typed commands).
pub fn decode(record: Record) -> Decoded {
    Decoded {
        offset: record.offset,
        ts_us: record.ts_us,
        event: upcast(record.schema_version, &record.payload).map_err(|e| e.to_string()),
    }
}
