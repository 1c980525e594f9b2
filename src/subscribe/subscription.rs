//! [`Subscription`]: a filtered reader of the journal from a start point ([`From`]).
//!
//! Invariants: offsets are examined densely and in order from the start, each once (the
//! journal [`Reader`] guarantees it, whether the record comes from a sealed block, an unsealed
//! segment, or was committed a microsecond ago, so there is no catch-up/live hand-over to get
//! wrong); [`Subscription::position`] is always the next offset to examine, so matching and
//! skipped records both advance it and a resume from it misses nothing. Nothing here is ever
//! pushed to by the writer: an append never waits for a subscription, and a subscription holds
//! at most the reader's one buffered block plus the record it is returning.

use std::time::Instant;

use crate::event::{Event, upcast};
use crate::journal::{Journal, Reader, Record, StartAt};

use super::filter::EventFilter;
use super::{Result, SubscribeError};

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// At offset 0.
    Earliest,
    /// After the last record visible to readers when the subscription is created: only new
    /// records. (Under `Durability::None` an acknowledged append may not be visible yet; call
    /// `Journal::wait_visible` first to start strictly after it.)
    Latest,
    /// At this offset (at most the journal's next offset).
    Offset(u64),
    /// At the first record whose timestamp (µs since epoch) is at or after this.
    Time(i64),
}

impl From {
    fn start_at(self) -> StartAt {
        match self {
            From::Earliest => StartAt::Earliest,
            From::Latest => StartAt::Latest,
            From::Offset(n) => StartAt::Offset(n),
            From::Time(t) => StartAt::Time(t),
        }
    }
}

impl std::str::FromStr for From {
    type Err = SubscribeError;

    /// `earliest`, `latest`, an offset (`42`), or an RFC 3339 time.
    fn from_str(text: &str) -> Result<From> {
        let text = text.trim();
        match text {
            "earliest" => Ok(From::Earliest),
            "latest" => Ok(From::Latest),
            _ if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => text
                .parse()
                .map(From::Offset)
                .map_err(|e| SubscribeError::Invalid(format!("offset {text:?}: {e}"))),
            _ => crate::timestamp::parse_rfc3339(text)
                .map(From::Time)
                .map_err(|e| {
                    SubscribeError::Invalid(format!(
                        "from must be earliest, latest, an offset or an RFC 3339 time: {e}"
                    ))
                }),
        }
    }
}

/// One delivered record: the record as stored, and its event when the payload is a typed event
/// (only an empty filter delivers records that are not).
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The record (offset, timestamp, schema version, payload, hash).
    pub record: Record,
    /// Its payload upcast to the current event shape, if it is a typed event.
    pub event: Option<Event>,
}

impl Delivery {
    /// The record's offset.
    pub fn offset(&self) -> u64 {
        self.record.offset
    }

    /// The record's timestamp (µs since epoch).
    pub fn ts_us(&self) -> i64 {
        self.record.ts_us
    }
}

/// A filtered, ordered reader; see the module docs.
#[derive(Debug)]
pub struct Subscription {
    reader: Reader,
    filter: EventFilter,
}

impl Subscription {
    /// Subscribes to `journal` from `from`, delivering records that pass `filter`. Fails if an
    /// offset is past the journal's end.
    pub fn new(journal: &Journal, from: From, filter: EventFilter) -> Result<Subscription> {
        Ok(Subscription {
            reader: journal.reader(from.start_at())?,
            filter,
        })
    }

    /// The next offset to examine (one past the last delivered or skipped record).
    pub fn position(&self) -> u64 {
        self.reader.position()
    }

    /// The anchor at [`Subscription::position`], if known without a read.
    pub fn anchor(&self) -> Option<crate::journal::Anchor> {
        self.reader.anchor()
    }

    /// The anchor at `next_offset` of the subscribed journal.
    pub fn anchor_at(&self, next_offset: u64) -> Result<crate::journal::Anchor> {
        Ok(self.reader.anchor_at(next_offset)?)
    }

    /// The filter.
    pub fn filter(&self) -> &EventFilter {
        &self.filter
    }

    /// The next matching record already committed, without waiting; `None` once caught up.
    pub fn try_next(&mut self) -> Result<Option<Delivery>> {
        while let Some(record) = self.reader.next()? {
            if let Some(delivery) = self.check(record) {
                return Ok(Some(delivery));
            }
        }
        Ok(None)
    }

    /// Waits up to `deadline` (forever with `None`) for the next matching record; `Ok(None)` on
    /// timeout, with the records skipped meanwhile still consumed. Errors once the journal is
    /// closed and every committed record has been examined.
    pub fn next_blocking(&mut self, deadline: Option<Instant>) -> Result<Option<Delivery>> {
        while let Some(record) = self.reader.next_blocking(deadline)? {
            if let Some(delivery) = self.check(record) {
                return Ok(Some(delivery));
            }
        }
        Ok(None)
    }

    /// Waits (asynchronously, never blocking the runtime) for the next matching record. Errors
    /// once the journal is closed and every committed record has been examined.
    pub async fn next_async(&mut self) -> Result<Delivery> {
        loop {
            let record = self.reader.next_async().await?;
            if let Some(delivery) = self.check(record) {
                return Ok(delivery);
            }
        }
    }

    fn check(&self, record: Record) -> Option<Delivery> {
        let event = upcast(record.schema_version, &record.payload).ok();
        self.filter
            .matches_decoded(event.as_ref())
            .then_some(Delivery { record, event })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_start_points() {
        assert_eq!("earliest".parse::<From>().unwrap(), From::Earliest);
        assert_eq!("latest".parse::<From>().unwrap(), From::Latest);
        assert_eq!("42".parse::<From>().unwrap(), From::Offset(42));
        assert_eq!(
            "1970-01-01T00:00:01Z".parse::<From>().unwrap(),
            From::Time(1_000_000)
        );
        assert!("yesterday".parse::<From>().is_err());
        assert!("".parse::<From>().is_err());
    }
}
