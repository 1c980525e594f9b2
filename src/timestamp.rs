//! Recorder timestamps: microseconds since the Unix epoch (UTC), shown as RFC 3339 with six
//! fractional digits and a `Z` suffix, e.g. `2026-11-22T23:40:00.123456Z`.

use chrono::{DateTime, SecondsFormat, Utc};

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> i64 {
    Utc::now().timestamp_micros()
}

/// Formats a timestamp as RFC 3339 UTC with microseconds.
pub fn format_us(ts_us: i64) -> String {
    match DateTime::<Utc>::from_timestamp_micros(ts_us) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Micros, true),
        None => format!("invalid-timestamp({ts_us})"),
    }
}

/// Parses an RFC 3339 timestamp (any offset) into microseconds since the epoch.
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc).timestamp_micros())
        .map_err(|e| format!("not an RFC 3339 time ({e}): {text:?}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip() {
        let ts = 1_795_000_000_123_456;
        let text = super::format_us(ts);
        assert!(text.ends_with(".123456Z"), "{text}");
        assert_eq!(super::parse_rfc3339(&text), Ok(ts));
        assert!(super::parse_rfc3339("yesterday").is_err());
    }
}
