//! The envelope: how a journal record is shown outside the process (NDJSON from `events`, and
//! later WebSocket frames): the payload object with the recorder's fields first,
//! `{"offset":N,"ts":"<RFC 3339 µs Z>","schema_version":V, ...payload fields}`.
//!
//! Invariant: payloads Logbook writes are JSON objects whose top-level keys are unique and not
//! reserved ([`RESERVED_KEYS`]); [`check_payload`] enforces it at the edge, so the envelope can
//! be spliced in front of the payload's own bytes. Anything else (possible only through the raw
//! library API) is wrapped, so every line is valid JSON with unique keys.

use serde::de::{IgnoredAny, MapAccess, Visitor};
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
    /// Names the same top-level key twice (JSON parsers disagree on which one wins).
    #[error("field {0:?} appears twice")]
    Duplicate(String),
}

/// Parses `bytes` as one JSON object payload and returns it in compact form (key order kept).
pub fn check_payload(bytes: &[u8]) -> Result<Vec<u8>, PayloadError> {
    check_object(bytes)?;
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| PayloadError::Json(e.to_string()))?;
    serde_json::to_vec(&value).map_err(|e| PayloadError::Json(e.to_string()))
}

/// The key problem found while scanning an object's top-level keys.
enum KeyProblem {
    Reserved(&'static str),
    Duplicate(String),
}

/// Walks the top-level keys of an object without building its values.
struct Keys<'a>(&'a mut Option<KeyProblem>);

impl<'de> Visitor<'de> for Keys<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        use serde::de::Error;
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            map.next_value::<IgnoredAny>()?;
            let problem = match RESERVED_KEYS.iter().find(|k| **k == key) {
                Some(reserved) => KeyProblem::Reserved(reserved),
                None if !seen.insert(key.clone()) => KeyProblem::Duplicate(key),
                None => continue,
            };
            *self.0 = Some(problem);
            return Err(A::Error::custom("bad key"));
        }
        Ok(())
    }
}

/// Checks that `bytes` are one JSON object with unique, unreserved top-level keys.
fn check_object(bytes: &[u8]) -> Result<(), PayloadError> {
    let mut problem = None;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed =
        serde::Deserializer::deserialize_map(&mut de, Keys(&mut problem)).and_then(|()| de.end());
    match (parsed, problem) {
        (Ok(()), _) => Ok(()),
        (Err(_), Some(KeyProblem::Reserved(key))) => Err(PayloadError::Reserved(key)),
        (Err(_), Some(KeyProblem::Duplicate(key))) => Err(PayloadError::Duplicate(key)),
        (Err(e), None) => match serde_json::from_slice::<Value>(bytes) {
            Ok(value) => Err(PayloadError::NotObject(kind(&value))),
            Err(_) => Err(PayloadError::Json(e.to_string())),
        },
    }
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
pub fn to_json_line(record: &Record) -> String {
    let head = format!(
        "{{\"offset\":{},\"ts\":\"{}\",\"schema_version\":{}",
        record.offset,
        format_us(record.ts_us),
        record.schema_version
    );
    if check_object(&record.payload).is_ok() {
        let body = std::str::from_utf8(&record.payload).unwrap_or("{}").trim();
        let inner = body
            .strip_prefix('{')
            .and_then(|b| b.strip_suffix('}'))
            .unwrap_or("")
            .trim();
        return if inner.is_empty() {
            format!("{head}}}")
        } else {
            format!("{head},{inner}}}")
        };
    }
    // A non-object JSON value is shown as itself; an object that failed the key check (or
    // anything else) verbatim as a string, so nothing (e.g. a duplicate key) is lost.
    let value = match serde_json::from_slice::<Value>(&record.payload) {
        Ok(value) if !value.is_object() => value,
        _ => Value::String(String::from_utf8_lossy(&record.payload).into_owned()),
    };
    let mut map = Map::new();
    map.insert("payload".into(), value);
    let body = Value::Object(map).to_string();
    format!("{head},{}", body.strip_prefix('{').unwrap_or(&body))
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
        let odd = [
            "{}",
            " { } ",
            "[1]",
            "not json",
            r#"{"offset":1}"#,
            "{\"a\":",
            r#"{"a":1,"a":2}"#,
            r#"{"a":1} trailing"#,
        ];
        for payload in odd {
            let line = to_json_line(&record(payload));
            let v: Map<String, Value> = serde_json::from_str(&line).expect("always valid JSON");
            assert_eq!(v["offset"], 7, "{payload}: {line}");
            assert_eq!(
                check_object(line.as_bytes()).err(),
                Some(PayloadError::Reserved("offset"))
            );
        }
    }

    #[test]
    fn refusals() {
        assert_eq!(
            check_payload(b"[1]"),
            Err(PayloadError::NotObject("an array"))
        );
        assert!(matches!(check_payload(b"{"), Err(PayloadError::Json(_))));
        assert!(matches!(
            check_payload(b"{} {}"),
            Err(PayloadError::Json(_))
        ));
        assert_eq!(
            check_payload(br#"{"offset":1}"#),
            Err(PayloadError::Reserved("offset"))
        );
        assert_eq!(
            check_payload(br#"{"a":1,"b":{"a":2},"a":3}"#),
            Err(PayloadError::Duplicate("a".into()))
        );
        assert_eq!(
            check_payload(br#"{ "b": 1, "a" : 2 }"#),
            Ok(br#"{"b":1,"a":2}"#.to_vec())
        );
    }
}
