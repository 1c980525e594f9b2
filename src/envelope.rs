//! The envelope: how a journal record is shown outside the process (NDJSON from `events`, and
//! later WebSocket frames): the payload object with the recorder's fields first,
//! `{"offset":N,"ts":"<RFC 3339 µs Z>","schema_version":V, ...payload fields}`.
//!
//! Invariant: payloads Logbook writes are JSON objects that do not use the reserved keys
//! ([`RESERVED_KEYS`]); [`check_payload`] enforces it at the edge, so the envelope can be
//! spliced in without re-parsing.

use serde::de::IgnoredAny;
use serde_json::{Map, Value};

use crate::journal::Record;
use crate::timestamp::format_us;

/// Keys the envelope adds; payloads may not use them.
pub const RESERVED_KEYS: [&str; 3] = ["offset", "ts", "schema_version"];

/// Why an input line is not an acceptable payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Not JSON at all.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// JSON, but not an object.
    #[error("expected a JSON object, found {0}")]
    NotObject(&'static str),
    /// Uses a key the envelope reserves.
    #[error("field {0:?} is reserved for the envelope")]
    Reserved(&'static str),
}

/// Parses `bytes` as one JSON object payload and returns it in compact form (key order kept).
pub fn check_payload(bytes: &[u8]) -> Result<Vec<u8>, PayloadError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| PayloadError::Json(e.to_string()))?;
    let Value::Object(map) = value else {
        return Err(PayloadError::NotObject(kind(&value)));
    };
    if let Some(key) = RESERVED_KEYS.iter().find(|k| map.contains_key(**k)) {
        return Err(PayloadError::Reserved(key));
    }
    serde_json::to_vec(&Value::Object(map)).map_err(|e| PayloadError::Json(e.to_string()))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The record as one line of JSON with its envelope (no trailing newline).
///
/// The payload's bytes are spliced in unchanged when they are a JSON object without reserved
/// keys (everything Logbook itself writes); anything else (possible only through the raw
/// library API) is wrapped as `"payload": <JSON value or string>` so the line is always valid
/// JSON with unique keys.
pub fn to_json_line(record: &Record) -> String {
    let head = format!(
        "{{\"offset\":{},\"ts\":\"{}\",\"schema_version\":{}",
        record.offset,
        format_us(record.ts_us),
        record.schema_version
    );
    let object =
        serde_json::from_slice::<std::collections::BTreeMap<String, IgnoredAny>>(&record.payload);
    match object {
        Ok(map) if !RESERVED_KEYS.iter().any(|k| map.contains_key(*k)) => {
            let body = std::str::from_utf8(&record.payload).unwrap_or("{}").trim();
            let inner = body
                .strip_prefix('{')
                .and_then(|b| b.strip_suffix('}'))
                .unwrap_or("")
                .trim();
            if inner.is_empty() {
                format!("{head}}}")
            } else {
                format!("{head},{inner}}}")
            }
        }
        _ => {
            let value = serde_json::from_slice::<Value>(&record.payload).unwrap_or_else(|_| {
                Value::String(String::from_utf8_lossy(&record.payload).into_owned())
            });
            let mut map = Map::new();
            map.insert("payload".into(), value);
            let body = Value::Object(map).to_string();
            format!("{head},{}", body.strip_prefix('{').unwrap_or(&body))
        }
    }
}

/// The payload's `type` field, if it has one.
pub fn event_type(payload: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Typed {
        #[serde(rename = "type")]
        kind: String,
    }
    serde_json::from_slice::<Typed>(payload)
        .ok()
        .map(|t| t.kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(payload: &str) -> Record {
        Record {
            offset: 7,
            ts_us: 0,
            schema_version: 1,
            payload: payload.as_bytes().to_vec(),
            hash: [0; 32],
        }
    }

    #[test]
    fn envelope_is_spliced_first() {
        let line = to_json_line(&record(r#"{"type":"x","a":1}"#));
        assert_eq!(
            line,
            r#"{"offset":7,"ts":"1970-01-01T00:00:00.000000Z","schema_version":1,"type":"x","a":1}"#
        );
        for odd in [
            "{}",
            " { } ",
            "[1]",
            "not json",
            r#"{"offset":1}"#,
            "{\"a\":",
        ] {
            let line = to_json_line(&record(odd));
            let v: Value = serde_json::from_str(&line).expect("always valid JSON");
            assert_eq!(v["offset"], 7, "{odd}: {line}");
        }
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            check_payload(b"[1]"),
            Err(PayloadError::NotObject("an array"))
        ));
        assert!(matches!(check_payload(b"{"), Err(PayloadError::Json(_))));
        assert_eq!(
            check_payload(br#"{"offset":1}"#),
            Err(PayloadError::Reserved("offset"))
        );
        assert_eq!(
            check_payload(br#"{ "b": 1, "a" : 2 }"#),
            Ok(br#"{"b":1,"a":2}"#.to_vec())
        );
    }
}
