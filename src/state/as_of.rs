//! Views as of a point in the journal: replay its records into a fresh [`State`] up to an
//! offset or a time. Post-mortems use this ("what did the upgrade look like at 14:02?").

use crate::event::upcast;
use crate::journal::{Journal, JournalError, StartAt};

use super::State;

/// How far to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Every committed record.
    End,
    /// Records up to and including this offset.
    Offset(u64),
    /// Records with a timestamp at or before this time (µs since epoch).
    Time(i64),
}

impl std::str::FromStr for Until {
    type Err = String;

    /// An offset (`1234`) or an RFC 3339 time (`2026-11-23T10:00:00Z`).
    fn from_str(text: &str) -> Result<Until, String> {
        let text = text.trim();
        match text.parse::<u64>() {
            Ok(offset) => Ok(Until::Offset(offset)),
            Err(_) => crate::timestamp::parse_rfc3339(text)
                .map(Until::Time)
                .map_err(|e| format!("expected an offset or an RFC 3339 time: {e}")),
        }
    }
}

/// The state after replaying `journal` up to `until`. Records that are not typed events
/// (journals from before typed events) are skipped; they belong to no view.
pub fn state_at(journal: &Journal, until: Until) -> Result<State, JournalError> {
    let end = journal.next_offset();
    if let Until::Offset(offset) = until
        && offset >= end
    {
        return Err(JournalError::OffsetBeyondEnd { offset, next: end });
    }
    let mut state = State::new();
    let mut reader = journal.reader(StartAt::Earliest)?;
    while let Some(record) = reader.next()? {
        let past = match until {
            Until::End => false,
            Until::Offset(offset) => record.offset > offset,
            Until::Time(ts) => record.ts_us > ts,
        };
        if past {
            break;
        }
        if let Ok(event) = upcast(record.schema_version, &record.payload) {
            state.apply(record.offset, record.ts_us, &event);
        }
    }
    Ok(state)
}
