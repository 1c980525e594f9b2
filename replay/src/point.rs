//! Points and ranges in a journal: `OFFSET` (a record's offset) or an RFC 3339 time, as given to
//! `--at`, `--from`, `--until` and `--to`.
//!
//! Semantics (the same as `logbook show --at` and `logbook::state::state_at`): an offset point
//! includes that record; a time point includes every record stamped at or before it. A range
//! starts at its `from` (the first record at or after the offset or time) and ends after its
//! `until` (inclusive). Invariant: [`Range::check`] has accepted every offset against the
//! journal's end before a scan starts, so "beyond the end" is always a usage error (exit 2),
//! never an empty answer; times beyond the end are valid (they select nothing or everything).

use logbook::state::Until;
use logbook::timestamp::format_us;

use crate::error::{ReplayError, Result};

/// A point in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// A record's offset.
    Offset(u64),
    /// A time, µs since the epoch.
    Time(i64),
}

impl Point {
    /// Parses `OFFSET` or an RFC 3339 time; `flag` names the option in the error.
    pub fn parse(flag: &str, text: &str) -> Result<Point> {
        match text.parse::<Until>() {
            Ok(Until::Offset(offset)) => Ok(Point::Offset(offset)),
            Ok(Until::Time(ts)) => Ok(Point::Time(ts)),
            Ok(Until::End) | Err(_) => Err(ReplayError::BadInput(format!(
                "{flag}: expected an offset or an RFC 3339 time (e.g. 2026-11-23T10:00:00Z), \
                 got {text:?}"
            ))),
        }
    }

    /// Whether a record at `offset`/`ts_us` lies after this point (used as an inclusive end).
    pub fn is_before(&self, offset: u64, ts_us: i64) -> bool {
        match *self {
            Point::Offset(o) => offset > o,
            Point::Time(t) => ts_us > t,
        }
    }

    /// Whether a record at `offset`/`ts_us` lies before this point (used as a start).
    pub fn is_after(&self, offset: u64, ts_us: i64) -> bool {
        match *self {
            Point::Offset(o) => offset < o,
            Point::Time(t) => ts_us < t,
        }
    }

    /// The point as the user wrote it, normalised (`offset 12`, `2026-...Z`).
    pub fn describe(&self) -> String {
        match *self {
            Point::Offset(o) => format!("offset {o}"),
            Point::Time(t) => format_us(t),
        }
    }

    /// Checks an offset point against the journal's end (`end` = next offset).
    pub fn check(&self, flag: &str, end: u64) -> Result<()> {
        match *self {
            Point::Offset(o) if o >= end => Err(ReplayError::BadInput(match end {
                0 => format!("{flag}: offset {o} is beyond the end: the journal is empty"),
                _ => format!(
                    "{flag}: offset {o} is beyond the end of the journal (last offset is {})",
                    end - 1
                ),
            })),
            _ => Ok(()),
        }
    }
}

/// A range of records: from `from` (inclusive) until `until` (inclusive); open ends are the
/// journal's ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Range {
    /// First point, if bounded.
    pub from: Option<Point>,
    /// Last point, if bounded.
    pub until: Option<Point>,
}

impl Range {
    /// The whole journal.
    pub fn all() -> Range {
        Range::default()
    }

    /// Records up to and including `until`.
    pub fn until(until: Point) -> Range {
        Range {
            from: None,
            until: Some(until),
        }
    }

    /// Checks both ends against the journal's end and against each other (two offsets or two
    /// times in the wrong order).
    pub fn check(&self, from_flag: &str, until_flag: &str, end: u64) -> Result<()> {
        if let Some(from) = &self.from {
            from.check(from_flag, end)?;
        }
        if let Some(until) = &self.until {
            until.check(until_flag, end)?;
        }
        match (self.from, self.until) {
            (Some(Point::Offset(a)), Some(Point::Offset(b))) if a > b => Err(
                ReplayError::BadInput(format!("{from_flag} {a} is after {until_flag} {b}")),
            ),
            (Some(Point::Time(a)), Some(Point::Time(b))) if a > b => {
                Err(ReplayError::BadInput(format!(
                    "{from_flag} {} is after {until_flag} {}",
                    format_us(a),
                    format_us(b)
                )))
            }
            _ => Ok(()),
        }
    }

    /// Whether the record lies before the range's start.
    pub fn before_start(&self, offset: u64, ts_us: i64) -> bool {
        self.from.is_some_and(|p| p.is_after(offset, ts_us))
    }

    /// Whether the record lies after the range's end.
    pub fn past_end(&self, offset: u64, ts_us: i64) -> bool {
        self.until.is_some_and(|p| p.is_before(offset, ts_us))
    }

    /// The smallest offset the range can hold (an offset start), for seeking.
    pub fn first_offset(&self) -> u64 {
        match self.from {
            Some(Point::Offset(o)) => o,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_and_times() {
        assert_eq!(Point::parse("--at", "12").ok(), Some(Point::Offset(12)));
        assert!(matches!(
            Point::parse("--at", "2026-11-23T10:00:00Z"),
            Ok(Point::Time(_))
        ));
        let err = Point::parse("--at", "yesterday")
            .err()
            .map(|e| e.exit_code());
        assert_eq!(err, Some(2));
    }

    #[test]
    fn range_bounds() {
        let r = Range {
            from: Some(Point::Offset(3)),
            until: Some(Point::Offset(5)),
        };
        assert!(r.before_start(2, 0));
        assert!(!r.before_start(3, 0));
        assert!(!r.past_end(5, 0));
        assert!(r.past_end(6, 0));
        assert!(r.check("--from", "--until", 6).is_ok());
        assert!(r.check("--from", "--until", 5).is_err());
        let backwards = Range {
            from: Some(Point::Offset(5)),
            until: Some(Point::Offset(3)),
        };
        assert!(backwards.check("--from", "--until", 10).is_err());
    }
}
